//! Layer cipher throughput, in memory: single-threaded against the two-thread pipeline, and
//! `crypt::decrypt_layer` end to end (JWE unwrap, AES-256-CTR, HMAC, plaintext digest).
//!
//! ```text
//! cargo bench -p confidant-image --bench layer_crypto            # CONFIDANT_BENCH_MIB=512 for a bigger layer
//! ```
//!
//! `bench/image-crypto` runs it and compares the `decrypt_layer_mib_s` line with `openssl speed`.

use std::io;
use std::time::Instant;

use confidant_image::crypt::cipher::{
    LayerKey, decrypt_to, decrypt_to_pipelined, encrypt_to, encrypt_to_pipelined,
};
use confidant_image::crypt::{
    DecryptionKeys, PrivateKey, Recipients, decrypt_layer, encrypt_layer,
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

fn main() {
    // `cargo bench` passes `--bench`; a `--quiet` flag keeps only the summary lines.
    let quiet = std::env::args().any(|a| a == "--quiet");
    let mib: usize = std::env::var("CONFIDANT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let len = mib * 1024 * 1024;
    let plaintext: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let key = LayerKey::generate().expect("layer key");
    let mut ciphertext = Vec::with_capacity(len);
    let hmac = encrypt_to(plaintext.as_slice(), &mut ciphertext, &key)
        .expect("encrypt")
        .hmac;

    let enc1 = best_of(3, || {
        encrypt_to(plaintext.as_slice(), io::sink(), &key).expect("encrypt");
    });
    let enc2 = best_of(3, || {
        encrypt_to_pipelined(plaintext.as_slice(), io::sink(), &key).expect("encrypt");
    });
    let dec1 = best_of(3, || {
        decrypt_to(ciphertext.as_slice(), io::sink(), &key, &hmac).expect("decrypt");
    });
    let dec2 = best_of(3, || {
        decrypt_to_pipelined(ciphertext.as_slice(), io::sink(), &key, &hmac).expect("decrypt");
    });

    // The whole per-layer API, as the image pipeline calls it.
    let private = PrivateKey::generate_ec(confidant_image::crypt::Curve::P256).expect("EC key");
    let recipients = Recipients {
        jwe: vec![private.public_key().clone()],
        coordinator: None,
    };
    let mut layer = Vec::with_capacity(len);
    let enc = encrypt_layer(plaintext.as_slice(), &mut layer, &recipients).expect("encrypt_layer");
    let keys = DecryptionKeys {
        jwe: vec![private],
        coordinator: None,
        ..Default::default()
    };
    let full = best_of(3, || {
        decrypt_layer(layer.as_slice(), io::sink(), &enc.annotations, &keys)
            .expect("decrypt_layer");
    });

    if !quiet {
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
    println!("decrypt_layer_mib_s {:.0}", mib_per_s(len, full));
}
