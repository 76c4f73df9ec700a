//! OCI images for Confidant.
//!
//! - [`crypt`]: ocicrypt-compatible layer encryption (`AES_256_CTR_HMAC_SHA256`), JWE key
//!   wrapping for recipients, and the `provider.confidant` wrapping for the coordinator.
//! - [`unpack`]: unpacking layers into a directory so that nothing is ever written outside it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod archive;
pub mod compression;
pub mod copy;
pub mod crypt;
pub mod digest;
pub mod error;
pub mod inspect;
pub mod layout;
pub mod registry;
pub mod remote;
pub mod rootfs;
pub mod source;
pub mod transport;
pub mod unpack;

pub use error::{Error, Result};
