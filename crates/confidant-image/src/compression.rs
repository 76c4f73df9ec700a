//! Layer compressions: gzip, zstd or none, from media types or magic bytes.

use std::io::{BufRead, BufReader, Read};

use crate::error::{Error, Result};

/// How a layer tarball is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// From a layer media type, OCI or Docker, distributable or not
    /// (`application/vnd.oci.image.layer.v1.tar+gzip`, `…tar+zstd`, `…tar`,
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`), or a bare name: `gzip`, `zstd`,
    /// `none` (or empty). Encrypted media types (`…+encrypted`) are refused: decrypting the layer
    /// yields the inner media type, whose bytes are the ones to decompress.
    pub fn from_media_type(media_type_or_name: &str) -> Result<Compression> {
        let s = media_type_or_name;
        match s {
            "" | "none" | "identity" | "tar" => return Ok(Compression::None),
            "gzip" | "gz" => return Ok(Compression::Gzip),
            "zstd" | "zst" => return Ok(Compression::Zstd),
            _ => {}
        }
        if s.ends_with("+encrypted") {
            return Err(Error::Unsupported(format!(
                "layer media type {s:?} is encrypted: decrypt the layer before decompressing it"
            )));
        }
        let layer = s
            .strip_prefix("application/vnd.oci.image.layer.")
            .or_else(|| s.strip_prefix("application/vnd.docker.image.rootfs."));
        if let Some(rest) = layer {
            if rest.ends_with("tar") {
                return Ok(Compression::None);
            }
            if rest.ends_with("tar+gzip") || rest.ends_with("tar.gzip") {
                return Ok(Compression::Gzip);
            }
            if rest.ends_with("tar+zstd") || rest.ends_with("tar.zstd") {
                return Ok(Compression::Zstd);
            }
        }
        Err(Error::Unsupported(format!(
            "layer media type or compression {s:?}: expected an OCI or Docker layer media type \
             (tar, tar+gzip, tar+zstd) or one of none, gzip, zstd"
        )))
    }

    /// From the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type with this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => crate::source::media::OCI_LAYER,
            Compression::Gzip => crate::source::media::OCI_LAYER_GZIP,
            Compression::Zstd => crate::source::media::OCI_LAYER_ZSTD,
        }
    }

    /// A reader yielding the decompressed bytes of `r`.
    pub fn decoder<'a, R: Read + 'a>(self, r: R) -> Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            // MultiGzDecoder: gzip files may hold several members (pigz and some tools write them).
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(1 << 16, r),
            )),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(r)
                    .map_err(|e| Error::malformed("zstd layer", e.to_string()))?,
            ),
        })
    }
}

/// Detects the compression of a buffered reader without consuming anything.
pub fn sniff<R: BufRead>(r: &mut R) -> Result<Compression> {
    let head = r.fill_buf().map_err(|e| Error::io("reading", "layer", e))?;
    Ok(Compression::detect(head))
}
