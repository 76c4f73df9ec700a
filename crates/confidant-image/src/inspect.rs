//! What an image is made of, without decrypting anything.

use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use crate::copy::{Platform, is_encrypted, resolve_manifest_bytes, verified_blob};
use crate::error::{Error, Result};
use crate::source::ImageSource;

/// A summary of an image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    /// Digest of the image manifest (for the platform): what a package's `image_digests` lists.
    pub digest: String,
    /// Digest of the image config.
    pub config_digest: String,
    /// Operating system from the config.
    pub os: String,
    /// Architecture from the config.
    pub architecture: String,
    /// Entrypoint from the config.
    pub entrypoint: Vec<String>,
    /// Cmd from the config.
    pub cmd: Vec<String>,
    /// Names of the environment variables the config sets (values are not shown).
    pub env_names: Vec<String>,
    /// The layers.
    pub layers: Vec<LayerInfo>,
}

/// One layer of an [`ImageInfo`].
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// Digest of the blob.
    pub digest: String,
    /// Size of the blob.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// Whether the layer is encrypted.
    pub encrypted: bool,
    /// How many JWE recipients can unwrap its key.
    pub jwe_recipients: usize,
    /// Whether the coordinator can unwrap its key.
    pub coordinator: bool,
}

/// Summarizes the image `src` for `platform`.
pub fn inspect(src: &mut dyn ImageSource, platform: &Platform) -> Result<ImageInfo> {
    let bytes = resolve_manifest_bytes(src, platform)?;
    let digest = crate::digest::Digest::of(&bytes).to_string();
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| crate::Error::malformed("image manifest", e.to_string()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut verified_blob(src, manifest.config())?, &mut bytes)
        .map_err(|e| crate::digest::unwrap_io(e, "reading", std::path::Path::new("config")))?;
    let config: ImageConfiguration = serde_json::from_slice(&bytes)
        .map_err(|e| Error::malformed("image config", e.to_string()))?;
    let c = config.config().clone().unwrap_or_default();
    let layers = manifest
        .layers()
        .iter()
        .map(|l| {
            let ann = l.annotations().clone().unwrap_or_default();
            LayerInfo {
                digest: l.digest().to_string(),
                size: l.size(),
                media_type: l.media_type().to_string(),
                encrypted: is_encrypted(l),
                jwe_recipients: ann
                    .get(crate::crypt::jwe::ANNOTATION)
                    .map(|v| v.split(',').filter(|s| !s.is_empty()).count())
                    .unwrap_or(0),
                coordinator: ann.contains_key(crate::crypt::provider::ANNOTATION),
            }
        })
        .collect();
    Ok(ImageInfo {
        digest,
        config_digest: manifest.config().digest().to_string(),
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env_names: c
            .env()
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|e| e.split('=').next().unwrap_or_default().to_string())
            .collect(),
        layers,
    })
}
