//! The Confidant agent: what runs inside the TEE next to the app.
//!
//! - [`activation`]: the workload's key, CSR, report data and config id;
//! - [`memfs`]: the tmpfs that holds the decrypted image and rendered files;
//! - [`netns`]: the app's own network namespace, reachable only through the mesh;
//! - [`process`]: the app's argv, env, working directory and user from the image and manifest;
//! - [`runtime`]: the OCI runtime bundle (namespaces, seccomp, capabilities, mounts) and running
//!   it with runc or another OCI runtime.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activation;
pub mod error;
pub mod memfs;
pub mod netns;
pub mod process;
pub mod runtime;

pub use error::{AgentError, Result};
