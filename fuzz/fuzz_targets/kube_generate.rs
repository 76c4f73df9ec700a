//! Users' Kubernetes YAML through `confidant generate` (offline), and policy annotations read
//! back: nothing may panic; what generate writes is YAML it takes again unchanged (idempotent).

#![no_main]

use confidant_kube::{Offline, Options, Platform, generate, policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Annotations as an earlier run (or anyone editing the YAML) left them.
    for annotation in [policy::AKS_POLICY_ANNOTATION, policy::COCO_INITDATA_ANNOTATION] {
        let _ = policy::read_back(annotation, text);
    }
    let _ = confidant_kube::stream::split(text);
    for platform in Platform::ALL {
        let options = Options {
            platform,
            coordinator: "c:4433".into(),
            coordinator_root_sha256: "ab".repeat(32),
            confidant_image: format!("confidant@sha256:{}", "9".repeat(64)),
        };
        if let Ok(out) = generate("fuzz.yaml", text, &options, &Offline) {
            let again = generate("fuzz.yaml", &out.text, &options, &Offline)
                .expect("generate refused its own output");
            assert_eq!(again.text, out.text, "a second run changed the output");
        }
    }
});
