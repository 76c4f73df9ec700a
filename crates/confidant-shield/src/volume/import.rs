//! Sealing: copying a plain directory tree into a volume, and inspecting a backing directory
//! without the key.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::{HEADER_FILE, SetAttributes, Volume};
use crate::error::{Error, Result};
use crate::format::{Header, ID_LEN};

/// What [`Volume::import_tree`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Regular files copied.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks copied (targets as they are, not followed).
    pub symlinks: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Entries skipped because the volume cannot hold them (devices, FIFOs, sockets).
    pub skipped: Vec<PathBuf>,
}

/// What the backing directory tells without the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The header's format version (parsed from `volume.cfv`; only
    /// [`FORMAT_VERSION`](crate::format::FORMAT_VERSION) is accepted).
    pub format_version: u32,
    /// The volume id.
    pub volume_id: [u8; ID_LEN],
    /// Creation time, seconds since the Unix epoch (as the header says; not authenticated
    /// without the key).
    pub created: u64,
    /// Index versions present (normally one: the committed one).
    pub index_versions: Vec<u64>,
    /// Data objects present (regular files that have content).
    pub data_objects: u64,
}

fn mtime(m: &std::fs::Metadata) -> Option<std::time::SystemTime> {
    let (s, n) = (m.mtime(), m.mtime_nsec());
    if s < 0 || !(0..1_000_000_000).contains(&n) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::new(s as u64, n as u32))
}

impl Volume {
    /// Copies the plain directory tree `src` into directory `parent` of the volume (`seal`):
    /// regular files, directories and symlinks, with their modes, owners and modification
    /// times. Symlinks are copied, not followed; devices, FIFOs and sockets are skipped and
    /// listed. An existing name in the volume is `EEXIST`. Does not commit.
    pub fn import_tree(&self, src: impl AsRef<Path>, parent: u64) -> Result<ImportStats> {
        let mut stats = ImportStats::default();
        let mut stack = vec![(src.as_ref().to_path_buf(), parent)];
        let mut buf = vec![0u8; 1 << 20];
        while let Some((dir, into)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(&dir, e))?
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io(&dir, e))?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let path = e.path();
                let name = e.file_name();
                let m = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
                let ft = m.file_type();
                let (mode, uid, gid) = (m.mode() & 0o7777, m.uid(), m.gid());
                let ino = if ft.is_dir() {
                    let a = self.mkdir(into, &name, mode, uid, gid)?;
                    stack.push((path.clone(), a.ino));
                    stats.dirs += 1;
                    a.ino
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                    stats.symlinks += 1;
                    self.symlink(into, &name, &target, uid, gid)?.ino
                } else if ft.is_file() {
                    let a = self.create_file(into, &name, mode, uid, gid)?;
                    let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                    let mut off = 0u64;
                    loop {
                        let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
                        if n == 0 {
                            break;
                        }
                        self.write(a.ino, off, &buf[..n])?;
                        off += n as u64;
                    }
                    stats.files += 1;
                    stats.bytes += off;
                    a.ino
                } else {
                    stats.skipped.push(path);
                    continue;
                };
                if !ft.is_symlink() {
                    let t = mtime(&m);
                    self.setattr(
                        ino,
                        &SetAttributes {
                            atime: t,
                            mtime: t,
                            ..SetAttributes::default()
                        },
                    )?;
                }
            }
        }
        Ok(stats)
    }

    /// Reads what a backing directory shows without the key: the header's format version,
    /// volume id and creation time, the index versions and the number of data objects.
    pub fn inspect(dir: impl AsRef<Path>) -> Result<VolumeInfo> {
        let dir = dir.as_ref();
        let hpath = dir.join(HEADER_FILE);
        let bytes = std::fs::read(&hpath).map_err(|e| Error::io(&hpath, e))?;
        let header = Header::parse(&bytes).map_err(|source| Error::Format {
            volume: dir.display().to_string(),
            source,
        })?;
        let mut index_versions: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("index-")?.parse().ok())
            .collect();
        index_versions.sort_unstable();
        let data_objects = std::fs::read_dir(dir.join("d"))
            .map(|r| r.flatten().count() as u64)
            .unwrap_or(0);
        Ok(VolumeInfo {
            format_version: header.format_version,
            volume_id: header.volume_id,
            created: header.created,
            index_versions,
            data_objects,
        })
    }
}
