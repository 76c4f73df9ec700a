//! Protected volumes: encrypted, integrity- and rollback-protected files that unmodified apps
//! read and write through a FUSE mount, while the host sees only ciphertext.
//!
//! - [`format`](mod@format): the on-disk objects (`volume.cfv`, index, meta objects) and their parsers.
//! - [`Volume`]: the engine — tree, chunked AES-256-GCM file data, hash chain, commit protocol.
//! - [`roots`]: the trusted `(version, root)` of a volume ([`RootStore`]) and two stores.
//! - [`fuse`]: the FUSE adapter over a [`Volume`].
//! - [`mountinfo`]: this process's mount table (`/proc/self/mountinfo`), escapes decoded.
//!
//! The byte layouts, key derivation and what is *not* protected are in
//! `docs/formats/volume.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod crypto;
mod error;
pub mod format;
pub mod fuse;
pub mod mountinfo;
pub mod roots;
mod volume;

pub use crypto::{CryptoFailure, VolumeKey};
pub use error::{Error, Result};
pub use fuse::{MountHandle, MountOptions, mount, mount_foreground};
pub use roots::{LocalRootStore, MemoryRootStore, RootStore, RootStoreError, VolumeState};
pub use volume::{
    Attributes, DirEntry, FileKind, HEADER_FILE, ImportStats, MAX_CHUNK_WRITES_PER_FILE,
    MAX_FILE_SIZE, ROOT_INO, SetAttributes, StatFs, VerifyProblem, VerifyReport, Volume,
    VolumeInfo,
};
