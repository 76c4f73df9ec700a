//! The coordinator's errors, each with the API's error code (and so its HTTP status).

pub use confidant_api::{ErrorCode, ErrorDetails};

use crate::store::StoreError;

/// The class of an error, as its HTTP status says it: what the caller did wrong (or that the
/// coordinator failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request (400).
    Malformed,
    /// No or unknown client certificate (401).
    Unauthenticated,
    /// The caller's roles or the update policy do not allow it (403).
    Forbidden,
    /// No such workload, secret, package or version (404).
    NotFound,
    /// The coordinator's state does not allow it (409).
    Conflict,
    /// Evidence, nonce, binding, manifest or template rejected (422).
    Rejected,
    /// The coordinator failed (500).
    Internal,
}

/// An error of the coordinator's logic.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CoreError {
    /// A stable machine-readable code (`evidence_rejected`, `nonce`, …); its HTTP status is
    /// [`ErrorCode::status`].
    pub code: ErrorCode,
    /// The request field or manifest path at fault, if any.
    pub field: Option<String>,
    /// What was expected and what was found.
    pub message: String,
    /// Structured details (`mismatches`, `errors`).
    pub details: Option<Box<ErrorDetails>>,
}

impl CoreError {
    /// An error with `code`, naming `field`.
    pub fn new(code: ErrorCode, field: Option<&str>, message: impl Into<String>) -> CoreError {
        CoreError {
            code,
            field: field.map(str::to_owned),
            message: message.into(),
            details: None,
        }
    }

    /// The error's class (from its code).
    pub fn kind(&self) -> ErrorKind {
        match self.code.status() {
            400 => ErrorKind::Malformed,
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            422 => ErrorKind::Rejected,
            _ => ErrorKind::Internal,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: &str) -> CoreError {
        self.field = Some(field.to_string());
        self
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: ErrorDetails) -> CoreError {
        self.details = Some(Box::new(details));
        self
    }

    pub(crate) fn malformed(field: &str, message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorCode::Malformed, Some(field), message)
    }

    pub(crate) fn not_found(field: &str, message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorCode::NotFound, Some(field), message)
    }

    pub(crate) fn wrong_state(state: &str, wanted: &str) -> CoreError {
        CoreError::new(
            ErrorCode::WrongState,
            None,
            format!("the coordinator is {state}; this needs it {wanted}"),
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorCode::Internal, None, message)
    }

    pub(crate) fn unauthenticated(action: &str) -> CoreError {
        CoreError::new(
            ErrorCode::Unauthenticated,
            None,
            format!(
                "{action} needs a client certificate of a manifest user; none or an unknown one was presented"
            ),
        )
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorCode::Forbidden, None, message)
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> CoreError {
        CoreError::internal(format!("state store: {e}"))
    }
}

/// A result of the coordinator's logic.
pub type CoreResult<T> = std::result::Result<T, CoreError>;
