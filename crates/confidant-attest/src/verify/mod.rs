//! Verifiers: from evidence to authentic claims, as of an explicit time.
//!
//! A verifier checks that evidence is genuine — signatures, certificate chains to the vendor's
//! root, revocation lists, TCB levels — and returns its [`Claims`]. Whether the claims are the
//! *right* ones is [`crate::ReferenceValues`]' job. Verifiers do no network I/O: everything they
//! need comes with the evidence's endorsements or their own configuration.

pub mod dcap;
pub mod sim;
pub mod snp;

use std::time::SystemTime;

use crate::claims::Claims;
use crate::error::{Error, Result};
use crate::evidence::Evidence;
use crate::tee::Tee;

/// Checks evidence of one TEE kind.
pub trait Verifier: Send + Sync {
    /// The TEE whose evidence this verifier checks.
    fn tee(&self) -> Tee;

    /// Verifies `evidence` as of `now` and returns its claims.
    fn verify(&self, evidence: &Evidence, now: SystemTime) -> Result<Claims>;
}

/// Seconds since the Unix epoch, saturating at 0 for times before it.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One verifier per TEE, dispatching on the evidence's kind.
///
/// Simulation evidence is refused unless a [`sim::SimVerifier`] was added with
/// [`Verifiers::with_sim`]: there is never a silent acceptance of software-signed evidence.
pub struct Verifiers {
    dcap: dcap::DcapVerifier,
    snp: snp::SnpVerifier,
    sim: Option<sim::SimVerifier>,
}

impl Default for Verifiers {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifiers {
    /// Hardware verifiers with the vendors' production roots; simulation refused.
    pub fn new() -> Self {
        Verifiers {
            dcap: dcap::DcapVerifier::new(),
            snp: snp::SnpVerifier::new(),
            sim: None,
        }
    }

    /// Also accept simulation evidence signed by one of the platform keys `sim` trusts.
    pub fn with_sim(mut self, sim: sim::SimVerifier) -> Self {
        self.sim = Some(sim);
        self
    }

    /// The verifier for `tee`, if one is configured.
    pub fn get(&self, tee: Tee) -> Option<&dyn Verifier> {
        match tee {
            Tee::Sgx | Tee::Tdx => Some(&self.dcap),
            Tee::Snp => Some(&self.snp),
            Tee::Sim => self.sim.as_ref().map(|s| s as &dyn Verifier),
        }
    }

    /// Verifies evidence of any configured TEE.
    ///
    /// Evidence that [`crate::inspect`] calls malformed is [`Error::Malformed`] here too, for
    /// every TEE and whatever the endorsements or trust configuration: structure is checked
    /// before signatures, collateral and trust. Evidence that `inspect` parses is never
    /// malformed here (its endorsements may be).
    pub fn verify(&self, evidence: &Evidence, now: SystemTime) -> Result<Claims> {
        match (evidence.tee, &self.sim) {
            (Tee::Sgx | Tee::Tdx, _) => self.dcap.verify(evidence, now),
            (Tee::Snp, _) => self.snp.verify(evidence, now),
            (Tee::Sim, Some(sim)) => sim.verify(evidence, now),
            (Tee::Sim, None) => {
                // Malformed before untrusted, as `inspect` would say: structure is judged
                // before trust, whatever the TEE.
                crate::sim::SimReport::parse(&evidence.evidence)?;
                Err(Error::NotTrusted {
                    tee: Tee::Sim,
                    reason: "no simulation platform key is trusted here".into(),
                })
            }
        }
    }
}
