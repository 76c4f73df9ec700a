//! Turning an image into a root filesystem: stage, verify, then commit.
//!
//! For each layer, in order: the blob is decrypted (if encrypted) into a staging file while its
//! HMAC and digest are checked; it is decompressed into a second staging file while its DiffID
//! is computed and compared with the config's; only then is the verified tar unpacked — into a
//! staging directory next to the target, renamed to the target when every layer is in. A
//! tampered layer therefore leaves nothing behind.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use crate::compression::Compression;
use crate::copy::{
    Platform, Progress, ProgressReader, is_encrypted, resolve_manifest, verified_blob,
};
use crate::crypt::{self, DecryptionKeys};
use crate::digest::{Digest, HashingWriter, unwrap_io};
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
        // 1. The blob, decrypted and verified, in a staging file.
        // Scratch files live next to the target (a tmpfs for the agent), never in $TMPDIR:
        // decrypted layers must not reach another filesystem.
        let mut blob = tempfile::tempfile_in(parent)
            .map_err(|e| Error::io("creating a staging file in", parent, e))?;
        {
            let mut r = ProgressReader::new(verified_blob(src, l)?, progress, i);
            if is_encrypted(l) {
                let ann = l.annotations().clone().unwrap_or_default();
                crypt::decrypt_layer(&mut r, &mut blob, &ann, keys)?;
            } else {
                std::io::copy(&mut r, &mut blob)
                    .map_err(|e| unwrap_io(e, "reading layer", Path::new(l.digest().as_ref())))?;
            }
        }
        blob.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("rewinding", "staging file", e))?;
        // 2. Decompressed, its DiffID checked. The decompressed tars of all layers together may
        // not exceed the byte budget: a decompression bomb stops here, not on a full disk.
        let plain_media_type = if is_encrypted(l) {
            crypt::decrypted_media_type(l.media_type().as_ref())?
        } else {
            l.media_type().to_string()
        };
        let comp = Compression::from_media_type(&plain_media_type)?;
        let tar = tempfile::tempfile_in(parent)
            .map_err(|e| Error::io("creating a staging file in", parent, e))?;
        let mut w = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, tar));
        let allowed = opts.max_total_bytes.saturating_sub(bytes);
        let mut decoded = comp
            .decoder(BufReader::with_capacity(1 << 20, blob))?
            .take(allowed.saturating_add(1));
        std::io::copy(&mut decoded, &mut w).map_err(|e| {
            Error::malformed(
                format!("layer {}", l.digest()),
                format!("decompressing: {e}"),
            )
        })?;
        let (got, size, buf) = w.finish();
        if size > allowed {
            return Err(Error::Limit(format!(
                "layer {} decompresses past the limit of {} bytes for the whole image",
                l.digest(),
                opts.max_total_bytes
            )));
        }
        let want = Digest::parse(diff_id)?;
        if got != want {
            return Err(Error::integrity(
                format!("layer {} diff_id", l.digest()),
                want.to_string(),
                got.to_string(),
            ));
        }
        let mut tar = buf
            .into_inner()
            .map_err(|e| Error::io("writing", "staging file", e.into_error()))?;
        tar.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("rewinding", "staging file", e))?;
        // 3. Applied to the staging tree.
        unpack_layer_at(
            staging.path(),
            BufReader::with_capacity(1 << 20, tar),
            opts,
            &mut budget,
        )?;
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
