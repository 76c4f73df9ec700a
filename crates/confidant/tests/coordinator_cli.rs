//! The coordinator commands end to end: `confidant coordinator run` as a real process, and the
//! client commands (`verify`, `manifest set|get`, `status`, `secret set|get`, `certificate`,
//! `recover`) against it, as a user runs them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{code, json, stdout};
use serde_json::{Value, json};

/// A running coordinator, killed when dropped.
struct Coordinator {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// What it printed when it started.
    started: Value,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coordinator {
    /// Starts `confidant coordinator run` on ephemeral ports with `home`, and waits for the
    /// line that says where it listens.
    fn start(home: &Path) -> Coordinator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confidant"))
            .env("CONFIDANT_HOME", home)
            .args([
                "-o",
                "json",
                "coordinator",
                "run",
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting confidant coordinator run");
        let out = child.stdout.take().expect("piped stdout");
        let mut guard = Coordinator {
            child,
            addr: String::new(),
            started: Value::Null,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining, so the coordinator never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => l,
            Err(_) => panic!("the coordinator did not say it listens within 120 s"),
        };
        if line.trim().is_empty() {
            let status = guard.child.wait().ok();
            panic!("the coordinator exited without listening: {status:?}");
        }
        let started: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("start line is not JSON ({e}): {line}"));
        let api = started["api"].as_str().expect("api address").to_string();
        guard.addr = api
            .strip_prefix("https://")
            .expect("https API address")
            .to_string();
        guard.started = started;
        guard
    }
}

/// A temporary home with a simulation platform (shared by the coordinator and the client, as
/// on one development machine).
fn sim_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let o = confidant(home.path(), &["attest", "sim", "init"]);
    assert_eq!(code(&o), 0, "sim init: {}", stderr(&o));
    home
}

fn confidant(home: &Path, args: &[&str]) -> Output {
    common::run_confidant(Some(home), args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Both streams, for assertion messages and searches.
fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// A user's self-signed certificate and key, written as `NAME.crt` and `NAME.key`.
struct User {
    cert: PathBuf,
    key: PathBuf,
    pem: String,
}

fn user(dir: &Path, name: &str) -> User {
    let ck = rcgen::generate_simple_self_signed(vec![format!("{name}.users.test")]).unwrap();
    let pem = ck.cert.pem();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    User { cert, key, pem }
}

/// A simulation manifest: one sim package and workload, a `plain` secret `api_token` that
/// alice may read and write, bob may only update the manifest.
fn manifest(alice: &User, bob: &User) -> Value {
    json!({
        "apiVersion": "confidant/v1",
        "packages": {
            "app-sim": {
                "tee": "sim",
                "reference_values": {"allow_debug": true},
                "image_digests": [format!("sha256:{}", "ab".repeat(32))]
            }
        },
        "workloads": {
            "app": {"package": "app-sim", "env": {"MODE": "test"}}
        },
        "secrets": {
            "api_token": {"type": "plain"},
            "session_key": {"type": "symmetric-key", "size": 256},
            "web_tls": {"type": "cert-ecdsa", "sans": ["web.test"]}
        },
        "users": {
            "alice": {"certificate": alice.pem},
            "bob": {"certificate": bob.pem}
        },
        "roles": {
            "admins": {
                "users": ["alice"],
                "rules": [
                    {"resource": "secrets", "names": ["api_token"], "actions": ["read", "write"]},
                    {"resource": "secrets", "names": ["session_key", "web_tls"], "actions": ["read"]},
                    {"resource": "manifest", "actions": ["update"]}
                ]
            },
            "updaters": {
                "users": ["bob"],
                "rules": [{"resource": "manifest", "actions": ["update"]}]
            }
        },
        "config": {"allow_simulation": true}
    })
}

fn write_yaml(path: &Path, v: &Value) {
    std::fs::write(path, serde_yaml_ng::to_string(v).unwrap()).unwrap();
}

/// `--cert F --key F` arguments.
fn as_user(u: &User) -> [String; 4] {
    [
        "--cert".into(),
        u.cert.to_str().unwrap().into(),
        "--key".into(),
        u.key.to_str().unwrap().into(),
    ]
}

fn with<'a>(base: &[&'a str], extra: &'a [String]) -> Vec<&'a str> {
    let mut v = base.to_vec();
    v.extend(extra.iter().map(String::as_str));
    v
}

// ---- Without a coordinator -------------------------------------------------------------

#[test]
fn commands_before_verify_ask_for_it() {
    let home = tempfile::tempdir().unwrap();
    let want = "run `confidant verify --coordinator 127.0.0.1:9` first";
    for args in [
        &["status", "--coordinator", "127.0.0.1:9"][..],
        &["certificate", "root", "--coordinator", "127.0.0.1:9"],
        &["certificate", "chain", "--coordinator", "127.0.0.1:9"],
        &["manifest", "get", "--coordinator", "127.0.0.1:9"],
        &["secret", "get", "--coordinator", "127.0.0.1:9", "api_token"],
        &[
            "secret",
            "set",
            "--coordinator",
            "127.0.0.1:9",
            "api_token",
            "--value",
            "x",
        ],
    ] {
        let o = confidant(home.path(), args);
        assert_eq!(code(&o), 2, "{args:?}: {}", all(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn verify_needs_a_measurement_policy() {
    let home = tempfile::tempdir().unwrap();
    let o = confidant(home.path(), &["verify", "--coordinator", "127.0.0.1:9"]);
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(
        stderr(&o).contains("--insecure-skip-measurement"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreachable_coordinator_is_a_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let o = confidant(
        home.path(),
        &[
            "verify",
            "--coordinator",
            &addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(stderr(&o).contains(&addr), "{}", stderr(&o));
    let o = confidant(
        home.path(),
        &[
            "-o",
            "json",
            "verify",
            "--coordinator",
            &addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert_eq!(json(&o)["error"]["code"], "transport", "{}", stdout(&o));
}

#[test]
fn bad_addresses_and_names_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let o = confidant(
        home.path(),
        &[
            "verify",
            "--coordinator",
            "http://127.0.0.1:9",
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(stderr(&o).contains("HTTPS only"), "{}", stderr(&o));
    let o = confidant(
        home.path(),
        &["secret", "get", "--coordinator", "127.0.0.1:9", "../x"],
    );
    assert_eq!(code(&o), 2, "{}", all(&o));
}

// ---- Against a running coordinator --------------------------------------------------------

#[test]
fn coordinator_end_to_end() {
    let home = sim_home();
    let h = home.path();
    let coord = Coordinator::start(h);
    assert_eq!(coord.started["simulation"], true, "{}", coord.started);
    assert_eq!(coord.started["state"], "accepting-manifest");
    let addr = coord.addr.as_str();

    // verify: evidence accepted, root CA saved.
    let o = confidant(
        h,
        &[
            "verify",
            "--coordinator",
            addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let out = stdout(&o);
    assert!(out.contains("ACCEPTED"), "{out}");
    assert!(out.contains("SIMULATION"), "{out}");
    let saved = h.join("client").join(addr.replace(':', "_"));
    let root = std::fs::read_to_string(saved.join("root.pem")).unwrap();
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(saved.join("coordinator.json")).unwrap())
            .unwrap();
    assert_eq!(info["tee"], "sim");
    assert_eq!(info["simulation"], true);
    assert_eq!(info["state"], "accepting-manifest");
    assert_eq!(info["manifest_hash"], Value::Null);
    assert_eq!(info["measurement"].as_str().unwrap().len(), 96);

    // certificate root|chain print what was saved.
    let o = confidant(h, &["certificate", "root", "--coordinator", addr]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(stdout(&o).trim(), root.trim());
    let o = confidant(h, &["certificate", "chain", "--coordinator", addr]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(stdout(&o).matches("BEGIN CERTIFICATE").count(), 2);
    assert!(stdout(&o).trim_end().ends_with(root.trim()));

    // manifest set: the first manifest needs no client certificate.
    let alice = user(h, "alice");
    let bob = user(h, "bob");
    let mallory = user(h, "mallory");
    let m = manifest(&alice, &bob);
    let mpath = h.join("manifest.yaml");
    write_yaml(&mpath, &m);
    let o = confidant(
        h,
        &[
            "-o",
            "json",
            "manifest",
            "set",
            "--coordinator",
            addr,
            mpath.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let set = json(&o);
    assert_eq!(set["version"], 1, "{set}");
    let hash = set["hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64, "{set}");

    // status: running, version 1.
    let o = confidant(h, &["-o", "json", "status", "--coordinator", addr]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let st = json(&o);
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["simulation"], true);
    assert_eq!(st["manifest"]["version"], 1);
    assert_eq!(st["manifest"]["hash"], hash.as_str());
    let o = confidant(h, &["status", "--coordinator", addr]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("running"), "{}", stdout(&o));

    // secret set|get: alice may; anonymous is 401; mallory (no user) 401; bob (no role) 403.
    let a = as_user(&alice);
    let o = confidant(
        h,
        &with(
            &[
                "secret",
                "set",
                "--coordinator",
                addr,
                "api_token",
                "--value",
                "hunter2",
            ],
            &a,
        ),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let o = confidant(
        h,
        &with(&["secret", "get", "--coordinator", addr, "api_token"], &a),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(stdout(&o).trim_end(), "hunter2");
    let o = confidant(
        h,
        &with(
            &[
                "-o",
                "json",
                "secret",
                "get",
                "--coordinator",
                addr,
                "api_token",
            ],
            &a,
        ),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(json(&o)["value"], "aHVudGVyMg==");
    let out_file = h.join("token.out");
    let o = confidant(
        h,
        &with(
            &[
                "secret",
                "get",
                "--coordinator",
                addr,
                "api_token",
                "--out",
                out_file.to_str().unwrap(),
            ],
            &a,
        ),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(std::fs::read(&out_file).unwrap(), b"hunter2");

    // A generated key is binary (base64 for people, raw bytes with --out); a certificate
    // secret is certificate and key PEM; only `plain` secrets can be written (no role can
    // allow more: 403).
    let o = confidant(
        h,
        &with(
            &[
                "-o",
                "json",
                "secret",
                "get",
                "--coordinator",
                addr,
                "session_key",
            ],
            &a,
        ),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(json(&o)["type"], "symmetric-key", "{}", stdout(&o));
    let key_file = h.join("session.key");
    let o = confidant(
        h,
        &with(
            &[
                "secret",
                "get",
                "--coordinator",
                addr,
                "session_key",
                "--out",
                key_file.to_str().unwrap(),
            ],
            &a,
        ),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 32);
    let o = confidant(
        h,
        &with(&["secret", "get", "--coordinator", addr, "web_tls"], &a),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("BEGIN CERTIFICATE"), "{}", stdout(&o));
    assert!(stdout(&o).contains("PRIVATE KEY"), "{}", stdout(&o));
    let o = confidant(
        h,
        &with(
            &[
                "secret",
                "set",
                "--coordinator",
                addr,
                "session_key",
                "--value",
                "x",
            ],
            &a,
        ),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stderr(&o).contains("forbidden"), "{}", stderr(&o));
    let o = confidant(
        h,
        &with(&["secret", "get", "--coordinator", addr, "nosuch"], &a),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));

    let o = confidant(h, &["secret", "get", "--coordinator", addr, "api_token"]);
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stderr(&o).contains("unauthenticated"), "{}", stderr(&o));
    let o = confidant(
        h,
        &with(
            &["secret", "get", "--coordinator", addr, "api_token"],
            &as_user(&mallory),
        ),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stderr(&o).contains("unauthenticated"), "{}", stderr(&o));
    let b = as_user(&bob);
    let o = confidant(
        h,
        &with(&["secret", "get", "--coordinator", addr, "api_token"], &b),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stderr(&o).contains("forbidden"), "{}", stderr(&o));
    let o = confidant(
        h,
        &with(
            &[
                "-o",
                "json",
                "secret",
                "set",
                "--coordinator",
                addr,
                "api_token",
                "--value",
                "x",
            ],
            &b,
        ),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let err = json(&o);
    assert_eq!(err["error"]["code"], "forbidden", "{err}");
    assert_eq!(err["error"]["status"], 403, "{err}");

    // manifest get: the record checks out against the saved root CA.
    let o = confidant(h, &["-o", "json", "manifest", "get", "--coordinator", addr]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let rec = json(&o);
    assert_eq!(rec["version"], 1, "{rec}");
    assert_eq!(rec["hash"], hash.as_str());
    assert_eq!(rec["previous"], Value::Null);
    assert_eq!(rec["set_by"], Value::Null);
    assert_eq!(rec["manifest"]["secrets"]["api_token"]["type"], "plain");
    let o = confidant(h, &["manifest", "get", "--coordinator", addr]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let out = stdout(&o);
    assert!(out.contains("version   1"), "{out}");
    assert!(out.contains(&hash), "{out}");
    let o = confidant(
        h,
        &["manifest", "get", "--coordinator", addr, "--version", "7"],
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stderr(&o).contains("not_found"), "{}", stderr(&o));

    // A second manifest needs a user allowed to update it; anonymous is refused.
    let mut m2 = m.clone();
    m2["workloads"]["app"]["env"]["MODE"] = json!("second");
    let m2path = h.join("manifest2.json");
    std::fs::write(&m2path, serde_json::to_string_pretty(&m2).unwrap()).unwrap();
    let o = confidant(
        h,
        &[
            "manifest",
            "set",
            "--coordinator",
            addr,
            m2path.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stderr(&o).contains("unauthenticated"), "{}", stderr(&o));
    let o = confidant(
        h,
        &with(
            &[
                "manifest",
                "set",
                "--coordinator",
                addr,
                m2path.to_str().unwrap(),
            ],
            &b,
        ),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("version 2"), "{}", stdout(&o));
    let o = confidant(h, &["-o", "json", "manifest", "get", "--coordinator", addr]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let rec = json(&o);
    assert_eq!(rec["version"], 2, "{rec}");
    assert_eq!(rec["previous"], hash.as_str());
    assert_eq!(rec["set_by"], "bob");

    // Verifying again records the new manifest hash.
    let o = confidant(
        h,
        &[
            "-o",
            "json",
            "verify",
            "--coordinator",
            addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(json(&o)["manifest_hash"], rec["hash"]);
    assert_eq!(json(&o)["state"], "running");
}

#[test]
fn invalid_manifest_is_refused_with_every_error() {
    let home = sim_home();
    let h = home.path();
    let coord = Coordinator::start(h);
    let addr = coord.addr.as_str();
    let o = confidant(
        h,
        &[
            "verify",
            "--coordinator",
            addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let bad = h.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: confidant/v1\npackages:\n  dev: {tee: sim}\nworkloads:\n  web: {package: ghost}\n",
    )
    .unwrap();
    let o = confidant(
        h,
        &[
            "manifest",
            "set",
            "--coordinator",
            addr,
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let err = stderr(&o);
    assert!(err.contains("invalid_manifest"), "{err}");
    assert!(err.contains("ghost"), "{err}");
    assert!(err.contains("allow_simulation"), "{err}");
}

#[test]
fn verify_rejects_a_wrong_measurement_and_an_untrusted_platform() {
    let home = sim_home();
    let h = home.path();
    let coord = Coordinator::start(h);
    let addr = coord.addr.as_str();

    let refs = h.join("refs.yaml");
    std::fs::write(
        &refs,
        format!("tee: sim\nmeasurements: [{}]\n", "00".repeat(48)),
    )
    .unwrap();
    let o = confidant(
        h,
        &[
            "verify",
            "--coordinator",
            addr,
            "--reference-values",
            refs.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stdout(&o).contains("REJECTED"), "{}", stdout(&o));
    assert!(stdout(&o).contains("measurement"), "{}", stdout(&o));
    assert!(!h.join("client").join(addr.replace(':', "_")).exists());

    // The measurement verify printed, as reference values, is accepted.
    let o = confidant(
        h,
        &[
            "-o",
            "json",
            "verify",
            "--coordinator",
            addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let m = json(&o)["measurement"].as_str().unwrap().to_string();
    std::fs::write(&refs, format!("tee: sim\nmeasurements: [{m}]\n")).unwrap();
    let o = confidant(
        h,
        &[
            "verify",
            "--coordinator",
            addr,
            "--reference-values",
            refs.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));

    // A client without this simulation platform's key does not trust its evidence.
    let other = tempfile::tempdir().unwrap();
    let o = confidant(
        other.path(),
        &[
            "verify",
            "--coordinator",
            addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stdout(&o).contains("REJECTED"), "{}", stdout(&o));
    assert!(stdout(&o).contains("platform.pub"), "{}", stdout(&o));
    // … unless told to trust it.
    let key = h.join("sim").join("platform.pub");
    let o = confidant(
        other.path(),
        &[
            "verify",
            "--coordinator",
            addr,
            "--insecure-skip-measurement",
            "--sim-platform-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(other.path().join("client").exists());
}

#[test]
fn a_client_pinned_to_another_root_refuses_the_coordinator() {
    let home = sim_home();
    let h = home.path();
    let coord = Coordinator::start(h);
    let addr = coord.addr.as_str();
    let o = confidant(
        h,
        &[
            "verify",
            "--coordinator",
            addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    // Replace the saved root with an unrelated CA: the TLS handshake must fail (exit 2).
    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
    let saved = h.join("client").join(addr.replace(':', "_"));
    std::fs::write(saved.join("root.pem"), other.cert.pem()).unwrap();
    let _ = std::fs::remove_file(saved.join("intermediate.pem"));
    let o = confidant(h, &["status", "--coordinator", addr]);
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
}

/// An RSA recovery owner: `NAME.pem` (private, PKCS#8) and the public key PEM.
fn owner(dir: &Path, name: &str) -> (PathBuf, String) {
    let kp = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let path = dir.join(format!("{name}-owner.pem"));
    std::fs::write(&path, kp.serialize_pem()).unwrap();
    (path, kp.public_key_pem())
}

#[test]
fn recovery_owners_unseal_a_coordinator_whose_platform_changed() {
    let home = sim_home();
    let h = home.path();
    let coord = Coordinator::start(h);
    let addr = coord.addr.clone();
    let o = confidant(
        h,
        &[
            "verify",
            "--coordinator",
            &addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));

    let alice = user(h, "alice");
    let bob = user(h, "bob");
    let (alice_key, alice_pub) = owner(h, "alice");
    let (bob_key, bob_pub) = owner(h, "bob");
    let (stranger_key, _) = owner(h, "stranger");
    let mut m = manifest(&alice, &bob);
    m["recovery"] = json!({"threshold": 2, "keys": {"alice": alice_pub, "bob": bob_pub}});
    let mpath = h.join("manifest.yaml");
    write_yaml(&mpath, &m);
    let shares = h.join("shares.json");
    let o = confidant(
        h,
        &[
            "manifest",
            "set",
            "--coordinator",
            &addr,
            mpath.to_str().unwrap(),
            "--recovery-out",
            shares.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("2 encrypted shares"), "{}", stdout(&o));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&shares).unwrap()).unwrap();
    assert_eq!(saved["threshold"], 2, "{saved}");
    assert_eq!(saved["shares"].as_array().unwrap().len(), 2, "{saved}");
    let hash = {
        let o = confidant(h, &["-o", "json", "status", "--coordinator", &addr]);
        json(&o)["manifest"]["hash"].as_str().unwrap().to_string()
    };
    drop(coord);

    // A new simulation platform: the sealed data key no longer unseals.
    std::fs::remove_dir_all(h.join("sim")).unwrap();
    let o = confidant(h, &["attest", "sim", "init"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let coord = Coordinator::start(h);
    assert_eq!(coord.started["state"], "recovery", "{}", coord.started);
    let addr = coord.addr.clone();

    // Only status, attestation, recovery and recover answer: verify finds no root CA to pin.
    let o = confidant(
        h,
        &[
            "verify",
            "--coordinator",
            &addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("recovery"), "{}", stdout(&o));
    let o = confidant(h, &["status", "--coordinator", &addr]);
    assert_eq!(code(&o), 2, "{}", all(&o));

    // A key that owns no share.
    let recover = |key: &Path| {
        confidant(
            h,
            &[
                "recover",
                "--coordinator",
                &addr,
                "--key",
                key.to_str().unwrap(),
                "--insecure-skip-measurement",
            ],
        )
    };
    let o = recover(&stranger_key);
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(
        stderr(&o).contains("none of the coordinator's 2 recovery shares"),
        "{}",
        all(&o)
    );

    let o = recover(&alice_key);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("1 of 2"), "{}", stdout(&o));
    let o = recover(&bob_key);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("state: running"), "{}", stdout(&o));

    // Running again, with the same manifest and CA.
    let o = confidant(
        h,
        &[
            "-o",
            "json",
            "verify",
            "--coordinator",
            &addr,
            "--insecure-skip-measurement",
        ],
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(json(&o)["state"], "running");
    assert_eq!(json(&o)["manifest_hash"], hash.as_str());
}
