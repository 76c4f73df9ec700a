//! Resolving a path inside the target the way the container will see it, without ever leaving
//! the target.
//!
//! The walk goes one component at a time, each step a single name looked up relative to the
//! directory handle reached so far and opened with `O_NOFOLLOW`, so the kernel never follows a
//! symlink and never sees `..` on our behalf. Symlinks met on the way are read and expanded here
//! with chroot semantics: an absolute target restarts at the target directory, `..` goes back up
//! the path walked so far and stops at the target directory (as `/..` is `/`). This is what
//! `openat2(RESOLVE_IN_ROOT)`, runc and umoci (filepath-securejoin) do, and it is what real
//! images need: Debian's merged-usr `lib -> usr/lib` makes a later layer's `lib/x.so` land in
//! `usr/lib/x.so`. A symlink pointing at `/etc` or `../../..` therefore leads to the target's own
//! `etc` or to the target itself, never outside it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result};

/// How many symlinks one resolution may expand before it is taken for a loop (Linux's limit).
pub(crate) const MAX_SYMLINK_EXPANSIONS: u32 = 40;

/// Mode of directories created because an entry's parent did not exist yet.
pub(crate) const IMPLICIT_DIR_MODE: u32 = 0o755;

/// What to do when a component does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Create it as a directory (mode [`IMPLICIT_DIR_MODE`]).
    Create,
    /// Stop: the resolution yields `None`.
    Stop,
}

/// A directory reached inside the target.
pub(crate) struct Resolved {
    /// The open directory.
    pub(crate) dir: Dir,
    /// Its path below the target with every symlink expanded (empty for the target itself).
    pub(crate) path: PathBuf,
}

/// Opens `name`, a single component in `dir`, as a directory, refusing to follow a symlink.
pub(crate) fn open_dir_nofollow(dir: &Dir, name: &OsStr) -> io::Result<Dir> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Dir::from_std_file(std::fs::File::from(fd)))
}

/// Opens the target directory itself again, readable: the handle given may be an `O_PATH`
/// one (cap-std opens directories so), on which fchmod, fchown and fsetxattr fail.
pub(crate) fn open_root(root: &Dir) -> Result<Dir> {
    open_dir_nofollow(root, OsStr::new(".")).map_err(|e| Error::io("open the target", "", e))
}

/// Resolves `components` as a directory inside `root`, following symlinks within the root.
/// Missing components are created or end the walk as `missing` says. `entry` names the archive
/// entry in errors.
pub(crate) fn resolve_dir(
    root: &Dir,
    components: &[OsString],
    missing: Missing,
    entry: &str,
) -> Result<Option<Resolved>> {
    let mut queue: VecDeque<OsString> = components.iter().cloned().collect();
    let mut walked: Vec<OsString> = Vec::new();
    let mut dir = open_root(root)?;
    let mut expansions = 0u32;
    let here = |walked: &[OsString], name: &OsStr| -> PathBuf {
        walked
            .iter()
            .map(OsString::as_os_str)
            .chain([name])
            .collect()
    };

    while let Some(name) = queue.pop_front() {
        if name.is_empty() || name == "." {
            continue;
        }
        if name == ".." {
            if walked.pop().is_some() {
                dir = reopen(root, &walked)?;
            }
            continue;
        }
        let meta = match dir.symlink_metadata(&name) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if missing == Missing::Stop {
                    return Ok(None);
                }
                let path = here(&walked, &name);
                rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(IMPLICIT_DIR_MODE))
                    .map_err(|e| Error::io("create parent directory", &path, e.into()))?;
                let created = open_dir_nofollow(&dir, &name)
                    .map_err(|e| Error::io("open created directory", &path, e))?;
                // The mode given to mkdir is narrowed by the umask; set it as documented.
                rustix::fs::fchmod(&created, Mode::from_raw_mode(IMPLICIT_DIR_MODE))
                    .map_err(|e| Error::io("chmod created directory", &path, e.into()))?;
                dir = created;
                walked.push(name);
                continue;
            }
            Err(e) => return Err(Error::io("inspect", here(&walked, &name), e)),
        };
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            expansions += 1;
            if expansions > MAX_SYMLINK_EXPANSIONS {
                return Err(Error::unsafe_entry(
                    entry,
                    format!(
                        "resolving its parent expanded more than {MAX_SYMLINK_EXPANSIONS} \
                         symlinks (a symlink loop?), last at {:?}",
                        here(&walked, &name)
                    ),
                ));
            }
            let target = dir
                .read_link_contents(&name)
                .map_err(|e| Error::io("read symlink", here(&walked, &name), e))?;
            let target = target.as_os_str().as_bytes();
            if target.starts_with(b"/") {
                // Absolute: from the target directory, as inside the container.
                walked.clear();
                dir = reopen(root, &walked)?;
            }
            for component in target.split(|b| *b == b'/').rev() {
                queue.push_front(OsStr::from_bytes(component).to_owned());
            }
        } else if file_type.is_dir() {
            dir = open_dir_nofollow(&dir, &name)
                .map_err(|e| Error::io("open directory", here(&walked, &name), e))?;
            walked.push(name);
        } else {
            return Err(Error::unsafe_entry(
                entry,
                format!("its parent {:?} is not a directory", here(&walked, &name)),
            ));
        }
    }
    Ok(Some(Resolved {
        dir,
        path: walked.iter().collect(),
    }))
}

/// Opens `path` (a path produced by [`resolve_dir`]: below the target, symlinks expanded) again
/// from the root, following no symlink. `None` when it is no longer a directory there.
pub(crate) fn reopen_canonical(root: &Dir, path: &Path) -> Result<Option<Dir>> {
    let mut dir = open_root(root)?;
    for name in path.iter() {
        match open_dir_nofollow(&dir, name) {
            Ok(next) => dir = next,
            Err(e)
                if matches!(
                    rustix::io::Errno::from_io_error(&e),
                    Some(
                        rustix::io::Errno::NOENT
                            | rustix::io::Errno::NOTDIR
                            | rustix::io::Errno::LOOP
                    )
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::io("open directory", path, e)),
        }
    }
    Ok(Some(dir))
}

/// Reopens the directory at `walked` (real directories only) from the root.
fn reopen(root: &Dir, walked: &[OsString]) -> Result<Dir> {
    let path: PathBuf = walked.iter().collect();
    reopen_canonical(root, &path)?.ok_or_else(|| {
        Error::io(
            "reopen directory",
            &path,
            io::Error::new(io::ErrorKind::NotFound, "directory vanished during unpack"),
        )
    })
}
