//! Errors of the image library.

use std::path::PathBuf;

/// What can go wrong reading, writing, encrypting, decrypting or unpacking images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that is not what it claims to be (a manifest, a tar header, an annotation, …).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed.
        what: String,
        /// What was expected and what was found.
        reason: String,
    },
    /// Content whose digest, HMAC or size does not match what it was supposed to be: tampering,
    /// truncation or a wrong key. Nothing of it was committed.
    #[error("integrity check failed for {what}: expected {expected}, got {got}")]
    Integrity {
        /// The blob or layer concerned.
        what: String,
        /// The expected value.
        expected: String,
        /// The value found.
        got: String,
    },
    /// None of the keys given can unwrap the layer key, or a key is unusable.
    #[error("key: {0}")]
    Key(String),
    /// A tar entry that would write outside the target or break its rules.
    #[error("unsafe archive entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A limit (total unpacked bytes, entry count, path length) was reached.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Something the format allows but this implementation does not do (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A registry answered with an error or could not be reached.
    #[error("registry {registry}: {reason}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What went wrong, with the HTTP status where there was one.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Malformed`].
    pub fn malformed(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Integrity`].
    pub fn integrity(
        what: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Integrity {
            what: what.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::UnsafeEntry`].
    pub fn unsafe_entry(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::UnsafeEntry {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
