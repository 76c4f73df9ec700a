//! The Gramine attester: SGX DCAP quotes through Gramine's `/dev/attestation` pseudo-files.
//!
//! Inside a Gramine enclave (manifest `sgx.remote_attestation = "dcap"`):
//!
//! ```text
//! attester                                     Gramine
//!    | read attestation_type        <--------  "dcap" (else "epid" or "none": refused)
//!    | write user_report_data (64)  -------->
//!    | read quote                   <--------  DCAP quote over the enclave's report
//!    | check the quote carries our report data
//! ```
//!
//! `/dev/attestation` is shared by every thread of the enclave, so another thread writing
//! `user_report_data` between our write and our read would hand us a quote for its data. The
//! attester therefore checks the quote's report data and, while it differs, writes and reads
//! again, up to [`GramineAttester::with_settle_timeout`]. The same loop lets an emulated interface
//! (a test fixture) produce the quote a moment after the write.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::evidence::Evidence;
use crate::tee::Tee;

use super::Attester;
use super::tsm::{DEFAULT_SETTLE_TIMEOUT, settle_until};

/// Where Gramine exposes its attestation pseudo-files.
pub const DEFAULT_ROOT: &str = "/dev/attestation";

/// The only `attestation_type` this attester accepts.
pub const DCAP: &str = "dcap";

/// Produces SGX DCAP quotes inside a Gramine enclave.
#[derive(Debug, Clone)]
pub struct GramineAttester {
    root: PathBuf,
    settle_timeout: Duration,
}

impl GramineAttester {
    /// Opens the interface at `root` (normally [`DEFAULT_ROOT`]).
    ///
    /// Fails unless `<root>/attestation_type` reads `dcap`; the error names the type found.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let found = attestation_type(&root)?;
        if found != DCAP {
            return Err(Error::NoTee(format!(
                "Gramine's {} says attestation_type is {found:?}, expected {DCAP:?}: set \
                 sgx.remote_attestation = \"dcap\" in the Gramine manifest",
                root.join("attestation_type").display()
            )));
        }
        Ok(GramineAttester {
            root,
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
        })
    }

    /// Sets how long to keep asking for a quote that carries our report data.
    pub fn with_settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout;
        self
    }

    /// The directory holding Gramine's attestation pseudo-files.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Reads `<root>/attestation_type`, trimmed (`"dcap"`, `"epid"` or `"none"` under Gramine).
pub fn attestation_type(root: &Path) -> Result<String> {
    let path = root.join("attestation_type");
    let raw = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
    Ok(String::from_utf8_lossy(&raw).trim().to_string())
}

impl Attester for GramineAttester {
    fn tee(&self) -> Tee {
        Tee::Sgx
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let user_report_data = self.root.join("user_report_data");
        let quote_path = self.root.join("quote");
        let mut last_seen: Option<[u8; 64]> = None;
        let quote = settle_until(self.settle_timeout, || {
            std::fs::write(&user_report_data, report_data)
                .map_err(|e| Error::io("writing", &user_report_data, e))?;
            let quote = match std::fs::read(&quote_path) {
                Ok(q) => q,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("reading", &quote_path, e)),
            };
            let claims = crate::verify::dcap::inspect(&quote)?;
            if claims.tee() != Tee::Sgx {
                return Err(Error::malformed(
                    "Gramine quote",
                    format!(
                        "{} holds a {} quote, expected sgx",
                        quote_path.display(),
                        claims.tee()
                    ),
                ));
            }
            if claims.report_data() == report_data {
                Ok(Some(quote))
            } else {
                last_seen = Some(*claims.report_data());
                Ok(None)
            }
        })?;
        match quote {
            Some(quote) => Ok(Evidence::new(Tee::Sgx, quote)),
            None => {
                let reason = match last_seen {
                    Some(got) => format!(
                        "report data: expected {}, got {} (another thread of the enclave may be \
                         writing user_report_data)",
                        hex::encode(report_data),
                        hex::encode(got)
                    ),
                    None => format!("{} never appeared", quote_path.display()),
                };
                Err(Error::malformed("Gramine quote", reason))
            }
        }
    }
}
