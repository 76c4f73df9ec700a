//! TLS for the API: the server certificate, and optional client certificates that identify
//! manifest users.

use std::sync::Arc;

use confidant_tls::HandshakeSignatures;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Accepts any client certificate whose key signs the handshake; which user (if any) it is
/// decides the coordinator, by comparing it with the manifest's users. A client without a
/// certificate is anonymous.
#[derive(Debug)]
pub struct AnyClientCertificate {
    signatures: HandshakeSignatures,
}

impl AnyClientCertificate {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: &CryptoProvider) -> AnyClientCertificate {
        AnyClientCertificate {
            signatures: HandshakeSignatures::new(provider),
        }
    }
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Users are pinned certificates (often self-signed): there is no chain to build. The
        // handshake signature below proves the client holds the certificate's key.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

/// A rustls server configuration for `chain_pem` and `key_pem` with optional client
/// certificates.
pub fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = pem::parse_many(chain_pem.as_bytes())
        .map_err(|e| format!("TLS certificate chain: {e}"))?
        .into_iter()
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    let key = pem::parse(key_pem.as_bytes()).map_err(|e| format!("TLS key: {e}"))?;
    let key = PrivateKeyDer::try_from(key.into_contents()).map_err(|e| format!("TLS key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(Arc::new(AnyClientCertificate::new(&provider)))
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
