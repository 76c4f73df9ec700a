//! The Confidant agent: what runs inside the TEE next to the app.
//!
//! - [`activation`]: the workload's key, CSR, report data and config id;
//! - [`memfs`]: the tmpfs that holds the decrypted image and rendered files;
//! - [`netns`]: the app's own network namespace, reachable only through the mesh;
//! - [`mountinfo`]: the mount table, to find what is mounted under a run directory;
//! - [`process`]: the app's argv, env, working directory and user from the image and manifest;
//! - [`runtime`]: the OCI runtime bundle (namespaces, seccomp, capabilities, mounts) and running
//!   it with runc or another OCI runtime;
//! - [`run_record`]: who owns a run directory and what a cleanup must undo;
//! - [`stale`]: cleaning up after runs whose agent was killed.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activation;
pub mod error;
pub mod memfs;
pub mod mountinfo;
pub mod netns;
pub mod process;
pub mod run_record;
pub mod runtime;
pub mod stale;

pub use error::{AgentError, Result};
