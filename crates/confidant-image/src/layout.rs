//! OCI image layouts: a directory with `oci-layout`, `index.json` and `blobs/sha256/…`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::digest::{Digest, copy_verified};
use crate::error::{Error, Result};

/// The annotation that names a manifest in `index.json` (the `TAG` of `oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Opens an existing layout, checking its `oci-layout` marker.
    pub fn open(root: impl Into<PathBuf>) -> Result<OciLayout> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let text =
            std::fs::read_to_string(&marker).map_err(|e| Error::io("reading", &marker, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::malformed(marker.display().to_string(), e.to_string()))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => Ok(OciLayout { root }),
            other => Err(Error::malformed(
                marker.display().to_string(),
                format!("expected imageLayoutVersion 1.0.0, got {other:?}"),
            )),
        }
    }

    /// Opens a layout, creating an empty one first if the directory has none.
    pub fn create(root: impl Into<PathBuf>) -> Result<OciLayout> {
        let root = root.into();
        if root.join("oci-layout").exists() {
            return Self::open(root);
        }
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io("creating", &blobs, e))?;
        write_atomic(
            &root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let layout = OciLayout { root };
        let empty = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(Vec::new())
            .build()
            .map_err(|e| Error::malformed("index.json", e.to_string()))?;
        layout.write_index(&empty)?;
        Ok(layout)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading (unverified: wrap in [`crate::digest::VerifyingReader`]).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| Error::io("opening blob", &p, e))
    }

    /// Reads a whole small blob (manifests, configs), verifying its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let bytes = std::fs::read(&p).map_err(|e| Error::io("reading blob", &p, e))?;
        let got = Digest::of(&bytes);
        if &got != digest {
            return Err(Error::integrity(
                format!("blob {}", p.display()),
                digest.to_string(),
                got.to_string(),
            ));
        }
        Ok(bytes)
    }

    /// Streams `reader` into a new blob; the blob appears under its digest only when complete
    /// (and, with `expected`, only when the digest matches).
    pub fn put_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let dir = self.root.join("blobs/sha256");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| Error::io("creating a temporary blob in", &dir, e))?;
        let (digest, size, tmp) = copy_verified(reader, tmp, expected, &dir)?;
        let path = self.blob_path(&digest);
        tmp.persist(&path)
            .map_err(|e| Error::io("storing blob", &path, e.error))?;
        Ok((digest, size))
    }

    /// A temporary file inside the blob directory, so that committing it is a rename.
    pub fn staging_file(&self) -> Result<tempfile::NamedTempFile> {
        let dir = self.root.join("blobs/sha256");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| Error::io("creating a temporary blob in", &dir, e))
    }

    /// Moves a staged blob to its digest's name. The caller vouches for `digest`: it computed it
    /// over the bytes it wrote (the crypto pipeline does).
    pub fn commit_staged(&self, staged: tempfile::NamedTempFile, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        staged
            .persist(&path)
            .map_err(|e| Error::io("storing blob", &path, e.error))?;
        Ok(())
    }

    /// Stores a small in-memory blob.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        Ok(self.put_blob(&mut &bytes[..], None)?.0)
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<ImageIndex> {
        let p = self.root.join("index.json");
        let text = std::fs::read(&p).map_err(|e| Error::io("reading", &p, e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::malformed(p.display().to_string(), e.to_string()))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes =
            serde_json::to_vec(index).map_err(|e| Error::malformed("index.json", e.to_string()))?;
        write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// The descriptor named `tag`, or with no tag the only manifest in the index.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        let index = self.index()?;
        let manifests = index.manifests();
        match tag {
            Some(t) => manifests
                .iter()
                .find(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .map(String::as_str)
                        == Some(t)
                })
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<&str> = manifests
                        .iter()
                        .filter_map(|d| {
                            d.annotations()
                                .as_ref()
                                .and_then(|a| a.get(REF_NAME))
                                .map(String::as_str)
                        })
                        .collect();
                    Error::malformed(
                        format!("OCI layout {}", self.root.display()),
                        format!("no image tagged {t:?} (tags present: {names:?})"),
                    )
                }),
            None => match manifests.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(Error::malformed(
                    format!("OCI layout {}", self.root.display()),
                    format!(
                        "{} images in index.json; name one with oci:DIR:TAG",
                        manifests.len()
                    ),
                )),
            },
        }
    }

    /// Points `tag` (or, without a tag, the untagged entry) at `descriptor` in `index.json`,
    /// replacing what it named before.
    pub fn set_ref(&self, tag: Option<&str>, mut descriptor: Descriptor) -> Result<()> {
        let mut index = self.index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .map(String::as_str)
                    != tag
            })
            .cloned()
            .collect();
        let mut ann = descriptor.annotations().clone().unwrap_or_default();
        match tag {
            Some(t) => {
                ann.insert(REF_NAME.to_string(), t.to_string());
            }
            None => {
                ann.remove(REF_NAME);
            }
        }
        descriptor.set_annotations(if ann.is_empty() { None } else { Some(ann) });
        manifests.push(descriptor);
        index.set_manifests(manifests);
        self.write_index(&index)
    }
}

/// Writes a file by rename, so readers see the old or the new content, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replacing", path, e.error))?;
    Ok(())
}
