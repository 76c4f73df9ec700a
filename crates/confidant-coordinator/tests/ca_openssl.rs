//! The coordinator CA's certificates, checked by an independent verifier: the `openssl` CLI.
//! Every verification pins the time with `-attime` to the `now` the CA was given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confidant_coordinator::ca::{
    CaError, CoordinatorCa, NOT_BEFORE_BACKDATE, SecretKeyKind, WorkloadIdentity,
};
use x509_parser::prelude::{FromDer, X509Certificate};

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// Runs openssl; returns (success, stdout + stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn openssl_ok(args: &[&str]) -> String {
    let (ok, text) = openssl(args);
    assert!(ok, "openssl {args:?} failed: {text}");
    text
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `openssl verify` of `leaf_pem` against the CA at unix time `at`, with `purpose`.
fn verify_at(ca: &CoordinatorCa, leaf_pem: &str, at: u64, purpose: &str) -> (bool, String) {
    let d = Dir::new();
    let root = d.write("root.pem", ca.root_pem());
    let inter = d.write("inter.pem", ca.intermediate_pem());
    let leaf = d.write("leaf.pem", leaf_pem);
    openssl(&[
        "verify",
        "-x509_strict",
        "-attime",
        &at.to_string(),
        "-purpose",
        purpose,
        "-CAfile",
        p(&root),
        "-untrusted",
        p(&inter),
        p(&leaf),
    ])
}

fn cert_text(pem: &str) -> String {
    let d = Dir::new();
    let f = d.write("c.pem", pem);
    openssl_ok(&["x509", "-noout", "-text", "-in", p(&f)])
}

/// A CA generated a day before `NOW`, so leaves can be backdated.
fn ca() -> CoordinatorCa {
    CoordinatorCa::generate("Test Coordinator", now() - Duration::from_secs(86_400)).unwrap()
}

/// A CSR made by openssl for a P-256 key, asking for names the coordinator must not grant.
fn openssl_csr(d: &Dir) -> (PathBuf, PathBuf) {
    let csr = d.path("req.csr");
    let key = d.path("req.key");
    openssl_ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        p(&key),
        "-out",
        p(&csr),
        "-subj",
        "/CN=evil.example/O=Attacker",
        "-addext",
        "subjectAltName=DNS:evil.example,URI:confidant://workload/admin/0",
    ]);
    (csr, key)
}

fn identity() -> WorkloadIdentity {
    WorkloadIdentity {
        workload: "web".into(),
        activation: "act-7".into(),
        sans: vec!["web.confidant.internal".into(), "10.0.0.7".into()],
    }
}

fn parse_validity(pem: &str) -> (i64, i64) {
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der.contents).unwrap();
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

#[test]
fn root_and_intermediate_have_pathlen_1_and_0() {
    let ca = ca();
    let root = cert_text(&ca.root_pem());
    assert!(root.contains("CA:TRUE, pathlen:1"), "{root}");
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    assert!(root.contains("prime256v1"), "{root}");
    let inter = cert_text(&ca.intermediate_pem());
    assert!(inter.contains("CA:TRUE, pathlen:0"), "{inter}");
    assert!(
        inter.contains("Issuer: O = Confidant, CN = Test Coordinator Root CA"),
        "{inter}"
    );
    // The intermediate chains to the root on its own.
    let d = Dir::new();
    let root_f = d.write("root.pem", ca.root_pem());
    let inter_f = d.write("inter.pem", ca.intermediate_pem());
    let out = openssl_ok(&[
        "verify",
        "-attime",
        &NOW.to_string(),
        "-CAfile",
        p(&root_f),
        p(&inter_f),
    ]);
    assert!(out.contains(": OK"), "{out}");
    // chain_pem: intermediate then root.
    assert_eq!(
        ca.chain_pem(),
        format!("{}{}", ca.intermediate_pem(), ca.root_pem())
    );
}

#[test]
fn tls_server_cert_verifies_with_openssl() {
    let ca = ca();
    let sans = vec!["coordinator.example".to_string(), "192.0.2.1".to_string()];
    let tls = ca
        .issue_tls_server(&sans, now(), Duration::from_secs(30 * 86_400))
        .unwrap();
    let (ok, out) = verify_at(&ca, &tls.cert_pem, NOW, "sslserver");
    assert!(ok, "{out}");
    let text = cert_text(&tls.cert_pem);
    assert!(
        text.contains("DNS:coordinator.example, IP Address:192.0.2.1"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(tls.chain_pem.starts_with(&tls.cert_pem));
    assert!(tls.chain_pem.ends_with(&ca.intermediate_pem()));
    // The key is the certificate's.
    let d = Dir::new();
    let key = d.write("k.pem", tls.key_pem.as_bytes());
    let cert = d.write("c.pem", &tls.cert_pem);
    assert_eq!(
        openssl_ok(&["pkey", "-in", p(&key), "-pubout"]),
        openssl_ok(&["x509", "-in", p(&cert), "-noout", "-pubkey"])
    );
}

#[test]
fn signs_openssl_csr_with_the_coordinators_names_not_the_requested_ones() {
    let ca = ca();
    let d = Dir::new();
    let (csr, _) = openssl_csr(&d);
    let issued = ca
        .sign_csr(
            &std::fs::read(&csr).unwrap(),
            &identity(),
            now(),
            Duration::from_secs(86_400),
        )
        .unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let (ok, out) = verify_at(&ca, &issued.cert_pem, NOW, purpose);
        assert!(ok, "{purpose}: {out}");
    }
    let text = cert_text(&issued.cert_pem);
    assert!(text.contains("Subject: CN = web\n"), "{text}");
    assert!(
        text.contains(
            "URI:confidant://workload/web/act-7, DNS:web.confidant.internal, IP Address:10.0.0.7"
        ),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(!text.contains("evil"), "{text}");
    assert!(!text.contains("Attacker"), "{text}");
    assert!(!text.contains("workload/admin"), "{text}");
    assert!(issued.chain_pem.starts_with(&issued.cert_pem));
}

#[test]
fn csr_as_der_is_signed_too() {
    let ca = ca();
    let d = Dir::new();
    let (csr, _) = openssl_csr(&d);
    let der = d.path("req.der");
    openssl_ok(&["req", "-in", p(&csr), "-outform", "DER", "-out", p(&der)]);
    let issued = ca
        .sign_csr(
            &std::fs::read(&der).unwrap(),
            &identity(),
            now(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let (ok, out) = verify_at(&ca, &issued.cert_pem, NOW, "sslclient");
    assert!(ok, "{out}");
}

#[test]
fn spki_digest_is_sha256_of_the_csr_keys_der_as_openssl_exports_it() {
    let ca = ca();
    let d = Dir::new();
    let (csr, _) = openssl_csr(&d);
    let pubkey = d.path("pub.pem");
    let pub_der = d.path("pub.der");
    openssl_ok(&[
        "req",
        "-in",
        p(&csr),
        "-pubkey",
        "-noout",
        "-out",
        p(&pubkey),
    ]);
    openssl_ok(&[
        "pkey",
        "-pubin",
        "-in",
        p(&pubkey),
        "-outform",
        "DER",
        "-out",
        p(&pub_der),
    ]);
    let spki = std::fs::read(&pub_der).unwrap();
    let issued = ca
        .sign_csr(
            &std::fs::read(&csr).unwrap(),
            &identity(),
            now(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let want = ring::digest::digest(&ring::digest::SHA256, &spki);
    assert_eq!(issued.spki_sha256.as_slice(), want.as_ref());
    // And it is what confidant_attest binds: a report made over this key checks out.
    let nonce = [7u8; 32];
    let rd = confidant_attest::binding::report_data(
        confidant_attest::binding::Purpose::Activate,
        &nonce,
        &spki,
    );
    assert!(
        confidant_attest::binding::check_binding(
            &rd,
            confidant_attest::binding::Purpose::Activate,
            &nonce,
            &spki
        )
        .is_ok()
    );
    // The issued certificate carries the CSR's key.
    let cert = d.write("c.pem", &issued.cert_pem);
    assert_eq!(
        openssl_ok(&["x509", "-in", p(&cert), "-noout", "-pubkey"]),
        std::fs::read_to_string(&pubkey).unwrap()
    );
}

#[test]
fn refuses_csr_with_a_broken_signature() {
    let ca = ca();
    let d = Dir::new();
    let (csr, _) = openssl_csr(&d);
    let der_path = d.path("req.der");
    openssl_ok(&[
        "req",
        "-in",
        p(&csr),
        "-outform",
        "DER",
        "-out",
        p(&der_path),
    ]);
    let der = std::fs::read(&der_path).unwrap();

    // A byte of the requested subject (inside the signed part) changed.
    let at = der
        .windows(b"evil".len())
        .position(|w| w == b"evil")
        .unwrap();
    let mut tampered = der.clone();
    tampered[at] ^= 0x01;
    let err = ca
        .sign_csr(&tampered, &identity(), now(), Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, CaError::CsrSignature { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("csr.signature: expected a valid self-signature")
    );

    // A byte of the signature itself changed (the last byte of the DER is the signature's).
    let mut tampered = der.clone();
    *tampered.last_mut().unwrap() ^= 0x01;
    let err = ca
        .sign_csr(&tampered, &identity(), now(), Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, CaError::CsrSignature { .. }), "{err}");
}

#[test]
fn leaf_validity_brackets_the_injected_time() {
    let ca = ca();
    let d = Dir::new();
    let (csr, _) = openssl_csr(&d);
    let validity = Duration::from_secs(2 * 86_400);
    let issued = ca
        .sign_csr(&std::fs::read(&csr).unwrap(), &identity(), now(), validity)
        .unwrap();
    let (nb, na) = parse_validity(&issued.cert_pem);
    assert_eq!(nb, (NOW - NOT_BEFORE_BACKDATE.as_secs()) as i64);
    assert_eq!(na, (NOW + validity.as_secs()) as i64);
    let ok = |at: u64| verify_at(&ca, &issued.cert_pem, at, "sslclient");
    assert!(ok(NOW).0);
    assert!(ok(NOW + validity.as_secs() - 1).0);
    let (good, out) = ok(NOW + validity.as_secs() + 1);
    assert!(!good && out.contains("certificate has expired"), "{out}");
    let (good, out) = ok(NOW - NOT_BEFORE_BACKDATE.as_secs() - 1);
    assert!(
        !good && out.contains("certificate is not yet valid"),
        "{out}"
    );

    // Issued by a CA created at this very moment: not backdated before the CA itself.
    let fresh = CoordinatorCa::generate("Fresh", now()).unwrap();
    let issued = fresh
        .sign_csr(&std::fs::read(&csr).unwrap(), &identity(), now(), validity)
        .unwrap();
    assert_eq!(parse_validity(&issued.cert_pem).0, NOW as i64);
    assert!(verify_at(&fresh, &issued.cert_pem, NOW, "sslclient").0);
}

fn check_secret(ca: &CoordinatorCa, kind: SecretKeyKind, expect_key_text: &[&str]) {
    let sans = vec!["db.internal".to_string(), "10.1.2.3".to_string()];
    let days = 90;
    let s = ca.issue_secret_cert(kind, &sans, days, now()).unwrap();
    let (ok, out) = verify_at(ca, &s.cert_pem, NOW, "sslserver");
    assert!(ok, "{kind:?}: {out}");
    let text = cert_text(&s.cert_pem);
    for want in expect_key_text {
        assert!(text.contains(want), "{kind:?}: missing {want:?} in {text}");
    }
    assert!(text.contains("Subject: CN = db.internal\n"), "{text}");
    assert!(
        text.contains("DNS:db.internal, IP Address:10.1.2.3"),
        "{text}"
    );
    let (nb, na) = parse_validity(&s.cert_pem);
    assert_eq!(nb, (NOW - NOT_BEFORE_BACKDATE.as_secs()) as i64);
    assert_eq!(na, (NOW + u64::from(days) * 86_400) as i64);
    // The key is PKCS#8, openssl reads it, and it is the certificate's key.
    assert!(s.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let d = Dir::new();
    let key = d.write("k.pem", s.key_pem.as_bytes());
    let cert = d.write("c.pem", &s.cert_pem);
    assert_eq!(
        openssl_ok(&["pkey", "-in", p(&key), "-pubout"]),
        openssl_ok(&["x509", "-in", p(&cert), "-noout", "-pubkey"]),
        "{kind:?}"
    );
}

#[test]
fn secret_cert_ecdsa_p256_and_p384() {
    let ca = ca();
    check_secret(
        &ca,
        SecretKeyKind::Ecdsa { size: 256 },
        &["id-ecPublicKey", "prime256v1"],
    );
    check_secret(
        &ca,
        SecretKeyKind::Ecdsa { size: 384 },
        &["id-ecPublicKey", "secp384r1"],
    );
}

#[test]
fn secret_cert_ed25519() {
    check_secret(
        &ca(),
        SecretKeyKind::Ed25519,
        &["Public Key Algorithm: ED25519"],
    );
}

#[test]
fn secret_cert_rsa_2048_and_3072() {
    let ca = ca();
    check_secret(
        &ca,
        SecretKeyKind::Rsa { size: 2048 },
        &[
            "rsaEncryption",
            "Public-Key: (2048 bit)",
            "Key Encipherment",
        ],
    );
    check_secret(
        &ca,
        SecretKeyKind::Rsa { size: 3072 },
        &["rsaEncryption", "Public-Key: (3072 bit)"],
    );
}

fn openssl_rsa_csr(d: &Dir, bits: u32) -> Vec<u8> {
    let csr = d.path(&format!("rsa{bits}.csr"));
    openssl_ok(&[
        "req",
        "-new",
        "-newkey",
        &format!("rsa:{bits}"),
        "-nodes",
        "-keyout",
        p(&d.path(&format!("rsa{bits}.key"))),
        "-out",
        p(&csr),
        "-subj",
        "/CN=x",
    ]);
    std::fs::read(&csr).unwrap()
}

#[test]
fn rsa_csr_of_2048_bits_is_signed_and_1024_bits_refused() {
    let ca = ca();
    let d = Dir::new();
    let day = Duration::from_secs(86_400);
    let issued = ca
        .sign_csr(&openssl_rsa_csr(&d, 2048), &identity(), now(), day)
        .unwrap();
    let (ok, out) = verify_at(&ca, &issued.cert_pem, NOW, "sslclient");
    assert!(ok, "{out}");
    assert!(cert_text(&issued.cert_pem).contains("Digital Signature, Key Encipherment"));
    let err = ca
        .sign_csr(&openssl_rsa_csr(&d, 1024), &identity(), now(), day)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "csr.public_key: expected an RSA key of at least 2048 bits, got 1024 bits"
    );
}

#[test]
fn ec_csr_gets_digital_signature_without_key_encipherment() {
    let ca = ca();
    let d = Dir::new();
    let (csr, _) = openssl_csr(&d);
    let issued = ca
        .sign_csr(
            &std::fs::read(&csr).unwrap(),
            &identity(),
            now(),
            Duration::from_secs(60),
        )
        .unwrap();
    let text = cert_text(&issued.cert_pem);
    assert!(
        text.contains("Key Usage: critical\n                Digital Signature\n"),
        "{text}"
    );
}
