//! Where a volume's trusted state lives: the latest committed `(version, root)`.
//!
//! The backing directory is under the host's control, so it cannot say which index is current:
//! a host could put back an older, perfectly authentic copy. A [`RootStore`] keeps that state
//! somewhere the host cannot roll back — the coordinator (a store written against this trait),
//! or for tests and single machines a [`LocalRootStore`] file or a [`MemoryRootStore`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A volume's state: its version and the root hash (SHA-256 of the `index-<version>` object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    /// Monotonic volume version, starting at 1 when the volume is created.
    pub version: u64,
    /// SHA-256 of the index object of that version, hex in JSON.
    #[serde(with = "hex_root")]
    pub root: [u8; 32],
}

/// Hex (lowercase, 64 digits) serde for a 32-byte root, for `#[serde(with = ...)]`.
pub mod hex_root {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes 32 bytes as 64 lowercase hex digits.
    pub fn serialize<S: Serializer>(root: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(root))
    }

    /// Parses exactly 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| D::Error::custom(format!("root: expected 64 hex digits: {e}")))?;
        Ok(out)
    }
}

/// Why a root store could not load or commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootStoreError {
    /// Compare-and-swap failed: the store does not hold `expected` (another writer, or a stale
    /// mount). `found` is the version it holds (0 for none).
    #[error("expected version {expected}, the store holds version {found}")]
    Conflict {
        /// The version the committer believed current.
        expected: u64,
        /// The version the store holds.
        found: u64,
    },
    /// The store could not be reached or read (network, coordinator down, I/O).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The trusted holder of a volume's [`VolumeState`]. Object-safe; shared as
/// `Arc<dyn RootStore>` between the engine's threads.
///
/// Contract for implementations:
/// - `load` returns the last state `commit` accepted, or `None` if none was ever committed.
/// - `commit` is a compare-and-swap: it stores `new` only if the current version is
///   `expected_version` (0 meaning "nothing stored yet") and `new.version > expected_version`,
///   and returns only once `new` is durable. Otherwise it returns
///   [`RootStoreError::Conflict`] and changes nothing.
/// - If the store already holds exactly `new` (a retry after a lost answer), `commit` should
///   return `Ok`.
pub trait RootStore: Send + Sync {
    /// The latest committed state, if any.
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError>;
    /// Replaces state `expected_version` by `new`, atomically and durably.
    fn commit(&self, expected_version: u64, new: VolumeState) -> Result<(), RootStoreError>;
}

fn check_cas(
    current: Option<VolumeState>,
    expected: u64,
    new: VolumeState,
) -> Result<bool, RootStoreError> {
    let found = current.map_or(0, |s| s.version);
    if current == Some(new) {
        return Ok(false); // idempotent retry
    }
    if found != expected || new.version <= expected {
        return Err(RootStoreError::Conflict { expected, found });
    }
    Ok(true)
}

/// A root store in memory, for tests. Clones share the state.
#[derive(Debug, Default, Clone)]
pub struct MemoryRootStore {
    state: std::sync::Arc<Mutex<Option<VolumeState>>>,
}

impl MemoryRootStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overwrites the state (tests: simulate a store that was rolled back or replaced).
    pub fn set(&self, state: Option<VolumeState>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

impl RootStore for MemoryRootStore {
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError> {
        Ok(*self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn commit(&self, expected_version: u64, new: VolumeState) -> Result<(), RootStoreError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if check_cas(*s, expected_version, new)? {
            *s = Some(new);
        }
        Ok(())
    }
}

/// A root store in a small JSON file (`{"version": 5, "root": "<hex>"}`), replaced atomically
/// (temporary file, fsync, rename, fsync of the directory).
///
/// It protects against rollback only if the file is kept where the host cannot roll it back
/// (inside the TEE's own protected storage, or on a machine the host does not control). Kept
/// next to the backing directory on the host's disk, it protects integrity but not freshness:
/// the host can restore both together.
#[derive(Debug)]
pub struct LocalRootStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl LocalRootStore {
    /// A store at `path` (created on the first commit).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Option<VolumeState>, RootStoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| RootStoreError::Unavailable(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RootStoreError::Unavailable(format!(
                "{}: {e}",
                self.path.display()
            ))),
        }
    }

    fn write(&self, state: VolumeState) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&state).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

impl RootStore for LocalRootStore {
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    fn commit(&self, expected_version: u64, new: VolumeState) -> Result<(), RootStoreError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if check_cas(self.read()?, expected_version, new)? {
            self.write(new).map_err(|e| {
                RootStoreError::Unavailable(format!("{}: {e}", self.path.display()))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_is_compare_and_swap() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalRootStore::new(d.path().join("v.json"));
        assert_eq!(s.load().unwrap(), None);
        let a = VolumeState {
            version: 1,
            root: [1; 32],
        };
        s.commit(0, a).unwrap();
        s.commit(0, a).unwrap(); // idempotent retry
        let b = VolumeState {
            version: 2,
            root: [2; 32],
        };
        assert!(matches!(
            s.commit(0, b),
            Err(RootStoreError::Conflict {
                expected: 0,
                found: 1
            })
        ));
        s.commit(1, b).unwrap();
        assert_eq!(s.load().unwrap(), Some(b));
        let json = std::fs::read_to_string(s.path()).unwrap();
        assert!(json.contains(&hex::encode([2u8; 32])), "{json}");
    }
}
