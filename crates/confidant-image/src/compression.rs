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
    /// From a layer media type (encrypted or not, OCI or Docker).
    pub fn from_media_type(mt: &str) -> Result<Compression> {
        let base = mt.strip_suffix("+encrypted").unwrap_or(mt);
        if base.ends_with("tar+gzip") || base.ends_with(".tar.gzip") {
            Ok(Compression::Gzip)
        } else if base.ends_with("tar+zstd") {
            Ok(Compression::Zstd)
        } else if base.ends_with(".tar") || base.ends_with("rootfs.diff.tar") {
            Ok(Compression::None)
        } else {
            Err(Error::Unsupported(format!("layer media type {mt:?}")))
        }
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
    pub fn decoder<'a, R: Read + Send + 'a>(self, r: R) -> Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            // MultiGzDecoder: gzip files may hold several members (pigz and some tools write them).
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, r))),
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
