//! Trust in the coordinator's TLS certificate, the client's own certificate, and the
//! certificate helpers both need.
//!
//! Two trust modes:
//!
//! - [`Trust::Pinned`]: the root CA saved by `confidant verify`; the server's chain must lead to
//!   it (webpki, as rustls checks any server) and name the host of the address.
//! - [`Trust::FirstContact`]: for `verify` and `recover`, before anything is pinned. Any chain is
//!   accepted (the TLS handshake signatures are still checked, so the peer holds the leaf's key)
//!   and recorded; the caller then checks that the coordinator's evidence binds it. Within one
//!   client, every connection must present the same leaf as the first.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use confidant_tls::{HandshakeSignatures, PinError, PinnedServerVerifier};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::error::{ClientError, Result};

fn config(message: String) -> ClientError {
    ClientError::Config(message)
}

/// The TLS library's algorithms: rustls on `ring`, as in the rest of the workspace.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client certificate chain and its private key: a user's, or a workload's activation
/// certificate and the key behind its CSR.
pub struct ClientIdentity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientIdentity({} certificates, <key>)",
            self.chain.len()
        )
    }
}

impl ClientIdentity {
    /// Loads a PEM certificate (chain) and its PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<ClientIdentity> {
        let chain = read_certificates(cert)?;
        let bytes = std::fs::read(key).map_err(|source| ClientError::Io {
            path: key.display().to_string(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
            config(format!(
                "{}: expected a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                key.display()
            ))
        })?;
        Ok(ClientIdentity { chain, key })
    }

    /// A certificate chain and private key from PEM text in memory (the workload certificate
    /// chain of an activation and the key behind its CSR).
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<ClientIdentity> {
        let chain = certificates_from_pem(chain_pem.as_bytes())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            config(format!(
                "expected a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
            ))
        })?;
        Ok(ClientIdentity { chain, key })
    }
}

/// Reads every PEM `CERTIFICATE` of a file; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(|source| ClientError::Io {
        path: path.display().to_string(),
        source,
    })?;
    certificates_from_pem(&bytes).map_err(|e| config(format!("{}: {e}", path.display())))
}

/// Every PEM `CERTIFICATE` block of `pem`; at least one.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| config(format!("expected PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(config(
            "expected PEM certificates, found no CERTIFICATE block".into(),
        ));
    }
    Ok(certs)
}

/// Exactly one PEM `CERTIFICATE` (the API's `root_ca`, `intermediate_ca`).
pub fn one_certificate(what: &str, pem: &str) -> Result<CertificateDer<'static>> {
    let mut certs =
        certificates_from_pem(pem.as_bytes()).map_err(|e| config(format!("{what}: {e}")))?;
    if certs.len() != 1 {
        return Err(config(format!(
            "{what}: expected one certificate, got {}",
            certs.len()
        )));
    }
    certs
        .pop()
        .ok_or_else(|| config(format!("{what}: no certificate")))
}

/// A certificate's SubjectPublicKeyInfo, DER.
pub fn spki_der(cert: &CertificateDer<'_>) -> Result<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| config(format!("parsing a certificate: {e}")))?;
    Ok(parsed.public_key().raw.to_vec())
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, lower-case hex.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String> {
    Ok(hex::encode(Sha256::digest(spki_der(cert)?)))
}

/// A certificate as PEM.
pub fn to_pem(cert: &CertificateDer<'_>) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", cert.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Checks that `leaf` (with the `presented` intermediates and, if any, `intermediate`) chains to
/// `root` and is valid for `address`'s host now, as rustls checks a server: webpki, server
/// authentication.
pub fn check_chain(
    root: &CertificateDer<'static>,
    intermediate: Option<&CertificateDer<'static>>,
    leaf: &CertificateDer<'_>,
    presented: &[CertificateDer<'static>],
    address: &Address,
) -> Result<()> {
    let verifier = pinned_verifier(root.clone(), intermediate.cloned())?;
    verifier
        .verify_server_cert(
            leaf,
            presented,
            &address.server_name()?,
            &[],
            UnixTime::now(),
        )
        .map_err(|e| config(e.to_string()))?;
    Ok(())
}

/// How the client trusts the coordinator's TLS certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The saved root CA (and intermediate) of a verified coordinator.
    Pinned {
        /// The root CA.
        root: CertificateDer<'static>,
        /// The intermediate CA, added to what the server presents.
        intermediate: Option<CertificateDer<'static>>,
    },
    /// Nothing pinned yet: record the chain and let the caller check the evidence binds it.
    FirstContact,
}

/// The chain a server presented on the first connection of a [`Trust::FirstContact`] client.
#[derive(Debug, Clone, Default)]
pub struct PeerChain {
    /// The server's certificate.
    pub leaf: Option<CertificateDer<'static>>,
    /// The other certificates it sent.
    pub intermediates: Vec<CertificateDer<'static>>,
}

/// The pinned mode's verifier: webpki against the saved root, with the saved intermediate
/// added to the presented ones (a server may send its leaf alone).
pub(crate) fn pinned_verifier(
    root: CertificateDer<'static>,
    intermediate: Option<CertificateDer<'static>>,
) -> Result<PinnedServerVerifier> {
    PinnedServerVerifier::new(root, intermediate, provider()).map_err(|e| match e {
        PinError::TrustAnchor(e) => config(format!(
            "the saved root CA is not a usable trust anchor: {e}"
        )),
        PinError::Verifier(e) => config(format!("building the certificate verifier: {e}")),
    })
}

/// The first-contact verifier: records the chain, accepts it, and insists on the same leaf on
/// every later connection of the same client. Handshake signatures are verified as usual.
#[derive(Debug)]
pub(crate) struct FirstContactVerifier {
    pub(crate) signatures: HandshakeSignatures,
    pub(crate) seen: Arc<Mutex<PeerChain>>,
}

impl ServerCertVerifier for FirstContactVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| rustls::Error::General("certificate recorder poisoned".into()))?;
        match &seen.leaf {
            Some(first) if first.as_ref() != end_entity.as_ref() => {
                return Err(rustls::Error::General(
                    "the coordinator presented another certificate than on the first connection"
                        .into(),
                ));
            }
            Some(_) => {}
            None => {
                seen.leaf = Some(end_entity.clone().into_owned());
                seen.intermediates = intermediates
                    .iter()
                    .map(|c| c.clone().into_owned())
                    .collect();
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA (root → intermediate) and a server certificate for `127.0.0.1` under it.
    fn pki(
        tag: &str,
    ) -> (
        CertificateDer<'static>,
        CertificateDer<'static>,
        CertificateDer<'static>,
    ) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_string());
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root = ca(&format!("{tag} root")).self_signed(&root_key).unwrap();
        let inter_key = KeyPair::generate().unwrap();
        let inter = ca(&format!("{tag} intermediate"))
            .signed_by(&inter_key, &root, &root_key)
            .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &inter, &inter_key)
            .unwrap();
        (root.der().clone(), inter.der().clone(), leaf.der().clone())
    }

    #[test]
    fn chains_are_checked_against_the_attested_root() {
        let (root, inter, leaf) = pki("ours");
        let here = Address::parse("127.0.0.1:4433").unwrap();
        // The intermediate may come from the server or from the attestation answer.
        check_chain(&root, Some(&inter), &leaf, &[], &here).unwrap();
        check_chain(&root, None, &leaf, std::slice::from_ref(&inter), &here).unwrap();
        // Without the intermediate, or under another root, or for another name: refused.
        assert!(check_chain(&root, None, &leaf, &[], &here).is_err());
        let (other_root, _, _) = pki("theirs");
        let e = check_chain(&other_root, Some(&inter), &leaf, &[], &here).unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        // A root with the same name but another key.
        let (impostor, _, _) = pki("ours");
        let e = check_chain(&impostor, Some(&inter), &leaf, &[], &here).unwrap_err();
        assert!(e.to_string().contains("BadSignature"), "{e}");
        let elsewhere = Address::parse("coordinator.example:4433").unwrap();
        assert!(check_chain(&root, Some(&inter), &leaf, &[], &elsewhere).is_err());
        // The leaf's key is what the report data binds in recovery.
        assert_eq!(spki_sha256(&leaf).unwrap().len(), 64);
        assert_ne!(spki_der(&leaf).unwrap(), spki_der(&root).unwrap());
    }
}
