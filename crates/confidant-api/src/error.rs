//! The API's error answer: `{"error": {"code", "message", "field", "details"}}` and its codes.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. Each code belongs to exactly one HTTP status
/// ([`ErrorCode::status`]); clients match on the code, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is not what the API takes (JSON, base64, hex, PEM, CSR, unknown field).
    Malformed,
    /// 401: no client certificate, or one no manifest user has.
    Unauthenticated,
    /// 403: the caller's roles, the update policy or the package do not allow it.
    Forbidden,
    /// 404: no such endpoint, workload, secret, package, volume or manifest version.
    NotFound,
    /// 405: the endpoint exists but not with this method.
    MethodNotAllowed,
    /// 413: the request body is larger than the API takes.
    PayloadTooLarge,
    /// 408: the request body did not arrive within the body timeout; the connection is closed.
    RequestTimeout,
    /// 503: the coordinator holds as many request bodies as its memory budget allows; retry
    /// after the `Retry-After` seconds.
    Overloaded,
    /// 409: the request conflicts with the coordinator's state.
    Conflict,
    /// 409: the coordinator is in the wrong state (no manifest yet, or in recovery).
    WrongState,
    /// 409: the workload's `max_activations` is reached.
    ActivationsExhausted,
    /// 409: a template cannot render yet (a `plain` secret it names is not set).
    Template,
    /// 409: a volume commit from a version that is no longer the current one.
    VolumeVersionConflict,
    /// 409: a reset of a volume that is not `reinitializable`.
    ReinitializeRefused,
    /// 409: an `ephemeral` volume has no state.
    EphemeralVolume,
    /// 409: a volume's `key_secret` is not set (or not 32 bytes).
    VolumeKeyUnset,
    /// 422: the evidence does not verify or does not match the reference values.
    EvidenceRejected,
    /// 422: the nonce is unknown, expired or spent.
    Nonce,
    /// 422: the evidence's report data does not bind the nonce and the CSR's key.
    Binding,
    /// 422: the manifest is invalid.
    InvalidManifest,
    /// 422: a layer key does not unwrap with the coordinator's image key.
    ImageKey,
    /// 422: a recovery share does not combine or does not open the state.
    Share,
    /// 422: a volume's new version is not `expected_version + 1`.
    InvalidVolumeVersion,
    /// 500: the coordinator failed (store, sealing); the message says which.
    Internal,
    /// A code this client does not know (a newer coordinator); the HTTP status still tells
    /// its class.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code the coordinator answers with (all but [`ErrorCode::Unknown`]).
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::Malformed,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::Overloaded,
        ErrorCode::Conflict,
        ErrorCode::WrongState,
        ErrorCode::ActivationsExhausted,
        ErrorCode::Template,
        ErrorCode::VolumeVersionConflict,
        ErrorCode::ReinitializeRefused,
        ErrorCode::EphemeralVolume,
        ErrorCode::VolumeKeyUnset,
        ErrorCode::EvidenceRejected,
        ErrorCode::Nonce,
        ErrorCode::Binding,
        ErrorCode::InvalidManifest,
        ErrorCode::ImageKey,
        ErrorCode::Share,
        ErrorCode::InvalidVolumeVersion,
        ErrorCode::Internal,
    ];

    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Malformed => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Overloaded => 503,
            ErrorCode::Conflict
            | ErrorCode::WrongState
            | ErrorCode::ActivationsExhausted
            | ErrorCode::Template
            | ErrorCode::VolumeVersionConflict
            | ErrorCode::ReinitializeRefused
            | ErrorCode::EphemeralVolume
            | ErrorCode::VolumeKeyUnset => 409,
            ErrorCode::EvidenceRejected
            | ErrorCode::Nonce
            | ErrorCode::Binding
            | ErrorCode::InvalidManifest
            | ErrorCode::ImageKey
            | ErrorCode::Share
            | ErrorCode::InvalidVolumeVersion => 422,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
        }
    }

    /// The code of an error answer with `status` that carries no code of its own (the HTTP
    /// framework's answers: 405, 413, an undecodable path or query): the status's generic code.
    pub fn for_status(status: u16) -> ErrorCode {
        match status {
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            408 => ErrorCode::RequestTimeout,
            503 => ErrorCode::Overloaded,
            400..=499 => ErrorCode::Malformed,
            _ => ErrorCode::Internal,
        }
    }

    /// The code as it appears on the wire (`evidence_rejected`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Conflict => "conflict",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::ActivationsExhausted => "activations_exhausted",
            ErrorCode::Template => "template",
            ErrorCode::VolumeVersionConflict => "volume_version_conflict",
            ErrorCode::ReinitializeRefused => "reinitialize_refused",
            ErrorCode::EphemeralVolume => "ephemeral_volume",
            ErrorCode::VolumeKeyUnset => "volume_key_unset",
            ErrorCode::EvidenceRejected => "evidence_rejected",
            ErrorCode::Nonce => "nonce",
            ErrorCode::Binding => "binding",
            ErrorCode::InvalidManifest => "invalid_manifest",
            ErrorCode::ImageKey => "image_key",
            ErrorCode::Share => "share",
            ErrorCode::InvalidVolumeVersion => "invalid_volume_version",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every non-2xx answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorObject,
}

/// The `error` member of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorObject {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// What was expected and what was found, in words.
    pub message: String,
    /// The request field (or manifest path) at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Structured details of some codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
}

/// Structured details: every problem of an invalid manifest, every reference value an
/// evidence did not match, or the current state of a volume a stale commit lost against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetails {
    /// `invalid_manifest`: one `path: message` per problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// `evidence_rejected`: every reference value that did not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
    /// `volume_version_conflict`: the volume's current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// `volume_version_conflict`: the volume's current root (64 hex digits), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_root: Option<String>,
}

impl ErrorDetails {
    /// `errors` and `mismatches`, one line each (`field: expected …, got …`).
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.errors.clone();
        out.extend(
            self.mismatches
                .iter()
                .map(|m| format!("{}: expected {}, got {}", m.field, m.expected, m.got)),
        );
        out
    }
}

/// A reference value the evidence did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Mismatch {
    /// The claim, with its path (`tdx.rtmr_3`, `tcb_status`).
    pub field: String,
    /// What the reference values accept.
    pub expected: String,
    /// What the evidence claims.
    pub got: String,
}

impl From<&confidant_attest::reference::Mismatch> for Mismatch {
    fn from(m: &confidant_attest::reference::Mismatch) -> Mismatch {
        Mismatch {
            field: m.field.clone(),
            expected: m.expected.clone(),
            got: m.got.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept_apart() {
        for code in ErrorCode::ALL {
            let text = serde_json::to_string(&code).unwrap();
            assert_eq!(text, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&text).unwrap(), code);
        }
        let code: ErrorCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
        // A framework's answer gets the code of its status, and that code the same status.
        for status in [400, 401, 403, 404, 405, 408, 409, 413, 503] {
            assert_eq!(ErrorCode::for_status(status).status(), status);
        }
        assert_eq!(ErrorCode::for_status(415), ErrorCode::Malformed);
        assert_eq!(ErrorCode::for_status(502), ErrorCode::Internal);
    }

    #[test]
    fn an_error_body_parses_with_its_details() {
        let body = br#"{"error":{"code":"evidence_rejected","message":"2 mismatches",
            "field":"evidence","details":{"mismatches":[{"field":"m","expected":"1","got":"2"}]}}}"#;
        let e: ErrorBody = serde_json::from_slice(body).unwrap();
        assert_eq!(e.error.code, ErrorCode::EvidenceRejected);
        assert_eq!(e.error.code.status(), 422);
        assert_eq!(e.error.field.as_deref(), Some("evidence"));
        assert_eq!(e.error.details.unwrap().lines(), ["m: expected 1, got 2"]);
    }
}
