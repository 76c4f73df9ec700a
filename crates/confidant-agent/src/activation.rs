//! The workload's side of activation: its own key and CSR, the report data and config id its
//! evidence carries, and [`activate`], which asks the coordinator.
//!
//! The key is made inside the TEE and never leaves it: the coordinator receives only the CSR,
//! and the evidence binds the CSR's public key and the coordinator's nonce
//! (`confidant_attest::binding`, purpose `activate`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_attest::attester::Attester;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::binding::{Purpose, report_data};
use confidant_attest::sim::SimPlatform;
use confidant_client::{Client, ClientError, ClientIdentity};
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

/// Which TEE signs the workload's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeeSource {
    /// Detect TDX or SNP (configfs-tsm) or SGX (Gramine); never falls back to simulation.
    Detect,
    /// The SIMULATION TEE: the platform key in `platform_dir` (`confidant attest sim init`)
    /// signs; no hardware protection.
    Simulation {
        /// The platform's directory (`SimPlatform::dir(home)`).
        platform_dir: PathBuf,
    },
}

/// Why an activation failed.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// No TEE to produce evidence, or the simulation platform key is missing.
    #[error("{0}")]
    NoTee(String),
    /// The workload key or CSR could not be made.
    #[error(transparent)]
    Key(#[from] AgentError),
    /// The coordinator gave no usable nonce.
    #[error("asking the coordinator for a nonce: {0}")]
    Nonce(#[source] ClientError),
    /// The TEE could not produce evidence.
    #[error("producing evidence: {0}")]
    Evidence(#[source] confidant_attest::Error),
    /// The coordinator refused the activation, or could not be asked.
    #[error("activation: {0}")]
    Refused(#[source] ClientError),
    /// The activation's answer is not usable (its certificate chain and the key do not fit).
    #[error("the activation's answer: {0}")]
    Answer(String),
}

/// The simulation TEE's launch measurement: SHA-384 of the agent binary, computed on a thread
/// while the image and the coordinator are asked (on hardware the TEE measures at launch).
#[derive(Debug)]
pub struct LaunchMeasurement(std::thread::JoinHandle<std::io::Result<[u8; 48]>>);

impl LaunchMeasurement {
    /// Starts measuring this process's binary, remembering the result per file version in
    /// `platform_dir` (as IMA does).
    pub fn start(platform_dir: &Path) -> LaunchMeasurement {
        let dir = platform_dir.to_path_buf();
        LaunchMeasurement(std::thread::spawn(move || {
            SimAttester::measure_file_cached(Path::new("/proc/self/exe"), &dir)
        }))
    }

    fn wait(self) -> Result<[u8; 48], ActivateError> {
        self.0
            .join()
            .map_err(|_| ActivateError::NoTee("measuring the agent binary panicked".into()))?
            .map_err(|e| ActivateError::NoTee(format!("measuring the agent binary: {e}")))
    }
}

/// The attester for `tee`: the detected hardware, or the SIMULATION TEE with the launch
/// `measurement` and a config id binding `image_digest` and `workload`.
pub fn attester(
    tee: &TeeSource,
    measurement: Option<LaunchMeasurement>,
    image_digest: &str,
    workload: &str,
) -> Result<Box<dyn Attester>, ActivateError> {
    match tee {
        TeeSource::Simulation { platform_dir } => {
            let platform = SimPlatform::load(platform_dir).map_err(|e| {
                ActivateError::NoTee(format!(
                    "the SIMULATION TEE needs a platform key (`confidant attest sim init`): {e}"
                ))
            })?;
            let measurement = measurement
                .unwrap_or_else(|| LaunchMeasurement::start(platform_dir))
                .wait()?;
            Ok(Box::new(
                SimAttester::new(platform, measurement)
                    .with_config_id(config_id(image_digest, workload)),
            ))
        }
        TeeSource::Detect => confidant_attest::attester::detect::detect(&Default::default())
            .map_err(|e| {
                ActivateError::NoTee(format!(
                    "no TEE found (give --tee sim for the SIMULATION TEE): {e}"
                ))
            }),
    }
}

/// An activated workload: its key, and what the coordinator released for it.
pub struct Activated {
    /// The workload's key (its certificate's key).
    pub key: WorkloadKey,
    /// The coordinator's answer: certificate, parameters, layer and volume keys, mesh.
    pub answer: confidant_api::Activation,
}

impl std::fmt::Debug for Activated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activated")
            .field("activation", &self.answer.activation)
            .finish_non_exhaustive()
    }
}

impl Activated {
    /// The activation's name, `<workload>/<n>`.
    pub fn name(&self) -> &str {
        &self.answer.activation
    }

    /// The workload certificate and key as a client identity (for its volumes' state).
    pub fn client_identity(&self) -> Result<ClientIdentity, ActivateError> {
        ClientIdentity::from_pem(&self.answer.chain, &self.key.private_key_pem())
            .map_err(|e| ActivateError::Answer(format!("the certificate chain: {e}")))
    }
}

/// Activates `workload` with the coordinator behind `client`: a fresh key, a nonce, evidence
/// binding both from `attester`, and the image manifest whose layer keys it needs.
pub fn activate(
    client: &Client,
    workload: &str,
    attester: &dyn Attester,
    image_manifest: Option<&[u8]>,
) -> Result<Activated, ActivateError> {
    let key = WorkloadKey::generate(workload)?;
    let nonce_hex = client.nonce().map_err(ActivateError::Nonce)?.nonce;
    let nonce = hex::decode(&nonce_hex).map_err(|e| {
        ActivateError::Nonce(ClientError::Answer {
            what: "POST /api/v1/nonce".into(),
            problem: format!("nonce: expected hex, got {nonce_hex:?}: {e}"),
        })
    })?;
    let evidence = attester
        .attest(&key.report_data(&nonce))
        .map_err(ActivateError::Evidence)?;
    let request = confidant_api::ActivateRequest {
        workload: workload.to_string(),
        nonce: nonce_hex,
        csr: key.csr_pem().to_string(),
        evidence,
        image_manifest: image_manifest.map(|m| STANDARD.encode(m)),
    };
    let answer = client.activate(&request).map_err(ActivateError::Refused)?;
    Ok(Activated { key, answer })
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
