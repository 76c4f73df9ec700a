//! A 256 MiB blob pushed to and pulled from a real registry in constant memory: the blob is
//! generated as it is read and never held whole, and the process's peak RSS must stay far below
//! its size. Its own test binary, so no other test shares the process whose memory is measured.

mod registry_support;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::io::Read;
use std::time::Instant;

use confidant_image::registry::{BlobPush, BlockingRegistryClient, RegistryOptions};
use registry_support::{Config, Registry, current_rss, peak_rss, reset_peak_rss};
use sha2::{Digest, Sha256};

const BLOB_SIZE: u64 = 256 << 20;
/// Allowed growth of the peak RSS while pushing or pulling: a quarter of the blob. Buffering the
/// blob whole would need all of it.
const MAX_GROWTH: u64 = BLOB_SIZE / 4;

/// `len` pseudo-random bytes, made as they are read: a 64 KiB block of xorshift output, each
/// copy stamped with its index so that no two blocks are equal (a reordered or repeated block
/// changes the digest).
struct PseudoRandom {
    remaining: u64,
    block: Vec<u8>,
    index: u64,
    pos: usize,
}

impl PseudoRandom {
    fn new(len: u64) -> Self {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let block = (0..64 * 1024 / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        PseudoRandom {
            remaining: len,
            block,
            index: 0,
            pos: 64 * 1024,
        }
    }
}

impl Read for PseudoRandom {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.pos == self.block.len() {
            self.block[..8].copy_from_slice(&self.index.to_le_bytes());
            self.index += 1;
            self.pos = 0;
        }
        let n = buf
            .len()
            .min(self.block.len() - self.pos)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `f` and returns its result and how much the peak RSS grew above the RSS before it.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = if reset_peak_rss() {
        current_rss()
    } else {
        peak_rss()
    };
    let out = f();
    (out, peak_rss().saturating_sub(before))
}

#[test]
fn pushes_and_pulls_a_256_mib_blob_in_constant_memory() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = BlockingRegistryClient::new(RegistryOptions {
        plain_http: true,
        ..Default::default()
    })
    .unwrap();
    let repo = registry.image("confidant/large:latest");

    let mut hasher = Sha256::new();
    let hashed = std::io::copy(&mut PseudoRandom::new(BLOB_SIZE), &mut hasher).unwrap();
    assert_eq!(hashed, BLOB_SIZE);
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));

    let started = Instant::now();
    let (pushed, push_growth) =
        peak_growth(|| client.put_blob(&repo, &digest, BLOB_SIZE, PseudoRandom::new(BLOB_SIZE)));
    assert_eq!(pushed.unwrap(), BlobPush::Uploaded);
    let push_time = started.elapsed();
    assert_eq!(
        std::fs::metadata(registry.blob_data_path(&digest))
            .unwrap()
            .len(),
        BLOB_SIZE
    );

    let started = Instant::now();
    let (pulled, pull_growth) =
        peak_growth(|| client.get_blob(&repo, &digest, Some(BLOB_SIZE), &mut std::io::sink()));
    assert_eq!(pulled.unwrap(), BLOB_SIZE);
    let pull_time = started.elapsed();

    eprintln!(
        "256 MiB blob: push {:.1}s, peak RSS +{:.1} MiB; pull {:.1}s, peak RSS +{:.1} MiB; VmHWM now {:.1} MiB",
        push_time.as_secs_f64(),
        mib(push_growth),
        pull_time.as_secs_f64(),
        mib(pull_growth),
        mib(peak_rss())
    );
    assert!(
        push_growth < MAX_GROWTH,
        "push raised peak RSS by {:.1} MiB (limit {:.1})",
        mib(push_growth),
        mib(MAX_GROWTH)
    );
    assert!(
        pull_growth < MAX_GROWTH,
        "pull raised peak RSS by {:.1} MiB (limit {:.1})",
        mib(pull_growth),
        mib(MAX_GROWTH)
    );
}
