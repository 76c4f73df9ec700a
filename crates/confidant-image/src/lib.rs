//! OCI images for Confidant.
//!
//! - [`crypt`]: ocicrypt-compatible layer encryption (`AES_256_CTR_HMAC_SHA256`), JWE key
//!   wrapping for recipients, and the `provider.confidant` wrapping for the coordinator.
//! - [`unpack`]: unpacking layers into a directory so that nothing is ever written outside it.
//!
//! # Features
//!
//! - `registry` (default in this crate's own manifest, off in the workspace's dependency
//!   entry): the OCI distribution client (`registry`, `remote`: reqwest on rustls, tokio) and the
//!   skopeo-style transport names that include `docker://` (`transport`). Without it the crate
//!   still reads and writes OCI layouts and docker archives, copies, inspects, encrypts,
//!   decrypts and unpacks them; the coordinator uses it so, for the layer crypto alone, and so
//!   links no HTTP client.

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
#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "registry")]
pub mod remote;
pub mod rootfs;
pub mod source;
#[cfg(feature = "registry")]
pub mod transport;
pub mod unpack;

pub use error::{Error, Result};
