//! Encrypting and decrypting one layer blob with its annotations: the API the image pipeline
//! calls. A layer is encrypted under a fresh [`LayerKey`]; its private options are wrapped for
//! every JWE recipient (`org.opencontainers.image.enc.keys.jwe`) and, if given, for the
//! coordinator (`org.opencontainers.image.enc.keys.provider.confidant`); the public options go
//! into `org.opencontainers.image.enc.pubopts`.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use super::cipher::{self, LayerKey};
use super::keys::{PrivateKey, PublicKey};
use super::opts::{PrivateLayerBlockCipherOptions, PublicLayerBlockCipherOptions};
use super::{ANNOTATION_PREFIX, ANNOTATION_PUBOPTS, jwe, provider};
use crate::{Error, Result};

/// Who can decrypt a layer.
#[derive(Clone, Debug, Default)]
pub struct Recipients {
    /// Public keys the private options are JWE-wrapped for (skopeo's `--encryption-key jwe:…`).
    pub jwe: Vec<PublicKey>,
    /// The coordinator's image key (EC P-256 or P-384), for the `provider.confidant` wrapping.
    pub coordinator: Option<PublicKey>,
}

impl Recipients {
    /// Whether there is no recipient at all.
    pub fn is_empty(&self) -> bool {
        self.jwe.is_empty() && self.coordinator.is_none()
    }
}

/// Keys to decrypt layers with.
#[derive(Debug, Default)]
pub struct DecryptionKeys {
    /// Private keys tried on the JWE recipients (skopeo's `--decryption-key`).
    pub jwe: Vec<PrivateKey>,
    /// The coordinator's image key, tried on the `provider.confidant` wrapping.
    pub coordinator: Option<PrivateKey>,
    /// Layer options the coordinator already unwrapped and released to an attested agent, by
    /// the value of the layer's `provider.confidant` annotation (what the coordinator unwrapped).
    /// A wrong entry cannot decrypt the wrong layer: the HMAC and the plaintext digest are
    /// checked as for any other key.
    pub released: BTreeMap<String, PrivateLayerBlockCipherOptions>,
}

/// An encrypted layer: what goes into its descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedLayer {
    /// The `org.opencontainers.image.enc.*` annotations to set on the descriptor.
    pub annotations: BTreeMap<String, String>,
    /// Digest of the ciphertext blob, `sha256:<hex>`.
    pub digest: String,
    /// Size of the ciphertext blob (equal to the plaintext's).
    pub size: u64,
    /// Digest of the plaintext blob that was read, `sha256:<hex>` (also in the private options),
    /// so callers can check the source without hashing it a second time.
    pub plaintext_digest: String,
}

/// A decrypted, verified layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptedLayer {
    /// Digest of the plaintext blob, `sha256:<hex>`, equal to the one in the private options.
    pub digest: String,
    /// Size of the plaintext blob.
    pub size: u64,
}

/// Read access to a descriptor's annotations, whatever map type holds them.
pub trait Annotations {
    /// The value of annotation `key`.
    fn annotation(&self, key: &str) -> Option<&str>;
    /// All annotation keys.
    fn annotation_keys(&self) -> Vec<&str>;
}

impl Annotations for BTreeMap<String, String> {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
    fn annotation_keys(&self) -> Vec<&str> {
        self.keys().map(String::as_str).collect()
    }
}

impl<S: std::hash::BuildHasher> Annotations for HashMap<String, String, S> {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
    fn annotation_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }
}

fn sha256_digest(bytes: &[u8; cipher::SHA256_LEN]) -> String {
    format!("sha256:{}", hex::encode(bytes))
}

/// Encrypts the layer blob read from `reader` (already compressed, as stored) to `writer`, for
/// `recipients`. The private options carry the plaintext blob's digest, as ocicrypt's do.
/// Runs AES-CTR and the hashes on two threads.
pub fn encrypt_layer<R: Read, W: Write + Send>(
    reader: R,
    writer: W,
    recipients: &Recipients,
) -> Result<EncryptedLayer> {
    if recipients.is_empty() {
        return Err(Error::Key(
            "no recipients: a layer needs at least one JWE public key or the coordinator key"
                .into(),
        ));
    }
    if let Some(coordinator) = &recipients.coordinator {
        // Refuse an unusable coordinator key before streaming the layer.
        if !matches!(
            coordinator.kind(),
            super::KeyKind::Ec(super::Curve::P256 | super::Curve::P384)
        ) {
            return Err(Error::Unsupported(format!(
                "coordinator image key of type {}: expected EC P-256 or P-384",
                coordinator.kind()
            )));
        }
    }
    let key = LayerKey::generate()?;
    let stats = cipher::encrypt_to_pipelined(reader, writer, &key)?;
    let plaintext_digest = sha256_digest(&stats.plaintext_sha256);
    let private = PrivateLayerBlockCipherOptions {
        key,
        digest: plaintext_digest.clone(),
    };
    let public = PublicLayerBlockCipherOptions { hmac: stats.hmac };

    let mut annotations = BTreeMap::new();
    if !recipients.jwe.is_empty() {
        let value = jwe::wrap_annotation(&private.to_json(), &recipients.jwe)?;
        annotations.insert(jwe::ANNOTATION.to_string(), value);
    }
    if let Some(coordinator) = &recipients.coordinator {
        let value = provider::wrap_for_coordinator(coordinator, &private)?;
        annotations.insert(provider::ANNOTATION.to_string(), value);
    }
    annotations.insert(ANNOTATION_PUBOPTS.to_string(), public.to_annotation());
    Ok(EncryptedLayer {
        annotations,
        digest: sha256_digest(&stats.ciphertext_sha256),
        size: stats.size,
        plaintext_digest,
    })
}

/// Unwraps a layer's options with `keys`, without touching the blob: the coordinator key on the
/// `provider.confidant` annotation first, then each JWE key on each JWE recipient.
pub fn unwrap_layer_options<A: Annotations + ?Sized>(
    annotations: &A,
    keys: &DecryptionKeys,
) -> Result<(
    PrivateLayerBlockCipherOptions,
    PublicLayerBlockCipherOptions,
)> {
    let pubopts = annotations.annotation(ANNOTATION_PUBOPTS).ok_or_else(|| {
        Error::malformed(
            "encrypted layer annotations",
            format!("expected {ANNOTATION_PUBOPTS}, found none"),
        )
    })?;
    let public = PublicLayerBlockCipherOptions::from_annotation(pubopts)?;

    if let Some(private) = annotations
        .annotation(provider::ANNOTATION)
        .and_then(|value| keys.released.get(value))
    {
        return Ok((private.clone(), public));
    }
    let mut failures: Vec<Error> = Vec::new();
    if let (Some(key), Some(value)) = (
        &keys.coordinator,
        annotations.annotation(provider::ANNOTATION),
    ) {
        match provider::unwrap_as_coordinator(key, value) {
            Ok(private) => return Ok((private, public)),
            Err(e) => failures.push(e),
        }
    }
    if let (false, Some(value)) = (keys.jwe.is_empty(), annotations.annotation(jwe::ANNOTATION)) {
        match jwe::unwrap_annotation(value, &keys.jwe) {
            Ok(json) => return Ok((PrivateLayerBlockCipherOptions::from_json(&json)?, public)),
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        let wrapped_for: Vec<&str> = annotations
            .annotation_keys()
            .into_iter()
            .filter(|k| k.starts_with(ANNOTATION_PREFIX) && k.contains(".keys."))
            .collect();
        let given = format!(
            "{} JWE key(s){}{}",
            keys.jwe.len(),
            if keys.coordinator.is_some() {
                " and the coordinator key"
            } else {
                ""
            },
            if keys.released.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} released layer key(s), none for this layer)",
                    keys.released.len()
                )
            }
        );
        return Err(Error::Key(format!(
            "the layer's key is wrapped for [{}]; none of them can be tried with the {given}",
            wrapped_for.join(", ")
        )));
    }
    if failures.iter().all(|e| !matches!(e, Error::Key(_))) {
        return Err(failures.remove(0));
    }
    let messages: Vec<String> = failures.iter().map(|e| e.to_string()).collect();
    Err(Error::Key(messages.join("; ")))
}

/// Decrypts the encrypted layer blob read from `reader` to `writer`, using the descriptor's
/// `annotations` and `keys`. Checks the HMAC over the ciphertext and that the plaintext digest
/// equals the one in the private options; on any error, what was written must be discarded.
/// Wrong keys give [`Error::Key`] naming how many recipients were tried, before anything is read.
pub fn decrypt_layer<R: Read, W: Write + Send, A: Annotations + ?Sized>(
    reader: R,
    writer: W,
    annotations: &A,
    keys: &DecryptionKeys,
) -> Result<DecryptedLayer> {
    let (private, public) = unwrap_layer_options(annotations, keys)?;
    let stats = cipher::decrypt_to_pipelined(reader, writer, &private.key, &public.hmac)?;
    let digest = sha256_digest(&stats.plaintext_sha256);
    if digest != private.digest {
        return Err(Error::integrity(
            "decrypted layer digest",
            private.digest,
            digest,
        ));
    }
    Ok(DecryptedLayer {
        digest,
        size: stats.size,
    })
}
