//! The `AES_256_CTR_HMAC_SHA256` layer cipher of ocicrypt, streaming in constant memory.
//!
//! A layer is encrypted with AES-256 in CTR mode under a fresh random 32-byte key; the 16-byte
//! nonce is the initial counter block, incremented as one 128-bit big-endian integer per block
//! (as Go's `cipher.NewCTR` does). The HMAC-SHA256 is computed over the *ciphertext*, keyed with
//! the *same* 32-byte key as the cipher, with nothing else MACed (no nonce, no length, no
//! associated data). The ciphertext is exactly as long as the plaintext.
//!
//! Decryption releases plaintext before the HMAC can be checked (the MAC covers the whole
//! stream). Every decrypting API here therefore reports the verdict in a way a caller cannot skip:
//! [`decrypt_to`] returns [`Error::Integrity`] at the end, [`DecryptingReader`] returns an error
//! instead of end-of-file, and [`DecryptingWriter::finish`] takes the expected HMAC. Callers write
//! plaintext to a staging file and discard it on error.
//!
//! [`encrypt_to_pipelined`] and [`decrypt_to_pipelined`] split the work over two threads: one
//! reads and runs AES-CTR (plus one SHA-256), the other runs the HMAC and the other SHA-256 and
//! writes. [`CtrStream`] and [`LayerMac`] are the pieces for building other pipelines.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::mpsc::sync_channel;

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::{constant_time, digest, hmac, rand};
use zeroize::Zeroize;

use crate::{Error, Result};

mod adapters;

pub use adapters::{DecryptingReader, DecryptingWriter, EncryptingReader, EncryptingWriter};

/// The cipher name in the public options (`"cipher"`).
pub const CIPHER_NAME: &str = "AES_256_CTR_HMAC_SHA256";
/// Length of the AES-256 (and HMAC) key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the CTR nonce (initial counter block) in bytes.
pub const NONCE_LEN: usize = 16;
/// Length of the HMAC-SHA256 in bytes.
pub const HMAC_LEN: usize = 32;
/// Length of a SHA-256 digest in bytes.
pub const SHA256_LEN: usize = 32;
/// Size of the buffers the streaming functions use; memory use is a small multiple of this,
/// whatever the layer size.
pub const CHUNK_LEN: usize = 256 * 1024;
/// Buffers in flight between the two threads of a pipelined run.
const PIPELINE_DEPTH: usize = 4;

const AES_BLOCK: usize = 16;

/// HMAC-SHA256 of a layer's ciphertext, as carried in the public options.
pub type LayerHmac = [u8; HMAC_LEN];

/// A layer's symmetric key and CTR nonce. Wiped from memory when dropped.
#[derive(Clone)]
pub struct LayerKey {
    key: [u8; KEY_LEN],
    nonce: [u8; NONCE_LEN],
}

impl LayerKey {
    /// A new random key and nonce from the operating system's CSPRNG (through aws-lc).
    pub fn generate() -> Result<LayerKey> {
        let mut key = LayerKey {
            key: [0; KEY_LEN],
            nonce: [0; NONCE_LEN],
        };
        rand::fill(&mut key.key).map_err(|_| Error::Key("the random generator failed".into()))?;
        rand::fill(&mut key.nonce).map_err(|_| Error::Key("the random generator failed".into()))?;
        Ok(key)
    }

    /// A key from its parts, checking their lengths.
    pub fn from_parts(symmetric_key: &[u8], nonce: &[u8]) -> Result<LayerKey> {
        let key: [u8; KEY_LEN] = symmetric_key.try_into().map_err(|_| {
            Error::malformed(
                "layer key",
                format!(
                    "symmetric key: expected {KEY_LEN} bytes, found {}",
                    symmetric_key.len()
                ),
            )
        })?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| {
            Error::malformed(
                "layer key",
                format!("nonce: expected {NONCE_LEN} bytes, found {}", nonce.len()),
            )
        })?;
        Ok(LayerKey { key, nonce })
    }

    /// The 32-byte AES-256 key, also the HMAC key (secret).
    pub fn symmetric_key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The 16-byte initial counter block.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }
}

impl Drop for LayerKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.nonce.zeroize();
    }
}

impl fmt::Debug for LayerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerKey(<secret>)")
    }
}

/// AES-256-CTR keystream of one layer, applied in place at any byte offset.
///
/// Encryption and decryption are the same operation. The counter for byte offset `o` is
/// `nonce + o / 16` modulo 2^128, big-endian.
pub struct CtrStream {
    key: EncryptingKey,
    counter0: u128,
    offset: u64,
}

impl CtrStream {
    /// A keystream positioned at offset 0.
    pub fn new(key: &LayerKey) -> Result<CtrStream> {
        let unbound = UnboundCipherKey::new(&AES_256, &key.key)
            .map_err(|_| Error::Key("AES-256 key rejected".into()))?;
        let key_ctr = EncryptingKey::ctr(unbound)
            .map_err(|_| Error::Key("AES-256-CTR unavailable".into()))?;
        Ok(CtrStream {
            key: key_ctr,
            counter0: u128::from_be_bytes(key.nonce),
            offset: 0,
        })
    }

    /// The byte offset the next [`apply`](Self::apply) starts at.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Moves to byte offset `offset` (for splitting a stream across workers).
    pub fn seek(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// XORs the keystream into `data` at the current offset and advances past it.
    pub fn apply(&mut self, data: &mut [u8]) -> Result<()> {
        let mut data = data;
        let within = (self.offset % AES_BLOCK as u64) as usize;
        if within != 0 && !data.is_empty() {
            // Finish the partial block through a scratch block.
            let take = (AES_BLOCK - within).min(data.len());
            let mut block = [0u8; AES_BLOCK];
            block[within..within + take].copy_from_slice(&data[..take]);
            self.xor_at_block(self.offset / AES_BLOCK as u64, &mut block)?;
            data[..take].copy_from_slice(&block[within..within + take]);
            self.offset += take as u64;
            data = &mut data[take..];
        }
        if !data.is_empty() {
            self.xor_at_block(self.offset / AES_BLOCK as u64, data)?;
            self.offset += data.len() as u64;
        }
        Ok(())
    }

    fn xor_at_block(&self, block: u64, data: &mut [u8]) -> Result<()> {
        let iv = self.counter0.wrapping_add(u128::from(block)).to_be_bytes();
        self.key
            .less_safe_encrypt(data, EncryptionContext::Iv128(iv.into()))
            .map_err(|_| Error::Key("AES-256-CTR failed".into()))?;
        Ok(())
    }
}

/// HMAC-SHA256 over a layer's ciphertext, keyed with the layer's symmetric key.
pub struct LayerMac {
    ctx: hmac::Context,
}

impl LayerMac {
    /// A MAC over nothing yet.
    pub fn new(key: &LayerKey) -> LayerMac {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key.key);
        LayerMac {
            ctx: hmac::Context::with_key(&key),
        }
    }

    /// Adds ciphertext bytes.
    pub fn update(&mut self, ciphertext: &[u8]) {
        self.ctx.update(ciphertext);
    }

    /// The HMAC of all ciphertext added.
    pub fn finish(self) -> LayerHmac {
        let tag = self.ctx.sign();
        let mut out = [0u8; HMAC_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Compares, in constant time, the HMAC of all ciphertext added with `expected`;
    /// [`Error::Integrity`] if they differ. `size` is the ciphertext length, for the message.
    pub fn verify(self, expected: &LayerHmac, size: u64) -> Result<()> {
        let got = self.finish();
        constant_time::verify_slices_are_equal(&got, expected).map_err(|_| {
            Error::integrity(
                format!("layer ciphertext ({size} bytes) HMAC-SHA256"),
                hex::encode(expected),
                hex::encode(got),
            )
        })
    }
}

/// What encrypting a layer produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptStats {
    /// Plaintext length, equal to the ciphertext length.
    pub size: u64,
    /// HMAC-SHA256 of the ciphertext (goes into the public options).
    pub hmac: LayerHmac,
    /// SHA-256 of the plaintext (goes into the private options as `sha256:<hex>`).
    pub plaintext_sha256: [u8; SHA256_LEN],
    /// SHA-256 of the ciphertext (the encrypted blob's digest).
    pub ciphertext_sha256: [u8; SHA256_LEN],
}

/// What decrypting a layer produced; only ever returned when the HMAC matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptStats {
    /// Plaintext length, equal to the ciphertext length.
    pub size: u64,
    /// SHA-256 of the plaintext written.
    pub plaintext_sha256: [u8; SHA256_LEN],
}

fn sha256_finish(ctx: digest::Context) -> [u8; SHA256_LEN] {
    let mut out = [0u8; SHA256_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Reads until `buf` is full or the end of input; returns how many bytes were read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Maps an I/O error on a layer stream into the crate's error, unwrapping our own errors that
/// travelled through `io::Error` (e.g. from a nested [`DecryptingReader`]).
fn stream_error(action: &'static str, what: &'static str) -> impl Fn(io::Error) -> Error {
    move |e| {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(Ok(ours)) = e.into_inner().map(|inner| inner.downcast::<Error>()) {
                return *ours;
            }
            return Error::malformed(what, "stream failed");
        }
        Error::io(action, what, e)
    }
}

/// Encrypts `reader` to `writer` on the calling thread, in constant memory.
pub fn encrypt_to<R: Read, W: Write>(
    mut reader: R,
    mut writer: W,
    key: &LayerKey,
) -> Result<EncryptStats> {
    let mut ctr = CtrStream::new(key)?;
    let mut mac = LayerMac::new(key);
    let mut plain_sha = digest::Context::new(&digest::SHA256);
    let mut cipher_sha = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut size = 0u64;
    loop {
        let n =
            read_full(&mut reader, &mut buf).map_err(stream_error("reading", "layer plaintext"))?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        plain_sha.update(chunk);
        ctr.apply(chunk)?;
        mac.update(chunk);
        cipher_sha.update(chunk);
        writer
            .write_all(chunk)
            .map_err(stream_error("writing", "layer ciphertext"))?;
        size += n as u64;
    }
    writer
        .flush()
        .map_err(stream_error("writing", "layer ciphertext"))?;
    Ok(EncryptStats {
        size,
        hmac: mac.finish(),
        plaintext_sha256: sha256_finish(plain_sha),
        ciphertext_sha256: sha256_finish(cipher_sha),
    })
}

/// Decrypts `reader` to `writer` on the calling thread, in constant memory, and checks the HMAC
/// over the ciphertext at the end: [`Error::Integrity`] if it differs from `expected_hmac`
/// (tampering, truncation, extension, or a wrong key). The plaintext already written must then
/// be discarded.
pub fn decrypt_to<R: Read, W: Write>(
    mut reader: R,
    mut writer: W,
    key: &LayerKey,
    expected_hmac: &LayerHmac,
) -> Result<DecryptStats> {
    let mut ctr = CtrStream::new(key)?;
    let mut mac = LayerMac::new(key);
    let mut plain_sha = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut size = 0u64;
    loop {
        let n = read_full(&mut reader, &mut buf)
            .map_err(stream_error("reading", "layer ciphertext"))?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        mac.update(chunk);
        ctr.apply(chunk)?;
        plain_sha.update(chunk);
        writer
            .write_all(chunk)
            .map_err(stream_error("writing", "layer plaintext"))?;
        size += n as u64;
    }
    writer
        .flush()
        .map_err(stream_error("writing", "layer plaintext"))?;
    mac.verify(expected_hmac, size)?;
    Ok(DecryptStats {
        size,
        plaintext_sha256: sha256_finish(plain_sha),
    })
}

/// The consuming half of a two-thread pipeline: gets each filled chunk in order.
trait ChunkSink: Send {
    fn consume(&mut self, chunk: &mut [u8]) -> Result<()>;
}

/// Runs `produce` on the calling thread and `sink` on a second one, passing buffers of up to
/// [`CHUNK_LEN`] bytes and recycling them ([`PIPELINE_DEPTH`] buffers in all: constant memory).
/// `produce` fills a buffer and returns its length, 0 to stop. Returns the sink when both halves
/// are done; a producer error wins over a sink error.
fn pipeline<S: ChunkSink>(
    mut produce: impl FnMut(&mut [u8]) -> Result<usize>,
    mut sink: S,
) -> Result<S> {
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(PIPELINE_DEPTH);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    for _ in 0..PIPELINE_DEPTH {
        // Cannot fail: the receiver is alive and the channel holds PIPELINE_DEPTH buffers.
        let _ = free_tx.send(vec![0u8; CHUNK_LEN]);
    }
    // `move`: if `produce` panics, `full_tx` is dropped while unwinding, before the scope waits
    // for the worker, so the worker sees the end of the channel instead of waiting forever.
    std::thread::scope(move |scope| {
        let worker = scope.spawn(move || -> Result<S> {
            for (mut buf, n) in full_rx {
                sink.consume(&mut buf[..n])?;
                if free_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(sink)
        });
        let produced = (|| -> Result<()> {
            // recv fails once the worker has stopped (on an error it reports below).
            while let Ok(mut buf) = free_rx.recv() {
                let n = produce(&mut buf)?;
                if n == 0 || full_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(())
        })();
        drop(full_tx);
        let consumed = match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        produced?;
        consumed
    })
}

struct EncryptSink<W> {
    writer: W,
    mac: LayerMac,
    cipher_sha: digest::Context,
}

impl<W: Write + Send> ChunkSink for EncryptSink<W> {
    fn consume(&mut self, chunk: &mut [u8]) -> Result<()> {
        self.mac.update(chunk);
        self.cipher_sha.update(chunk);
        self.writer
            .write_all(chunk)
            .map_err(stream_error("writing", "layer ciphertext"))
    }
}

/// [`encrypt_to`] on two threads: this one reads, hashes the plaintext and runs AES-CTR; a
/// second one runs the HMAC and the ciphertext SHA-256 and writes. Same output, same memory
/// bound (a few [`CHUNK_LEN`] buffers).
pub fn encrypt_to_pipelined<R: Read, W: Write + Send>(
    mut reader: R,
    writer: W,
    key: &LayerKey,
) -> Result<EncryptStats> {
    let mut ctr = CtrStream::new(key)?;
    let mut plain_sha = digest::Context::new(&digest::SHA256);
    let mut size = 0u64;
    let sink = EncryptSink {
        writer,
        mac: LayerMac::new(key),
        cipher_sha: digest::Context::new(&digest::SHA256),
    };
    let mut sink = pipeline(
        |buf| {
            let n =
                read_full(&mut reader, buf).map_err(stream_error("reading", "layer plaintext"))?;
            let chunk = &mut buf[..n];
            plain_sha.update(chunk);
            ctr.apply(chunk)?;
            size += n as u64;
            Ok(n)
        },
        sink,
    )?;
    sink.writer
        .flush()
        .map_err(stream_error("writing", "layer ciphertext"))?;
    Ok(EncryptStats {
        size,
        hmac: sink.mac.finish(),
        plaintext_sha256: sha256_finish(plain_sha),
        ciphertext_sha256: sha256_finish(sink.cipher_sha),
    })
}

struct DecryptSink<W> {
    writer: W,
    ctr: CtrStream,
    plain_sha: digest::Context,
}

impl<W: Write + Send> ChunkSink for DecryptSink<W> {
    fn consume(&mut self, chunk: &mut [u8]) -> Result<()> {
        self.ctr.apply(chunk)?;
        self.plain_sha.update(chunk);
        self.writer
            .write_all(chunk)
            .map_err(stream_error("writing", "layer plaintext"))
    }
}

/// [`decrypt_to`] on two threads: this one reads and runs the HMAC over the ciphertext; a second
/// one runs AES-CTR and the plaintext SHA-256 and writes. Same checks and errors as
/// [`decrypt_to`].
pub fn decrypt_to_pipelined<R: Read, W: Write + Send>(
    mut reader: R,
    writer: W,
    key: &LayerKey,
    expected_hmac: &LayerHmac,
) -> Result<DecryptStats> {
    let mut mac = LayerMac::new(key);
    let mut size = 0u64;
    let sink = DecryptSink {
        writer,
        ctr: CtrStream::new(key)?,
        plain_sha: digest::Context::new(&digest::SHA256),
    };
    let mut sink = pipeline(
        |buf| {
            let n =
                read_full(&mut reader, buf).map_err(stream_error("reading", "layer ciphertext"))?;
            mac.update(&buf[..n]);
            size += n as u64;
            Ok(n)
        },
        sink,
    )?;
    sink.writer
        .flush()
        .map_err(stream_error("writing", "layer plaintext"))?;
    mac.verify(expected_hmac, size)?;
    Ok(DecryptStats {
        size,
        plaintext_sha256: sha256_finish(sink.plain_sha),
    })
}
