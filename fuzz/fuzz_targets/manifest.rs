//! Manifests from untrusted users: YAML and JSON parsing, whole-manifest checks (including the
//! template dry run), canonical hashing. None of it may panic.

#![no_main]

use confidant_manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [Manifest::from_yaml(text), Manifest::from_json(text)] {
        if let Ok(m) = parsed {
            let _ = m.check();
            // The canonical form is itself a manifest with the same canonical form.
            let canonical = m.canonical_json();
            let back = Manifest::from_json(&canonical).expect("canonical JSON parses");
            assert_eq!(back.canonical_json(), canonical, "canonical form is not stable");
        }
    }
});
