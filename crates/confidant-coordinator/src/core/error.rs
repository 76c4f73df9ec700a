//! The coordinator's errors, each with the HTTP-like class the API maps it to.

use serde_json::Value;

use crate::store::StoreError;

/// The class of an error: what the caller did wrong (or that the coordinator failed).
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
    /// Its class.
    pub kind: ErrorKind,
    /// A stable machine-readable code (`evidence_rejected`, `nonce`, …).
    pub code: &'static str,
    /// The request field or manifest path at fault, if any.
    pub field: Option<String>,
    /// What was expected and what was found.
    pub message: String,
    /// Structured details (`mismatches`, `errors`).
    pub details: Option<Box<Value>>,
}

impl CoreError {
    /// An error of `kind` with `code`, naming `field`.
    pub fn new(
        kind: ErrorKind,
        code: &'static str,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> CoreError {
        CoreError {
            kind,
            code,
            field: field.map(str::to_owned),
            message: message.into(),
            details: None,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: &str) -> CoreError {
        self.field = Some(field.to_string());
        self
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> CoreError {
        self.details = Some(Box::new(details));
        self
    }

    pub(crate) fn malformed(field: &str, message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorKind::Malformed, "malformed", Some(field), message)
    }

    pub(crate) fn not_found(field: &str, message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorKind::NotFound, "not_found", Some(field), message)
    }

    pub(crate) fn wrong_state(state: &str, wanted: &str) -> CoreError {
        CoreError::new(
            ErrorKind::Conflict,
            "wrong_state",
            None,
            format!("the coordinator is {state}; this needs it {wanted}"),
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorKind::Internal, "internal", None, message)
    }

    pub(crate) fn unauthenticated(action: &str) -> CoreError {
        CoreError::new(
            ErrorKind::Unauthenticated,
            "unauthenticated",
            None,
            format!(
                "{action} needs a client certificate of a manifest user; none or an unknown one was presented"
            ),
        )
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> CoreError {
        CoreError::new(ErrorKind::Forbidden, "forbidden", None, message)
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> CoreError {
        CoreError::internal(format!("state store: {e}"))
    }
}

/// A result of the coordinator's logic.
pub type CoreResult<T> = std::result::Result<T, CoreError>;
