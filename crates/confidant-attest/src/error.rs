//! Errors of the attestation library.

use std::path::PathBuf;

use crate::tee::Tee;

/// What can go wrong while parsing, verifying or producing evidence.
///
/// The split matters to callers: [`Error::Malformed`] and [`Error::MissingEndorsement`] mean the
/// input could not be judged at all (the CLI exits 2), while [`Error::Rejected`] means the evidence
/// was judged and found not authentic (the CLI exits 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not evidence of the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed (`"TDX quote"`, `"evidence envelope"`, …).
        what: &'static str,
        /// What was expected and what was found.
        reason: String,
    },
    /// The evidence needs an endorsement (collateral, VCEK, …) that was not given.
    #[error("{tee} evidence needs {what}: {hint}")]
    MissingEndorsement {
        /// The TEE whose evidence it is.
        tee: Tee,
        /// The missing piece.
        what: &'static str,
        /// How to supply it.
        hint: &'static str,
    },
    /// The evidence parsed but is not authentic: a signature, certificate chain, revocation or
    /// TCB check failed.
    #[error("{tee} evidence rejected: {reason}")]
    Rejected {
        /// The TEE whose evidence it is.
        tee: Tee,
        /// Why, in words that name the failed check.
        reason: String,
    },
    /// No verifier is configured for this TEE (for `sim`: no trusted platform key).
    #[error("{tee} evidence refused: {reason}")]
    NotTrusted {
        /// The TEE whose evidence it is.
        tee: Tee,
        /// Why it cannot be trusted here.
        reason: String,
    },
    /// No usable TEE was found on this machine.
    #[error("no TEE found: {0}")]
    NoTee(String),
    /// A file or device could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`"reading"`, `"writing"`, …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cryptographic operation failed for a reason other than bad evidence.
    #[error("crypto: {0}")]
    Crypto(String),
}

impl Error {
    /// Shorthand for [`Error::Malformed`].
    pub fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Rejected`].
    pub fn rejected(tee: Tee, reason: impl Into<String>) -> Self {
        Error::Rejected {
            tee,
            reason: reason.into(),
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

    /// True when the evidence was judged and found not authentic (as opposed to unreadable).
    pub fn is_rejection(&self) -> bool {
        matches!(self, Error::Rejected { .. } | Error::NotTrusted { .. })
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
