//! Decompressing layer blobs into the tar stream that [`super::unpack_layer`] reads.
//!
//! The mapping from media types to compressions lives in [`crate::compression`].

use std::io::Read;

use crate::compression::Compression;
use crate::error::Result;

/// Wraps `reader`, a layer blob, in the decompressor that yields its tar stream.
///
/// `media_type_or_compression` is a layer media type or a bare compression name, as
/// [`Compression::from_media_type`] reads them; encrypted media types are refused (decrypt first).
///
/// Decompression is bounded by what reads it: [`super::unpack_layer`] stops at its limits, so
/// a decompression bomb is never expanded further than the budget.
pub fn decompressing_reader<'a, R: Read + 'a>(
    media_type_or_compression: &str,
    reader: R,
) -> Result<Box<dyn Read + 'a>> {
    Compression::from_media_type(media_type_or_compression)?.decoder(reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

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
                Compression::from_media_type(media_type).unwrap(),
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
                matches!(
                    Compression::from_media_type(media_type),
                    Err(Error::Unsupported(_))
                ),
                "{media_type} accepted"
            );
        }
    }
}
