//! `docker save` tarballs (docker-archive): read as an image source, written as a destination.
//!
//! An archive holds `manifest.json` (`[{"Config": PATH, "RepoTags": [...], "Layers": [PATH, ...]}]`),
//! the config JSON and one tar per layer. Reading extracts the regular files into a private
//! temporary directory (refusing any name that is absolute, has `..`, or is not a plain file) and
//! presents the image as an OCI manifest. Writing stores uncompressed layers, as `docker load`
//! expects, and refuses encrypted layers, which docker cannot load.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};

use crate::compression::{self, Compression};
use crate::digest::{Digest, HashingReader, HashingWriter, copy_verified};
use crate::error::{Error, Result};
use crate::source::{ImageDestination, ImageSource, media};

/// One image entry of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads an image from a docker-archive tarball.
pub struct ArchiveSource {
    dir: tempfile::TempDir,
    manifest: Vec<u8>,
    blobs: BTreeMap<Digest, PathBuf>,
}

/// Most files a docker-archive may hold before it is refused as unreasonable.
const MAX_ARCHIVE_FILES: usize = 100_000;

impl ArchiveSource {
    /// Opens `file`, choosing the image tagged `reference` (or the only one).
    pub fn open(file: &Path, reference: Option<&str>) -> Result<ArchiveSource> {
        let dir = tempfile::tempdir()
            .map_err(|e| Error::io("creating a temporary directory for", file, e))?;
        let f = File::open(file).map_err(|e| Error::io("opening", file, e))?;
        let mut tar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
        let what = format!("docker-archive {}", file.display());
        let mut count = 0usize;
        for entry in tar
            .entries()
            .map_err(|e| Error::malformed(&what, e.to_string()))?
        {
            let mut entry = entry.map_err(|e| Error::malformed(&what, e.to_string()))?;
            count += 1;
            if count > MAX_ARCHIVE_FILES {
                return Err(Error::Limit(format!(
                    "{what} has more than {MAX_ARCHIVE_FILES} entries"
                )));
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_symlink() {
                // Directories are implied; `docker save` writes symlinks for duplicate layers,
                // which we do not need (layers are found by the paths in manifest.json).
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| Error::malformed(&what, e.to_string()))?
                .into_owned();
            let rel = safe_relative(&path).ok_or_else(|| {
                Error::unsafe_entry(path.display().to_string(), "not a plain relative path")
            })?;
            if !kind.is_file() {
                continue;
            }
            let dest = dir.path().join(&rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
            }
            let mut out = File::create(&dest).map_err(|e| Error::io("creating", &dest, e))?;
            std::io::copy(&mut entry, &mut out).map_err(|e| Error::io("extracting", &dest, e))?;
        }
        let mpath = dir.path().join("manifest.json");
        let mbytes = std::fs::read(&mpath)
            .map_err(|_| Error::malformed(&what, "no manifest.json: not a docker-archive"))?;
        let entries: Vec<ArchiveEntry> = serde_json::from_slice(&mbytes)
            .map_err(|e| Error::malformed(format!("{what} manifest.json"), e.to_string()))?;
        let entry = pick_entry(&entries, reference, &what)?;

        let mut blobs = BTreeMap::new();
        let mut add = |rel: &str| -> Result<(Digest, u64, Compression)> {
            let p = dir.path().join(
                safe_relative(Path::new(rel))
                    .ok_or_else(|| Error::unsafe_entry(rel, "not a plain relative path"))?,
            );
            let f = File::open(&p).map_err(|_| {
                Error::malformed(
                    &what,
                    format!("manifest.json names {rel:?}, which the archive lacks"),
                )
            })?;
            let mut r = std::io::BufReader::new(f);
            let comp = compression::sniff(&mut r)?;
            let mut h = HashingReader::new(r);
            std::io::copy(&mut h, &mut std::io::sink()).map_err(|e| Error::io("reading", &p, e))?;
            let (d, size) = h.finish();
            blobs.insert(d.clone(), p);
            Ok((d, size, comp))
        };
        let (cdigest, csize, _) = add(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (d, size, comp) = add(l)?;
            layers.push(descriptor(comp.oci_media_type(), size, &d)?);
        }
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(media::OCI_CONFIG, csize, &cdigest)?)
            .layers(layers)
            .build()
            .map_err(|e| Error::malformed(&what, e.to_string()))?;
        let manifest =
            serde_json::to_vec(&manifest).map_err(|e| Error::malformed(&what, e.to_string()))?;
        Ok(ArchiveSource {
            dir,
            manifest,
            blobs,
        })
    }
}

fn pick_entry<'a>(
    entries: &'a [ArchiveEntry],
    reference: Option<&str>,
    what: &str,
) -> Result<&'a ArchiveEntry> {
    let tags = |e: &ArchiveEntry| e.repo_tags.clone().unwrap_or_default();
    match reference {
        Some(r) => {
            let want = if r.contains(':') {
                r.to_string()
            } else {
                format!("{r}:latest")
            };
            entries
                .iter()
                .find(|e| {
                    tags(e)
                        .iter()
                        .any(|t| *t == want || t.ends_with(&format!("/{want}")))
                })
                .ok_or_else(|| {
                    let all: Vec<String> = entries.iter().flat_map(tags).collect();
                    Error::malformed(
                        what,
                        format!("no image tagged {want:?} (tags present: {all:?})"),
                    )
                })
        }
        None => match entries {
            [one] => Ok(one),
            _ => Err(Error::malformed(
                what,
                format!(
                    "{} images; name one with docker-archive:FILE:REPO:TAG",
                    entries.len()
                ),
            )),
        },
    }
}

fn descriptor(mt: &str, size: u64, d: &Digest) -> Result<Descriptor> {
    Ok(Descriptor::new(
        MediaType::from(mt),
        size,
        oci_spec::image::Digest::try_from(d.as_str())
            .map_err(|e| Error::malformed("digest", e.to_string()))?,
    ))
}

/// A path with only normal components (no root, no `..`, no `.` after cleaning).
fn safe_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

impl ImageSource for ArchiveSource {
    fn manifest(&mut self) -> Result<(Vec<u8>, String)> {
        Ok((self.manifest.clone(), media::OCI_MANIFEST.to_string()))
    }

    fn manifest_by_digest(&mut self, digest: &Digest) -> Result<Vec<u8>> {
        Err(Error::malformed(
            "docker-archive",
            format!("has no manifest {digest}: archives hold one manifest per image"),
        ))
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let p = self
            .blobs
            .get(digest)
            .ok_or_else(|| Error::malformed("docker-archive", format!("no blob {digest}")))?;
        let _keep = &self.dir;
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(p).map_err(|e| Error::io("opening", p, e))?,
        )))
    }
}

/// Writes an image as a docker-archive tarball when committed.
pub struct ArchiveDestination {
    file: PathBuf,
    reference: Option<String>,
    dir: tempfile::TempDir,
    manifest: Option<ImageManifest>,
}

impl ArchiveDestination {
    /// A destination that will write `file`, recording `reference` in `RepoTags`.
    pub fn create(file: &Path, reference: Option<String>) -> Result<ArchiveDestination> {
        let parent = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = tempfile::tempdir_in(parent)
            .map_err(|e| Error::io("creating a temporary directory in", parent, e))?;
        Ok(ArchiveDestination {
            file: file.to_path_buf(),
            reference,
            dir,
            manifest: None,
        })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.path().join(d.hex())
    }
}

impl ImageDestination for ArchiveDestination {
    fn has_blob(&mut self, digest: &Digest) -> Result<bool> {
        Ok(self.blob_path(digest).exists())
    }

    fn put_blob(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let tmp = tempfile::NamedTempFile::new_in(self.dir.path())
            .map_err(|e| Error::io("creating in", self.dir.path(), e))?;
        let (d, size, tmp) = copy_verified(reader, tmp, expected, self.dir.path())?;
        let path = self.blob_path(&d);
        tmp.persist(&path)
            .map_err(|e| Error::io("storing", &path, e.error))?;
        Ok((d, size))
    }

    fn put_manifest(&mut self, bytes: &[u8], _media_type: &str) -> Result<Digest> {
        let m: ImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::malformed("manifest", e.to_string()))?;
        if let Some(l) = m
            .layers()
            .iter()
            .find(|l| l.media_type().to_string().ends_with("+encrypted"))
        {
            return Err(Error::Unsupported(format!(
                "docker-archive cannot hold encrypted layers (docker load cannot decrypt {}); write to oci: or docker://",
                l.digest()
            )));
        }
        self.manifest = Some(m);
        Ok(Digest::of(bytes))
    }

    fn commit(&mut self) -> Result<()> {
        let m = self
            .manifest
            .as_ref()
            .ok_or_else(|| Error::malformed("docker-archive", "no manifest was written"))?;
        let tmp = tempfile::NamedTempFile::new_in(self.dir.path())
            .map_err(|e| Error::io("creating in", self.dir.path(), e))?;
        let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, tmp));
        let config = Digest::parse(m.config().digest().as_ref())?;
        let config_name = format!("{}.json", config.hex());
        append_file(&mut b, &config_name, &self.blob_path(&config))?;
        let mut layer_names = Vec::new();
        for l in m.layers() {
            let d = Digest::parse(l.digest().as_ref())?;
            let comp = Compression::from_media_type(l.media_type().as_ref())?;
            // docker load wants the layer tars as they are applied: store them decompressed,
            // named by their DiffID.
            let staged = tempfile::NamedTempFile::new_in(self.dir.path())
                .map_err(|e| Error::io("creating in", self.dir.path(), e))?;
            let src = File::open(self.blob_path(&d))
                .map_err(|e| Error::io("opening", self.blob_path(&d), e))?;
            let mut w = HashingWriter::new(std::io::BufWriter::new(staged));
            std::io::copy(&mut comp.decoder(src)?, &mut w)
                .map_err(|e| Error::malformed(format!("layer {d}"), e.to_string()))?;
            let (diff_id, _, buf) = w.finish();
            let staged = buf
                .into_inner()
                .map_err(|e| Error::io("writing", self.dir.path(), e.into_error()))?;
            let name = format!("{}/layer.tar", diff_id.hex());
            append_file(&mut b, &name, staged.path())?;
            layer_names.push(name);
        }
        let entry = ArchiveEntry {
            config: config_name,
            repo_tags: self.reference.clone().map(|r| vec![r]),
            layers: layer_names,
        };
        let mj = serde_json::to_vec(&[entry])
            .map_err(|e| Error::malformed("manifest.json", e.to_string()))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(mj.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", &mj[..])
            .map_err(|e| Error::io("writing", &self.file, e))?;
        let buf = b
            .into_inner()
            .map_err(|e| Error::io("writing", &self.file, e))?;
        let tmp = buf
            .into_inner()
            .map_err(|e| Error::io("writing", &self.file, e.into_error()))?;
        tmp.persist(&self.file)
            .map_err(|e| Error::io("writing", &self.file, e.error))?;
        Ok(())
    }
}

fn append_file<W: std::io::Write>(b: &mut tar::Builder<W>, name: &str, path: &Path) -> Result<()> {
    let mut f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::io("reading", path, e))?
        .len();
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, &mut f)
        .map_err(|e| Error::io("archiving", path, e))
}
