//! Applying one layer's entries to the target, in archive order.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use rustix::fs::{FileType, Mode, Timespec, Timestamps};
use tar::EntryType;

use super::entry_path::{EntryPath, PATH_MAX, Whiteout};
use super::metadata::{self, Metadata, Policy};
use super::resolve::{
    Missing, Resolved, open_dir_nofollow, open_root, reopen_canonical, resolve_dir,
};
use super::whiteout::{self, UpperPaths};
use super::{Budget, LayerStats, UnpackOptions};
use crate::error::{Error, Result};

/// Mode of a regular file while its data is written, before its own mode is applied.
const WRITING_MODE: u32 = 0o600;
/// Copy buffer size for file data.
const COPY_BUFFER: usize = 128 * 1024;

/// Mode and times of a directory, applied when the layer is complete: entries created inside a
/// directory change its mtime, and a read-only directory could not take them.
#[derive(Debug, Clone, Copy)]
struct DeferredDir {
    mode: u32,
    atime: Timespec,
    mtime: Timespec,
}

/// The state of one layer being unpacked.
pub(crate) struct LayerUnpack<'a> {
    root: &'a Dir,
    opts: &'a UnpackOptions,
    policy: Policy,
    upper: UpperPaths,
    deferred_dirs: BTreeMap<PathBuf, DeferredDir>,
    stats: LayerStats,
}

impl<'a> LayerUnpack<'a> {
    pub(crate) fn new(root: &'a Dir, opts: &'a UnpackOptions) -> Self {
        Self {
            root,
            opts,
            policy: Policy::new(opts),
            upper: UpperPaths::default(),
            deferred_dirs: BTreeMap::new(),
            stats: LayerStats::default(),
        }
    }

    /// Applies one archive entry.
    pub(crate) fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        budget: &mut Budget,
    ) -> Result<()> {
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        budget.charge(self.opts, entry.size(), &name)?;
        self.stats.entries += 1;

        let path = EntryPath::parse(&raw_name, &name, "name")?;
        if let Some(whiteout) = path.whiteout() {
            return self.whiteout(&path, whiteout, &name);
        }
        let kind = entry.header().entry_type();
        // Pre-POSIX archives mark directories with a trailing slash on a type-NUL entry.
        let typeflag = entry.header().as_bytes()[156];
        let old_style_dir = typeflag == 0 && raw_name.ends_with(b"/");
        if path.is_root() && kind != EntryType::Directory && !old_style_dir {
            return Err(Error::unsafe_entry(
                &name,
                "names the target directory itself, which only a directory entry may",
            ));
        }
        match kind {
            _ if old_style_dir => self.directory(entry, &path, &name),
            EntryType::Directory => self.directory(entry, &path, &name),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &path, &name)
            }
            EntryType::Symlink => self.symlink(entry, &path, &name),
            EntryType::Link => self.hardlink(entry, &path, &name),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.node(entry, &path, &name, kind)
            }
            EntryType::XGlobalHeader => {
                self.stats
                    .warn(format!("{name}: PAX global header ignored"));
                Ok(())
            }
            other => Err(Error::Unsupported(format!(
                "tar entry {name:?}: entry type {:?} ({:?}); expected a file, directory, link, \
                 device or fifo",
                other,
                char::from(other.as_byte())
            ))),
        }
    }

    /// Applies the deferred directory modes and times and returns the statistics.
    pub(crate) fn finish(self) -> Result<LayerStats> {
        // Deepest first, so that a directory made read-only cannot block reaching its children.
        for (path, dir) in self.deferred_dirs.iter().rev() {
            let Some(handle) = reopen_canonical(self.root, path)? else {
                continue;
            };
            rustix::fs::fchmod(&handle, Mode::from_raw_mode(self.policy.mode(dir.mode)))
                .map_err(|e| Error::io("chmod directory", path, e.into()))?;
            let times = Timestamps {
                last_access: dir.atime,
                last_modification: dir.mtime,
            };
            rustix::fs::futimens(&handle, &times)
                .map_err(|e| Error::io("set directory times", path, e.into()))?;
        }
        Ok(self.stats)
    }

    /// Resolves the parent directory of a new entry, creating missing directories.
    fn parent(&self, components: &[std::ffi::OsString], name: &str) -> Result<Resolved> {
        Ok(resolve_dir(self.root, components, Missing::Create, name)?
            .expect("Missing::Create always resolves"))
    }

    fn whiteout(&mut self, path: &EntryPath, whiteout: Whiteout<'_>, name: &str) -> Result<()> {
        let (parent, _) = path.split_last().expect("a whiteout has a last component");
        match whiteout {
            Whiteout::Remove(target) => {
                whiteout::remove(self.root, parent, target, &self.upper, name)?;
                self.stats.whiteouts += 1;
            }
            Whiteout::Opaque => {
                whiteout::opaque(self.root, parent, &mut self.upper, name)?;
                self.stats.opaque_whiteouts += 1;
            }
            Whiteout::AufsMeta => self.stats.warn(format!("{name}: AUFS metadata ignored")),
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &EntryPath,
        name: &str,
    ) -> Result<()> {
        let meta = Metadata::of(entry, name)?;
        let (parent, file_name) = path.split_last().expect("not the root");
        let parent = self.parent(parent, name)?;
        let at = parent.path.join(file_name);
        clear_slot(&parent.dir, file_name, false, &at)?;
        // O_CREAT|O_EXCL: never opens what is there, a planted symlink least of all.
        let mut file = parent
            .dir
            .open_with(
                file_name,
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(WRITING_MODE),
            )
            .map_err(|e| Error::io("create file", &at, e))?;
        let expected = entry.size();
        let written = copy_data(entry, &mut file, name, &at)?;
        if written != expected {
            return Err(Error::malformed(
                format!("tar entry {name:?}"),
                format!("expected {expected} bytes of data, the archive ended after {written}"),
            ));
        }
        let shown = at.to_string_lossy();
        metadata::apply_to_fd(&file, &meta, &self.policy, &mut self.stats, &shown)?;
        metadata::set_times_fd(&file, &meta, &shown)?;
        self.upper.insert(&at);
        self.stats.files += 1;
        self.stats.bytes += written;
        Ok(())
    }

    fn directory<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &EntryPath,
        name: &str,
    ) -> Result<()> {
        let meta = Metadata::of(entry, name)?;
        let (dir, at) = match path.split_last() {
            None => (open_root(self.root)?, PathBuf::new()),
            Some((parent, dir_name)) => {
                let parent = self.parent(parent, name)?;
                let at = parent.path.join(dir_name);
                if !clear_slot(&parent.dir, dir_name, true, &at)? {
                    parent
                        .dir
                        .create_dir(dir_name)
                        .map_err(|e| Error::io("create directory", &at, e))?;
                }
                let dir = open_dir_nofollow(&parent.dir, dir_name)
                    .map_err(|e| Error::io("open directory", &at, e))?;
                (dir, at)
            }
        };
        // Owner and xattrs now; mode and times once the layer is complete. The mode set here
        // keeps the directory writable for the owner in the meantime.
        let shown = at.to_string_lossy();
        let writable = Metadata {
            mode: meta.mode | 0o700,
            ..meta.clone()
        };
        metadata::apply_to_fd(&dir, &writable, &self.policy, &mut self.stats, &shown)?;
        self.deferred_dirs.insert(
            at.clone(),
            DeferredDir {
                mode: meta.mode,
                atime: meta.atime,
                mtime: meta.mtime,
            },
        );
        self.upper.insert(&at);
        self.stats.directories += 1;
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &EntryPath,
        name: &str,
    ) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        if target.is_empty() {
            return Err(Error::malformed(
                format!("tar entry {name:?}"),
                "a symlink without a target",
            ));
        }
        if target.contains(&0) || target.len() >= PATH_MAX {
            return Err(Error::unsafe_entry(
                name,
                format!(
                    "symlink target of {} bytes holds a NUL byte or is over PATH_MAX",
                    target.len()
                ),
            ));
        }
        let meta = Metadata::of(entry, name)?;
        let (parent, link_name) = path.split_last().expect("not the root");
        let parent = self.parent(parent, name)?;
        let at = parent.path.join(link_name);
        clear_slot(&parent.dir, link_name, false, &at)?;
        // The target is stored as written; it is only ever followed inside the root (here, by
        // `resolve_dir`) or inside the container.
        parent
            .dir
            .symlink_contents(OsStr::from_bytes(&target), link_name)
            .map_err(|e| Error::io("create symlink", &at, e))?;
        let shown = at.to_string_lossy();
        metadata::apply_to_name(
            &parent.dir,
            link_name,
            &meta,
            &self.policy,
            true,
            &mut self.stats,
            &shown,
        )?;
        self.upper.insert(&at);
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &EntryPath,
        name: &str,
    ) -> Result<()> {
        let raw_target = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let target = EntryPath::parse(&raw_target, name, "hardlink target")?;
        let shown_target = String::from_utf8_lossy(&raw_target);
        let missing = || {
            Error::unsafe_entry(
                name,
                format!("hardlink target {shown_target:?} does not exist in the target"),
            )
        };
        let Some((target_parent, target_name)) = target.split_last() else {
            return Err(Error::unsafe_entry(
                name,
                "hardlink to the target directory itself",
            ));
        };
        let source =
            resolve_dir(self.root, target_parent, Missing::Stop, name)?.ok_or_else(missing)?;
        let source_at = source.path.join(target_name);
        match source.dir.symlink_metadata(target_name) {
            Ok(meta) if meta.is_dir() => {
                return Err(Error::unsafe_entry(
                    name,
                    format!("hardlink target {shown_target:?} is a directory"),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(Error::io("inspect hardlink target", &source_at, e)),
        }
        let (parent, link_name) = path.split_last().expect("not the root");
        let parent = self.parent(parent, name)?;
        let at = parent.path.join(link_name);
        if at != source_at {
            clear_slot(&parent.dir, link_name, false, &at)?;
            // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
            source
                .dir
                .hard_link(target_name, &parent.dir, link_name)
                .map_err(|e| Error::io("create hardlink", &at, e))?;
        }
        self.upper.insert(&at);
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &EntryPath,
        name: &str,
        kind: EntryType,
    ) -> Result<()> {
        let file_type = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let is_device = file_type != FileType::Fifo;
        if is_device && !self.policy.devices {
            self.stats.devices_skipped += 1;
            let why = if self.opts.devices {
                "creating device nodes needs root"
            } else {
                "UnpackOptions::devices is off"
            };
            self.stats
                .warn(format!("{name}: device node not created: {why}"));
            return Ok(());
        }
        // A FIFO has no device number; writers leave the fields empty or zero.
        let (major, minor) = if is_device {
            let header = entry.header();
            let bad = |e: io::Error| Error::malformed(format!("tar entry {name:?}"), e.to_string());
            (
                header.device_major().map_err(bad)?.unwrap_or(0),
                header.device_minor().map_err(bad)?.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        let meta = Metadata::of(entry, name)?;
        let (parent, node_name) = path.split_last().expect("not the root");
        let parent = self.parent(parent, name)?;
        let at = parent.path.join(node_name);
        clear_slot(&parent.dir, node_name, false, &at)?;
        rustix::fs::mknodat(
            &parent.dir,
            node_name,
            file_type,
            Mode::from_raw_mode(self.policy.mode(meta.mode) & 0o777),
            rustix::fs::makedev(major, minor),
        )
        .map_err(|e| Error::io("create device node or fifo", &at, e.into()))?;
        let shown = at.to_string_lossy();
        metadata::apply_to_name(
            &parent.dir,
            node_name,
            &meta,
            &self.policy,
            false,
            &mut self.stats,
            &shown,
        )?;
        self.upper.insert(&at);
        if is_device {
            self.stats.devices += 1;
        } else {
            self.stats.fifos += 1;
        }
        Ok(())
    }
}

/// Makes room for a new entry `name` in `dir` (at `at`): removes whatever is there, without
/// following it, except a directory when `keep_dir` (a directory entry over a directory keeps
/// its contents). Returns whether a directory was kept.
fn clear_slot(dir: &Dir, name: &OsStr, keep_dir: bool, at: &Path) -> Result<bool> {
    match dir.symlink_metadata(name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspect", at, e)),
        Ok(meta) if meta.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            dir.remove_dir_all(name)
                .map_err(|e| Error::io("remove replaced directory", at, e))?;
            Ok(false)
        }
        Ok(_) => {
            dir.remove_file(name)
                .map_err(|e| Error::io("remove replaced entry", at, e))?;
            Ok(false)
        }
    }
}

/// Copies an entry's data to `out`; returns the bytes copied.
fn copy_data(entry: &mut impl Read, out: &mut impl Write, name: &str, at: &Path) -> Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut written = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::malformed(
                    format!("tar entry {name:?}"),
                    format!("reading its data: {e}"),
                ));
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("write file", at, e))?;
        written += n as u64;
    }
}
