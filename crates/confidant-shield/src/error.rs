//! The crate's error type, with the errno each error maps to at the FUSE boundary.

use std::path::PathBuf;

use rustix::io::Errno;

use crate::crypto::CryptoFailure;
use crate::format::FormatError;
use crate::roots::RootStoreError;

/// Everything the engine can refuse, with what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on the backing directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The backing file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The header's key check failed: this is not the key of this volume.
    #[error("wrong key for volume {volume} (or its header was modified)")]
    WrongKey {
        /// Volume id (hex).
        volume: String,
    },
    /// The backing directory does not hold the trusted state (rolled back, or ahead of the
    /// store).
    #[error(
        "volume {volume}: the backing directory holds {found} but the trusted state is version {trusted} (rolled back?)"
    )]
    RolledBack {
        /// Volume id (hex).
        volume: String,
        /// What the directory holds (e.g. `index version 3`).
        found: String,
        /// The version the root store holds.
        trusted: u64,
    },
    /// Tampering or corruption detected in a backing object.
    #[error("volume {volume}: {object}: {detail}")]
    Tampered {
        /// Volume id (hex).
        volume: String,
        /// The object or file (`index-5`, `m/…`, or the file's path in the volume and chunk).
        object: String,
        /// What was wrong.
        detail: String,
    },
    /// A malformed object.
    #[error("volume {volume}: {source}")]
    Format {
        /// Volume id (hex), or the directory when the header itself is malformed.
        volume: String,
        /// Which object and what was wrong.
        #[source]
        source: FormatError,
    },
    /// The root store refused or could not be reached.
    #[error("volume {volume}: root store: {source}")]
    RootStore {
        /// Volume id (hex).
        volume: String,
        /// The store's error.
        #[source]
        source: RootStoreError,
    },
    /// The cryptographic library failed (CSPRNG, key derivation, sealing); nothing was written
    /// with a weaker key or nonce.
    #[error(transparent)]
    Crypto(#[from] CryptoFailure),
    /// A POSIX-level refusal (no such entry, not empty, read-only, …).
    #[error("{op}: {errno}")]
    Posix {
        /// The operation (`lookup`, `rmdir`, …).
        op: &'static str,
        /// The errno to return.
        errno: Errno,
    },
}

impl Error {
    /// The errno this error maps to: the POSIX one for [`Error::Posix`], `EIO` for everything
    /// else (tampering, rollback, I/O, root store), `EACCES` for a wrong key.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Posix { errno, .. } => errno.raw_os_error(),
            Error::WrongKey { .. } => Errno::ACCESS.raw_os_error(),
            Error::Io { source, .. }
                if source.raw_os_error() == Some(Errno::NOSPC.raw_os_error()) =>
            {
                Errno::NOSPC.raw_os_error()
            }
            _ => Errno::IO.raw_os_error(),
        }
    }

    pub(crate) fn posix(op: &'static str, errno: Errno) -> Self {
        Error::Posix { op, errno }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
