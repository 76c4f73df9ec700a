//! The coordinator CA's chains, checked by webpki (the verifier rustls uses) at the injected time:
//! the coordinator's TLS certificate for its name, a workload certificate for client and server
//! auth, and every `cert-*` secret kind.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confidant_coordinator::ca::{CoordinatorCa, SecretKeyKind, WorkloadIdentity};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn der(pem: &str) -> CertificateDer<'static> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    CertificateDer::from(p.contents)
}

const ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
];

/// Verifies `leaf_pem` up to the CA's root at unix time `at`.
fn verify(
    ca: &CoordinatorCa,
    leaf_pem: &str,
    at: u64,
    usage: KeyUsage,
) -> Result<(), webpki::Error> {
    let root = der(&ca.root_pem());
    let anchors = [anchor_from_trusted_cert(&root).unwrap()];
    let inter = [der(&ca.intermediate_pem())];
    let leaf = der(leaf_pem);
    let ee = EndEntityCert::try_from(&leaf)?;
    ee.verify_for_usage(
        ALGS,
        &anchors,
        &inter,
        UnixTime::since_unix_epoch(Duration::from_secs(at)),
        usage,
        None,
        None,
    )?;
    Ok(())
}

fn ca() -> CoordinatorCa {
    CoordinatorCa::generate("Webpki", now() - Duration::from_secs(86_400)).unwrap()
}

#[test]
fn coordinator_tls_cert_is_valid_for_its_names_only() {
    let ca = ca();
    let tls = ca
        .issue_tls_server(
            &["coordinator.example".into(), "192.0.2.1".into()],
            now(),
            Duration::from_secs(86_400),
        )
        .unwrap();
    verify(&ca, &tls.cert_pem, NOW, KeyUsage::server_auth()).unwrap();
    // Server auth only: not a client certificate.
    assert!(verify(&ca, &tls.cert_pem, NOW, KeyUsage::client_auth()).is_err());
    let leaf = der(&tls.cert_pem);
    let ee = EndEntityCert::try_from(&leaf).unwrap();
    for name in ["coordinator.example", "192.0.2.1"] {
        ee.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap())
            .unwrap();
    }
    assert!(
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("other.example").unwrap())
            .is_err()
    );
}

#[test]
fn workload_cert_from_a_csr_is_valid_for_client_and_server_auth_until_it_expires() {
    let ca = ca();
    // A CSR whose key is a fresh P-256 key; its requested names are irrelevant.
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["evil.example".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let identity = WorkloadIdentity {
        workload: "db".into(),
        activation: "a1".into(),
        sans: vec!["db.mesh".into()],
    };
    let issued = ca
        .sign_csr(csr.der(), &identity, now(), Duration::from_secs(3600))
        .unwrap();
    verify(&ca, &issued.cert_pem, NOW, KeyUsage::server_auth()).unwrap();
    verify(&ca, &issued.cert_pem, NOW, KeyUsage::client_auth()).unwrap();
    let leaf = der(&issued.cert_pem);
    let ee = EndEntityCert::try_from(&leaf).unwrap();
    ee.verify_is_valid_for_subject_name(&ServerName::try_from("db.mesh").unwrap())
        .unwrap();
    assert!(
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("evil.example").unwrap())
            .is_err()
    );
    assert!(matches!(
        verify(&ca, &issued.cert_pem, NOW + 3601, KeyUsage::client_auth()),
        Err(webpki::Error::CertExpired { .. })
    ));
    assert!(matches!(
        verify(&ca, &issued.cert_pem, NOW - 3600, KeyUsage::client_auth()),
        Err(webpki::Error::CertNotValidYet { .. })
    ));
}

#[test]
fn secret_certs_of_every_kind_verify() {
    let ca = ca();
    for kind in [
        SecretKeyKind::Ecdsa { size: 256 },
        SecretKeyKind::Ecdsa { size: 384 },
        SecretKeyKind::Ed25519,
        SecretKeyKind::Rsa { size: 2048 },
    ] {
        let s = ca
            .issue_secret_cert(kind, &["svc.internal".into()], 30, now())
            .unwrap();
        // The leaf's own key type does not matter to the chain: the intermediate signs with P-256.
        verify(&ca, &s.cert_pem, NOW, KeyUsage::server_auth())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        verify(&ca, &s.cert_pem, NOW, KeyUsage::client_auth())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
}
