//! Where images are read from and written to, behind two small traits so the copy, encrypt,
//! decrypt and unpack pipelines do not care about the transport.

use std::io::Read;

use oci_spec::image::{Descriptor, MediaType};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::OciLayout;

/// OCI and Docker manifest and index media types.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    /// Whether the media type names an index or manifest list.
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_LIST
    }

    /// The OCI equivalent of a Docker media type (others unchanged).
    pub fn to_oci(mt: &str) -> &str {
        match mt {
            DOCKER_MANIFEST => OCI_MANIFEST,
            DOCKER_LIST => OCI_INDEX,
            DOCKER_CONFIG => OCI_CONFIG,
            DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER,
            other => other,
        }
    }
}

/// A source of one image's manifest and blobs.
pub trait ImageSource {
    /// The top-level manifest (possibly an index) and its media type.
    fn manifest(&mut self) -> Result<(Vec<u8>, String)>;

    /// A manifest named by digest (an index's entry), verified against the digest.
    fn manifest_by_digest(&mut self, digest: &Digest) -> Result<Vec<u8>>;

    /// A blob's bytes (unverified; callers wrap it in a verifying reader).
    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>>;
}

/// A destination for one image.
pub trait ImageDestination {
    /// Whether the destination already holds the blob.
    fn has_blob(&mut self, digest: &Digest) -> Result<bool>;

    /// Stores a blob read to its end; refuses it unless it hashes to `expected` (when given).
    fn put_blob(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)>;

    /// A file to write a blob into before [`ImageDestination::put_staged`] commits it; placed
    /// where committing is a rename when the destination can.
    fn staging_file(&mut self) -> Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new()
            .map_err(|e| Error::io("creating a staging file in", std::env::temp_dir(), e))
    }

    /// Commits a staged blob whose digest and size the caller computed while writing it.
    /// By default the file is read back into [`ImageDestination::put_blob`], which hashes it again.
    fn put_staged(
        &mut self,
        staged: tempfile::NamedTempFile,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let _ = size;
        let mut f = std::io::BufReader::with_capacity(
            1 << 20,
            staged
                .reopen()
                .map_err(|e| Error::io("reopening", staged.path(), e))?,
        );
        self.put_blob(&mut f, Some(digest))?;
        Ok(())
    }

    /// Stores the manifest and names it as the destination's image.
    fn put_manifest(&mut self, bytes: &[u8], media_type: &str) -> Result<Digest>;

    /// Finishes the write (an archive is assembled here).
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Reads an image from an OCI layout.
pub struct OciSource {
    layout: OciLayout,
    tag: Option<String>,
}

impl OciSource {
    /// The image `tag` (or the only image) of the layout at `dir`.
    pub fn open(dir: &std::path::Path, tag: Option<String>) -> Result<OciSource> {
        Ok(OciSource {
            layout: OciLayout::open(dir)?,
            tag,
        })
    }
}

fn descriptor_media_type(d: &Descriptor) -> String {
    d.media_type().to_string()
}

impl ImageSource for OciSource {
    fn manifest(&mut self) -> Result<(Vec<u8>, String)> {
        let d = self.layout.resolve(self.tag.as_deref())?;
        let digest = Digest::parse(d.digest().as_ref())?;
        let bytes = self.layout.read_blob(&digest)?;
        Ok((bytes, descriptor_media_type(&d)))
    }

    fn manifest_by_digest(&mut self, digest: &Digest) -> Result<Vec<u8>> {
        self.layout.read_blob(digest)
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            self.layout.open_blob(digest)?,
        )))
    }
}

/// Writes an image into an OCI layout (created if absent), under a tag.
pub struct OciDestination {
    layout: OciLayout,
    tag: Option<String>,
}

impl OciDestination {
    /// The layout at `dir`, to be tagged `tag`.
    pub fn create(dir: &std::path::Path, tag: Option<String>) -> Result<OciDestination> {
        Ok(OciDestination {
            layout: OciLayout::create(dir)?,
            tag,
        })
    }
}

impl ImageDestination for OciDestination {
    fn has_blob(&mut self, digest: &Digest) -> Result<bool> {
        Ok(self.layout.has_blob(digest))
    }

    fn put_blob(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        self.layout.put_blob(reader, expected)
    }

    fn staging_file(&mut self) -> Result<tempfile::NamedTempFile> {
        self.layout.staging_file()
    }

    fn put_staged(
        &mut self,
        staged: tempfile::NamedTempFile,
        digest: &Digest,
        _size: u64,
    ) -> Result<()> {
        self.layout.commit_staged(staged, digest)
    }

    fn put_manifest(&mut self, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = self.layout.put_blob_bytes(bytes)?;
        let desc = Descriptor::new(
            MediaType::from(media_type),
            bytes.len() as u64,
            oci_spec::image::Digest::try_from(digest.as_str())
                .map_err(|e| Error::malformed("digest", e.to_string()))?,
        );
        self.layout.set_ref(self.tag.as_deref(), desc)?;
        Ok(digest)
    }
}
