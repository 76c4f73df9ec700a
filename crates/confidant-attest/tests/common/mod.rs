//! Shared helpers for tests over the real evidence in `testdata/attestation/`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Path of a file under the repository's `testdata/attestation/`.
pub(crate) fn vector(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel)
}

/// Reads a test vector.
pub(crate) fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vector(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// A time given as seconds since the epoch.
pub(crate) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// 2025-06-19T12:00:00Z: inside the validity window of the SGX and TDX sample collateral.
pub(crate) const SAMPLE_TIME: u64 = 1_750_334_400;
/// 2026-03-01T00:00:00Z: inside the validity window of the outdated TDX sample's collateral.
pub(crate) const OUTDATED_SAMPLE_TIME: u64 = 1_772_323_200;

/// A small deterministic PRNG (xorshift64*) so garbage inputs are reproducible.
pub(crate) struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random 64-bit value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` pseudo-random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
