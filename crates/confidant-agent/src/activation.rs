//! The workload's side of activation: its own key and CSR, and the report data and config id
//! its evidence carries.
//!
//! The key is made inside the TEE and never leaves it: the coordinator receives only the CSR,
//! and the evidence binds the CSR's public key and the coordinator's nonce
//! (`confidant_attest::binding`, purpose `activate`).

use confidant_attest::binding::{Purpose, report_data};
use zeroize::Zeroizing;

use crate::error::{AgentError, Result};

/// The workload's mesh key (ECDSA P-256) and its certificate request.
pub struct WorkloadKey {
    key: rcgen::KeyPair,
    csr_pem: String,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadKey")
            .field("spki", &hex::encode(self.key.public_key_der()))
            .finish_non_exhaustive()
    }
}

impl WorkloadKey {
    /// A fresh key and a CSR naming `workload` (the coordinator decides the certificate's
    /// names; the CSR only carries the key).
    pub fn generate(workload: &str) -> Result<WorkloadKey> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AgentError::Crypto(format!("generating the workload key: {e}")))?;
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, workload);
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| AgentError::Crypto(format!("making the CSR: {e}")))?;
        Ok(WorkloadKey { key, csr_pem })
    }

    /// The certificate request (PEM).
    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key.public_key_der()
    }

    /// The private key (PKCS#8 PEM), for the mesh proxy in this process.
    pub fn private_key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    /// The report data an activation's evidence must carry for `nonce`.
    pub fn report_data(&self, nonce: &[u8]) -> [u8; 64] {
        report_data(Purpose::Activate, nonce, &self.spki_der())
    }
}

/// The config id of a launch: the image manifest digest and the workload, as the simulation
/// TEE carries it (`sim.config_ids` in reference values); on hardware the launcher would put
/// the same value in TDX MRCONFIGID or SNP HOST_DATA.
pub fn config_id(image_digest: &str, workload: &str) -> [u8; 48] {
    confidant_attest::attester::sim::SimAttester::config_id(&[image_digest, workload])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;
    use x509_parser::prelude::FromDer as _;

    #[test]
    fn the_csr_carries_the_key_the_report_data_binds() {
        let k = WorkloadKey::generate("web").unwrap();
        let der = pem::parse(k.csr_pem()).unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.contents())
                .unwrap();
        csr.verify_signature().unwrap();
        assert_eq!(
            csr.certification_request_info.subject_pki.raw,
            &k.spki_der()[..]
        );
        let expected = report_data(Purpose::Activate, b"n", &k.spki_der());
        assert_eq!(k.report_data(b"n"), expected);
        assert_ne!(k.report_data(b"a"), k.report_data(b"b"));
        assert_ne!(config_id("sha256:aa", "web"), config_id("sha256:aa", "api"));
        let _ = sha2::Sha256::digest(b"");
    }
}
