//! Verifier for simulation evidence: an Ed25519 signature by a platform key trusted by
//! configuration. It proves the protocol, not hardware isolation.

use std::time::SystemTime;

use crate::claims::Claims;
use crate::error::{Error, Result};
use crate::evidence::Evidence;
use crate::sim::SimReport;
use crate::tee::Tee;

use super::Verifier;

/// Accepts simulation reports signed by one of the trusted platform keys.
#[derive(Debug, Clone)]
pub struct SimVerifier {
    trusted: Vec<[u8; 32]>,
}

impl SimVerifier {
    /// Trusts exactly these platform public keys.
    pub fn new(trusted: Vec<[u8; 32]>) -> Self {
        SimVerifier { trusted }
    }

    /// Verifies raw report bytes.
    pub fn verify_report(&self, raw: &[u8]) -> Result<Claims> {
        let report = SimReport::parse(raw)?;
        if !self.trusted.contains(&report.platform_key) {
            let trusted: Vec<String> = self.trusted.iter().map(hex::encode).collect();
            return Err(Error::NotTrusted {
                tee: Tee::Sim,
                reason: format!(
                    "platform key {} is not trusted (trusted: [{}])",
                    hex::encode(report.platform_key),
                    trusted.join(", ")
                ),
            });
        }
        report.verify_signature()?;
        Ok(report.claims(true))
    }
}

impl Verifier for SimVerifier {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn verify(&self, evidence: &Evidence, _now: SystemTime) -> Result<Claims> {
        if evidence.tee != Tee::Sim {
            return Err(Error::malformed(
                "evidence",
                format!("expected sim evidence, got {}", evidence.tee),
            ));
        }
        self.verify_report(&evidence.evidence)
    }
}
