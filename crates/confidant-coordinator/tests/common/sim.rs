//! Helpers shared by the tests of the coordinator's logic (`core_flow`, `core_volumes`): a
//! simulation platform, a coordinator on a [`MemStore`] that trusts it, user certificates and a
//! workload's side of an activation (a key, a CSR, and sim evidence bound to both and a nonce).

use std::time::SystemTime;

use confidant_attest::Verifiers;
use confidant_attest::attester::Attester;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::binding::{Purpose, report_data};
use confidant_attest::sim::SimPlatform;
use confidant_attest::verify::sim::SimVerifier;
use confidant_coordinator::core::{ActivateRequest, Coordinator, Options, Principal};
use confidant_coordinator::store::MemStore;

/// What the workloads' sim evidence measures (the manifests' reference value).
pub(crate) const MEASURED: &[u8] = b"the agent binary";

/// A simulation platform kept on disk, so that several attesters can load it.
pub(crate) struct Platform(tempfile::TempDir);

impl Platform {
    /// A fresh platform key in a new temporary directory.
    pub(crate) fn new() -> Platform {
        let dir = tempfile::tempdir().unwrap();
        SimPlatform::init(dir.path()).unwrap();
        Platform(dir)
    }

    /// The platform, loaded again (an attester takes it by value).
    pub(crate) fn load(&self) -> SimPlatform {
        SimPlatform::load(self.0.path()).unwrap()
    }

    /// The platform's public key, as verifiers trust it.
    pub(crate) fn public_key(&self) -> [u8; 32] {
        self.load().public_key()
    }

    /// An attester on this platform whose launch measurement is `MEASURED`.
    pub(crate) fn workload_attester(&self) -> SimAttester {
        SimAttester::new(self.load(), SimAttester::measure(MEASURED))
    }
}

/// A coordinator on an in-memory store, attesting itself and trusting workload evidence on
/// `platform`.
pub(crate) fn coordinator(platform: &Platform) -> Coordinator<MemStore> {
    let options = Options {
        attester: Box::new(SimAttester::new(
            platform.load(),
            SimAttester::measure(b"coordinator"),
        )),
        verifiers: Verifiers::new().with_sim(SimVerifier::new(vec![platform.public_key()])),
        address: "127.0.0.1:4433".into(),
        recovery_key: None,
        random: confidant_coordinator::core::system_random(),
    };
    Coordinator::open(MemStore::new(), options, SystemTime::now()).unwrap()
}

/// A self-signed user certificate (PEM) and the principal the API derives from it.
pub(crate) fn user_cert() -> (String, Principal) {
    let ck = rcgen::generate_simple_self_signed(vec!["user.example".into()]).unwrap();
    let d = ring::digest::digest(&ring::digest::SHA256, ck.cert.der());
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    (ck.cert.pem(), Principal::Certificate(h))
}

/// A PEM block indented for a YAML block scalar under `certificate: |`.
pub(crate) fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// A workload's side of an activation: a key, a CSR, evidence bound to both and a nonce.
pub(crate) struct Workload {
    pub key: rcgen::KeyPair,
    pub csr: String,
    pub attester: SimAttester,
}

impl Workload {
    /// A fresh key and CSR, attesting on `platform` with the `MEASURED` launch measurement.
    pub(crate) fn new(platform: &Platform) -> Workload {
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        Workload {
            key,
            csr,
            attester: platform.workload_attester(),
        }
    }

    /// An activation request for `workload`, with a fresh nonce from `c`.
    pub(crate) fn request(&self, c: &Coordinator<MemStore>, workload: &str) -> ActivateRequest {
        let nonce = c.issue_nonce(SystemTime::now()).unwrap().to_vec();
        let rd = report_data(Purpose::Activate, &nonce, &self.key.public_key_der());
        ActivateRequest {
            workload: workload.into(),
            evidence: self.attester.attest(&rd).unwrap(),
            nonce,
            csr: self.csr.clone().into_bytes(),
            image_manifest: None,
        }
    }
}
