//! Decompressing layer blobs into the tar stream that [`super::unpack_layer`] reads.

use std::io::Read;

use crate::error::{Error, Result};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip, possibly of several members (`…tar+gzip`, Docker's `…diff.tar.gzip`).
    Gzip,
    /// Zstandard (`…tar+zstd`).
    Zstd,
}

impl Compression {
    /// Reads a layer media type (OCI or Docker, distributable or not) or a bare compression
    /// name (`none`, `gzip`, `zstd`). Encrypted media types (`+encrypted`) are refused: the
    /// layer is decrypted first, which yields the inner media type.
    pub fn parse(media_type_or_compression: &str) -> Result<Self> {
        let s = media_type_or_compression;
        match s {
            "" | "none" | "identity" | "tar" => return Ok(Self::None),
            "gzip" | "gz" => return Ok(Self::Gzip),
            "zstd" | "zst" => return Ok(Self::Zstd),
            _ => {}
        }
        if s.ends_with("+encrypted") {
            return Err(Error::Unsupported(format!(
                "layer media type {s:?} is encrypted: decrypt the layer before unpacking it"
            )));
        }
        let layer = s
            .strip_prefix("application/vnd.oci.image.layer.")
            .or_else(|| s.strip_prefix("application/vnd.docker.image.rootfs."));
        if let Some(rest) = layer {
            if rest.ends_with("tar") {
                return Ok(Self::None);
            }
            if rest.ends_with("tar+gzip") || rest.ends_with("tar.gzip") {
                return Ok(Self::Gzip);
            }
            if rest.ends_with("tar+zstd") || rest.ends_with("tar.zstd") {
                return Ok(Self::Zstd);
            }
        }
        Err(Error::Unsupported(format!(
            "layer media type or compression {s:?}: expected an OCI or Docker layer media type \
             (tar, tar+gzip, tar+zstd) or one of none, gzip, zstd"
        )))
    }
}

/// Wraps `reader`, a layer blob of the given media type or compression (see
/// [`Compression::parse`]), in the decompressor that yields its tar stream.
///
/// Decompression is bounded by what reads it: [`super::unpack_layer`] stops at its limits, so
/// a decompression bomb is never expanded further than the budget.
pub fn decompressing_reader<'a, R: Read + 'a>(
    media_type_or_compression: &str,
    reader: R,
) -> Result<Box<dyn Read + 'a>> {
    Ok(match Compression::parse(media_type_or_compression)? {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(reader)
                .map_err(|e| Error::malformed("zstd layer stream", e.to_string()))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layer_media_types() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            ("gzip", Compression::Gzip),
            ("zstd", Compression::Zstd),
            ("none", Compression::None),
        ];
        for (media_type, expected) in cases {
            assert_eq!(
                Compression::parse(media_type).unwrap(),
                expected,
                "{media_type}"
            );
        }
    }

    #[test]
    fn refuses_unknown_and_encrypted_media_types() {
        for media_type in [
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "lz4",
        ] {
            assert!(
                matches!(Compression::parse(media_type), Err(Error::Unsupported(_))),
                "{media_type} accepted"
            );
        }
    }
}
