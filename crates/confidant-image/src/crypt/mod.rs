//! ocicrypt-compatible layer encryption, byte for byte what `skopeo copy --encryption-key` and
//! containerd's imgcrypt write and read (see `docs/formats/image-encryption.md`).
//!
//! - [`cipher`]: the `AES_256_CTR_HMAC_SHA256` layer cipher, streaming.
//! - [`opts`]: the private and public layer options JSON and the `pubopts` annotation.
//! - [`jwe`]: JWE wrapping of the private options for RSA and EC recipients.
//! - [`provider`]: Confidant's wrapping for the coordinator (`provider.confidant`).
//! - [`keys`]: reading public and private key files.
//! - [`encrypt_layer`] / [`decrypt_layer`]: one layer blob and its annotations.

pub mod cipher;
mod der;
mod jose;
pub mod jwe;
pub mod keys;
mod layer;
pub mod opts;
pub mod provider;

pub use keys::{Curve, KeyKind, PrivateKey, PublicKey};
pub use layer::{
    Annotations, DecryptedLayer, DecryptionKeys, EncryptedLayer, Recipients, decrypt_layer,
    encrypt_layer, unwrap_layer_options,
};

use crate::{Error, Result};

/// Encrypted uncompressed layer.
pub const MEDIA_TYPE_LAYER_ENC: &str = "application/vnd.oci.image.layer.v1.tar+encrypted";
/// Encrypted gzip-compressed layer.
pub const MEDIA_TYPE_LAYER_GZIP_ENC: &str = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted";
/// Encrypted zstd-compressed layer.
pub const MEDIA_TYPE_LAYER_ZSTD_ENC: &str = "application/vnd.oci.image.layer.v1.tar+zstd+encrypted";
/// Encrypted non-distributable uncompressed layer.
pub const MEDIA_TYPE_LAYER_NONDISTRIBUTABLE_ENC: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+encrypted";
/// Encrypted non-distributable gzip-compressed layer.
pub const MEDIA_TYPE_LAYER_NONDISTRIBUTABLE_GZIP_ENC: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+encrypted";
/// Encrypted non-distributable zstd-compressed layer.
pub const MEDIA_TYPE_LAYER_NONDISTRIBUTABLE_ZSTD_ENC: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd+encrypted";

/// The suffix ocicrypt appends to a layer media type.
pub const ENCRYPTED_SUFFIX: &str = "+encrypted";

/// The public options annotation (standard base64 of the public options JSON).
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
/// Prefix of every encryption annotation; these are removed when a layer is decrypted.
pub const ANNOTATION_PREFIX: &str = "org.opencontainers.image.enc.";

/// Plain layer media types that can be encrypted.
const PLAIN_LAYER_TYPES: [&str; 6] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// Whether `media_type` is one of the encrypted layer media types.
pub fn is_encrypted_media_type(media_type: &str) -> bool {
    media_type
        .strip_suffix(ENCRYPTED_SUFFIX)
        .is_some_and(|plain| PLAIN_LAYER_TYPES.contains(&plain))
}

/// The media type of the encrypted form of a layer of type `media_type` (OCI layer types only:
/// Docker layer types must be converted to OCI first, as skopeo does when encrypting).
pub fn encrypted_media_type(media_type: &str) -> Result<String> {
    if is_encrypted_media_type(media_type) {
        return Err(Error::malformed(
            "layer media type",
            format!("expected a plain layer type, found the encrypted {media_type}"),
        ));
    }
    if PLAIN_LAYER_TYPES.contains(&media_type) {
        return Ok(format!("{media_type}{ENCRYPTED_SUFFIX}"));
    }
    let hint = if media_type.starts_with("application/vnd.docker.") {
        " (convert the image to OCI first)"
    } else {
        ""
    };
    Err(Error::Unsupported(format!(
        "encrypting a layer of type {media_type}{hint}: expected one of {}",
        PLAIN_LAYER_TYPES.join(", ")
    )))
}

/// The media type of the decrypted form of an encrypted layer of type `media_type`.
pub fn decrypted_media_type(media_type: &str) -> Result<String> {
    match media_type.strip_suffix(ENCRYPTED_SUFFIX) {
        Some(plain) if PLAIN_LAYER_TYPES.contains(&plain) => Ok(plain.to_string()),
        _ => Err(Error::malformed(
            "layer media type",
            format!(
                "expected an encrypted OCI layer type (…{ENCRYPTED_SUFFIX}), found {media_type}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_both_ways() {
        for plain in PLAIN_LAYER_TYPES {
            let enc = encrypted_media_type(plain).unwrap();
            assert!(is_encrypted_media_type(&enc));
            assert_eq!(decrypted_media_type(&enc).unwrap(), plain);
        }
        assert_eq!(
            encrypted_media_type("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            MEDIA_TYPE_LAYER_GZIP_ENC
        );
        assert_eq!(
            decrypted_media_type(MEDIA_TYPE_LAYER_ZSTD_ENC).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert!(encrypted_media_type(MEDIA_TYPE_LAYER_ENC).is_err());
        assert!(decrypted_media_type("application/vnd.oci.image.layer.v1.tar").is_err());
        let docker =
            encrypted_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip").unwrap_err();
        assert!(
            docker.to_string().contains("convert the image to OCI"),
            "{docker}"
        );
        assert!(
            decrypted_media_type("application/vnd.oci.image.config.v1+json+encrypted").is_err()
        );
    }
}
