//! Finding the hardware attester of this machine.
//!
//! Detection looks for Gramine's `/dev/attestation` (SGX) first, then for configfs-tsm (TDX and
//! SEV-SNP guests). It never returns the simulation attester: simulation is only ever used when
//! asked for by name (`--tee sim`), so that a machine without a TEE fails loudly instead of
//! silently running unprotected.

use std::path::PathBuf;

use crate::error::{Error, Result};

use super::Attester;
use super::gramine::{self, GramineAttester};
use super::tsm::{self, TsmAttester};

/// Where to look for the attestation interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePaths {
    /// Gramine's attestation directory (normally `/dev/attestation`).
    pub gramine: PathBuf,
    /// The configfs-tsm report directory (normally `/sys/kernel/config/tsm/report`).
    pub tsm: PathBuf,
}

impl Default for DevicePaths {
    /// The real paths.
    fn default() -> Self {
        DevicePaths {
            gramine: PathBuf::from(gramine::DEFAULT_ROOT),
            tsm: PathBuf::from(tsm::DEFAULT_ROOT),
        }
    }
}

/// The hardware attester available at `paths`.
///
/// Gramine when `<gramine>/attestation_type` exists (and it must say `dcap`), else configfs-tsm
/// when the `tsm` directory exists, else [`Error::NoTee`]. Never the simulation attester.
pub fn detect(paths: &DevicePaths) -> Result<Box<dyn Attester>> {
    if paths.gramine.join("attestation_type").exists() {
        return Ok(Box::new(GramineAttester::open(&paths.gramine)?));
    }
    if paths.tsm.is_dir() {
        return Ok(Box::new(TsmAttester::open(&paths.tsm)?));
    }
    Err(Error::NoTee(format!(
        "no {} (Gramine, SGX) and no {} (configfs-tsm, TDX and SEV-SNP guests); to use the \
         simulation TEE ask for it explicitly with --tee sim (SIMULATION: no hardware protection)",
        paths.gramine.display(),
        paths.tsm.display()
    )))
}
