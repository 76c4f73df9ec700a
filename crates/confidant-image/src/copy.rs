//! Copying an image between transports, encrypting or decrypting its layers on the way.
//!
//! Every blob read from a source is verified against its descriptor's digest before the
//! destination commits it; encrypted layers are decrypted into a staging file and committed only
//! after their HMAC and plaintext digest check out.

use std::collections::BTreeMap;
use std::io::Read;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::crypt::{self, DecryptionKeys, Recipients};
use crate::digest::{Digest, VerifyingReader, unwrap_io};
use crate::error::{Error, Result};
use crate::source::{ImageDestination, ImageSource, media};

/// What happens to each layer on the way.
#[derive(Clone, Copy)]
pub enum LayerOp<'a> {
    /// Copy as is.
    Keep,
    /// Encrypt every unencrypted layer for these recipients.
    Encrypt(&'a Recipients),
    /// Decrypt every encrypted layer with these keys.
    Decrypt(&'a DecryptionKeys),
}

/// The platform to pick from a multi-arch index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture in Go's naming (`amd64`, `arm64`).
    pub architecture: String,
    /// Variant (`v8`), when it matters.
    pub variant: Option<String>,
}

impl Default for Platform {
    /// This machine's platform.
    fn default() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }
}

/// Progress reports from long operations (a terminal shows bars; tests and JSON output ignore them).
pub trait Progress {
    /// A layer of `size` bytes starts.
    fn layer_start(&self, _index: usize, _digest: &str, _size: u64) {}
    /// `bytes` more of the layer's blob have been read.
    fn layer_advance(&self, _index: usize, _bytes: u64) {}
    /// A layer is done.
    fn layer_done(&self, _index: usize) {}
}

/// A reader that reports the bytes it yields to a [`Progress`].
pub(crate) struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
    index: usize,
}

impl<'p, R> ProgressReader<'p, R> {
    /// Reports reads of `inner` as progress of layer `index`.
    pub(crate) fn new(inner: R, progress: &'p dyn Progress, index: usize) -> Self {
        ProgressReader {
            inner,
            progress,
            index,
        }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.layer_advance(self.index, n as u64);
        }
        Ok(n)
    }
}

/// A progress sink that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a copy did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyReport {
    /// Digest of the manifest written.
    pub manifest_digest: String,
    /// Per layer: source digest, destination digest, destination media type.
    pub layers: Vec<LayerReport>,
}

/// One layer of a [`CopyReport`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerReport {
    /// Digest in the source.
    pub from: String,
    /// Digest in the destination.
    pub to: String,
    /// Media type in the destination.
    pub media_type: String,
    /// Size in the destination.
    pub size: u64,
}

/// Reads the image manifest of `src`, choosing `platform` from an index.
pub fn resolve_manifest(src: &mut dyn ImageSource, platform: &Platform) -> Result<ImageManifest> {
    let bytes = resolve_manifest_bytes(src, platform)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::malformed("image manifest", e.to_string()))
}

/// The raw bytes of the image manifest for `platform` (through the index, if there is one):
/// what an image digest names, and what the coordinator checks against a package's
/// `image_digests`.
pub fn resolve_manifest_bytes(src: &mut dyn ImageSource, platform: &Platform) -> Result<Vec<u8>> {
    let (bytes, mt) = src.manifest()?;
    if media::is_index(&mt) || looks_like_index(&bytes) {
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| Error::malformed("image index", e.to_string()))?;
        let digest = pick_platform(&index, platform)?;
        src.manifest_by_digest(&digest)
    } else {
        Ok(bytes)
    }
}

fn looks_like_index(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .is_ok_and(|v| v.get("manifests").is_some() && v.get("layers").is_none())
}

/// The digest of the index entry for `platform`.
pub fn pick_platform(index: &ImageIndex, platform: &Platform) -> Result<Digest> {
    let mut present = Vec::new();
    for d in index.manifests() {
        if let Some(p) = d.platform() {
            let os = p.os().to_string();
            let arch = p.architecture().to_string();
            let variant = p.variant().clone();
            present.push(format!(
                "{os}/{arch}{}",
                variant
                    .as_deref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            ));
            if os == platform.os
                && arch == platform.architecture
                && (platform.variant.is_none() || platform.variant == variant)
            {
                return Digest::parse(d.digest().as_ref());
            }
        }
    }
    Err(Error::malformed(
        "image index",
        format!(
            "no manifest for {}/{}{} (platforms present: {present:?})",
            platform.os,
            platform.architecture,
            platform
                .variant
                .as_deref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ),
    ))
}

/// A verifying reader over a source blob described by `d`.
pub(crate) fn verified_blob<'a>(
    src: &'a mut dyn ImageSource,
    d: &Descriptor,
) -> Result<VerifyingReader<Box<dyn Read + Send + 'a>>> {
    let digest = Digest::parse(d.digest().as_ref())?;
    let r = src.blob(&digest)?;
    Ok(VerifyingReader::new(
        r,
        format!("blob {digest}"),
        digest,
        Some(d.size()),
    ))
}

/// Whether a layer media type is encrypted.
pub fn is_encrypted(d: &Descriptor) -> bool {
    d.media_type().to_string().ends_with("+encrypted")
}

/// Copies one image from `src` to `dst`, applying `op` to each layer.
pub fn copy_image(
    src: &mut dyn ImageSource,
    dst: &mut dyn ImageDestination,
    platform: &Platform,
    op: LayerOp<'_>,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let manifest = resolve_manifest(src, platform)?;
    let docker = manifest
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .as_deref()
        == Some(media::DOCKER_MANIFEST)
        || manifest.config().media_type().to_string() == media::DOCKER_CONFIG;
    let changes_layers = match op {
        LayerOp::Keep => false,
        LayerOp::Encrypt(_) => manifest.layers().iter().any(|l| !is_encrypted(l)),
        LayerOp::Decrypt(_) => manifest.layers().iter().any(is_encrypted),
    };
    // Encrypted layers exist only in OCI media types: convert a Docker manifest when layers change.
    let to_oci = docker && changes_layers;

    // The config.
    let mut config = manifest.config().clone();
    {
        let mut r = verified_blob(src, &config)?;
        let want = Digest::parse(config.digest().as_ref())?;
        if !dst.has_blob(&want)? {
            dst.put_blob(&mut r, Some(&want))?;
        }
    }
    if to_oci {
        config.set_media_type(MediaType::from(media::to_oci(config.media_type().as_ref())));
    }

    let mut layers = Vec::new();
    let mut report = Vec::new();
    for (i, l) in manifest.layers().iter().enumerate() {
        progress.layer_start(i, l.digest().as_ref(), l.size());
        let new = copy_layer(src, dst, l, op, to_oci, progress, i)?;
        report.push(LayerReport {
            from: l.digest().to_string(),
            to: new.digest().to_string(),
            media_type: new.media_type().to_string(),
            size: new.size(),
        });
        layers.push(new);
        progress.layer_done(i);
    }

    let mut out = manifest.clone();
    out.set_config(config);
    out.set_layers(layers);
    let mt = if to_oci || !docker {
        media::OCI_MANIFEST
    } else {
        media::DOCKER_MANIFEST
    };
    if to_oci || !docker {
        out.set_media_type(Some(MediaType::ImageManifest));
    }
    let bytes =
        serde_json::to_vec(&out).map_err(|e| Error::malformed("manifest", e.to_string()))?;
    let manifest_digest = dst.put_manifest(&bytes, mt)?;
    dst.commit()?;
    Ok(CopyReport {
        manifest_digest: manifest_digest.to_string(),
        layers: report,
    })
}

fn copy_layer(
    src: &mut dyn ImageSource,
    dst: &mut dyn ImageDestination,
    l: &Descriptor,
    op: LayerOp<'_>,
    to_oci: bool,
    progress: &dyn Progress,
    index: usize,
) -> Result<Descriptor> {
    let mt = l.media_type().to_string();
    let oci_mt = if to_oci {
        media::to_oci(&mt).to_string()
    } else {
        mt.clone()
    };
    match op {
        LayerOp::Encrypt(recipients) if !is_encrypted(l) => {
            // The cipher pipeline hashes the plaintext it reads and the ciphertext it writes:
            // the source is checked against its descriptor from the former, and the staged
            // blob is committed under the latter, without reading either twice.
            let want = Digest::parse(l.digest().as_ref())?;
            let staged = dst.staging_file()?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, staged.as_file());
            let enc = {
                let r = ProgressReader::new(src.blob(&want)?, progress, index);
                crypt::encrypt_layer(r, &mut w, recipients).map_err(|e| reattach(e, l))?
            };
            w.into_inner()
                .map_err(|e| Error::io("writing", staged.path(), e.into_error()))?;
            if enc.plaintext_digest != want.as_str() || enc.size != l.size() {
                return Err(Error::integrity(
                    format!("blob {want}"),
                    format!("{want} ({} bytes)", l.size()),
                    format!("{} ({} bytes)", enc.plaintext_digest, enc.size),
                ));
            }
            let digest = Digest::parse(&enc.digest)?;
            dst.put_staged(staged, &digest, enc.size)?;
            let mut d = l.clone();
            d.set_media_type(MediaType::from(
                crypt::encrypted_media_type(&oci_mt)?.as_str(),
            ));
            d.set_digest(oci_digest(&digest)?);
            d.set_size(enc.size);
            let mut ann = l.annotations().clone().unwrap_or_default();
            ann.extend(enc.annotations);
            d.set_annotations(Some(ann));
            Ok(d)
        }
        LayerOp::Decrypt(keys) if is_encrypted(l) => {
            let ann: BTreeMap<String, String> = l
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            let staged = dst.staging_file()?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, staged.as_file());
            let dec = {
                // The ciphertext is checked against the descriptor while it streams; the HMAC
                // and the plaintext digest are checked by the cipher before we commit.
                let mut r = ProgressReader::new(verified_blob(src, l)?, progress, index);
                crypt::decrypt_layer(&mut r, &mut w, &ann, keys).map_err(|e| reattach(e, l))?
            };
            w.into_inner()
                .map_err(|e| Error::io("writing", staged.path(), e.into_error()))?;
            let digest = Digest::parse(&dec.digest)?;
            dst.put_staged(staged, &digest, dec.size)?;
            let mut d = l.clone();
            d.set_media_type(MediaType::from(
                crypt::decrypted_media_type(&oci_mt)?.as_str(),
            ));
            d.set_digest(oci_digest(&digest)?);
            d.set_size(dec.size);
            let kept: std::collections::HashMap<String, String> = ann
                .into_iter()
                .filter(|(k, _)| !k.starts_with("org.opencontainers.image.enc."))
                .collect();
            d.set_annotations(if kept.is_empty() { None } else { Some(kept) });
            Ok(d)
        }
        _ => {
            let want = Digest::parse(l.digest().as_ref())?;
            if !dst.has_blob(&want)? {
                // Verified while it streams into the staging file; committed only if it matched.
                let staged = dst.staging_file()?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, staged.as_file());
                let mut r = ProgressReader::new(verified_blob(src, l)?, progress, index);
                std::io::copy(&mut r, &mut w).map_err(|e| {
                    unwrap_io(
                        e,
                        "copying layer",
                        std::path::Path::new(l.digest().as_ref()),
                    )
                })?;
                w.into_inner()
                    .map_err(|e| Error::io("writing", staged.path(), e.into_error()))?;
                dst.put_staged(staged, &want, l.size())?;
            }
            let mut d = l.clone();
            d.set_media_type(MediaType::from(oci_mt.as_str()));
            Ok(d)
        }
    }
}

fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    oci_spec::image::Digest::try_from(d.as_str())
        .map_err(|e| Error::malformed("digest", e.to_string()))
}

/// I/O errors raised inside readers carry our own error; bring it back out, naming the layer.
fn reattach(e: Error, l: &Descriptor) -> Error {
    match e {
        Error::Io { source, .. } => unwrap_io(
            source,
            "reading layer",
            std::path::Path::new(l.digest().as_ref()),
        ),
        other => other,
    }
}
