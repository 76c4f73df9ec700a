//! Helpers for tests of the real coordinator binary: start it, call it with curl, act as a
//! workload with the simulation TEE.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_attest::attester::Attester;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::binding::{Purpose, report_data};
use confidant_attest::sim::SimPlatform;
use serde_json::{Value, json};

/// A manifest with one sim workload, `web`, whose reference measurement (`00`) no evidence has.
pub(crate) const ONE_WORKLOAD_MANIFEST: &str = r#"apiVersion: confidant/v1
packages:
  p:
    tee: sim
    reference_values:
      measurements: ["00"]
workloads:
  web:
    package: p
config:
  allow_simulation: true
"#;

/// What the test workloads' simulated launch measures.
pub(crate) const MEASURED: &[u8] = b"storm workload";

/// A running `confidant coordinator run`, killed with SIGKILL on drop.
pub(crate) struct Coordinator {
    pub child: Child,
    pub url: String,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nothing of a `confidant run` is left under `run_dir`: no entry and no mount.
pub(crate) fn assert_run_dir_clean(run_dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(run_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "left in the run dir: {entries:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*run_dir.to_string_lossy()),
        "a mount under {} is left",
        run_dir.display()
    );
}

pub(crate) fn confidant(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confidant"));
    c.env("CONFIDANT_HOME", home);
    c
}

/// Starts a coordinator for `home` and verifies it with the CLI (`confidant verify`, with this
/// binary's sim measurement as the reference value, written to `dir/ref.json`), so that later
/// commands trust it. Returns it and its address (`host:port`).
pub(crate) fn start_verified(home: &Path, dir: &Path) -> (Coordinator, String) {
    let coordinator = start(home);
    let address = coordinator.url.trim_start_matches("https://").to_string();
    let own = own_measurement();
    let refs = dir.join("ref.json");
    std::fs::write(&refs, format!("{{\"measurements\": [\"{own}\"]}}")).unwrap();
    run_ok(
        confidant(home)
            .args(["verify", "--coordinator", &address, "--reference-values"])
            .arg(&refs),
    );
    (coordinator, address)
}

/// This binary's sim launch measurement (hex): what the coordinator and the agent it runs
/// report.
pub(crate) fn own_measurement() -> String {
    hex::encode(SimAttester::measure(
        &std::fs::read(env!("CARGO_BIN_EXE_confidant")).unwrap(),
    ))
}

pub(crate) fn start(home: &Path) -> Coordinator {
    let (child, line) = spawn(
        home,
        &[
            "coordinator",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--no-metrics",
        ],
    );
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Coordinator { child, url }
}

/// Starts `confidant ARGS` for `home` and returns it with the first line it printed (a
/// coordinator announces its address there).
pub(crate) fn spawn(home: &Path, args: &[&str]) -> (Child, String) {
    let mut child = confidant(home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

pub(crate) struct Client {
    pub url: String,
    pub cert: Option<(PathBuf, PathBuf)>,
}

impl Client {
    /// Sends a request with curl; returns (status, body as JSON or null).
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args([
            "-sk",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ]);
        if let Some((cert, key)) = &self.cert {
            c.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if body.is_some() {
            c.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ]);
        }
        c.arg(format!("{}{path}", self.url));
        c.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            if let Some(b) = body {
                let _ = stdin.write_all(b);
            }
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

pub(crate) fn user(dir: &Path, name: &str) -> (String, PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec![format!("{name}.example")]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (ck.cert.pem(), cert, key)
}

pub(crate) fn indent(pem: &str, n: usize) -> String {
    pem.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// A workload: its key, CSR and a sim attester on the coordinator's platform.
pub(crate) struct Workload {
    pub key: rcgen::KeyPair,
    pub csr: String,
    pub attester: SimAttester,
}

impl Workload {
    pub(crate) fn new(home: &Path) -> Workload {
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let platform = SimPlatform::load(&SimPlatform::dir(home)).unwrap();
        Workload {
            key,
            csr,
            attester: SimAttester::new(platform, SimAttester::measure(MEASURED)),
        }
    }

    /// A fresh `POST activate` body for `workload` (takes a nonce from the coordinator).
    pub(crate) fn body(&self, client: &Client, workload: &str) -> Value {
        let (code, n) = client.call("POST", "/api/v1/nonce", None);
        assert_eq!(code, 200, "{n}");
        let nonce = hex::decode(n["nonce"].as_str().unwrap()).unwrap();
        let rd = report_data(Purpose::Activate, &nonce, &self.key.public_key_der());
        let evidence = self.attester.attest(&rd).unwrap();
        json!({"workload": workload, "nonce": hex::encode(&nonce), "csr": self.csr, "evidence": evidence})
    }

    /// Activates workload `w`.
    pub(crate) fn activate(&self, client: &Client) -> (u16, Value) {
        let (code, n) = client.call("POST", "/api/v1/nonce", None);
        if code != 200 {
            return (code, n);
        }
        let nonce = hex::decode(n["nonce"].as_str().unwrap()).unwrap();
        let rd = report_data(Purpose::Activate, &nonce, &self.key.public_key_der());
        let evidence = self.attester.attest(&rd).unwrap();
        let body = json!({"workload": "w", "nonce": hex::encode(&nonce), "csr": self.csr, "evidence": evidence});
        client.call(
            "POST",
            "/api/v1/activate",
            Some(body.to_string().as_bytes()),
        )
    }

    /// Sends an activation body.
    pub(crate) fn send(client: &Client, body: &Value) -> (u16, Value) {
        client.call(
            "POST",
            "/api/v1/activate",
            Some(body.to_string().as_bytes()),
        )
    }
}

pub(crate) fn secret_value(client: &Client, name: &str) -> Vec<u8> {
    let (code, v) = client.call("GET", &format!("/api/v1/secrets/{name}"), None);
    assert_eq!(code, 200, "{v}");
    STANDARD.decode(v["value"].as_str().unwrap()).unwrap()
}

pub(crate) fn put_secret(client: &Client, name: &str, value: &[u8]) -> u16 {
    let body = json!({"value": STANDARD.encode(value)});
    client
        .call(
            "PUT",
            &format!("/api/v1/secrets/{name}"),
            Some(body.to_string().as_bytes()),
        )
        .0
}

/// Asserts an error answer: status, code and field.
pub(crate) fn assert_error(answer: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    if let Some(f) = field {
        assert_eq!(body["error"]["field"], f, "{body}");
    }
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

pub(crate) fn setup(dir: &Path) -> (PathBuf, String, PathBuf, PathBuf) {
    let home = dir.join("home");
    let out = confidant(&home)
        .args(["attest", "sim", "init"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (alice_pem, cert, key) = user(dir, "alice");
    (home, alice_pem, cert, key)
}

/// The repository's top directory (for examples/ and its scripts).
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `c`, asserting it succeeds (its output in the message otherwise).
pub(crate) fn run_ok(c: &mut Command) -> std::process::Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds `examples/<app>`'s image into `dir/plain`, encrypts it for the coordinator at
/// `address` into `dir/enc` (its image key saved as `dir/image-key.pem`), and returns the
/// encrypted image's manifest digest.
pub(crate) fn encrypted_example_image(home: &Path, address: &str, dir: &Path, app: &str) -> String {
    let key_pem =
        run_ok(confidant(home).args(["certificate", "image-key", "--coordinator", address])).stdout;
    std::fs::write(dir.join("image-key.pem"), key_pem).unwrap();
    let plain = dir.join("plain");
    run_ok(Command::new(repo().join(format!("examples/{app}/build-image.sh"))).arg(&plain));
    let enc = dir.join("enc");
    run_ok(confidant(home).args([
        "image",
        "encrypt",
        "--coordinator-key",
        &dir.join("image-key.pem").to_string_lossy(),
        &format!("oci:{}:latest", plain.display()),
        &format!("oci:{}:latest", enc.display()),
    ]));
    let inspect = run_ok(confidant(home).args([
        "-o",
        "json",
        "image",
        "inspect",
        &format!("oci:{}:latest", enc.display()),
    ]));
    serde_json::from_slice::<Value>(&inspect.stdout).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}
