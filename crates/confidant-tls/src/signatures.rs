//! Handshake signature checks: the part of certificate verification every verifier shares.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Checks the signatures a TLS peer makes in the handshake (TLS 1.2 `ServerKeyExchange` and
/// `CertificateVerify`, TLS 1.3 `CertificateVerify`) with the public key of the certificate it
/// presented, using one crypto provider's signature algorithms.
///
/// A custom verifier holds one and implements the three signature methods of
/// `ServerCertVerifier` or `ClientCertVerifier` by calling [`verify_tls12`](Self::verify_tls12),
/// [`verify_tls13`](Self::verify_tls13) and [`supported_schemes`](Self::supported_schemes).
#[derive(Debug, Clone, Copy)]
pub struct HandshakeSignatures {
    algorithms: WebPkiSupportedAlgorithms,
}

impl HandshakeSignatures {
    /// The checks with `provider`'s signature verification algorithms.
    pub fn new(provider: &CryptoProvider) -> HandshakeSignatures {
        HandshakeSignatures {
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The provider's signature verification algorithms (for chain validation with the same
    /// algorithms, e.g. `verify_server_cert_signed_by_trust_anchor`).
    pub fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algorithms
    }

    /// Checks a TLS 1.2 handshake signature `dss` over `message` by `cert`'s key.
    pub fn verify_tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    /// Checks a TLS 1.3 handshake signature `dss` over `message` by `cert`'s key.
    pub fn verify_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    /// The signature schemes these checks support, as a verifier announces them.
    pub fn supported_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::{CertificateError, DistinguishedName};

    use super::*;
    use crate::testing::{self, Pki};

    /// Accepts any server certificate; checks only the handshake signatures.
    #[derive(Debug)]
    struct AnyServer(HandshakeSignatures);

    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// Requires a client certificate, accepts any; checks only the handshake signatures.
    #[derive(Debug)]
    struct AnyClient(HandshakeSignatures);

    impl ClientCertVerifier for AnyClient {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }

        fn verify_client_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            Ok(ClientCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    fn signatures() -> HandshakeSignatures {
        HandshakeSignatures::new(&testing::provider())
    }

    #[test]
    fn announces_the_providers_schemes() {
        let provider = testing::provider();
        let schemes = HandshakeSignatures::new(&provider).supported_schemes();
        assert_eq!(
            schemes,
            provider
                .signature_verification_algorithms
                .supported_schemes()
        );
        assert!(schemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256));
    }

    #[test]
    fn accepts_server_signing_with_its_certificates_key() {
        let pki = Pki::new("ours");
        let (leaf, key) = pki.leaf(testing::Usage::Server);
        for version in testing::VERSIONS {
            let client = testing::client_config(version, Arc::new(AnyServer(signatures())), None);
            let server = testing::server_config(version, None, &leaf, &key);
            testing::handshake(client, server).unwrap_or_else(|e| panic!("{version:?}: {e}"));
        }
    }

    #[test]
    fn refuses_server_signing_with_another_key_than_its_certificates() {
        let pki = Pki::new("ours");
        let (leaf, _) = pki.leaf(testing::Usage::Server);
        let (_, other_key) = pki.leaf(testing::Usage::Server);
        // TLS 1.2 checks the ServerKeyExchange signature, TLS 1.3 the CertificateVerify.
        for version in testing::VERSIONS {
            let client = testing::client_config(version, Arc::new(AnyServer(signatures())), None);
            let server = testing::server_config(version, None, &leaf, &other_key);
            let e = testing::handshake(client, server).expect_err("another key must be refused");
            assert_eq!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                "{version:?}"
            );
        }
    }

    #[test]
    fn refuses_client_signing_with_another_key_than_its_certificates() {
        let pki = Pki::new("ours");
        let (server_leaf, server_key) = pki.leaf(testing::Usage::Server);
        let (client_leaf, client_key) = pki.leaf(testing::Usage::Client);
        let (_, other_key) = pki.leaf(testing::Usage::Client);
        for version in testing::VERSIONS {
            let verifier: Arc<dyn ClientCertVerifier> = Arc::new(AnyClient(signatures()));
            // The right key: accepted.
            let client = testing::client_config(
                version,
                Arc::new(AnyServer(signatures())),
                Some((&client_leaf, &client_key)),
            );
            let server =
                testing::server_config(version, Some(verifier.clone()), &server_leaf, &server_key);
            testing::handshake(client, server).unwrap_or_else(|e| panic!("{version:?}: {e}"));
            // Another key behind the same certificate: the server refuses its CertificateVerify.
            let client = testing::client_config(
                version,
                Arc::new(AnyServer(signatures())),
                Some((&client_leaf, &other_key)),
            );
            let server = testing::server_config(version, Some(verifier), &server_leaf, &server_key);
            let e = testing::handshake(client, server).expect_err("another key must be refused");
            assert_eq!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                "{version:?}"
            );
        }
    }
}
