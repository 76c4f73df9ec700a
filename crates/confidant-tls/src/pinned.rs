//! Verifiers pinned to exactly one root CA: webpki's chain validation (as rustls checks any
//! peer) against that root alone, with an optional pinned intermediate CA that the peer may
//! leave out of what it presents.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// Why a pinned verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The root is not a certificate webpki can use as a trust anchor.
    #[error("expected a root CA usable as a trust anchor, found: {0}")]
    TrustAnchor(#[source] rustls::Error),
    /// rustls refused to build the webpki verifier.
    #[error("expected to build the certificate verifier, found: {0}")]
    Verifier(#[source] VerifierBuilderError),
}

/// A root store holding `root` alone.
fn one_root(root: CertificateDer<'_>) -> Result<Arc<RootCertStore>, PinError> {
    let mut roots = RootCertStore::empty();
    roots.add(root).map_err(PinError::TrustAnchor)?;
    Ok(Arc::new(roots))
}

/// The `presented` intermediates, with the `pinned` one added at the end unless the peer sent
/// it already.
fn with_pinned<'a>(
    presented: &[CertificateDer<'a>],
    pinned: Option<&CertificateDer<'static>>,
) -> Vec<CertificateDer<'a>> {
    let mut all = presented.to_vec();
    if let Some(i) = pinned
        && !all.iter().any(|c| c.as_ref() == i.as_ref())
    {
        all.push(i.clone());
    }
    all
}

/// A server certificate verifier pinned to one root CA: the server's chain must lead to it
/// (webpki, server authentication, validity at the handshake's time) and name the server name,
/// with the pinned intermediate, if any, added to the certificates the server presents (a server
/// may send its leaf alone).
#[derive(Debug)]
pub struct PinnedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    intermediate: Option<CertificateDer<'static>>,
}

impl PinnedServerVerifier {
    /// A verifier trusting `root` alone, adding `intermediate`, with `provider`'s algorithms.
    pub fn new(
        root: CertificateDer<'_>,
        intermediate: Option<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<PinnedServerVerifier, PinError> {
        let inner = WebPkiServerVerifier::builder_with_provider(one_root(root)?, provider)
            .build()
            .map_err(PinError::Verifier)?;
        Ok(PinnedServerVerifier {
            inner,
            intermediate,
        })
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let all = with_pinned(intermediates, self.intermediate.as_ref());
        self.inner
            .verify_server_cert(end_entity, &all, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client certificate verifier pinned to one root CA: a client certificate is required and
/// its chain must lead to the root (webpki, client authentication, validity at the handshake's
/// time), with the pinned intermediate, if any, added to the certificates the client presents.
#[derive(Debug)]
pub struct PinnedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    intermediate: Option<CertificateDer<'static>>,
}

impl PinnedClientVerifier {
    /// A verifier trusting `root` alone, adding `intermediate`, with `provider`'s algorithms.
    pub fn new(
        root: CertificateDer<'_>,
        intermediate: Option<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<PinnedClientVerifier, PinError> {
        let inner = WebPkiClientVerifier::builder_with_provider(one_root(root)?, provider)
            .build()
            .map_err(PinError::Verifier)?;
        Ok(PinnedClientVerifier {
            inner,
            intermediate,
        })
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let all = with_pinned(intermediates, self.intermediate.as_ref());
        self.inner.verify_client_cert(end_entity, &all, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::CertificateError;

    use super::*;
    use crate::testing::{self, HOST, Pki, Usage};

    fn server(pki: &Pki, pinned_intermediate: bool) -> PinnedServerVerifier {
        let intermediate = pinned_intermediate.then(|| pki.intermediate.clone());
        PinnedServerVerifier::new(pki.root.clone(), intermediate, testing::provider()).unwrap()
    }

    fn client(pki: &Pki, pinned_intermediate: bool) -> PinnedClientVerifier {
        let intermediate = pinned_intermediate.then(|| pki.intermediate.clone());
        PinnedClientVerifier::new(pki.root.clone(), intermediate, testing::provider()).unwrap()
    }

    fn check_server(
        verifier: &PinnedServerVerifier,
        leaf: &CertificateDer<'_>,
        presented: &[CertificateDer<'_>],
        host: &str,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(host).unwrap();
        verifier.verify_server_cert(leaf, presented, &name, &[], UnixTime::now())
    }

    fn check_client(
        verifier: &PinnedClientVerifier,
        leaf: &CertificateDer<'_>,
        presented: &[CertificateDer<'_>],
    ) -> Result<ClientCertVerified, rustls::Error> {
        verifier.verify_client_cert(leaf, presented, UnixTime::now())
    }

    fn refusal(e: rustls::Error) -> CertificateError {
        match e {
            rustls::Error::InvalidCertificate(c) => c,
            other => panic!("expected an invalid-certificate error, got {other:?}"),
        }
    }

    #[test]
    fn server_chain_to_the_pinned_root_is_accepted() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(Usage::Server);
        let inter = std::slice::from_ref(&pki.intermediate);
        // The intermediate may be pinned, presented, or both.
        check_server(&server(&pki, true), &leaf, &[], HOST).unwrap();
        check_server(&server(&pki, false), &leaf, inter, HOST).unwrap();
        check_server(&server(&pki, true), &leaf, inter, "127.0.0.1").unwrap();
    }

    #[test]
    fn server_chain_without_the_intermediate_is_refused() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(Usage::Server);
        let e = check_server(&server(&pki, false), &leaf, &[], HOST).unwrap_err();
        assert_eq!(refusal(e), CertificateError::UnknownIssuer);
    }

    #[test]
    fn server_chain_to_another_root_is_refused() {
        let ours = Pki::new("ours");
        let (leaf, _) = ours.leaf(Usage::Server);
        let theirs = Pki::new("theirs");
        let verifier = PinnedServerVerifier::new(
            theirs.root.clone(),
            Some(ours.intermediate.clone()),
            testing::provider(),
        )
        .unwrap();
        let e = check_server(&verifier, &leaf, &[], HOST).unwrap_err();
        assert_eq!(refusal(e), CertificateError::UnknownIssuer);
    }

    #[test]
    fn server_chain_to_a_root_with_the_same_name_and_another_key_is_refused() {
        let ours = Pki::new("ours");
        let (leaf, _) = ours.leaf(Usage::Server);
        let impostor = Pki::new("ours");
        let verifier = PinnedServerVerifier::new(
            impostor.root.clone(),
            Some(ours.intermediate.clone()),
            testing::provider(),
        )
        .unwrap();
        let e = check_server(&verifier, &leaf, &[], HOST).unwrap_err();
        assert_eq!(refusal(e), CertificateError::BadSignature);
    }

    #[test]
    fn server_certificate_for_another_name_is_refused() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(Usage::Server);
        let e = check_server(&server(&pki, true), &leaf, &[], "coordinator.example").unwrap_err();
        assert!(
            matches!(
                refusal(e),
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            "expected a name mismatch"
        );
    }

    #[test]
    fn client_certificate_as_server_certificate_is_refused() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(Usage::Client);
        let e = check_server(&server(&pki, true), &leaf, &[], HOST).unwrap_err();
        assert!(
            matches!(
                refusal(e),
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
            ),
            "expected a wrong key usage"
        );
    }

    #[test]
    fn client_chain_to_the_pinned_root_is_accepted() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(Usage::Client);
        let inter = std::slice::from_ref(&pki.intermediate);
        check_client(&client(&pki, true), &leaf, &[]).unwrap();
        check_client(&client(&pki, false), &leaf, inter).unwrap();
        check_client(&client(&pki, true), &leaf, inter).unwrap();
        let verifier = client(&pki, true);
        assert!(verifier.offer_client_auth() && verifier.client_auth_mandatory());
    }

    #[test]
    fn client_chain_to_another_root_or_without_intermediate_is_refused() {
        let ours = Pki::new("ours");
        let (leaf, _) = ours.leaf(Usage::Client);
        let e = check_client(&client(&ours, false), &leaf, &[]).unwrap_err();
        assert_eq!(refusal(e), CertificateError::UnknownIssuer);
        let theirs = Pki::new("theirs");
        let verifier = PinnedClientVerifier::new(
            theirs.root.clone(),
            Some(ours.intermediate.clone()),
            testing::provider(),
        )
        .unwrap();
        let e = check_client(&verifier, &leaf, &[]).unwrap_err();
        assert_eq!(refusal(e), CertificateError::UnknownIssuer);
    }

    #[test]
    fn server_certificate_as_client_certificate_is_refused() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(Usage::Server);
        let e = check_client(&client(&pki, true), &leaf, &[]).unwrap_err();
        assert!(
            matches!(
                refusal(e),
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
            ),
            "expected a wrong key usage"
        );
    }

    #[test]
    fn a_root_that_is_no_certificate_is_refused() {
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let e = PinnedServerVerifier::new(garbage.clone(), None, testing::provider()).unwrap_err();
        assert!(matches!(e, PinError::TrustAnchor(_)), "{e}");
        let e = PinnedClientVerifier::new(garbage, None, testing::provider()).unwrap_err();
        assert!(matches!(e, PinError::TrustAnchor(_)), "{e}");
    }

    #[test]
    fn the_pinned_intermediate_is_added_once() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(Usage::Server);
        let inter = &pki.intermediate;
        assert_eq!(with_pinned(&[], Some(inter)), std::slice::from_ref(inter));
        assert_eq!(
            with_pinned(&[leaf.clone(), inter.clone()], Some(inter)),
            [leaf.clone(), inter.clone()]
        );
        assert_eq!(with_pinned(std::slice::from_ref(&leaf), None), [leaf]);
    }

    #[test]
    fn handshakes_with_pinned_verifiers_on_both_sides() {
        let pki = Pki::new("ours");
        let (server_leaf, server_key) = pki.leaf(Usage::Server);
        let (client_leaf, client_key) = pki.leaf(Usage::Client);
        let theirs = Pki::new("theirs");
        let (their_leaf, their_key) = theirs.leaf(Usage::Client);
        for version in testing::VERSIONS {
            // Both peers send their leaf alone; the pinned intermediate completes the chain.
            let client_config = |leaf, key| {
                testing::client_config(version, Arc::new(server(&pki, true)), Some((leaf, key)))
            };
            let server_config = || {
                let verifier: Arc<dyn ClientCertVerifier> = Arc::new(client(&pki, true));
                testing::server_config(version, Some(verifier), &server_leaf, &server_key)
            };
            testing::handshake(client_config(&client_leaf, &client_key), server_config())
                .unwrap_or_else(|e| panic!("{version:?}: {e}"));
            // A client under another root is refused by the server.
            let e = testing::handshake(client_config(&their_leaf, &their_key), server_config())
                .expect_err("a client under another root must be refused");
            assert_eq!(refusal(e), CertificateError::UnknownIssuer, "{version:?}");
            // The server signs with another key than its certificate's: the client refuses.
            let (_, other_key) = pki.leaf(Usage::Server);
            let server_config = testing::server_config(version, None, &server_leaf, &other_key);
            let client_config = testing::client_config(version, Arc::new(server(&pki, true)), None);
            let e = testing::handshake(client_config, server_config)
                .expect_err("another key must be refused");
            assert_eq!(refusal(e), CertificateError::BadSignature, "{version:?}");
        }
    }
}
