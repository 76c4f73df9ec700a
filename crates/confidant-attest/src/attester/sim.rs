//! The simulation attester: signs reports with the software platform key.

use sha2::{Digest, Sha384};

use crate::error::Result;
use crate::evidence::Evidence;
use crate::sim::{SimPlatform, SimReportBody};
use crate::tee::Tee;

use super::Attester;

/// Produces SIMULATION evidence for a launched workload.
#[derive(Debug)]
pub struct SimAttester {
    platform: SimPlatform,
    measurement: [u8; 48],
    product_id: u16,
    svn: u16,
    debug: bool,
}

impl SimAttester {
    /// An attester for a workload whose launch measurement is `measurement`.
    pub fn new(platform: SimPlatform, measurement: [u8; 48]) -> Self {
        SimAttester {
            platform,
            measurement,
            product_id: 0,
            svn: 0,
            debug: false,
        }
    }

    /// The measurement of launching `launched`: SHA-384 of its bytes.
    pub fn measure(launched: &[u8]) -> [u8; 48] {
        Sha384::digest(launched).into()
    }

    /// Sets the product id and security version the reports claim.
    pub fn with_version(mut self, product_id: u16, svn: u16) -> Self {
        self.product_id = product_id;
        self.svn = svn;
        self
    }

    /// Marks the simulated TEE as running in debug mode.
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The platform's public key, for verifiers that should trust it.
    pub fn platform_key(&self) -> [u8; 32] {
        self.platform.public_key()
    }
}

impl Attester for SimAttester {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let report = self.platform.sign(SimReportBody {
            debug: self.debug,
            product_id: self.product_id,
            svn: self.svn,
            measurement: self.measurement,
            report_data: *report_data,
        });
        Ok(Evidence::new(Tee::Sim, report.to_bytes()))
    }
}
