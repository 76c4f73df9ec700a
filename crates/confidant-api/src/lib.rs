//! The Confidant coordinator's wire protocol: every request and answer of `/api/v1`, the error
//! body with its typed codes, and the OpenAPI document generated from these types.
//!
//! The coordinator serializes these types and every client (the CLI, the agent, tests,
//! benchmarks) deserializes them, so a missing or mistyped field in an answer is an error that
//! names the field, and the served OpenAPI document is the one these types describe. Secret
//! material in answers (keys, rendered parameters, layer keys) sits in [`SecretString`], zeroed
//! when dropped. See `docs/formats/coordinator-api.md` for what each message means.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod messages;
pub mod openapi;
mod secret;

pub use confidant_attest::{Evidence, Tee};
pub use error::{ErrorBody, ErrorCode, ErrorDetails, ErrorObject, Mismatch};
pub use messages::*;
pub use secret::SecretString;

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1";
/// The coordinator's default port.
pub const DEFAULT_PORT: u16 = 4433;
/// The largest request body the coordinator accepts.
pub const MAX_BODY: usize = 4 << 20;
