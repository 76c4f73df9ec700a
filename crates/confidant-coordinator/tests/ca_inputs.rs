//! The coordinator CA's inputs: sealed bytes, garbage CSRs and out-of-range parameters.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confidant_coordinator::ca::{CaError, CoordinatorCa, SecretKeyKind, WorkloadIdentity};

/// 2026-01-01T00:00:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn identity() -> WorkloadIdentity {
    WorkloadIdentity {
        workload: "web".into(),
        activation: "1".into(),
        sans: vec![],
    }
}

/// A real CSR (PEM) made by openssl for a P-256 key.
fn openssl_csr_pem() -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let csr = d.path().join("req.csr");
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
        ])
        .arg(d.path().join("req.key"))
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=x"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read(&csr).unwrap()
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem).unwrap().1.contents
}

fn sealed_fields(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = &bytes[5..];
    let mut out = vec![];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

fn seal(fields: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"CFCA\x01".to_vec();
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[test]
fn sealed_bytes_round_trip_and_the_restored_ca_issues_under_the_same_root() {
    let ca = CoordinatorCa::generate("Test", now()).unwrap();
    let sealed = ca.to_sealed_bytes();
    assert!(sealed.starts_with(b"CFCA\x01"));
    let back = CoordinatorCa::from_sealed_bytes(&sealed).unwrap();
    assert_eq!(back.root_pem(), ca.root_pem());
    assert_eq!(back.chain_pem(), ca.chain_pem());
    assert_eq!(*back.to_sealed_bytes(), *sealed);

    // A certificate from the restored CA verifies against the original root and intermediate.
    let d = tempfile::tempdir().unwrap();
    let leaf = back
        .issue_tls_server(&["c.example".into()], now(), Duration::from_secs(3600))
        .unwrap();
    std::fs::write(d.path().join("root.pem"), ca.root_pem()).unwrap();
    std::fs::write(d.path().join("inter.pem"), ca.intermediate_pem()).unwrap();
    std::fs::write(d.path().join("leaf.pem"), &leaf.cert_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-attime", "1767225600", "-CAfile"])
        .arg(d.path().join("root.pem"))
        .arg("-untrusted")
        .arg(d.path().join("inter.pem"))
        .arg(d.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn sealed_bytes_refuse_truncation_trailing_bytes_and_other_versions() {
    let sealed = CoordinatorCa::generate("Test", now())
        .unwrap()
        .to_sealed_bytes();
    for len in 0..sealed.len() {
        let err = CoordinatorCa::from_sealed_bytes(&sealed[..len]).unwrap_err();
        assert!(matches!(err, CaError::Sealed(_)), "len {len}: {err}");
    }
    let mut longer = sealed.to_vec();
    longer.push(0);
    let err = CoordinatorCa::from_sealed_bytes(&longer).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sealed CA: expected end of input, got 1 trailing bytes"
    );
    let mut v2 = sealed.to_vec();
    v2[4] = 2;
    let err = CoordinatorCa::from_sealed_bytes(&v2).unwrap_err();
    assert_eq!(err.to_string(), "sealed CA: expected version 1, got 2");
}

#[test]
fn sealed_bytes_refuse_a_key_from_another_ca() {
    let a = sealed_fields(
        &CoordinatorCa::generate("A", now())
            .unwrap()
            .to_sealed_bytes(),
    );
    let b = sealed_fields(
        &CoordinatorCa::generate("B", now())
            .unwrap()
            .to_sealed_bytes(),
    );
    assert_eq!(a.len(), 4);
    // B's intermediate key with A's intermediate certificate.
    let mixed = seal(&[a[0].clone(), a[1].clone(), a[2].clone(), b[3].clone()]);
    let err = CoordinatorCa::from_sealed_bytes(&mixed).unwrap_err();
    assert!(err.to_string().contains("intermediate key"), "{err}");
    // B's intermediate (with its key) under A's root: not signed by that root.
    let mixed = seal(&[a[0].clone(), a[1].clone(), b[2].clone(), b[3].clone()]);
    let err = CoordinatorCa::from_sealed_bytes(&mixed).unwrap_err();
    assert!(err.to_string().contains("not signed by root"), "{err}");
}

#[test]
fn truncated_or_flipped_csrs_are_refused_without_panicking() {
    let ca = CoordinatorCa::generate("Test", now()).unwrap();
    let pem = openssl_csr_pem();
    let der = pem_to_der(&pem);
    let sign = |input: &[u8]| ca.sign_csr(input, &identity(), now(), Duration::from_secs(60));
    assert!(sign(&pem).is_ok());
    assert!(sign(&der).is_ok());
    for len in 0..der.len() {
        assert!(
            sign(&der[..len]).is_err(),
            "DER truncated to {len} accepted"
        );
    }
    for len in 0..pem.len() - 30 {
        assert!(
            sign(&pem[..len]).is_err(),
            "PEM truncated to {len} accepted"
        );
    }
    for i in 0..der.len() {
        for bit in [0x01, 0x80] {
            let mut flipped = der.clone();
            flipped[i] ^= bit;
            // Must not panic (the result is not asserted: some flips, e.g. in an unused bit, may
            // leave a CSR that still parses and verifies).
            let _ = sign(&flipped);
        }
    }
    assert!(matches!(sign(b"").unwrap_err(), CaError::CsrParse(_)));
    assert!(matches!(
        sign(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err(),
        CaError::CsrParse(_)
    ));
}

#[test]
fn refuses_bad_identities_sans_sizes_and_validities() {
    let ca = CoordinatorCa::generate("Test", now()).unwrap();
    let csr = openssl_csr_pem();
    let day = Duration::from_secs(86_400);
    let with = |workload: &str, activation: &str, sans: &[&str]| WorkloadIdentity {
        workload: workload.into(),
        activation: activation.into(),
        sans: sans.iter().map(|s| s.to_string()).collect(),
    };
    let err = ca
        .sign_csr(&csr, &with("web/../admin", "1", &[]), now(), day)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "identity.workload: expected 1 to 128 of [A-Za-z0-9._-], got \"web/../admin\""
    );
    assert!(
        ca.sign_csr(&csr, &with("web", "", &[]), now(), day)
            .is_err()
    );
    let err = ca
        .sign_csr(
            &csr,
            &with("web", "1", &["ok.example", "not a name"]),
            now(),
            day,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "identity.sans[1]: expected a DNS name or an IP address, got \"not a name\""
    );
    assert!(
        ca.sign_csr(&csr, &identity(), now(), Duration::ZERO)
            .is_err()
    );
    // Beyond the intermediate's own validity (20 years).
    let err = ca
        .sign_csr(&csr, &identity(), now(), day * 365 * 21)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("validity: expected within the intermediate CA's")
    );
    // Before the CA existed.
    assert!(ca.sign_csr(&csr, &identity(), now() - day, day).is_err());

    let sans = ["db.internal".to_string()];
    for days in [0, 3651] {
        let err = ca
            .issue_secret_cert(SecretKeyKind::Ed25519, &sans, days, now())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("secret.validity_days: expected 1 to 3650, got {days}")
        );
    }
    let err = ca
        .issue_secret_cert(SecretKeyKind::Ecdsa { size: 521 }, &sans, 1, now())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cert-ecdsa.size: expected 256 or 384, got 521"
    );
    let err = ca
        .issue_secret_cert(SecretKeyKind::Rsa { size: 1024 }, &sans, 1, now())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cert-rsa.size: expected 2048, 3072 or 4096, got 1024"
    );
    assert!(ca.issue_tls_server(&[], now(), day).is_err());
    assert!(CoordinatorCa::generate("", now()).is_err());
}
