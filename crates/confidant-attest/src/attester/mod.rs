//! Attesters: produce evidence binding 64 bytes of report data, inside a TEE.
//!
//! Hardware attesters talk to the kernel or LibOS interface (configfs-tsm for TDX and SNP guests,
//! Gramine's `/dev/attestation` for SGX). The simulation attester signs with a software platform
//! key and is only ever chosen when asked for by name: detection never falls back to it.

pub mod cert_table;
pub mod detect;
pub mod gramine;
pub mod sim;
pub mod tsm;

use crate::error::Result;
use crate::evidence::Evidence;
use crate::tee::Tee;

/// Produces evidence from inside a TEE.
pub trait Attester: Send + Sync {
    /// The TEE this attester speaks for.
    fn tee(&self) -> Tee;

    /// Produces evidence whose report data is `report_data`.
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence>;
}
