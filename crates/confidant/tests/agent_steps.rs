//! The agent's steps composed as an init container would (no image, no app): against the real
//! coordinator binary, with the SIMULATION TEE, through the typed coordinator client.
//! Activation yields the workload's identity and rendered files, written where the app reads
//! them; the coordinator's refusal comes back as a typed error code.

mod coord;

use std::os::unix::fs::MetadataExt as _;

use confidant_agent::activation::{self, TeeSource};
use confidant_agent::files;
use confidant_api::ErrorCode;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::sim::SimPlatform;
use confidant_client::{Address, Client, Saved};
use coord::{Client as Curl, setup};

/// A manifest for workload `init` whose package accepts this test binary's sim measurement.
fn manifest(measurement: &str) -> String {
    format!(
        r#"apiVersion: confidant/v1
packages:
  init:
    tee: sim
    reference_values:
      measurements: ["{measurement}"]
workloads:
  init:
    package: init
    max_activations: 2
    files:
      /etc/app/token: "{{{{ token.hex }}}}"
      /etc/app/who: "{{{{ confidant.coordinator }}}}"
    env:
      MODE: init
secrets:
  token: {{type: symmetric-key, size: 128}}
config:
  allow_simulation: true
"#
    )
}

#[test]
fn an_init_container_activates_and_writes_identity_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let (coordinator, address) = coord::start_verified(&home, dir.path());
    let own = hex::encode(SimAttester::measure(
        &std::fs::read("/proc/self/exe").unwrap(),
    ));
    let anon = Curl {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (code, body) = anon.call("POST", "/api/v1/manifest", Some(manifest(&own).as_bytes()));
    assert_eq!(code, 201, "{body}");

    // The steps, as crates/confidant-agent/examples/init_container.rs composes them.
    let address = Address::parse(&address).unwrap();
    let saved = Saved::load(&home, &address).unwrap();
    let client = Client::new(&address, &saved.trust(), None).unwrap();
    let tee = TeeSource::Simulation {
        platform_dir: SimPlatform::dir(&home),
    };
    let attester = activation::attester(&tee, None, "", "init").unwrap();
    let activated = activation::activate(&client, "init", attester.as_ref(), None).unwrap();
    assert_eq!(activated.name(), "init/1");
    assert!(activated.answer.simulation);
    assert!(activated.answer.layer_keys.is_empty());
    assert_eq!(activated.answer.parameters.env["MODE"].expose(), "init");

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    files::write_identity(&out, &activated).unwrap();
    let written =
        files::write_rendered_files(&out.join("files"), &activated.answer.parameters.files)
            .unwrap();
    assert_eq!(written.len(), 2);
    let token = std::fs::read_to_string(out.join("files/etc/app/token")).unwrap();
    assert_eq!(token.len(), 32, "{token:?}");
    assert!(hex::decode(&token).is_ok(), "{token:?}");
    let key = out.join("key.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o400);
    // The written identity is what the coordinator issued for the key the evidence bound: it
    // authenticates as this activation (its volumes' state endpoint knows it as a workload).
    let identity = confidant_client::ClientIdentity::load(&out.join("chain.pem"), &key).unwrap();
    let as_workload = Client::new(&address, &saved.trust(), Some(identity)).unwrap();
    let e = as_workload.volume_state("none").unwrap_err();
    assert!(e.is(ErrorCode::NotFound), "{e}");
    let chain = std::fs::read_to_string(out.join("chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let root = std::fs::read_to_string(out.join("root-ca.pem")).unwrap();
    assert_eq!(root, confidant_client::to_pem(&saved.root));

    // A second activation, then the third is refused with a typed code; nothing is written.
    activation::activate(&client, "init", attester.as_ref(), None).unwrap();
    let e = activation::activate(&client, "init", attester.as_ref(), None).unwrap_err();
    match &e {
        activation::ActivateError::Refused(c) => {
            let api = c.api().unwrap_or_else(|| panic!("{c}"));
            assert_eq!(api.code, ErrorCode::ActivationsExhausted, "{api}");
            assert_eq!(api.status, 409);
        }
        other => panic!("{other}"),
    }
    // An unknown workload: 404 with its field named.
    let e = activation::activate(&client, "nobody", attester.as_ref(), None).unwrap_err();
    let activation::ActivateError::Refused(c) = &e else {
        panic!("{e}")
    };
    assert!(c.is(ErrorCode::NotFound), "{c}");
    assert_eq!(c.api().unwrap().field.as_deref(), Some("workload"));
}
