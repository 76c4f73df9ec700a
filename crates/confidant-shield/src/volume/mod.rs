//! The volume engine: the tree, file data and the commit protocol, without FUSE.
//!
//! A [`Volume`] is thread-safe: namespace changes and writes take a write lock, reads and
//! lookups a read lock. Every method takes inode numbers as FUSE does; [`ROOT_INO`] is the root.
//! Nothing is durable until [`Volume::commit`] (which the FUSE adapter calls on `fsync`,
//! `fsyncdir` and unmount) has returned: the last committed state is what survives a crash.

mod commit;
mod data;
mod import;
mod load;
mod ops;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crypto::{self, FileCipher, IndexCipher, VolumeKey};
use crate::error::{Error, Result};
use crate::format::{ChunkEntry, Header, ID_LEN, Timestamp};
use crate::roots::{RootStore, RootStoreError, VolumeState};

pub use data::{VerifyProblem, VerifyReport};
pub use import::{ImportStats, VolumeInfo};

/// Inode number of the root directory.
pub const ROOT_INO: u64 = 1;
/// Name of the header object in the backing directory.
pub const HEADER_FILE: &str = "volume.cfv";
/// Chunk encryptions allowed under one file key: with random 96-bit nonces, 2^32 encryptions
/// keep the probability of any nonce repeating below 2^-32 (birthday bound 2^64 / 2^96).
pub const MAX_CHUNK_WRITES_PER_FILE: u64 = 1 << 32;
/// Largest file size (1 PiB): chunk offsets stay far inside `i64`.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// An inode's attributes, as `stat` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes (directories: 0; symlinks: the target's length).
    pub size: u64,
    /// 512-byte blocks stored (files: chunks written × 8).
    pub blocks: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Links: 1 for files and symlinks (0 once unlinked), 2 + subdirectories for directories.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access (set by `setattr` only: reads do not update it, as with `noatime`).
    pub atime: SystemTime,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last status change.
    pub ctime: SystemTime,
}

/// The attribute changes of a `setattr`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SetAttributes {
    /// New permission bits (masked to `0o7777`).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (files only): truncates or extends with zeros.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SystemTime>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's inode.
    pub ino: u64,
    /// Its kind.
    pub kind: FileKind,
    /// Its name.
    pub name: std::ffi::OsString,
}

/// Space on the backing file system, for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks of `frsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Inodes in the volume.
    pub files: u64,
    /// Free inodes of the backing file system.
    pub ffree: u64,
    /// Preferred I/O size.
    pub bsize: u32,
    /// Fragment size.
    pub frsize: u32,
    /// Longest name.
    pub namelen: u32,
}

pub(crate) struct FileData {
    pub(crate) id: [u8; ID_LEN],
    pub(crate) cipher: FileCipher,
    /// Committed meta version (0: never committed).
    pub(crate) meta_version: u64,
    pub(crate) meta_hash: [u8; 32],
    /// The current chunk table.
    pub(crate) chunks: Vec<Option<ChunkEntry>>,
    /// The chunk table of the last committed state (its slots must not be overwritten).
    pub(crate) committed: Vec<Option<ChunkEntry>>,
    pub(crate) writes: u64,
    /// The chunk table changed since the last commit.
    pub(crate) dirty: bool,
    /// The `d/` object was written since the last commit (needs an fsync).
    pub(crate) data_dirty: bool,
    pub(crate) handle: Mutex<Option<Arc<File>>>,
    /// Content changes (writes, truncations) so far; compared at each open through the mount
    /// to decide whether the kernel may keep the file's cached pages.
    pub(crate) changes: u64,
    /// Read-side hints: sequential read-ahead of the `d/` object and the last open's `changes`.
    pub(crate) hints: ReadHints,
}

/// Per-file state of the read path that readers update under the shared lock.
pub(crate) struct ReadHints {
    /// `changes` as of the last open through the mount (`u64::MAX`: not opened yet).
    pub(crate) opened_at: std::sync::atomic::AtomicU64,
    /// The chunk after the last one read (a read starting there is sequential).
    pub(crate) next_chunk: std::sync::atomic::AtomicU64,
    /// Chunks below this one have been announced to the kernel for read-ahead.
    pub(crate) prefetched: std::sync::atomic::AtomicU64,
    /// Sequential reads in a row.
    pub(crate) streak: std::sync::atomic::AtomicU64,
}

impl Default for ReadHints {
    fn default() -> Self {
        Self {
            opened_at: u64::MAX.into(),
            next_chunk: u64::MAX.into(),
            prefetched: 0.into(),
            streak: 0.into(),
        }
    }
}

pub(crate) enum Node {
    File(Box<FileData>),
    Dir(BTreeMap<Vec<u8>, u64>),
    Symlink(Vec<u8>),
}

pub(crate) struct Inode {
    /// Parent directory (0 for the root and for unlinked inodes still open).
    pub(crate) parent: u64,
    pub(crate) linked: bool,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: Timestamp,
    pub(crate) mtime: Timestamp,
    pub(crate) ctime: Timestamp,
    pub(crate) size: u64,
    pub(crate) node: Node,
}

impl Inode {
    pub(crate) fn kind(&self) -> FileKind {
        match self.node {
            Node::File(_) => FileKind::File,
            Node::Dir(_) => FileKind::Dir,
            Node::Symlink(_) => FileKind::Symlink,
        }
    }
}

pub(crate) struct State {
    pub(crate) version: u64,
    pub(crate) root: [u8; 32],
    pub(crate) next_ino: u64,
    pub(crate) inodes: HashMap<u64, Inode>,
    /// Anything changed since the last commit.
    pub(crate) dirty: bool,
    /// Open handles per inode (unlinked files live on while open).
    pub(crate) open: HashMap<u64, u32>,
    /// Backing objects to delete once the next commit has succeeded.
    pub(crate) garbage: Vec<PathBuf>,
    /// The last commit the root store did not confirm (it may still have stored it).
    pub(crate) failed_attempt: Option<VolumeState>,
}

/// A mounted-or-not protected volume over a backing directory.
pub struct Volume {
    pub(crate) dir: PathBuf,
    pub(crate) id: [u8; ID_LEN],
    pub(crate) id_hex: String,
    pub(crate) key: VolumeKey,
    index: IndexCipher,
    roots: Arc<dyn RootStore>,
    pub(crate) read_only: bool,
    pub(crate) state: RwLock<State>,
    /// `volume.cfv`, flock'ed exclusively while open for writing (one writer at a time).
    _lock: Option<File>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("dir", &self.dir)
            .field("id", &self.id_hex)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now() -> Timestamp {
    to_timestamp(SystemTime::now())
}

pub(crate) fn to_timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (mut secs, mut nanos) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            Timestamp { secs, nanos }
        }
    }
}

pub(crate) fn to_system_time(t: Timestamp) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs())
            + Duration::from_nanos(t.nanos.into())
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Writes `bytes` to `path` (truncating), and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

/// Takes the exclusive writer lock on the header (an advisory `flock`: it stops a second
/// writer on the same machine by mistake, not a hostile host).
fn lock_writer(dir: &Path, volume: &str) -> Result<File> {
    let path = dir.join(HEADER_FILE);
    let f = File::open(&path).map_err(io_at(&path))?;
    // A lock just released can still be held for a moment by a child process of ours between
    // fork and exec (it shares the open file until exec closes it): retry for up to 2 s.
    let mut result = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    for _ in 0..200 {
        if result != Err(rustix::io::Errno::WOULDBLOCK) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        result = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    }
    match result {
        Ok(()) => Ok(f),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::Io {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!("volume {volume} is already open for writing by another process or handle"),
            ),
        }),
        Err(e) => Err(Error::io(
            path,
            std::io::Error::from_raw_os_error(e.raw_os_error()),
        )),
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_at(path))
}

impl Volume {
    /// Creates a volume in `dir` (created if missing; it must be empty), commits version 1
    /// (an empty root directory owned by the calling process's uid/gid, mode 0755) to `roots`,
    /// which must hold no state yet, and returns it open for writing.
    /// The same as [`Volume::create_at`] with `first_version` 1.
    pub fn create(
        dir: impl AsRef<Path>,
        key: VolumeKey,
        roots: Arc<dyn RootStore>,
    ) -> Result<Self> {
        Self::create_at(dir, key, roots, 1)
    }

    /// Creates a fresh volume (new volume id, empty root directory) whose first committed
    /// state has version `first_version`, for a root store whose versions cannot go back: a
    /// coordinator that holds version `first_version - 1` of a volume being reset. The first
    /// commit is `roots.commit(first_version - 1, (first_version, root))`, so `roots` must
    /// hold exactly version `first_version - 1` (nothing at all when `first_version` is 1);
    /// anything else is refused before anything is written. `first_version` 0 (and
    /// `u64::MAX`) is refused. Chunk epochs and index versions continue from `first_version`
    /// as usual. The old root the store holds is neither read nor checked: the first commit
    /// replaces it through the usual compare-and-swap.
    pub fn create_at(
        dir: impl AsRef<Path>,
        key: VolumeKey,
        roots: Arc<dyn RootStore>,
        first_version: u64,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if first_version == 0 || first_version == u64::MAX {
            return Err(Error::RootStore {
                volume: dir.display().to_string(),
                source: RootStoreError::Unavailable(format!(
                    "a volume's first version must be between 1 and {}, not {first_version}",
                    u64::MAX - 1
                )),
            });
        }
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        if std::fs::read_dir(&dir)
            .map_err(io_at(&dir))?
            .next()
            .is_some()
        {
            return Err(Error::io(
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "not empty: a volume is created in an empty directory",
                ),
            ));
        }
        let mut volume_id = [0u8; ID_LEN];
        crypto::random(&mut volume_id)?;
        let id_hex = hex::encode(volume_id);
        let held = roots.load().map_err(|source| Error::RootStore {
            volume: id_hex.clone(),
            source,
        })?;
        let base = first_version - 1;
        match held {
            None if base == 0 => {}
            Some(s) if base > 0 && s.version == base => {}
            Some(s) if base == 0 => {
                return Err(Error::RootStore {
                    volume: id_hex,
                    source: RootStoreError::Unavailable(format!(
                        "already holds version {} of a volume; a new volume needs an empty store",
                        s.version
                    )),
                });
            }
            other => {
                return Err(Error::RootStore {
                    volume: id_hex,
                    source: RootStoreError::Conflict {
                        expected: base,
                        found: other.map_or(0, |s| s.version),
                    },
                });
            }
        }
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header {
            format_version: crate::format::FORMAT_VERSION,
            volume_id,
            created,
            key_check: [0; 32],
        };
        header.key_check = crypto::header_check(&key, &volume_id, &header.checked_bytes())?;
        for sub in ["d", "m"] {
            let p = dir.join(sub);
            std::fs::create_dir(&p).map_err(io_at(&p))?;
        }
        write_synced(&dir.join(HEADER_FILE), &header.encode())?;
        sync_dir(&dir)?;
        let lock = lock_writer(&dir, &id_hex)?;

        let t = now();
        let (uid, gid) = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT_INO,
            Inode {
                parent: 0,
                linked: true,
                mode: 0o755,
                uid,
                gid,
                atime: t,
                mtime: t,
                ctime: t,
                size: 0,
                node: Node::Dir(BTreeMap::new()),
            },
        );
        let volume = Volume {
            index: IndexCipher::new(&key, volume_id)?,
            dir,
            id: volume_id,
            id_hex,
            key,
            roots,
            read_only: false,
            _lock: Some(lock),
            state: RwLock::new(State {
                // The state the store holds (a reset volume's old root is never read: the
                // first commit replaces it; `verify` and reads need a commit first anyway).
                version: base,
                root: [0; 32],
                next_ino: ROOT_INO + 1,
                inodes,
                dirty: true,
                open: HashMap::new(),
                garbage: Vec::new(),
                failed_attempt: None,
            }),
        };
        volume.commit()?;
        tracing::info!(volume = %volume.id_hex, dir = %volume.dir.display(), version = first_version, "created protected volume");
        Ok(volume)
    }

    /// Opens the volume in `dir`: checks the key against the header, loads the index of the
    /// version `roots` trusts and checks it hashes to the trusted root, then loads and checks
    /// every file's chunk table. When writable, removes backing objects no longer referenced
    /// (left by a crash or an unfinished garbage collection).
    pub fn open(
        dir: impl AsRef<Path>,
        key: VolumeKey,
        roots: Arc<dyn RootStore>,
        read_only: bool,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let hpath = dir.join(HEADER_FILE);
        let hbytes = std::fs::read(&hpath).map_err(io_at(&hpath))?;
        let header = Header::parse(&hbytes).map_err(|source| Error::Format {
            volume: dir.display().to_string(),
            source,
        })?;
        let id_hex = hex::encode(header.volume_id);
        if !crypto::header_check_ok(
            &key,
            &header.volume_id,
            &header.checked_bytes(),
            &header.key_check,
        )? {
            return Err(Error::WrongKey { volume: id_hex });
        }
        let lock = if read_only {
            None
        } else {
            Some(lock_writer(&dir, &id_hex)?)
        };
        let trusted = roots
            .load()
            .map_err(|source| Error::RootStore {
                volume: id_hex.clone(),
                source,
            })?
            .ok_or_else(|| Error::RootStore {
                volume: id_hex.clone(),
                source: RootStoreError::Unavailable(
                    "holds no state for this volume (was it created with this store?)".into(),
                ),
            })?;
        let volume = Volume {
            index: IndexCipher::new(&key, header.volume_id)?,
            dir,
            id: header.volume_id,
            id_hex,
            key,
            roots,
            read_only,
            _lock: lock,
            state: RwLock::new(State {
                version: trusted.version,
                root: trusted.root,
                next_ino: 0,
                inodes: HashMap::new(),
                dirty: false,
                open: HashMap::new(),
                garbage: Vec::new(),
                failed_attempt: None,
            }),
        };
        volume.load(trusted)?;
        if !read_only {
            volume.collect_unreferenced();
        }
        tracing::info!(volume = %volume.id_hex, version = trusted.version, read_only, "opened protected volume");
        Ok(volume)
    }

    /// The volume id.
    pub fn id(&self) -> [u8; ID_LEN] {
        self.id
    }

    /// The backing directory.
    pub fn backing_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the volume was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The last committed state.
    pub fn state(&self) -> VolumeState {
        let st = self.lock_read();
        VolumeState {
            version: st.version,
            root: st.root,
        }
    }

    pub(crate) fn lock_read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn index_name(version: u64) -> String {
        format!("index-{version}")
    }

    pub(crate) fn data_path(&self, id: &[u8; ID_LEN]) -> PathBuf {
        self.dir.join("d").join(hex::encode(id))
    }

    pub(crate) fn meta_path(&self, id: &[u8; ID_LEN], meta_version: u64) -> PathBuf {
        self.dir
            .join("m")
            .join(format!("{}-{meta_version}", hex::encode(id)))
    }

    fn tampered(&self, object: impl Into<String>, detail: impl Into<String>) -> Error {
        let (object, detail) = (object.into(), detail.into());
        tracing::error!(volume = %self.id_hex, object = %object, "tampering detected: {detail}");
        Error::Tampered {
            volume: self.id_hex.clone(),
            object,
            detail,
        }
    }

    /// Index versions present in the backing directory, ascending.
    fn index_versions(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("index-")?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    /// The path of an inode inside the volume (for log lines and reports).
    pub(crate) fn path_of(st: &State, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut cur = ino;
        let mut guard = 0;
        while cur != ROOT_INO && guard < 4096 {
            let Some(i) = st.inodes.get(&cur) else { break };
            if !i.linked {
                parts.push(format!("<unlinked inode {cur}>"));
                break;
            }
            let Some(Node::Dir(entries)) = st.inodes.get(&i.parent).map(|p| &p.node) else {
                break;
            };
            let name = entries
                .iter()
                .find(|(_, c)| **c == cur)
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_else(|| format!("<inode {cur}>"));
            parts.push(name);
            cur = i.parent;
            guard += 1;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}
