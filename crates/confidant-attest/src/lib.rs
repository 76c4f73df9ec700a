//! Attestation for Confidant: evidence, verifiers, reference values and attesters.
//!
//! - [`Evidence`] is what a TEE produces: raw hardware bytes plus optional endorsements.
//! - A [`Verifier`] checks that evidence is authentic as of an explicit time and returns
//!   normalized [`Claims`]; [`Verifiers`] dispatches on the TEE kind.
//! - [`ReferenceValues`] decide whether authentic claims are the expected ones, reporting each
//!   mismatch as field, expected, got.
//! - An [`Attester`] produces evidence binding report data (see [`binding`]).
//!
//! The simulation TEE (`sim`) is real cryptography with a software key: it proves protocols,
//! never isolation, and it is never used unless asked for by name.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attester;
pub mod binding;
pub mod claims;
pub mod error;
pub mod evidence;
mod hex_serde;
pub mod reference;
pub mod sim;
pub mod tee;
pub mod time;
pub mod verify;

pub use attester::Attester;
pub use binding::{Purpose, check_binding, report_data};
pub use claims::{Claims, InspectedClaims, TeeFields};
pub use error::{Error, Result};
pub use evidence::{Endorsements, Evidence, detect_tee};
pub use reference::{Appraisal, Mismatch, ReferenceValues};
pub use tee::Tee;
pub use verify::{Verifier, Verifiers};

/// Parses evidence and returns what it claims without verifying anything: [`InspectedClaims`],
/// never [`Claims`].
pub fn inspect(evidence: &Evidence) -> Result<InspectedClaims> {
    match evidence.tee {
        Tee::Sgx | Tee::Tdx => {
            let claims = verify::dcap::inspect(&evidence.evidence)?;
            if claims.tee() != evidence.tee {
                return Err(Error::malformed(
                    "DCAP quote",
                    format!(
                        "evidence says {} but the quote is a {} quote",
                        evidence.tee,
                        claims.tee()
                    ),
                ));
            }
            Ok(claims)
        }
        Tee::Snp => verify::snp::inspect(&evidence.evidence),
        Tee::Sim => Ok(sim::SimReport::parse(&evidence.evidence)?.inspect()),
    }
}
