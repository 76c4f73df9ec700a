//! The kinds of Trusted Execution Environment Confidant knows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Trusted Execution Environment technology.
///
/// `Sim` is the simulation TEE: a software platform key stands in for hardware. It proves that the
/// protocol works end to end and nothing about hardware isolation.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// Intel SGX, evidence is a DCAP ECDSA quote.
    Sgx,
    /// Intel TDX, evidence is a DCAP ECDSA quote carrying a TD report.
    Tdx,
    /// AMD SEV-SNP, evidence is an attestation report signed by a VCEK or VLEK.
    Snp,
    /// The simulation TEE (no hardware protection).
    Sim,
}

impl Tee {
    /// All TEE kinds, hardware ones first.
    pub const ALL: [Tee; 4] = [Tee::Sgx, Tee::Tdx, Tee::Snp, Tee::Sim];

    /// The lowercase name used on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
            Tee::Snp => "snp",
            Tee::Sim => "sim",
        }
    }

    /// Whether this is the simulation TEE, which gives no hardware protection.
    pub fn is_simulation(self) -> bool {
        self == Tee::Sim
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a TEE name that is not one of `sgx`, `tdx`, `snp`, `sim`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TEE {0:?}: expected one of sgx, tdx, snp, sim")]
pub struct UnknownTee(pub String);

impl FromStr for Tee {
    type Err = UnknownTee;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sgx" => Ok(Tee::Sgx),
            "tdx" => Ok(Tee::Tdx),
            "snp" | "sev-snp" => Ok(Tee::Snp),
            "sim" | "simulation" => Ok(Tee::Sim),
            _ => Err(UnknownTee(s.to_string())),
        }
    }
}
