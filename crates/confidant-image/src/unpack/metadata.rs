//! Ownership, modes, extended attributes and times of unpacked entries.
//!
//! Everything is applied to an open descriptor or, for symlinks and device nodes, to a single
//! name in an open directory with `AT_SYMLINK_NOFOLLOW`, so no symlink is ever followed. The
//! order is the one that keeps each step from undoing the previous: owner (chown clears the
//! setuid/setgid bits and `security.capability`), then mode, then xattrs, then times.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::{LayerStats, UnpackOptions};
use crate::error::{Error, Result};

/// Prefixes of extended attributes that overlayfs interprets (`trusted.overlay.opaque`,
/// `redirect`, `metacopy`, and the `user.overlay.*` ones of `userxattr` mounts). An unpacked
/// layer may become an overlayfs lower directory, where such attributes would change what other
/// paths show, so they are never applied from an image.
const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// What this unpack may do, fixed once per layer from the options and the effective uid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Running with effective uid 0.
    pub(crate) root: bool,
    /// Chown to the archive's owners (asked for and root).
    pub(crate) ownership: bool,
    /// Create character and block devices (asked for and root).
    pub(crate) devices: bool,
    /// Apply extended attributes.
    pub(crate) xattrs: bool,
}

impl Policy {
    pub(crate) fn new(opts: &UnpackOptions) -> Self {
        let root = rustix::process::geteuid().is_root();
        Self {
            root,
            ownership: opts.ownership && root,
            devices: opts.devices && root,
            xattrs: opts.xattrs,
        }
    }

    /// The permission bits to give an entry whose archive mode is `mode`. setuid and setgid are
    /// kept only when the entry also gets the archive's owner: otherwise the file would run
    /// with the identity of whoever unpacked it.
    pub(crate) fn mode(&self, mode: u32) -> u32 {
        let mode = mode & 0o7777;
        if self.ownership { mode } else { mode & !0o6000 }
    }

    /// Whether an extended attribute of this name may be set at all.
    fn xattr_allowed(&self, name: &[u8]) -> bool {
        if OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return false;
        }
        // `security.*`, `trusted.*` and `system.*` need privileges an unprivileged unpack lacks;
        // skipping them up front beats failing with EPERM on each file.
        name.starts_with(b"user.") || self.root
    }
}

/// The metadata of one archive entry.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: Timespec,
    pub(crate) mtime: Timespec,
    /// `SCHILY.xattr.*` PAX records: name and value.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Metadata {
    /// Reads the metadata of `entry` (PAX records included). `name` is used in errors.
    pub(crate) fn of<R: io::Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Self> {
        let header = entry.header();
        let bad = |field: &str, e: &dyn std::fmt::Display| {
            Error::malformed(format!("tar entry {name:?}"), format!("{field}: {e}"))
        };
        let mode = header.mode().map_err(|e| bad("mode", &e))?;
        let id = |field: &str, v: u64| -> Result<u32> {
            // u32::MAX is -1, which chown reads as "leave unchanged".
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| bad(field, &format!("{v} is not a valid id")))
        };
        let uid = id("uid", header.uid().map_err(|e| bad("uid", &e))?)?;
        let gid = id("gid", header.gid().map_err(|e| bad("gid", &e))?)?;
        let secs = header.mtime().map_err(|e| bad("mtime", &e))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(secs).map_err(|e| bad("mtime", &e))?,
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| bad("PAX header", &e))? {
            for record in pax {
                let record = record.map_err(|e| bad("PAX record", &e))?;
                let key = record.key_bytes();
                if key == b"mtime" {
                    mtime = pax_time(record.value_bytes()).ok_or_else(|| {
                        bad("PAX mtime", &String::from_utf8_lossy(record.value_bytes()))
                    })?;
                } else if key == b"atime" {
                    atime = Some(pax_time(record.value_bytes()).ok_or_else(|| {
                        bad("PAX atime", &String::from_utf8_lossy(record.value_bytes()))
                    })?);
                } else if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((xattr.to_vec(), record.value_bytes().to_vec()));
                }
            }
        }
        Ok(Self {
            mode,
            uid,
            gid,
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }

    fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// Parses a PAX time, `[-]SECONDS[.FRACTION]`.
fn pax_time(value: &[u8]) -> Option<Timespec> {
    let value = std::str::from_utf8(value).ok()?;
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let mut tv_nsec: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in digits.len()..9 {
        tv_nsec *= 10;
    }
    if secs.starts_with('-') && tv_nsec > 0 {
        // -1.5 is 1.5 s before the epoch: -2 s + 0.5 s.
        return Some(Timespec {
            tv_sec: tv_sec - 1,
            tv_nsec: 1_000_000_000 - tv_nsec,
        });
    }
    Some(Timespec { tv_sec, tv_nsec })
}

fn ids(meta: &Metadata) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
}

/// Applies owner, mode and xattrs to an open file or directory (times are separate: a
/// directory's are set once the layer is complete).
pub(crate) fn apply_to_fd(
    fd: impl AsFd,
    meta: &Metadata,
    policy: &Policy,
    stats: &mut LayerStats,
    path: &str,
) -> Result<()> {
    let fd = fd.as_fd();
    if policy.ownership {
        let (uid, gid) = ids(meta);
        rustix::fs::fchown(fd, uid, gid).map_err(|e| Error::io("chown", path, e.into()))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(policy.mode(meta.mode)))
        .map_err(|e| Error::io("chmod", path, e.into()))?;
    if policy.xattrs {
        for (name, value) in &meta.xattrs {
            if !policy.xattr_allowed(name) {
                stats.skip_xattr(path, name, "not applied by policy");
                continue;
            }
            match rustix::fs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty()) {
                Ok(()) => stats.xattrs_set += 1,
                Err(Errno::NOTSUP) => {
                    stats.skip_xattr(path, name, "the filesystem does not support it")
                }
                Err(Errno::PERM) if !policy.root => {
                    stats.skip_xattr(path, name, "not permitted without root")
                }
                Err(e) => {
                    return Err(Error::io(
                        "set extended attribute",
                        format!("{path} ({})", String::from_utf8_lossy(name)),
                        e.into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Sets the times of an open file or directory.
pub(crate) fn set_times_fd(fd: impl AsFd, meta: &Metadata, path: &str) -> Result<()> {
    rustix::fs::futimens(fd, &meta.timestamps()).map_err(|e| Error::io("set times", path, e.into()))
}

/// Applies metadata to `name` in `dir`, a symlink or a node (fifo, device) just created there,
/// without following it. Symlinks have no mode of their own; xattrs are not applied to either
/// (that needs a path-based call or an open descriptor, and opening a device has effects).
pub(crate) fn apply_to_name(
    dir: &Dir,
    name: &OsStr,
    meta: &Metadata,
    policy: &Policy,
    is_symlink: bool,
    stats: &mut LayerStats,
    path: &str,
) -> Result<()> {
    if policy.ownership {
        let (uid, gid) = ids(meta);
        rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("chown", path, e.into()))?;
    }
    if !is_symlink {
        // fchmodat cannot refuse symlinks on every kernel; the node was created by us a moment
        // ago with mknodat, so the name is not a symlink.
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(policy.mode(meta.mode)),
            AtFlags::empty(),
        )
        .map_err(|e| Error::io("chmod", path, e.into()))?;
    }
    if policy.xattrs {
        for (xattr, _) in &meta.xattrs {
            stats.skip_xattr(path, xattr, "not applied to symlinks and device nodes");
        }
    }
    rustix::fs::utimensat(dir, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("set times", path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pax_times() {
        let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("12x"), None);
        assert_eq!(t("1.2e3"), None);
    }

    #[test]
    fn strips_setid_bits_without_ownership() {
        let mut policy = Policy {
            root: true,
            ownership: true,
            devices: false,
            xattrs: true,
        };
        assert_eq!(policy.mode(0o104755), 0o4755);
        policy.ownership = false;
        assert_eq!(policy.mode(0o4755), 0o755);
        assert_eq!(policy.mode(0o2755), 0o755);
        assert_eq!(policy.mode(0o1777), 0o1777);
    }

    #[test]
    fn never_applies_overlay_xattrs() {
        let policy = Policy {
            root: true,
            ownership: true,
            devices: true,
            xattrs: true,
        };
        assert!(!policy.xattr_allowed(b"trusted.overlay.redirect"));
        assert!(!policy.xattr_allowed(b"user.overlay.opaque"));
        assert!(policy.xattr_allowed(b"security.capability"));
        let user = Policy {
            root: false,
            ..policy
        };
        assert!(user.xattr_allowed(b"user.foo"));
        assert!(!user.xattr_allowed(b"security.capability"));
    }
}
