//! Layer cipher throughput, single-threaded against the two-thread pipeline, in memory (no disk):
//!
//! ```text
//! cargo test --release -p confidant-image --test crypt_throughput -- --ignored --nocapture
//! ```
//!
//! `CONFIDANT_BENCH_MIB` sets the layer size (default 256). Ignored by default: it measures,
//! it does not check behaviour (the equality of both paths is checked in `crypt_cipher`).

use std::io;
use std::time::Instant;

use confidant_image::crypt::cipher::{
    LayerKey, decrypt_to, decrypt_to_pipelined, encrypt_to, encrypt_to_pipelined,
};

fn mib_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds
}

/// Best of `runs` timings of `f`, in seconds.
fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn layer_cipher_throughput_single_and_pipelined() {
    let mib: usize = std::env::var("CONFIDANT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let len = mib * 1024 * 1024;
    let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let key = LayerKey::generate().unwrap();
    let mut ciphertext = Vec::with_capacity(len);
    let hmac = encrypt_to(plaintext.as_slice(), &mut ciphertext, &key)
        .unwrap()
        .hmac;

    let enc1 = best_of(3, || {
        encrypt_to(plaintext.as_slice(), io::sink(), &key).unwrap();
    });
    let enc2 = best_of(3, || {
        encrypt_to_pipelined(plaintext.as_slice(), io::sink(), &key).unwrap();
    });
    let dec1 = best_of(3, || {
        decrypt_to(ciphertext.as_slice(), io::sink(), &key, &hmac).unwrap();
    });
    let dec2 = best_of(3, || {
        decrypt_to_pipelined(ciphertext.as_slice(), io::sink(), &key, &hmac).unwrap();
    });
    println!(
        "layer of {mib} MiB, in memory, best of 3 ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "encrypt (AES-CTR + HMAC + 2x SHA-256): single {:7.0} MiB/s  pipelined {:7.0} MiB/s  x{:.2}",
        mib_per_s(len, enc1),
        mib_per_s(len, enc2),
        enc1 / enc2
    );
    println!(
        "decrypt (AES-CTR + HMAC + SHA-256):    single {:7.0} MiB/s  pipelined {:7.0} MiB/s  x{:.2}",
        mib_per_s(len, dec1),
        mib_per_s(len, dec2),
        dec1 / dec2
    );
}
