//! The `AES_256_CTR_HMAC_SHA256` layer cipher: known answers, every API agreeing with the
//! others, and every kind of tampering rejected with `Error::Integrity`, never a panic.

use std::io::{self, Read, Write};

use confidant_image::Error;
use confidant_image::crypt::cipher::{
    CHUNK_LEN, CtrStream, DecryptingReader, DecryptingWriter, EncryptingReader, EncryptingWriter,
    LayerHmac, LayerKey, LayerMac, decrypt_to, decrypt_to_pipelined, encrypt_to,
    encrypt_to_pipelined,
};
use sha2::{Digest, Sha256};

/// Key 00..1f, nonce ff..fe (the counter wraps past 2^128 in the third block), plaintext
/// 00..63; ciphertext and HMAC from `openssl enc -aes-256-ctr` and `openssl dgst -mac HMAC`.
const KAT_CIPHERTEXT: &str = "63e4b601b11b4edaf2e4f3d595c1294bf988f60e58b266cd4b9e0b60419249f1d2b122950e6cb9f781dab041f10359afc06c449d7e8ca9d29ecfa10a74ff08024efdf79df169c5fa40e1e37e5461dfd6821204007cd43678d8c7e9d899a203092e3e84df";
const KAT_HMAC: &str = "9dc3c95dc8597d8d8b657942a9d4ddb37cbbf68d853a1f4ca23c7697349a32aa";

fn kat_key() -> LayerKey {
    let key: Vec<u8> = (0u8..32).collect();
    let mut nonce = [0xffu8; 16];
    nonce[15] = 0xfe;
    LayerKey::from_parts(&key, &nonce).unwrap()
}

fn kat_plaintext() -> Vec<u8> {
    (0u8..100).collect()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn encrypt(plaintext: &[u8], key: &LayerKey) -> (Vec<u8>, LayerHmac) {
    let mut ciphertext = Vec::new();
    let stats = encrypt_to(plaintext, &mut ciphertext, key).unwrap();
    (ciphertext, stats.hmac)
}

fn expect_integrity(result: confidant_image::Result<impl std::fmt::Debug>, context: &str) {
    match result {
        Err(Error::Integrity { .. }) => {}
        other => panic!("{context}: expected Error::Integrity, got {other:?}"),
    }
}

#[test]
fn matches_openssl_aes_256_ctr_and_hmac_sha256_across_the_counter_wrap() {
    let (ciphertext, hmac) = encrypt(&kat_plaintext(), &kat_key());
    assert_eq!(hex::encode(&ciphertext), KAT_CIPHERTEXT);
    assert_eq!(hex::encode(hmac), KAT_HMAC);
}

#[test]
fn ctr_stream_gives_the_same_bytes_however_the_input_is_split() {
    let plaintext = pseudo_random(1000, 1);
    let (expected, _) = encrypt(&plaintext, &kat_key());
    for split in [1usize, 3, 15, 16, 17, 31, 100, 999] {
        let mut ctr = CtrStream::new(&kat_key()).unwrap();
        let mut data = plaintext.clone();
        for chunk in data.chunks_mut(split) {
            ctr.apply(chunk).unwrap();
        }
        assert_eq!(data, expected, "split {split}");
    }
    // Random access: seek to an unaligned offset.
    let mut ctr = CtrStream::new(&kat_key()).unwrap();
    ctr.seek(333);
    let mut tail = plaintext[333..].to_vec();
    ctr.apply(&mut tail).unwrap();
    assert_eq!(tail, expected[333..]);
    assert_eq!(ctr.offset(), 1000);
}

#[test]
fn round_trips_empty_small_and_multi_chunk_inputs_in_every_mode() {
    for len in [
        0usize,
        1,
        15,
        16,
        17,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        3 * CHUNK_LEN + 12345,
    ] {
        let plaintext = pseudo_random(len, len as u64 + 7);
        let key = LayerKey::generate().unwrap();
        let mut single = Vec::new();
        let stats = encrypt_to(plaintext.as_slice(), &mut single, &key).unwrap();
        let mut piped = Vec::new();
        let piped_stats = encrypt_to_pipelined(plaintext.as_slice(), &mut piped, &key).unwrap();
        assert_eq!(single, piped, "len {len}");
        assert_eq!(stats, piped_stats, "len {len}");
        assert_eq!(stats.size, len as u64);
        assert_eq!(
            hex::encode(stats.plaintext_sha256),
            hex::encode(Sha256::digest(&plaintext))
        );
        assert_eq!(
            hex::encode(stats.ciphertext_sha256),
            hex::encode(Sha256::digest(&single))
        );

        let mut out = Vec::new();
        let d = decrypt_to(single.as_slice(), &mut out, &key, &stats.hmac).unwrap();
        assert_eq!(out, plaintext);
        assert_eq!(d.plaintext_sha256, stats.plaintext_sha256);
        let mut out = Vec::new();
        let d = decrypt_to_pipelined(single.as_slice(), &mut out, &key, &stats.hmac).unwrap();
        assert_eq!(out, plaintext);
        assert_eq!(d.size, len as u64);
    }
}

/// A reader that hands out at most `step` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn adapters_agree_with_encrypt_to_for_odd_read_and_write_sizes() {
    let plaintext = pseudo_random(70_001, 3);
    let key = LayerKey::generate().unwrap();
    let (expected, hmac) = encrypt(&plaintext, &key);

    let mut reader = EncryptingReader::new(
        Trickle {
            data: &plaintext,
            step: 7,
        },
        &key,
    )
    .unwrap();
    let mut ciphertext = Vec::new();
    reader.read_to_end(&mut ciphertext).unwrap();
    let (_, got_hmac, size) = reader.finish().unwrap();
    assert_eq!(
        (ciphertext.as_slice(), got_hmac, size),
        (expected.as_slice(), hmac, 70_001)
    );

    let mut writer = EncryptingWriter::new(Vec::new(), &key).unwrap();
    for chunk in plaintext.chunks(1013) {
        writer.write_all(chunk).unwrap();
    }
    let (ciphertext, got_hmac, _) = writer.finish().unwrap();
    assert_eq!((ciphertext, got_hmac), (expected.clone(), hmac));

    let mut reader = DecryptingReader::new(
        Trickle {
            data: &expected,
            step: 4096,
        },
        &key,
        &hmac,
    )
    .unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    assert!(reader.verified());
    assert_eq!(out, plaintext);

    let mut writer = DecryptingWriter::new(Vec::new(), &key).unwrap();
    for chunk in expected.chunks(333) {
        writer.write_all(chunk).unwrap();
    }
    let (out, size) = writer.finish(&hmac).unwrap();
    assert_eq!((out, size), (plaintext, 70_001));
}

#[test]
fn encrypting_reader_refuses_to_finish_before_the_end() {
    let key = LayerKey::generate().unwrap();
    let data = [1u8; 100];
    let mut reader = EncryptingReader::new(&data[..], &key).unwrap();
    let mut buf = [0u8; 10];
    reader.read_exact(&mut buf).unwrap();
    assert!(reader.finish().is_err());
}

#[test]
fn decrypting_reader_returns_an_error_instead_of_eof_on_a_bad_hmac() {
    let key = LayerKey::generate().unwrap();
    let (ciphertext, mut hmac) = encrypt(&pseudo_random(5000, 9), &key);
    hmac[0] ^= 1;
    let mut reader = DecryptingReader::new(ciphertext.as_slice(), &key, &hmac).unwrap();
    let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("integrity check failed"), "{err}");
    assert!(!reader.verified());
    // And it keeps saying so.
    assert!(reader.read(&mut [0u8; 16]).is_err());
}

#[test]
fn every_flipped_ciphertext_byte_is_rejected_small_input() {
    let key = LayerKey::generate().unwrap();
    let plaintext = pseudo_random(777, 11);
    let (ciphertext, hmac) = encrypt(&plaintext, &key);
    for i in 0..ciphertext.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = ciphertext.clone();
            bad[i] ^= bit;
            expect_integrity(
                decrypt_to(bad.as_slice(), io::sink(), &key, &hmac),
                &format!("byte {i}"),
            );
        }
    }
}

#[test]
fn flipped_bytes_sampled_densely_in_a_large_input_are_rejected() {
    let key = LayerKey::generate().unwrap();
    let len = 2 * CHUNK_LEN + 4321;
    let (ciphertext, hmac) = encrypt(&pseudo_random(len, 13), &key);
    // Every chunk boundary neighbourhood, the ends, and a stride through the rest.
    let mut positions: Vec<usize> = (0..len).step_by(4099).collect();
    for boundary in [0, CHUNK_LEN, 2 * CHUNK_LEN, len] {
        positions.extend(boundary.saturating_sub(17)..(boundary + 17).min(len));
    }
    for i in positions {
        let mut bad = ciphertext.clone();
        bad[i] ^= 0x20;
        expect_integrity(
            decrypt_to_pipelined(bad.as_slice(), io::sink(), &key, &hmac),
            &format!("byte {i}"),
        );
    }
}

#[test]
fn every_changed_hmac_byte_is_rejected() {
    let key = LayerKey::generate().unwrap();
    let (ciphertext, hmac) = encrypt(&pseudo_random(300, 17), &key);
    for i in 0..hmac.len() {
        let mut bad = hmac;
        bad[i] ^= 0x04;
        expect_integrity(
            decrypt_to(ciphertext.as_slice(), io::sink(), &key, &bad),
            &format!("hmac byte {i}"),
        );
    }
}

#[test]
fn truncated_and_extended_ciphertexts_are_rejected() {
    let key = LayerKey::generate().unwrap();
    let (ciphertext, hmac) = encrypt(&pseudo_random(CHUNK_LEN + 100, 19), &key);
    for cut in [0, 1, 16, 99, CHUNK_LEN, ciphertext.len() - 1] {
        expect_integrity(
            decrypt_to(&ciphertext[..cut], io::sink(), &key, &hmac),
            &format!("truncated to {cut}"),
        );
        expect_integrity(
            decrypt_to_pipelined(&ciphertext[..cut], io::sink(), &key, &hmac),
            &format!("truncated to {cut} (pipelined)"),
        );
    }
    let mut longer = ciphertext.clone();
    longer.push(0);
    expect_integrity(
        decrypt_to(longer.as_slice(), io::sink(), &key, &hmac),
        "extended",
    );
}

#[test]
fn a_wrong_key_or_nonce_is_rejected() {
    let key = LayerKey::generate().unwrap();
    let (ciphertext, hmac) = encrypt(&pseudo_random(1000, 23), &key);
    let other = LayerKey::generate().unwrap();
    expect_integrity(
        decrypt_to(ciphertext.as_slice(), io::sink(), &other, &hmac),
        "other key",
    );
    // Same key, other nonce: the HMAC (keyed only by the key) still matches, so this is the
    // case the plaintext digest check in decrypt_layer exists for.
    let renonced = LayerKey::from_parts(key.symmetric_key(), &[0u8; 16]).unwrap();
    let mut out = Vec::new();
    decrypt_to(ciphertext.as_slice(), &mut out, &renonced, &hmac).unwrap();
    assert_ne!(out, pseudo_random(1000, 23));
}

#[test]
fn layer_mac_verify_compares_and_reports_both_values() {
    let key = kat_key();
    let mut mac = LayerMac::new(&key);
    mac.update(&hex::decode(KAT_CIPHERTEXT).unwrap());
    let wrong = [0u8; 32];
    let err = mac.verify(&wrong, 100).unwrap_err().to_string();
    assert!(
        err.contains(KAT_HMAC) && err.contains(&"00".repeat(32)),
        "{err}"
    );
}

/// Reader failing after some bytes: the error comes through, nothing panics.
struct Failing {
    left: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = self.left.min(buf.len());
        buf[..n].fill(1);
        self.left -= n;
        Ok(n)
    }
}

/// Writer failing after some bytes.
struct FullDisk {
    left: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("no space left"));
        }
        let n = self.left.min(buf.len());
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn io_errors_on_either_side_are_reported_by_both_implementations() {
    let key = LayerKey::generate().unwrap();
    let hmac = [0u8; 32];
    for left in [0, 10, CHUNK_LEN + 5] {
        let e = encrypt_to(Failing { left }, io::sink(), &key).unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        let e = encrypt_to_pipelined(Failing { left }, io::sink(), &key).unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        let e = decrypt_to_pipelined(Failing { left }, io::sink(), &key, &hmac).unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        let data = vec![0u8; 3 * CHUNK_LEN];
        let e = encrypt_to_pipelined(data.as_slice(), FullDisk { left }, &key).unwrap_err();
        assert!(e.to_string().contains("no space left"), "{e}");
        let e = decrypt_to_pipelined(data.as_slice(), FullDisk { left }, &key, &hmac).unwrap_err();
        assert!(e.to_string().contains("no space left"), "{e}");
    }
}

#[test]
fn layer_keys_are_random_and_checked_for_length() {
    let a = LayerKey::generate().unwrap();
    let b = LayerKey::generate().unwrap();
    assert_ne!(a.symmetric_key(), b.symmetric_key());
    assert_ne!(a.nonce(), b.nonce());
    assert!(format!("{a:?}").contains("secret"));
    let err = LayerKey::from_parts(&[0u8; 31], &[0u8; 16])
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected 32 bytes, found 31"), "{err}");
    let err = LayerKey::from_parts(&[0u8; 32], &[0u8; 17])
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected 16 bytes, found 17"), "{err}");
}

/// A reader or writer that panics after some bytes.
struct Panicking {
    left: usize,
}

impl Read for Panicking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        assert!(self.left > 0, "reader panics (on purpose)");
        let n = self.left.min(buf.len());
        self.left -= n;
        Ok(n)
    }
}

impl Write for Panicking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        assert!(self.left > 0, "writer panics (on purpose)");
        let n = self.left.min(buf.len());
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_on_either_side_of_the_pipeline_propagates_instead_of_hanging() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let key = LayerKey::generate().unwrap();
        let data = vec![0u8; 4 * CHUNK_LEN];
        let hmac = [0u8; 32];
        let outcomes = [
            std::panic::catch_unwind(|| {
                let _ = encrypt_to_pipelined(
                    Panicking {
                        left: CHUNK_LEN + 1,
                    },
                    io::sink(),
                    &key,
                );
            }),
            std::panic::catch_unwind(|| {
                let _ = decrypt_to_pipelined(Panicking { left: 10 }, io::sink(), &key, &hmac);
            }),
            std::panic::catch_unwind(|| {
                let _ = encrypt_to_pipelined(data.as_slice(), Panicking { left: CHUNK_LEN }, &key);
            }),
            std::panic::catch_unwind(|| {
                let _ = decrypt_to_pipelined(data.as_slice(), Panicking { left: 0 }, &key, &hmac);
            }),
        ];
        let _ = done_tx.send(outcomes.iter().all(Result::is_err));
    });
    let all_panicked = done_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the pipeline hung after a panic");
    assert!(all_panicked, "every panic must reach the caller");
}
