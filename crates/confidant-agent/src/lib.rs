//! The Confidant agent: what runs inside the TEE next to the app.
//!
//! The run lifecycle is a set of steps a caller composes; [`lifecycle::run`] composes all of
//! them for `confidant run`, and a Kubernetes init container or mesh sidecar takes the ones it
//! needs:
//!
//! - [`activation`]: the workload's key, CSR, report data and config id, the attester, and
//!   [`activation::activate`];
//! - [`image`]: the image's manifest, and its layers decrypted with the released keys, verified
//!   and unpacked;
//! - [`files`]: the rendered files and the workload's identity, written where the app reads them;
//! - [`credentials`]: a pod's credentials, written by its init container for the other
//!   containers and read back by the mesh sidecar;
//! - [`volumes`]: protected volumes mounted as their policy says, their roots committed to the
//!   coordinator;
//! - [`mesh`]: the mutual-TLS proxy with the activation's identity;
//! - [`lifecycle`]: all of the above and the app under the OCI runtime, torn down on every path;
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
pub mod credentials;
pub mod error;
pub mod files;
pub mod image;
pub mod lifecycle;
pub mod memfs;
pub mod mesh;
pub mod mountinfo;
pub mod netns;
pub mod process;
pub mod run_record;
pub mod runtime;
pub mod stale;
pub mod volumes;

pub use error::{AgentError, Result};
