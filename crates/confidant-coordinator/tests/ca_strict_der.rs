//! Every certificate the coordinator issues — root and intermediate CA, its TLS server
//! certificate, workload certificates, `cert-*` secrets of every key kind — parses with a strict
//! DER parser: Python's `cryptography` (>= 43, from PyPI), which refuses non-canonical encodings
//! such as a BasicConstraints that spells out its DEFAULT `cA FALSE`.

#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use confidant_coordinator::ca::{CoordinatorCa, SecretKeyKind, WorkloadIdentity};

/// Parses each PEM certificate on stdin (separated by a line `--`) and every extension of it;
/// prints `ok N` or the first failure.
const STRICT: &str = r#"
import sys
from cryptography import x509
certs = sys.stdin.read().split("\n--\n")
for i, pem in enumerate(certs):
    try:
        c = x509.load_pem_x509_certificate(pem.encode())
        for ext in c.extensions:
            ext.value
        c.tbs_certificate_bytes
    except Exception as e:
        print(f"certificate {i}: {type(e).__name__}: {e}")
        sys.exit(1)
print(f"ok {len(certs)}")
"#;

/// Python's `cryptography` at least 43 (the first release that refuses non-DER encodings).
fn strict_parser() -> requirements::Need {
    let out = Command::new("python3")
        .args(["-c", "import cryptography; print(cryptography.__version__)"])
        .output();
    let version = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let major = version
        .as_deref()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    requirements::condition(
        "python3 with cryptography >= 43",
        match (major, version) {
            (Some(m), _) if m >= 43 => None,
            (_, Some(v)) => Some(format!("python3's cryptography is {v}, not >= 43")),
            (_, None) => Some("python3 cannot import cryptography".into()),
        },
    )
}

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

#[test]
fn every_certificate_kind_is_strict_der() {
    if !requirements::require(&[requirements::program("python3"), strict_parser()]) {
        return;
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let ca = CoordinatorCa::generate("Strict", now).unwrap();
    let mut pems = vec![ca.root_pem(), ca.intermediate_pem()];
    let sans = vec!["coordinator.example".to_string(), "127.0.0.1".to_string()];
    pems.push(
        ca.issue_tls_server(&sans, now, Duration::from_secs(86_400))
            .unwrap()
            .cert_pem,
    );
    let identity = WorkloadIdentity {
        workload: "web".into(),
        activation: "1".into(),
        sans: vec!["web.example".into()],
    };
    pems.push(
        ca.sign_csr(&csr(), &identity, now, Duration::from_secs(86_400))
            .unwrap()
            .cert_pem,
    );
    for kind in [
        SecretKeyKind::Ecdsa { size: 256 },
        SecretKeyKind::Ecdsa { size: 384 },
        SecretKeyKind::Ed25519,
        SecretKeyKind::Rsa { size: 2048 },
    ] {
        pems.push(ca.issue_secret_cert(kind, &sans, 30, now).unwrap().cert_pem);
    }
    let mut child = Command::new("python3")
        .args(["-c", STRICT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pems.join("\n--\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.trim(), format!("ok {}", pems.len()));
}
