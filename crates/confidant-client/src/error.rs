//! What can go wrong talking to the coordinator: no answer (transport), a refusal or failure
//! (the API's error body), an answer that is not what the API says, or a local problem.

use std::fmt;

use confidant_api::{ErrorBody, ErrorCode, ErrorDetails};

/// An error of the coordinator client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer from the coordinator: connection, TLS or timeout.
    #[error("{0}")]
    Transport(String),
    /// The coordinator answered with an error (non-2xx).
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The coordinator answered 2xx, but not with what the API promises; names the field.
    #[error("{what}: the answer is not the API's: {problem}")]
    Answer {
        /// The request (`GET https://…/api/v1/status`).
        what: String,
        /// What was wrong, naming the field (`activation.chain: missing field`).
        problem: String,
    },
    /// A local problem: a certificate or key that cannot be used, an address that is not one.
    #[error("{0}")]
    Config(String),
    /// Reading a local file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> ClientError {
        ClientError::Api(Box::new(e))
    }
}

impl ClientError {
    /// The API error, when the coordinator answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the coordinator answered `code`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.api().is_some_and(|e| e.code == code)
    }
}

/// A result of the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The coordinator refused or failed a request: `{"error": {code, message, field, details}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The error code; [`ErrorCode::Unknown`] for a code this client does not know, or a body
    /// that is not the API's error form (a proxy's answer).
    pub code: ErrorCode,
    /// What went wrong, in words.
    pub message: String,
    /// The request field (or manifest path) at fault.
    pub field: Option<String>,
    /// Structured details (`errors`, `mismatches`, a volume's current state).
    pub details: Option<ErrorDetails>,
}

impl ApiError {
    /// Parses an error answer; a body that is not the API's error form still gives an error
    /// (code [`ErrorCode::Unknown`], the body's first 500 characters as the message).
    pub fn from_answer(status: u16, body: &[u8]) -> ApiError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => ApiError {
                status,
                code: b.error.code,
                message: b.error.message,
                field: b.error.field,
                details: b.error.details,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(500).collect();
                ApiError {
                    status,
                    code: ErrorCode::Unknown,
                    message: if text.is_empty() {
                        "(no body)".into()
                    } else {
                        text
                    },
                    field: None,
                    details: None,
                }
            }
        }
    }

    /// A refusal (4xx), as opposed to a server failure (5xx).
    pub fn is_refusal(&self) -> bool {
        (400..500).contains(&self.status)
    }

    /// The code as printed: the API's, or `http_<status>` for an answer without one.
    pub fn code_text(&self) -> String {
        match self.code {
            ErrorCode::Unknown => format!("http_{}", self.status),
            c => c.as_str().to_string(),
        }
    }

    /// `details.errors` and `details.mismatches`, one line each.
    pub fn detail_lines(&self) -> Vec<String> {
        self.details
            .as_ref()
            .map(ErrorDetails::lines)
            .unwrap_or_default()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.is_refusal() {
            "the coordinator refused the request"
        } else {
            "the coordinator failed"
        };
        write!(
            f,
            "{who} ({} {}): {}",
            self.status,
            self.code_text(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_parse_with_details() {
        let body = br#"{"error":{"code":"invalid_manifest","message":"2 errors","field":null,
            "details":{"errors":["a: x","b: y"],"mismatches":[{"field":"m","expected":"1","got":"2"}]}}}"#;
        let e = ApiError::from_answer(422, body);
        assert!(e.is_refusal());
        assert_eq!(e.code, ErrorCode::InvalidManifest);
        assert_eq!(e.detail_lines(), ["a: x", "b: y", "m: expected 1, got 2"]);
        let e = ApiError::from_answer(502, b"bad gateway");
        assert!(!e.is_refusal());
        assert_eq!(e.code_text(), "http_502");
        assert_eq!(e.message, "bad gateway");
        // A newer coordinator's code is kept apart, with its status.
        let e = ApiError::from_answer(409, br#"{"error":{"code":"later","message":"m"}}"#);
        assert_eq!((e.code, e.status), (ErrorCode::Unknown, 409));
    }
}
