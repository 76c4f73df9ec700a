//! The FUSE adapter: a `fuser` file system over a [`Volume`].
//!
//! Mounted with `allow_other` and `default_permissions` (containers run apps under other uids;
//! the kernel checks permissions against the attributes the volume reports), file system name
//! `confidant-shield`. `fsync`, `fsyncdir` and unmount commit the volume; `close` does not
//! (data closed but not fsync'd is lost on a crash, as on any file system without `fsync`).
//! Hard links are refused with `EPERM`; only regular files can be made with `mknod`;
//! `RENAME_EXCHANGE` and `RENAME_WHITEOUT` are `EINVAL`; extended attributes are not supported.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::error::{Error, Result};
use crate::roots::VolumeState;
use crate::volume::{Attributes, FileKind, SetAttributes, Volume};

const TTL: Duration = Duration::from_secs(1);
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
/// Largest read buffer a FUSE thread keeps between requests (the default `max_write`, 1 MiB).
const READ_OUT_KEEP: usize = 1 << 20;

thread_local! {
    /// Plaintext of the current read, reused across the requests a thread serves.
    static READ_OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How to mount a volume.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let other users than the mounting one use the mount (`allow_other`; default on, since
    /// containers run apps under other uids). Permissions are still checked by the kernel.
    pub allow_other: bool,
    /// Let the kernel cache writes and send them in large batches (`FUSE_WRITEBACK_CACHE`).
    /// Faster for small writes; data stays in the page cache until written back or fsync'd.
    pub writeback_cache: bool,
    /// Largest write request (bytes) the kernel may send; 1 MiB by default.
    pub max_write: u32,
    /// Threads serving requests.
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            allow_other: true,
            writeback_cache: false,
            max_write: 1 << 20,
            threads: 2,
        }
    }
}

/// The `fuser` file system over a volume.
struct ShieldFs {
    volume: Arc<Volume>,
    options: MountOptions,
}

fn errno(e: &Error) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_attr(a: &Attributes) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl ShieldFs {
    fn entry(&self, r: Result<Attributes>, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// `FOPEN_KEEP_CACHE` when the file is unchanged since its last open: its pages in the
    /// kernel's page cache (inside the TEE) were filled from authenticated reads of the same
    /// content, so they need not be dropped and read (and decrypted) again. Every change made
    /// through the mount also goes through the page cache; any other change (the engine's API
    /// while mounted) makes the next open start with an empty cache.
    fn open_flags(&self, ino: u64) -> FopenFlags {
        if self.volume.unchanged_since_last_open(ino) {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        }
    }

    fn commit(&self, op: &str) -> Result<VolumeState> {
        self.volume.commit().inspect_err(|e| {
            tracing::error!(volume = %hex::encode(self.volume.id()), "{op}: commit failed: {e}");
        })
    }
}

impl Filesystem for ShieldFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.options.writeback_cache {
            let _ = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE);
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.set_max_write(self.options.max_write);
        Ok(())
    }

    fn destroy(&mut self) {
        let _ = self.commit("unmount");
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(self.volume.lookup(parent.0, name), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.volume.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttributes {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        match self.volume.setattr(ino.0, &set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        use std::os::unix::ffi::OsStrExt;
        match self.volume.readlink(ino.0) {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & S_IFMT != S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        let r = self
            .volume
            .create_file(parent.0, name, mode & !umask, req.uid(), req.gid());
        self.entry(r, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self
            .volume
            .mkdir(parent.0, name, mode & !umask, req.uid(), req.gid());
        self.entry(r, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.volume.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.volume.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self
            .volume
            .symlink(parent.0, link_name, target, req.uid(), req.gid());
        self.entry(r, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self
            .volume
            .rename(parent.0, name, newparent.0, newname, no_replace)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.volume.open_file(ino.0) {
            Ok(()) => reply.opened(FileHandle(ino.0), self.open_flags(ino.0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        READ_OUT.with_borrow_mut(|out| {
            match self.volume.read_to(ino.0, offset, size, out) {
                Ok(()) => reply.data(out),
                Err(e) => reply.error(errno(&e)),
            }
            // Keep at most one largest read's allocation per thread.
            if out.capacity() > READ_OUT_KEEP {
                *out = Vec::new();
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.volume.write(ino.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.volume.release_file(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.commit("fsync") {
            Ok(_) => reply.ok(),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.volume.readdir(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        let parent = self.volume.parent(ino.0).unwrap_or(ino.0);
        let dots = [(ino.0, "."), (parent, "..")];
        let all = dots
            .iter()
            .map(|(i, n)| (*i, FileType::Directory, OsStr::new(n)))
            .chain(
                entries
                    .iter()
                    .map(|e| (e.ino, file_type(e.kind), e.name.as_os_str())),
            );
        for (n, (child, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), n as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.commit("fsyncdir") {
            Ok(_) => reply.ok(),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.volume.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self
            .volume
            .create_file(parent.0, name, mode & !umask, req.uid(), req.gid())
            .and_then(|a| self.volume.open_file(a.ino).map(|()| a));
        match r {
            Ok(a) => reply.created(
                &TTL,
                &file_attr(&a),
                Generation(0),
                FileHandle(a.ino),
                self.open_flags(a.ino),
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

fn config(volume: &Volume, options: &MountOptions) -> Config {
    let mut mount_options = vec![
        MountOption::FSName("confidant-shield".into()),
        MountOption::Subtype("confidant-shield".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if volume.is_read_only() {
        mount_options.push(MountOption::RO);
    }
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = if options.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(options.threads.max(1));
    config
}

/// A volume mounted in the background. [`MountHandle::unmount`] (or dropping the handle)
/// unmounts and commits.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<fuser::BackgroundSession>,
    volume: Arc<Volume>,
    mountpoint: PathBuf,
}

impl MountHandle {
    /// Where the volume is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The mounted volume.
    pub fn volume(&self) -> &Arc<Volume> {
        &self.volume
    }

    /// Unmounts, waits for the session to end, and commits; returns the committed state.
    pub fn unmount(mut self) -> Result<VolumeState> {
        self.finish()
    }

    fn finish(&mut self) -> Result<VolumeState> {
        if let Some(s) = self.session.take() {
            // The kernel refuses an unmount for a moment after the last file was closed (FUSE
            // releases files asynchronously): retry, then detach lazily. Either way, wait for
            // the session to end, so that no other thread still holds the volume.
            let mut unmounted = !is_fuse_mounted(&self.mountpoint);
            for _ in 0..50 {
                if unmounted {
                    break;
                }
                unmounted = fusermount(&["-u"], &self.mountpoint);
                if !unmounted {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if !unmounted {
                tracing::warn!(mountpoint = %self.mountpoint.display(), "mount still busy after 5 s; detaching lazily (the session ends when the last file is closed)");
                fusermount(&["-u", "-z"], &self.mountpoint);
            }
            // Unmounted above: only wait for the session thread (fuser's own unmount would
            // now fail with EINVAL).
            let fuser::BackgroundSession { guard, .. } = s;
            match guard.join() {
                Ok(r) => r.map_err(|e| Error::io(&self.mountpoint, e))?,
                Err(_) => {
                    tracing::error!(mountpoint = %self.mountpoint.display(), "FUSE session thread panicked")
                }
            }
        }
        self.volume.commit()
    }
}

/// Runs `fusermount3 ARGS -- MOUNTPOINT`; whether it succeeded.
fn fusermount(args: &[&str], mountpoint: &Path) -> bool {
    std::process::Command::new("fusermount3")
        .args(args)
        .arg("--")
        .arg(mountpoint)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a FUSE file system is mounted at `mountpoint` (per the mount table).
fn is_fuse_mounted(mountpoint: &Path) -> bool {
    let target = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    crate::mountinfo::read().is_ok_and(|mounts| {
        mounts
            .iter()
            .any(|m| m.mount_point == target && m.is_fuse())
    })
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if self.session.is_some()
            && let Err(e) = self.finish()
        {
            tracing::error!(mountpoint = %self.mountpoint.display(), "unmount on drop: {e}");
        }
    }
}

/// Mounts `volume` at `mountpoint`, served by background threads.
pub fn mount(
    volume: Arc<Volume>,
    mountpoint: impl AsRef<Path>,
    options: &MountOptions,
) -> Result<MountHandle> {
    let mountpoint = mountpoint.as_ref().to_path_buf();
    let fs = ShieldFs {
        volume: volume.clone(),
        options: options.clone(),
    };
    let session = fuser::spawn_mount(fs, &mountpoint, &config(&volume, options))
        .map_err(|e| Error::io(&mountpoint, e))?;
    tracing::info!(volume = %hex::encode(volume.id()), mountpoint = %mountpoint.display(), "mounted");
    Ok(MountHandle {
        session: Some(session),
        volume,
        mountpoint,
    })
}

/// Mounts `volume` at `mountpoint` and serves it on this thread until it is unmounted
/// (`fusermount3 -u`), then commits.
pub fn mount_foreground(
    volume: Arc<Volume>,
    mountpoint: impl AsRef<Path>,
    options: &MountOptions,
) -> Result<VolumeState> {
    let mountpoint = mountpoint.as_ref();
    let fs = ShieldFs {
        volume: volume.clone(),
        options: options.clone(),
    };
    fuser::mount(fs, mountpoint, &config(&volume, options))
        .map_err(|e| Error::io(mountpoint, e))?;
    volume.commit()
}
