//! Shared helpers for tests over the real evidence in `testdata/attestation/`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Path of a file under the repository's `testdata/attestation/`.
pub fn vector(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel)
}

/// Reads a test vector.
pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vector(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// A time given as seconds since the epoch.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
