//! Rollback protection of protected volumes through the real coordinator binary over HTTPS
//! (curl as the client): workloads authenticate with the certificate their activation gave
//! them, read and commit their volumes' state; everyone else is refused with an honest status.

mod coord;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_attest::attester::sim::SimAttester;
use coord::{Client, MEASURED, Workload, assert_error, indent, setup, start, user};
use serde_json::{Value, json};

fn manifest(alice: &str, bob: &str) -> String {
    let m = hex::encode(SimAttester::measure(MEASURED));
    format!(
        r#"apiVersion: confidant/v1
packages:
  app:
    tee: sim
    reference_values:
      measurements: ["{m}"]
workloads:
  db:
    package: app
    volumes:
      - {{volume: data, path: /data}}
      - {{volume: cache, path: /cache}}
      - {{volume: scratch, path: /scratch}}
  reader:
    package: app
    volumes: [{{volume: data, path: /data, read_only: true}}]
  other: {{package: app}}
volumes:
  data: {{size: 1GiB}}
  cache: {{size: 64MiB, policy: reinitializable}}
  scratch: {{size: 1MiB, policy: ephemeral}}
users:
  alice:
    certificate: |
{alice}  bob:
    certificate: |
{bob}roles:
  auditor:
    users: [alice]
    rules:
      - {{resource: volumes, actions: [read]}}
config:
  allow_simulation: true
"#,
        alice = indent(alice, 6),
        bob = indent(bob, 6)
    )
}

/// Activates `workload`; returns the activation and a client that presents its certificate
/// chain (leaf + intermediate, as the activation returned it) and key.
fn activate(home: &Path, dir: &Path, anon: &Client, workload: &str) -> (Value, Client) {
    let w = Workload::new(home);
    let (code, a) = Workload::send(anon, &w.body(anon, workload));
    assert_eq!(code, 200, "{a}");
    let id = a["activation"].as_str().unwrap().replace('/', "-");
    let cert = dir.join(format!("{id}.chain.pem"));
    let key = dir.join(format!("{id}.key"));
    std::fs::write(&cert, a["chain"].as_str().unwrap()).unwrap();
    std::fs::write(&key, w.key.serialize_pem()).unwrap();
    let client = Client {
        url: anon.url.clone(),
        cert: Some((cert, key)),
    };
    (a, client)
}

fn commit(client: &Client, volume: &str, body: &Value) -> (u16, Value) {
    client.call(
        "POST",
        &format!("/api/v1/volumes/{volume}/state"),
        Some(body.to_string().as_bytes()),
    )
}

fn state(client: &Client, volume: &str) -> (u16, Value) {
    client.call("GET", &format!("/api/v1/volumes/{volume}/state"), None)
}

/// A self-signed certificate (and key) naming `uri` in a URI SAN.
fn forged(dir: &Path, uri: &str) -> (PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("forged.crt"), dir.join("forged.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// The answer's keys are exactly the OpenAPI schema's properties, with its required ones.
fn matches_schema(doc: &Value, schema: &str, answer: &Value) {
    let s = &doc["components"]["schemas"][schema];
    let props: Vec<&String> = s["properties"].as_object().unwrap().keys().collect();
    for k in answer.as_object().unwrap().keys() {
        assert!(props.contains(&k), "{k} is not in schema {schema}");
    }
    for r in s["required"].as_array().unwrap() {
        assert!(
            answer.get(r.as_str().unwrap()).is_some(),
            "{r} missing in {answer}"
        );
    }
}

#[test]
fn workloads_commit_their_volumes_state_and_nobody_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let (home, alice_pem, alice_cert, alice_key) = setup(dir.path());
    let (bob_pem, bob_cert, bob_key) = user(dir.path(), "bob");
    let coordinator = start(&home);
    let url = coordinator.url.clone();
    let anon = Client {
        url: url.clone(),
        cert: None,
    };
    let alice = Client {
        url: url.clone(),
        cert: Some((alice_cert, alice_key)),
    };
    let bob = Client {
        url: url.clone(),
        cert: Some((bob_cert, bob_key)),
    };
    let text = manifest(&alice_pem, &bob_pem);
    let (code, set) = anon.call("POST", "/api/v1/manifest", Some(text.as_bytes()));
    assert_eq!(code, 201, "{set}");

    // Activations name each volume's policy; ephemeral volumes get a fresh key each time.
    let (a1, db) = activate(&home, dir.path(), &anon, "db");
    let (a2, db2) = activate(&home, dir.path(), &anon, "db");
    let (_, reader) = activate(&home, dir.path(), &anon, "reader");
    let (_, other) = activate(&home, dir.path(), &anon, "other");
    let grant = |a: &Value, v: &str| -> Value {
        a["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["volume"] == v)
            .cloned()
            .unwrap()
    };
    assert_eq!(grant(&a1, "data")["policy"], "rollback_protected");
    assert_eq!(grant(&a1, "cache")["policy"], "reinitializable");
    assert_eq!(grant(&a1, "scratch")["policy"], "ephemeral");
    assert_eq!(grant(&a1, "data")["key"], grant(&a2, "data")["key"]);
    assert_ne!(grant(&a1, "scratch")["key"], grant(&a2, "scratch")["key"]);
    let (code, doc) = anon.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(code, 200);
    matches_schema(&doc, "Activation", &a1);
    matches_schema(&doc, "VolumeGrant", &grant(&a1, "scratch"));

    // The first state: nothing committed.
    let (code, s) = state(&db, "data");
    assert_eq!(code, 200, "{s}");
    assert_eq!(
        s,
        json!({"volume": "data", "policy": "rollback_protected", "version": 0, "root": null,
               "reinitialized": 0, "updated": null})
    );
    matches_schema(&doc, "VolumeState", &s);
    // Commit 0 -> 1, then a stale commit from 0 conflicts and says where the volume is.
    let root1 = "ab".repeat(32);
    let (code, s) = commit(
        &db,
        "data",
        &json!({"expected_version": 0, "version": 1, "root": root1}),
    );
    assert_eq!(code, 200, "{s}");
    assert_eq!(
        (s["version"].clone(), s["root"].clone()),
        (json!(1), json!(root1))
    );
    assert!(s["updated"].is_string());
    matches_schema(&doc, "VolumeState", &s);
    let stale = commit(
        &db2,
        "data",
        &json!({"expected_version": 0, "version": 1, "root": "cd".repeat(32)}),
    );
    assert_error(
        &stale,
        409,
        "volume_version_conflict",
        Some("expected_version"),
    );
    assert_eq!(stale.1["error"]["details"]["current_version"], 1);
    assert_eq!(stale.1["error"]["details"]["current_root"], root1);
    // Versions move by one; roots are 32 bytes of hex; bodies follow the spec.
    assert_error(
        &commit(
            &db,
            "data",
            &json!({"expected_version": 1, "version": 5, "root": root1}),
        ),
        422,
        "invalid_volume_version",
        Some("version"),
    );
    for root in ["zz".repeat(32), "ab".repeat(31), "ab".repeat(33)] {
        assert_error(
            &commit(
                &db,
                "data",
                &json!({"expected_version": 1, "version": 2, "root": root}),
            ),
            400,
            "malformed",
            Some("root"),
        );
    }
    assert_error(
        &commit(
            &db,
            "data",
            &json!({"expected_version": 1, "version": 2, "root": root1, "force": true}),
        ),
        400,
        "malformed",
        None,
    );
    assert_error(
        &commit(&db, "data", &json!({"version": 2, "root": root1})),
        400,
        "malformed",
        None,
    );
    // The other activation of db continues from version 1.
    let (code, s) = commit(
        &db2,
        "data",
        &json!({"expected_version": 1, "version": 2, "root": "cd".repeat(32)}),
    );
    assert_eq!(code, 200, "{s}");

    // Reinitialization: refused for rollback-protected volumes, counted for reinitializable.
    assert_error(
        &commit(
            &db,
            "data",
            &json!({"expected_version": 2, "version": 3, "root": root1, "reinitialize": true}),
        ),
        409,
        "reinitialize_refused",
        Some("reinitialize"),
    );
    let (code, s) = commit(
        &db,
        "cache",
        &json!({"expected_version": 0, "version": 1, "root": root1}),
    );
    assert_eq!(code, 200, "{s}");
    let (code, s) = commit(
        &db,
        "cache",
        &json!({"expected_version": 1, "version": 2, "root": "00".repeat(32), "reinitialize": true}),
    );
    assert_eq!(code, 200, "{s}");
    assert_eq!(
        (
            s["policy"].clone(),
            s["version"].clone(),
            s["reinitialized"].clone()
        ),
        (json!("reinitializable"), json!(2), json!(1))
    );
    // Ephemeral volumes have no state; unknown volumes do not exist.
    assert_error(
        &state(&db, "scratch"),
        409,
        "ephemeral_volume",
        Some("name"),
    );
    assert_error(
        &commit(
            &db,
            "scratch",
            &json!({"expected_version": 0, "version": 1, "root": root1}),
        ),
        409,
        "ephemeral_volume",
        Some("name"),
    );
    assert_error(&state(&db, "nope"), 404, "not_found", Some("name"));

    // Who may: a read-only mount reads but does not commit; a workload without the volume,
    // users without the role, anonymous callers and forged certificates do neither.
    let c3 = json!({"expected_version": 2, "version": 3, "root": root1});
    assert_eq!(state(&reader, "data").0, 200);
    assert_error(&commit(&reader, "data", &c3), 403, "forbidden", None);
    assert_error(&state(&other, "data"), 403, "forbidden", None);
    assert_error(&commit(&other, "data", &c3), 403, "forbidden", None);
    let (code, s) = state(&alice, "data");
    assert_eq!((code, s["version"].clone()), (200, json!(2)), "{s}");
    assert_error(&commit(&alice, "data", &c3), 403, "forbidden", None);
    assert_error(&state(&bob, "data"), 403, "forbidden", None);
    assert_error(&state(&anon, "data"), 401, "unauthenticated", None);
    assert_error(&commit(&anon, "data", &c3), 401, "unauthenticated", None);
    let forged = Client {
        url: url.clone(),
        cert: Some(forged(dir.path(), "confidant://workload/db/1")),
    };
    assert_error(&state(&forged, "data"), 401, "unauthenticated", None);
    assert_error(&commit(&forged, "data", &c3), 401, "unauthenticated", None);
    // A workload certificate is no user's.
    assert_error(
        &db.call("GET", "/api/v1/audit", None),
        401,
        "unauthenticated",
        None,
    );

    // Every accepted commit is in the audit log, by the activation that made it.
    let (code, log) = alice.call("GET", "/api/v1/audit", None);
    assert_eq!(code, 200, "{log}");
    let volume_entries: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("volume."))
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        volume_entries,
        [
            pair("workload:db/1", "volume.commit"),
            pair("workload:db/2", "volume.commit"),
            pair("workload:db/1", "volume.commit"),
            pair("workload:db/1", "volume.reinitialize"),
        ]
    );
    let known = doc["paths"]
        .as_object()
        .unwrap()
        .contains_key("/api/v1/volumes/{name}/state");
    assert!(
        known,
        "the volume state route is missing from the OpenAPI document"
    );

    // The state outlives the coordinator's process, and the workload's certificate stays
    // valid across the restart.
    drop(coordinator);
    let coordinator = start(&home);
    let db = Client {
        url: coordinator.url.clone(),
        cert: db.cert.clone(),
    };
    let (code, s) = state(&db, "data");
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["version"], 2);
    assert_eq!(s["root"], "cd".repeat(32));
}

/// A volume sealed outside the coordinator, over HTTPS: its key is the value of a `plain`
/// secret (`key_secret`), exactly 32 bytes; activations are refused (409 `volume_key_unset`,
/// not counted) until it is set; users whose role allows `write` on the volume commit its state
/// (audited with their name), users with `read` only, or nothing, are refused.
#[test]
fn owners_register_sealed_volumes_whose_key_is_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (home, alice_pem, alice_cert, alice_key) = setup(dir.path());
    let (bob_pem, bob_cert, bob_key) = user(dir.path(), "bob");
    let coordinator = start(&home);
    let url = coordinator.url.clone();
    let anon = Client {
        url: url.clone(),
        cert: None,
    };
    let alice = Client {
        url: url.clone(),
        cert: Some((alice_cert, alice_key)),
    };
    let bob = Client {
        url: url.clone(),
        cert: Some((bob_cert, bob_key)),
    };
    let text = manifest(&alice_pem, &bob_pem)
        .replace(
            "  other: {package: app}\n",
            "  other: {package: app}\n  app:\n    package: app\n    volumes: [{volume: code, path: /code, read_only: true}]\n",
        )
        .replace(
            "volumes:\n  data:",
            "volumes:\n  code: {size: 1MiB, key_secret: code_key}\n  data:",
        )
        .replace(
            "roles:\n",
            "secrets:\n  code_key: {type: plain}\nroles:\n  owner:\n    users: [alice]\n    rules:\n      - {resource: volumes, names: [code], actions: [write]}\n      - {resource: secrets, names: [code_key], actions: [write]}\n  reader:\n    users: [bob]\n    rules:\n      - {resource: volumes, names: [code], actions: [read]}\n",
        );
    let (code, set) = anon.call("POST", "/api/v1/manifest", Some(text.as_bytes()));
    assert_eq!(code, 201, "{set}\n{text}");

    // Not set yet: refused, naming the secret.
    let w = Workload::new(&home);
    let refused = Workload::send(&anon, &w.body(&anon, "app"));
    assert_error(
        &refused,
        409,
        "volume_key_unset",
        Some("volumes.code.key_secret"),
    );
    let message = refused.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("secret 'code_key'"), "{message}");
    // Only a 32-byte key is accepted as its value.
    let (code, e) = alice.call(
        "PUT",
        "/api/v1/secrets/code_key",
        Some(
            json!({"value": STANDARD.encode(b"too short")})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_error(&(code, e), 400, "malformed", Some("value"));
    let key = [0x42u8; 32];
    let code = coord::put_secret(&alice, "code_key", &key);
    assert!(code == 200 || code == 204, "{code}");
    let (a, reader) = activate(&home, dir.path(), &anon, "app");
    assert_eq!(
        a["activation"], "app/1",
        "the refused activation was not counted"
    );
    assert_eq!(a["volumes"][0]["read_only"], true);
    assert_eq!(
        STANDARD
            .decode(a["volumes"][0]["key"].as_str().unwrap())
            .unwrap(),
        key
    );

    // The owner registers the sealed state; the same CAS rules hold.
    let root = "5e".repeat(32);
    let c1 = json!({"expected_version": 0, "version": 1, "root": root});
    assert_error(&commit(&bob, "code", &c1), 403, "forbidden", None);
    assert_error(&commit(&alice, "data", &c1), 403, "forbidden", None);
    assert_error(&commit(&reader, "code", &c1), 403, "forbidden", None);
    let (code, s) = commit(&alice, "code", &c1);
    assert_eq!(code, 200, "{s}");
    assert_eq!(
        (s["version"].clone(), s["root"].clone()),
        (json!(1), json!(root))
    );
    assert_error(
        &commit(&alice, "code", &c1),
        409,
        "volume_version_conflict",
        Some("expected_version"),
    );
    // Readers see it (bob by role, the workload by its mount).
    assert_eq!(state(&bob, "code").1["version"], 1);
    assert_eq!(state(&reader, "code").1["root"], json!(root));
    // Audited as alice.
    let (code, log) = alice.call("GET", "/api/v1/audit", None);
    assert_eq!(code, 200, "{log}");
    let entries: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("volume."))
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(entries, [("alice", "volume.commit")]);
}
