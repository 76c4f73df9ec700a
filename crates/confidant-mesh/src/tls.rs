//! TLS material and configurations: the workload identity parsed once, one rustls
//! `ServerConfig` per ingress listener and one `ClientConfig` per egress listener, and the two
//! certificate verifiers that add the Confidant workload identity check to webpki's chain
//! validation.

use std::sync::Arc;

use confidant_tls::HandshakeSignatures;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use x509_parser::extensions::GeneralName;
use zeroize::Zeroize;

use crate::error::{MeshError, PeerIdentityError};
use crate::{Identity, IngressConfig};

/// TLS 1.3 first, TLS 1.2 for older peers.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Sessions each ingress listener keeps for resumption (one entry ≈ a few hundred bytes).
const SERVER_SESSION_CACHE: usize = 1024;
/// Sessions each egress listener keeps for resumption (per server name).
const CLIENT_SESSION_CACHE: usize = 256;

/// The URI SAN prefix of a Confidant workload identity.
pub(crate) const WORKLOAD_URI_PREFIX: &str = "confidant://workload/";

/// The identity, parsed once.
pub(crate) struct Material {
    /// Chain and signing key, shared by every listener's configuration.
    identity: Arc<SingleCertAndKey>,
    certified: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    /// Our own workload identity (for logs), if the leaf carries one.
    pub(crate) own: Option<WorkloadId>,
}

impl Material {
    pub(crate) fn parse(identity: &Identity) -> Result<Material, MeshError> {
        let chain = CertificateDer::pem_slice_iter(identity.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MeshError::Pem {
                item: "chain_pem",
                expected: "PEM CERTIFICATE blocks (leaf, then intermediate)",
                found: e.to_string(),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(MeshError::Pem {
                item: "chain_pem",
                expected: "PEM CERTIFICATE blocks (leaf, then intermediate)",
                found: "no CERTIFICATE block".to_owned(),
            });
        };
        let own = workload_identity(leaf).ok();
        let mut key_der =
            PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|e| {
                MeshError::Pem {
                    item: "key_pem",
                    expected: "a PEM PRIVATE KEY block (PKCS#8)",
                    found: match e {
                        rustls::pki_types::pem::Error::NoItemsFound => {
                            "no private key block".into()
                        }
                        other => other.to_string(),
                    },
                }
            })?;
        // The signing key is loaded once, for all listeners; the DER copy is wiped right away.
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key_der);
        key_der.zeroize();
        let signing_key = signing_key.map_err(|e| MeshError::Pem {
            item: "key_pem",
            expected: "an ECDSA P-256/P-384, Ed25519 or RSA private key",
            found: e.to_string(),
        })?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified.keys_match().map_err(|source| MeshError::Tls {
            context: "identity: the key_pem must be the key of the chain_pem's leaf".to_owned(),
            source,
        })?;
        let roots_der = CertificateDer::pem_slice_iter(identity.root_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MeshError::Pem {
                item: "root_pem",
                expected: "the root CA as a PEM CERTIFICATE block",
                found: e.to_string(),
            })?;
        if roots_der.is_empty() {
            return Err(MeshError::Pem {
                item: "root_pem",
                expected: "the root CA as a PEM CERTIFICATE block",
                found: "no CERTIFICATE block".to_owned(),
            });
        }
        let mut roots = RootCertStore::empty();
        for der in roots_der {
            roots.add(der).map_err(|e| MeshError::Pem {
                item: "root_pem",
                expected: "a CA certificate usable as a trust anchor",
                found: e.to_string(),
            })?;
        }
        let certified = Arc::new(certified);
        Ok(Material {
            identity: Arc::new(SingleCertAndKey::from(certified.clone())),
            certified,
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            own,
        })
    }

    /// Whether our own chain leads to the root, as peers will check it (for a start-up warning).
    pub(crate) fn check_own_chain(&self) -> Result<(), rustls::Error> {
        let chain = &self.certified.cert;
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(rustls::Error::NoCertificatesPresented);
        };
        let parsed = ParsedCertificate::try_from(leaf)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            UnixTime::now(),
            self.provider.signature_verification_algorithms.all,
        )
    }

    /// The ingress listener's server configuration: our identity, client certificates verified
    /// against the root (required unless the listener says otherwise), and the allowed peers.
    pub(crate) fn server_config(
        &self,
        listener: &str,
        cfg: &IngressConfig,
    ) -> Result<Arc<ServerConfig>, MeshError> {
        let builder =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone());
        // An allow list can only be checked against a certificate: it implies one is required.
        let builder = if cfg.require_client_cert || cfg.allowed_peers.is_some() {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let webpki = builder.build().map_err(|source| MeshError::Verifier {
            context: listener.to_owned(),
            source,
        })?;
        let verifier: Arc<dyn ClientCertVerifier> = match &cfg.allowed_peers {
            Some(allowed) => Arc::new(AllowedPeers {
                inner: webpki,
                allowed: allowed.clone(),
            }),
            None => webpki,
        };
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(|source| tls_error(listener, "TLS versions", source))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.identity.clone());
        // Stateful resumption, per listener: a session is only resumed on the listener (and so
        // with the verifier and allow list) that authenticated it.
        config.session_storage = ServerSessionMemoryCache::new(SERVER_SESSION_CACHE);
        Ok(Arc::new(config))
    }

    /// The egress listener's client configuration: our identity as client certificate, the
    /// server verified against the root and required to be `peer_workload`.
    pub(crate) fn client_config(
        &self,
        listener: &str,
        peer_workload: &str,
    ) -> Result<Arc<ClientConfig>, MeshError> {
        let verifier = Arc::new(PeerVerifier {
            roots: self.roots.clone(),
            expected: peer_workload.to_owned(),
            signatures: HandshakeSignatures::new(&self.provider),
        });
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(|source| tls_error(listener, "TLS versions", source))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.identity.clone());
        // One resumption cache per egress listener: sessions verified for this peer workload
        // are only resumed for it.
        config.resumption = rustls::client::Resumption::in_memory_sessions(CLIENT_SESSION_CACHE);
        Ok(Arc::new(config))
    }
}

fn tls_error(listener: &str, what: &str, source: rustls::Error) -> MeshError {
    MeshError::Tls {
        context: format!("{listener}: {what}"),
        source,
    }
}

/// A Confidant workload identity, from the URI SAN `confidant://workload/<workload>/<activation>`
/// of a certificate the coordinator issued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadId {
    /// The workload's name in the manifest.
    pub workload: String,
    /// The activation number (as the coordinator wrote it).
    pub activation: String,
    /// The whole URI SAN.
    pub uri: String,
}

/// The Confidant workload identity of a DER certificate: its one URI SAN of the form
/// `confidant://workload/<workload>/<activation>` (other URI SANs are ignored; two workload URIs
/// are refused as ambiguous). Does not verify the certificate.
pub fn workload_identity(cert_der: &[u8]) -> Result<WorkloadId, PeerIdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PeerIdentityError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PeerIdentityError::Unparsable(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ids = uris.iter().filter_map(|uri| parse_workload_uri(uri));
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(id),
        _ => Err(PeerIdentityError::NoWorkloadUri {
            found: uris.iter().map(|u| (*u).to_owned()).collect(),
        }),
    }
}

fn parse_workload_uri(uri: &str) -> Option<WorkloadId> {
    let rest = uri.strip_prefix(WORKLOAD_URI_PREFIX)?;
    let (workload, activation) = rest.split_once('/')?;
    if !is_label(workload) || !is_label(activation) {
        return None;
    }
    Some(WorkloadId {
        workload: workload.to_owned(),
        activation: activation.to_owned(),
        uri: uri.to_owned(),
    })
}

/// A workload name or activation id as the coordinator allows them: `[A-Za-z0-9._-]+`.
pub(crate) fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn identity_refusal(e: PeerIdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Ingress: webpki's client-certificate verification, then the client's workload must be in
/// the listener's allow list.
#[derive(Debug)]
struct AllowedPeers {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedPeers {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
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
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = workload_identity(end_entity).map_err(identity_refusal)?;
        if self.allowed.contains(&id.workload) {
            Ok(verified)
        } else {
            Err(identity_refusal(PeerIdentityError::NotAllowed {
                allowed: self.allowed.clone(),
                found: id.uri,
            }))
        }
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

/// Egress: the server's chain must lead to the root (webpki, serverAuth usage), and its leaf
/// must name the expected workload. This replaces host name verification: peers are addressed
/// by IP or internal names, and what matters is which workload answers.
#[derive(Debug)]
struct PeerVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
    signatures: HandshakeSignatures,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.signatures.algorithms().all,
        )?;
        let id = workload_identity(end_entity).map_err(identity_refusal)?;
        if id.workload == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(identity_refusal(PeerIdentityError::WrongWorkload {
                expected: self.expected.clone(),
                found: id.uri,
            }))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_uri_parsing() {
        let id = parse_workload_uri("confidant://workload/web-1/7").expect("valid");
        assert_eq!(id.workload, "web-1");
        assert_eq!(id.activation, "7");
        for bad in [
            "confidant://workload/web",
            "confidant://workload//1",
            "confidant://workload/web/",
            "confidant://workload/web/1/2",
            "confidant://workload/w b/1",
            "spiffe://workload/web/1",
            "confidant://coordinator/web/1",
        ] {
            assert_eq!(parse_workload_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(is_label("a.B_c-9"));
        assert!(!is_label(""));
        assert!(!is_label("a/b"));
        assert!(!is_label("é"));
    }
}
