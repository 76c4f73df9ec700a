//! Turning an image into a root filesystem: stage, verify, then commit.
//!
//! For each layer, in order, in one streaming pass: the blob is read and decrypted (if encrypted)
//! while its digest and HMAC are computed; the plaintext is decompressed while its DiffID is
//! computed, and the tar is applied to a staging directory next to the target as it arrives.
//! The blob's digest, the HMAC, the plaintext digest of the private options and the DiffID are
//! all checked at the end of the layer; the staging directory is renamed to the target only when
//! every layer passed, and is removed on any failure. A tampered layer therefore leaves nothing
//! behind, and decrypted bytes only ever reach the filesystem of the target.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use crate::compression::Compression;
use crate::copy::{
    Platform, Progress, ProgressReader, is_encrypted, resolve_manifest, verified_blob,
};
use crate::crypt::{self, DecryptionKeys};
use crate::digest::{Digest, HashingReader, unwrap_io};
use crate::error::{Error, Result};
use crate::source::ImageSource;
use crate::unpack::{Budget, UnpackOptions, unpack_layer_at};

/// What an unpack did.
#[derive(Debug, Clone, Serialize)]
pub struct UnpackReport {
    /// Layers applied.
    pub layers: usize,
    /// Bytes of uncompressed layer tars applied.
    pub bytes: u64,
}

/// The image's configuration (entrypoint, cmd, env, working dir, user, diff ids), its digest
/// checked against the manifest.
pub fn image_config(
    src: &mut dyn ImageSource,
    manifest: &oci_spec::image::ImageManifest,
) -> Result<ImageConfiguration> {
    let mut cbytes = Vec::new();
    std::io::Read::read_to_end(&mut verified_blob(src, manifest.config())?, &mut cbytes)
        .map_err(|e| unwrap_io(e, "reading", Path::new("image config")))?;
    serde_json::from_slice(&cbytes).map_err(|e| Error::malformed("image config", e.to_string()))
}

/// Unpacks the image `src` into `target`, which must not exist yet.
pub fn unpack_image(
    src: &mut dyn ImageSource,
    platform: &Platform,
    keys: &DecryptionKeys,
    target: &Path,
    opts: &UnpackOptions,
    progress: &dyn Progress,
) -> Result<UnpackReport> {
    if target.exists() {
        return Err(Error::io(
            "unpacking into",
            target,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the target already exists; give a new directory",
            ),
        ));
    }
    let manifest = resolve_manifest(src, platform)?;
    let config = image_config(src, &manifest)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::malformed(
            "image",
            format!(
                "manifest has {} layers but the config lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }

    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".confidant-unpack-")
        .tempdir_in(parent)
        .map_err(|e| Error::io("creating a staging directory in", parent, e))?;
    // tempdir makes 0700 directories; a root filesystem's top is 0755 unless a layer says otherwise.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("setting permissions of", staging.path(), e))?;
    }
    let mut budget = Budget::new();
    let mut bytes = 0u64;
    for (i, (l, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        progress.layer_start(i, l.digest().as_ref(), l.size());
        let plain_media_type = if is_encrypted(l) {
            crypt::decrypted_media_type(l.media_type().as_ref())?
        } else {
            l.media_type().to_string()
        };
        let comp = Compression::from_media_type(&plain_media_type)?;
        let want = Digest::parse(diff_id)?;
        let allowed = opts.max_total_bytes.saturating_sub(bytes);
        let (pipe_in, pipe_out) = pipe();
        // One pass per layer, on two threads: this one reads the blob and decrypts it (checking
        // its digest, HMAC and plaintext digest at the end); the other decompresses, computes the
        // DiffID and applies the tar to the staging tree as the bytes arrive. The checks that
        // can only be made at the end of the stream are made before the tree is committed: on
        // any failure the staging tree is discarded, so unauthenticated bytes never reach the
        // target. (The unpacker is built for hostile tars, and the byte budget bounds what a
        // forged layer could write to the staging tree before it is refused.)
        let (produced, consumed) = std::thread::scope(|s| {
            let staging_path = staging.path();
            let budget = &mut budget;
            let consumer = s.spawn(move || -> Result<(Digest, u64)> {
                let mut decoded = HashingReader::new(
                    comp.decoder(BufReader::with_capacity(1 << 20, pipe_out))?
                        .take(allowed.saturating_add(1)),
                );
                let applied = unpack_layer_at(staging_path, &mut decoded, opts, budget);
                // What follows the tar's end-of-archive marker counts for the DiffID too.
                let drained = std::io::copy(&mut decoded, &mut std::io::sink());
                let (got, size) = decoded.finish();
                if size > allowed {
                    return Err(Error::Limit(format!(
                        "layer decompresses past the limit of {} bytes for the whole image",
                        opts.max_total_bytes
                    )));
                }
                applied?;
                drained.map_err(|e| Error::malformed("layer", format!("decompressing: {e}")))?;
                Ok((got, size))
            });
            let mut pipe_in = pipe_in;
            let produced = (|| -> Result<()> {
                let mut r = ProgressReader::new(verified_blob(src, l)?, progress, i);
                if is_encrypted(l) {
                    let ann = l.annotations().clone().unwrap_or_default();
                    crypt::decrypt_layer(&mut r, &mut pipe_in, &ann, keys)?;
                } else {
                    std::io::copy(&mut r, &mut pipe_in).map_err(|e| {
                        unwrap_io(e, "reading layer", Path::new(l.digest().as_ref()))
                    })?;
                }
                pipe_in
                    .flush()
                    .map_err(|e| Error::io("writing", "the unpack pipe", e))
            })();
            // The end of the stream (or of a failed one) for the consumer.
            drop(pipe_in);
            let consumed = consumer
                .join()
                .unwrap_or_else(|_| Err(Error::malformed("layer", "the unpack thread panicked")));
            (produced, consumed)
        });
        // The blob's own checks (digest, HMAC, plaintext digest) explain a failure best: a
        // tampered ciphertext also makes the decompressor or the tar parser fail.
        produced.map_err(|e| layer_error(l.digest().as_ref(), e))?;
        let (got, size) = consumed.map_err(|e| layer_error(l.digest().as_ref(), e))?;
        if got != want {
            return Err(Error::integrity(
                format!("layer {} diff_id", l.digest()),
                want.to_string(),
                got.to_string(),
            ));
        }
        bytes += size;
        progress.layer_done(i);
    }
    let staged = staging.keep();
    std::fs::rename(&staged, target).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        Error::io("moving the unpacked tree to", target, e)
    })?;
    Ok(UnpackReport {
        layers: manifest.layers().len(),
        bytes,
    })
}

/// Which layer an error is about, unless it already says so.
fn layer_error(digest: &str, e: Error) -> Error {
    match e {
        Error::Malformed { what, reason } if !what.contains(digest) => {
            Error::malformed(format!("layer {digest}"), format!("{what}: {reason}"))
        }
        Error::Limit(reason) if !reason.contains(digest) => {
            Error::Limit(format!("layer {digest}: {reason}"))
        }
        other => other,
    }
}

/// The in-memory pipe between the decrypting and the unpacking thread: chunks of up to
/// [`PIPE_CHUNK`] bytes, at most [`PIPE_DEPTH`] in flight (bounded memory).
fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(PIPE_DEPTH);
    (
        PipeWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(PIPE_CHUNK),
        },
        PipeReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        },
    )
}

const PIPE_CHUNK: usize = 256 << 10;
const PIPE_DEPTH: usize = 4;

/// The writing end. When the reader is gone (the unpack failed), what is written is dropped, so
/// the decryption still runs to its end and reports its own checks.
struct PipeWriter {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl PipeWriter {
    fn send(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        if let Some(tx) = &self.tx
            && tx.send(chunk).is_err()
        {
            self.tx = None;
        }
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PIPE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIPE_CHUNK {
            self.send();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send();
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.send();
    }
}

/// The reading end: end of stream once the writer is dropped.
struct PipeReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
