//! A coordinator the client verified: `$HOME/client/<address>/{root.pem, intermediate.pem,
//! coordinator.json}`, written by `confidant verify` and pinned by every later request.

use std::path::{Path, PathBuf};

use confidant_api::{CoordinatorState, Tee};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::error::{ClientError, Result};
use crate::trust::{Trust, read_certificates};

/// The name of the saved root CA file.
pub const ROOT_FILE: &str = "root.pem";
/// The name of the saved intermediate CA file.
pub const INTERMEDIATE_FILE: &str = "intermediate.pem";
/// The name of the saved verification record.
pub const INFO_FILE: &str = "coordinator.json";

/// `coordinator.json`: what was verified, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedInfo {
    /// The coordinator's address as given.
    pub address: String,
    /// The manifest hash its evidence bound, if any.
    pub manifest_hash: Option<String>,
    /// Its state then.
    pub state: CoordinatorState,
    /// Whether it ran on the SIMULATION TEE.
    pub simulation: bool,
    /// Its TEE.
    pub tee: Tee,
    /// Its launch measurement (hex).
    pub measurement: Option<String>,
    /// When it was verified (RFC 3339).
    pub verified_at: String,
}

/// A coordinator the client verified.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The directory.
    pub dir: PathBuf,
    /// The root CA.
    pub root: CertificateDer<'static>,
    /// The intermediate CA, when the coordinator sent one.
    pub intermediate: Option<CertificateDer<'static>>,
    /// `coordinator.json`, when present.
    pub info: Option<SavedInfo>,
}

/// Where a coordinator's verified state is kept.
pub fn saved_dir(home: &Path, address: &Address) -> PathBuf {
    home.join("client").join(address.dir_name())
}

impl Saved {
    /// The saved coordinator for `address`, or the advice to verify it first.
    pub fn load(home: &Path, address: &Address) -> Result<Saved> {
        let dir = saved_dir(home, address);
        let root_path = dir.join(ROOT_FILE);
        if !root_path.exists() {
            return Err(ClientError::Config(format!(
                "no verified coordinator at {0} ({1} does not exist): run `confidant verify --coordinator {0}` first",
                address.authority,
                root_path.display()
            )));
        }
        let root = read_certificates(&root_path)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ClientError::Config(format!("{}: no certificate", root_path.display()))
            })?;
        let inter_path = dir.join(INTERMEDIATE_FILE);
        let intermediate = if inter_path.exists() {
            read_certificates(&inter_path)?.into_iter().next()
        } else {
            None
        };
        let info_path = dir.join(INFO_FILE);
        let info = if info_path.exists() {
            let text = std::fs::read_to_string(&info_path).map_err(|source| ClientError::Io {
                path: info_path.display().to_string(),
                source,
            })?;
            Some(serde_json::from_str(&text).map_err(|e| {
                ClientError::Config(format!(
                    "{}: expected the record `confidant verify` writes: {e}",
                    info_path.display()
                ))
            })?)
        } else {
            None
        };
        Ok(Saved {
            dir,
            root,
            intermediate,
            info,
        })
    }

    /// The pinned trust of this coordinator.
    pub fn trust(&self) -> Trust {
        Trust::Pinned {
            root: self.root.clone(),
            intermediate: self.intermediate.clone(),
        }
    }

    /// Whether the coordinator said it runs on the simulation TEE when it was verified.
    pub fn simulation(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.simulation)
    }
}
