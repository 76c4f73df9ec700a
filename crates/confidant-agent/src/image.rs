//! The workload's image: its manifest (whose digest the coordinator checks and the evidence's
//! config id carries), and its layers decrypted with the keys the coordinator released,
//! verified and unpacked into memory.

use std::collections::BTreeMap;
use std::path::Path;

use confidant_api::LayerKey;
use confidant_image::copy::{NoProgress, Platform, resolve_manifest_bytes};
use confidant_image::crypt::DecryptionKeys;
use confidant_image::crypt::opts::PrivateLayerBlockCipherOptions;
use confidant_image::rootfs::{image_config, unpack_image};
use confidant_image::source::ImageSource;
use confidant_image::transport::{ImageName, TransportOptions, open_source};
use confidant_image::unpack::UnpackOptions;
use oci_spec::image::ImageConfiguration;
use sha2::Digest as _;
use zeroize::Zeroizing;

/// Why the image could not be read, decrypted or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading, verifying or unpacking failed.
    #[error("{what}: {source}")]
    Image {
        /// What was being done.
        what: &'static str,
        /// The image library's error.
        source: confidant_image::Error,
    },
    /// The coordinator released no key for an encrypted layer.
    #[error("the coordinator released no key for layer {0}")]
    NoKey(String),
    /// The released key is not a layer key.
    #[error("the released key of layer {layer}: {reason}")]
    BadKey {
        /// The layer's digest.
        layer: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn image(what: &'static str) -> impl FnOnce(confidant_image::Error) -> ImageError {
    move |source| ImageError::Image { what, source }
}

/// An image opened for a run: its source and the manifest for this platform.
pub struct Image {
    source: Box<dyn ImageSource>,
    platform: Platform,
    manifest: Vec<u8>,
    digest: String,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({})", self.digest)
    }
}

impl Image {
    /// Opens `name` (skopeo's transport syntax) and reads its manifest for this platform.
    pub fn open(name: &str, options: &TransportOptions) -> Result<Image, ImageError> {
        let name = ImageName::parse(name).map_err(image("the image name"))?;
        let mut source = open_source(&name, options).map_err(image("opening the image"))?;
        let platform = Platform::default();
        let manifest = resolve_manifest_bytes(source.as_mut(), &platform)
            .map_err(image("reading the image manifest"))?;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
        Ok(Image {
            source,
            platform,
            manifest,
            digest,
        })
    }

    /// The manifest's bytes: what the coordinator releases layer keys for.
    pub fn manifest(&self) -> &[u8] {
        &self.manifest
    }

    /// The manifest's digest, `sha256:<hex>`.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Decrypts (with `keys`), verifies and unpacks every layer into `rootfs` (which must not
    /// exist), at most `max_bytes` of file contents (what the run's memory holds), and returns
    /// the image's configuration. Nothing is left in `rootfs` unless every layer verified.
    pub fn unpack(
        &mut self,
        keys: &DecryptionKeys,
        rootfs: &Path,
        max_bytes: u64,
    ) -> Result<ImageConfiguration, ImageError> {
        unpack_image(
            self.source.as_mut(),
            &self.platform,
            keys,
            rootfs,
            &UnpackOptions {
                max_total_bytes: max_bytes,
                ..UnpackOptions::default()
            },
            &NoProgress,
        )
        .map_err(image("unpacking the image"))?;
        let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&self.manifest)
            .map_err(|e| ImageError::Image {
                what: "the image manifest",
                source: confidant_image::Error::malformed("image manifest", e.to_string()),
            })?;
        image_config(self.source.as_mut(), &manifest).map_err(image("reading the image config"))
    }
}

/// The coordinator's released layer keys (by layer digest) as decryption keys, keyed by the
/// `provider.confidant` annotation of the layer each belongs to.
pub fn released_keys(
    manifest: &[u8],
    layer_keys: &BTreeMap<String, LayerKey>,
) -> Result<DecryptionKeys, ImageError> {
    let mut keys = DecryptionKeys::default();
    let wrapped = confidant_image::crypt::provider::wrapped_layer_keys(manifest).map_err(|e| {
        ImageError::Image {
            what: "the image manifest's layer keys",
            source: confidant_image::Error::malformed("image manifest", e.to_string()),
        }
    })?;
    for (_, digest, annotation) in wrapped {
        let Some(released) = layer_keys.get(&digest) else {
            return Err(ImageError::NoKey(digest));
        };
        let json =
            Zeroizing::new(
                serde_json::to_vec(released).map_err(|e| ImageError::BadKey {
                    layer: digest.clone(),
                    reason: e.to_string(),
                })?,
            );
        let private =
            PrivateLayerBlockCipherOptions::from_json(&json).map_err(|e| ImageError::BadKey {
                layer: digest.clone(),
                reason: e.to_string(),
            })?;
        keys.released.insert(annotation, private);
    }
    Ok(keys)
}
