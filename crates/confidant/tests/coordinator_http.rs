//! The real coordinator binary over HTTPS (curl as the client): the whole flow with simulation
//! evidence, and every refusal the issue lists, each with its status, code and field.

mod coord;

use std::path::Path;
use std::process::Command;

use confidant_attest::attester::sim::SimAttester;
use confidant_attest::sim::SimPlatform;
use coord::{Client, MEASURED, Workload, assert_error, indent, put_secret, setup, start, user};
use serde_json::{Value, json};

fn manifest(alice: &str, bob: &str, extra_workloads: &str) -> String {
    let m = hex::encode(SimAttester::measure(MEASURED));
    format!(
        r#"apiVersion: confidant/v1
packages:
  app:
    tee: sim
    reference_values:
      measurements: ["{m}"]
workloads:
  w:
    package: app
    max_activations: 2
    files:
      /etc/app/conf: "password={{{{ db.value }}}} key={{{{ k.hex }}}}"
      /etc/app/ca.pem: "{{{{ confidant.root_ca }}}}"
    env:
      TLS_CERT: "{{{{ confidant.cert }}}}"
{extra_workloads}secrets:
  k: {{type: symmetric-key, size: 256}}
  db: {{type: plain}}
users:
  alice:
    certificate: |
{alice}  bob:
    certificate: |
{bob}roles:
  admin:
    users: [alice]
    rules:
      - {{resource: manifest, actions: [update]}}
      - {{resource: secrets, actions: [read, write]}}
config:
  allow_simulation: true
"#,
        alice = indent(alice, 6),
        bob = indent(bob, 6)
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn whole_flow_then_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (home, alice_pem, alice_cert, alice_key) = setup(dir.path());
    let (bob_pem, bob_cert, bob_key) = user(dir.path(), "bob");
    let (_, stranger_cert, stranger_key) = user(dir.path(), "stranger");
    let coordinator = start(&home);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let alice = Client {
        url: coordinator.url.clone(),
        cert: Some((alice_cert, alice_key)),
    };
    let bob = Client {
        url: coordinator.url.clone(),
        cert: Some((bob_cert, bob_key)),
    };
    let stranger = Client {
        url: coordinator.url.clone(),
        cert: Some((stranger_cert, stranger_key)),
    };

    // Before a manifest: activations are a state conflict.
    let w = Workload::new(&home);
    let (code, n) = anon.call("POST", "/api/v1/nonce", None);
    assert_error(&(code, n), 409, "wrong_state", None);

    // A template naming an unknown secret refuses the manifest, with the path.
    let bad = manifest(
        &alice_pem,
        &bob_pem,
        "  x:\n    package: app\n    env: {DB: \"{{ nope.value }}\"}\n",
    );
    let answer = anon.call("POST", "/api/v1/manifest", Some(bad.as_bytes()));
    assert_error(&answer, 422, "invalid_manifest", Some("workloads.x.env.DB"));
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown secret 'nope'")
    );

    let good = manifest(&alice_pem, &bob_pem, "");
    let (code, set) = anon.call("POST", "/api/v1/manifest", Some(good.as_bytes()));
    assert_eq!(code, 201, "{set}");
    assert_eq!(set["version"], 1);

    // An unauthenticated manifest change, and one by a user without the role.
    let next = manifest(&alice_pem, &bob_pem, "  y: {package: app}\n");
    assert_error(
        &anon.call("POST", "/api/v1/manifest", Some(next.as_bytes())),
        401,
        "unauthenticated",
        None,
    );
    assert_error(
        &stranger.call("POST", "/api/v1/manifest", Some(next.as_bytes())),
        401,
        "unauthenticated",
        None,
    );
    assert_error(
        &bob.call("POST", "/api/v1/manifest", Some(next.as_bytes())),
        403,
        "forbidden",
        None,
    );
    // Secrets: bob has no role, a stranger is no user.
    assert_error(
        &bob.call("GET", "/api/v1/secrets/k", None),
        403,
        "forbidden",
        None,
    );
    assert_error(
        &stranger.call("GET", "/api/v1/secrets/k", None),
        401,
        "unauthenticated",
        None,
    );
    let put = json!({"value": "aGk="}).to_string();
    assert_error(
        &bob.call("PUT", "/api/v1/secrets/db", Some(put.as_bytes())),
        403,
        "forbidden",
        None,
    );
    assert_eq!(put_secret(&alice, "db", b"s3cret-db-password"), 200);

    // The whole flow: activate, receive secrets and a certificate that chains to the root the
    // coordinator's attestation binds.
    let (code, a) = Workload::send(&anon, &w.body(&anon, "w"));
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["activation"], "w/1");
    assert_eq!(a["simulation"], true);
    let conf = a["parameters"]["files"]["/etc/app/conf"].as_str().unwrap();
    assert!(
        conf.starts_with("password=s3cret-db-password key="),
        "{conf}"
    );
    assert_eq!(a["parameters"]["env"]["TLS_CERT"], a["certificate"]);
    // A client verifies the coordinator (its measurement: the confidant binary, as the sim
    // platform measured it at launch) and then trusts the workload's certificate.
    let measurement = hex::encode(SimAttester::measure(
        &std::fs::read(env!("CARGO_BIN_EXE_confidant")).unwrap(),
    ));
    let reference = write(
        dir.path(),
        "coordinator.json",
        &json!({"measurements": [measurement]}).to_string(),
    );
    let address = coordinator.url.trim_start_matches("https://").to_string();
    let out = coord::confidant(&home)
        .args(["verify", "--coordinator", &address, "--reference-values"])
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("SIMULATION"), "{said}");
    let saved = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("manifest     saved in "))
        .unwrap_or_else(|| panic!("no saved manifest in {said}"));
    let record: Value = serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    assert_eq!(record["hash"], set["hash"]);
    let out = coord::confidant(&home)
        .args(["certificate", "chain", "--coordinator", &address])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chain = String::from_utf8(out.stdout).unwrap();
    assert!(chain.contains(a["root_ca"].as_str().unwrap().trim()));
    let pems = pem::parse_many(chain.as_bytes()).unwrap();
    let root = write(dir.path(), "root.pem", &pem::encode(pems.last().unwrap()));
    let inter = write(dir.path(), "inter.pem", &pem::encode(&pems[0]));
    let leaf = write(dir.path(), "leaf.pem", a["certificate"].as_str().unwrap());
    let verify = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&inter)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // Replayed evidence: the same body (same nonce) again.
    let body = w.body(&anon, "w");
    assert_eq!(Workload::send(&anon, &body).0, 200);
    assert_error(&Workload::send(&anon, &body), 422, "nonce", Some("nonce"));
    // Maximum activations (2) reached.
    assert_error(
        &Workload::send(&anon, &w.body(&anon, "w")),
        409,
        "activations_exhausted",
        Some("workload"),
    );

    // Wrong measurement, debug, untrusted platform, CSR not bound: each refused with its field.
    let platform = || SimPlatform::load(&SimPlatform::dir(&home)).unwrap();
    let mut wrong = Workload::new(&home);
    wrong.attester = SimAttester::new(platform(), SimAttester::measure(b"tampered"));
    let answer = Workload::send(&anon, &wrong.body(&anon, "w"));
    assert_error(
        &answer,
        422,
        "evidence_rejected",
        Some("evidence.measurement"),
    );
    assert_eq!(
        answer.1["error"]["details"]["mismatches"][0]["field"],
        "measurement"
    );
    let mut debug = Workload::new(&home);
    debug.attester = SimAttester::new(platform(), SimAttester::measure(MEASURED)).with_debug(true);
    assert_error(
        &Workload::send(&anon, &debug.body(&anon, "w")),
        422,
        "evidence_rejected",
        Some("evidence.debug"),
    );
    let foreign_dir = tempfile::tempdir().unwrap();
    let mut foreign = Workload::new(&home);
    foreign.attester = SimAttester::new(
        SimPlatform::init(foreign_dir.path()).unwrap(),
        SimAttester::measure(MEASURED),
    );
    assert_error(
        &Workload::send(&anon, &foreign.body(&anon, "w")),
        422,
        "evidence_rejected",
        Some("evidence"),
    );
    // Evidence that does not parse was not judged: malformed (400), not rejected.
    let mut garbled = w.body(&anon, "w");
    garbled["evidence"]["evidence"] = Value::String("AAAA".into());
    assert_error(
        &Workload::send(&anon, &garbled),
        400,
        "malformed",
        Some("evidence"),
    );
    let thief = Workload::new(&home);
    let mut stolen = w.body(&anon, "w");
    stolen["csr"] = Value::String(thief.csr.clone());
    assert_error(&Workload::send(&anon, &stolen), 422, "binding", Some("csr"));
    // Malformed requests are 400 and name the field.
    let mut bad = w.body(&anon, "w");
    bad["nonce"] = Value::String("zz".into());
    assert_error(
        &Workload::send(&anon, &bad),
        400,
        "malformed",
        Some("nonce"),
    );
    assert_error(
        &anon.call("POST", "/api/v1/activate", Some(br#"{"workload": 3}"#)),
        400,
        "malformed",
        Some("workload"),
    );
    assert_error(
        &Workload::send(&anon, &w.body(&anon, "nope")),
        404,
        "not_found",
        Some("workload"),
    );

    // The audit log saw it all (reads need a user).
    assert_error(
        &anon.call("GET", "/api/v1/audit", None),
        401,
        "unauthenticated",
        None,
    );
    let (code, log) = alice.call("GET", "/api/v1/audit", None);
    assert_eq!(code, 200);
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["manifest.set", "secret.write", "activate", "activate"]
    );
    // The OpenAPI document is served and names every route.
    let (code, doc) = anon.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(code, 200);
    for path in [
        "/status",
        "/attestation",
        "/manifest",
        "/activate",
        "/nonce",
        "/secrets/{name}",
        "/audit",
        "/recover",
    ] {
        let known = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.ends_with(path));
        assert!(known, "{path} missing from the OpenAPI document");
    }
}

#[test]
fn sim_evidence_is_refused_when_the_manifest_does_not_allow_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let coordinator = start(&home);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    // A manifest that declares a sim package without allowing simulation is refused outright.
    let sim = format!(
        "apiVersion: confidant/v1\npackages:\n  p:\n    tee: sim\n    reference_values:\n      measurements: [\"{}\"]\n",
        "cd".repeat(48)
    );
    let answer = anon.call("POST", "/api/v1/manifest", Some(sim.as_bytes()));
    assert_error(&answer, 422, "invalid_manifest", Some("packages.p.tee"));
    let manifest = format!(
        "apiVersion: confidant/v1\npackages:\n  enclave:\n    tee: sgx\n    reference_values:\n      measurements: [\"{}\"]\nworkloads:\n  w: {{package: enclave}}\n",
        "cd".repeat(32)
    );
    let (code, set) = anon.call("POST", "/api/v1/manifest", Some(manifest.as_bytes()));
    assert_eq!(code, 201, "{set}");
    let w = Workload::new(&home);
    let answer = Workload::send(&anon, &w.body(&anon, "w"));
    assert_error(&answer, 422, "evidence_rejected", Some("evidence.tee"));
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_simulation")
    );
}
