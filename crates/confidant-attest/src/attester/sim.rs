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
    config_id: [u8; 48],
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
            config_id: [0; 48],
            product_id: 0,
            svn: 0,
            debug: false,
        }
    }

    /// The measurement of launching `launched`: SHA-384 of its bytes.
    pub fn measure(launched: &[u8]) -> [u8; 48] {
        Sha384::digest(launched).into()
    }

    /// [`SimAttester::measure`] of a file, read in 1 MiB pieces (the agent measures its own
    /// binary without holding it in memory).
    pub fn measure_file(path: &std::path::Path) -> std::io::Result<[u8; 48]> {
        use std::io::Read as _;
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha384::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().into())
    }

    /// Sets the product id and security version the reports claim.
    pub fn with_version(mut self, product_id: u16, svn: u16) -> Self {
        self.product_id = product_id;
        self.svn = svn;
        self
    }

    /// Sets the config id the reports carry (what the launcher configured, measured apart from
    /// the code: for the agent, the image digest and workload name).
    pub fn with_config_id(mut self, config_id: [u8; 48]) -> Self {
        self.config_id = config_id;
        self
    }

    /// The config id of a launch configuration: SHA-384 of `"confidant/v1/config-id" ‖ 0 ‖
    /// each part followed by 0`.
    pub fn config_id(parts: &[&str]) -> [u8; 48] {
        let mut h = Sha384::new();
        h.update(b"confidant/v1/config-id\0");
        for p in parts {
            h.update(p.as_bytes());
            h.update([0u8]);
        }
        h.finalize().into()
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
            config_id: self.config_id,
            report_data: *report_data,
        });
        Ok(Evidence::new(Tee::Sim, report.to_bytes()))
    }
}
