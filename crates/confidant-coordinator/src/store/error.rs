//! Store errors.

use std::path::PathBuf;

/// A store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong in the store. Each variant says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data key could not be unsealed: the state was sealed by another TEE, another
    /// enclave identity or another simulation platform key, or the wrapped key was damaged.
    /// The coordinator enters recovery on this error.
    #[error("state is sealed: cannot unseal the data key with {sealer}: {reason}")]
    Sealed {
        /// The sealer that tried, as [`crate::store::Sealer::kind`] names it.
        sealer: String,
        /// Why it failed.
        reason: String,
    },

    /// A data key given for recovery is not the one the state is encrypted under.
    #[error("the given data key does not decrypt this state (its key check fails)")]
    WrongDataKey,

    /// A stored value (or metadata record) failed authentication or is malformed: the file was
    /// altered, or a value was moved to another key.
    #[error("integrity error in {table}/{key}: {reason}")]
    Integrity {
        /// The table holding the damaged value.
        table: String,
        /// The key of the damaged value.
        key: String,
        /// What was expected and what was found.
        reason: String,
    },

    /// A compare-and-swap found a value other than the expected one.
    #[error("conflict on {table}/{key}: expected {expected}, found {found}")]
    Conflict {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The expected value, described (length and digest prefix, never content).
        expected: String,
        /// The current value, described.
        found: String,
    },

    /// A table name or key is not acceptable.
    #[error("invalid {what} name {name:?}: expected {expected}")]
    InvalidName {
        /// `table` or `key`.
        what: &'static str,
        /// The name given.
        name: String,
        /// What a valid name looks like.
        expected: String,
    },

    /// Sealing the data key failed.
    #[error("sealing the data key with {sealer} failed: {reason}")]
    Seal {
        /// The sealer.
        sealer: String,
        /// Why.
        reason: String,
    },

    /// A cryptographic primitive failed (random generation, encryption).
    #[error("crypto error: {0}")]
    Crypto(String),

    /// The backend (database) failed.
    #[error("{action} {path}: {reason}")]
    Backend {
        /// What the store was doing.
        action: &'static str,
        /// The database file.
        path: PathBuf,
        /// The backend's error.
        reason: String,
    },

    /// Reading or writing the state directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
