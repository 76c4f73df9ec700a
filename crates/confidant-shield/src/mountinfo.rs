//! The mount table of this process's mount namespace, as `/proc/self/mountinfo` lists it
//! (proc(5)), with the kernel's octal escapes in mount points decoded: whether a path is a mount
//! point, and which mounts lie under a directory, deepest first, so that they can be detached
//! without guessing.
//!
//! The one reader of the mount table in the workspace: the FUSE adapter ([`crate::fuse`]), the
//! agent (its memory file systems, cleanup of what a killed run left behind) and
//! `confidant volume mount` use it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`: what its readers need of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id (field 1), unique in the namespace.
    pub id: u64,
    /// Where it is mounted (field 5), with the kernel's octal escapes (`\040` …) decoded.
    pub mount_point: PathBuf,
    /// The file system type after the ` - ` separator: `tmpfs`, `fuse`, `fuse.NAME`, …
    pub fs_type: String,
}

impl Mount {
    /// Whether it is a FUSE mount (detached with `fusermount3 -uz`).
    pub fn is_fuse(&self) -> bool {
        self.fs_type == "fuse" || self.fs_type.starts_with("fuse.")
    }
}

/// Reads this process's mount table.
pub fn read() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Whether `path` is a mount point in this process's mount namespace: some mount's decoded
/// mount point equals it. `path` is compared as given (absolute and canonical, as the kernel
/// lists mount points); `false` if the mount table cannot be read.
pub fn is_mounted(path: &Path) -> bool {
    read().is_ok_and(|mounts| mounts.iter().any(|m| m.mount_point == path))
}

/// Parses mountinfo text; lines that do not have the expected fields are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (fields, tail) = line.split_once(" - ")?;
    let mut fields = fields.split(' ');
    let id = fields.next()?.parse().ok()?;
    let mount_point = PathBuf::from(unescape(fields.nth(3)?));
    let fs_type = tail
        .split(' ')
        .next()
        .filter(|t| !t.is_empty())?
        .to_string();
    Some(Mount {
        id,
        mount_point,
        fs_type,
    })
}

/// Decodes the kernel's `\NNN` octal escapes (space, tab, newline, backslash).
fn unescape(field: &str) -> OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .all(|c| (b'0'..=b'7').contains(c))
                .then(|| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
                .and_then(|n| u8::try_from(n).ok())
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// The mounts at or below `dir` (an absolute, canonical path), deepest first: children before
/// their parents, and of mounts stacked on one path the later first.
pub fn under<'a>(mounts: &'a [Mount], dir: &Path) -> Vec<&'a Mount> {
    let mut found: Vec<&Mount> = mounts
        .iter()
        .rev()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect();
    // Stable: equal depths keep the reversed (latest first) order.
    found.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1612232k,mode=755
90 22 0:50 / /run/confidant/confidant-redis-0a1b2c3d rw,nosuid,nodev - tmpfs confidant rw,size=2097152k,mode=700
91 90 0:51 / /run/confidant/confidant-redis-0a1b2c3d/volumes/data rw,nosuid,nodev,relatime - fuse.confidant-shield confidant-shield rw,user_id=0,group_id=0
92 90 0:52 / /run/confidant/confidant-redis-0a1b2c3d/volumes/scratch rw,nosuid,nodev,relatime - fuse confidant-shield rw,user_id=0,group_id=0
93 22 0:53 / /run/confidant/confidant-redis-0a1b2c3d0 rw - tmpfs confidant rw
94 22 0:54 / /run/with\\040space rw - tmpfs x rw
not a mountinfo line
";

    #[test]
    fn parses_ids_mount_points_and_types() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 6, "{m:?}");
        assert_eq!(m[1].id, 90);
        assert_eq!(
            m[1].mount_point,
            Path::new("/run/confidant/confidant-redis-0a1b2c3d")
        );
        assert_eq!(m[1].fs_type, "tmpfs");
        assert!(m[2].is_fuse() && m[3].is_fuse() && !m[1].is_fuse());
    }

    #[test]
    fn decodes_octal_escapes_in_mount_points() {
        let m = parse(SAMPLE);
        assert_eq!(m[5].mount_point, Path::new("/run/with space"));
        assert_eq!(unescape(r"a\134b\011c\0"), OsString::from("a\\b\tc\\0"));
    }

    #[test]
    fn lists_mounts_under_a_directory_deepest_first_and_not_its_siblings() {
        let m = parse(SAMPLE);
        let dir = Path::new("/run/confidant/confidant-redis-0a1b2c3d");
        let ids: Vec<u64> = under(&m, dir).iter().map(|m| m.id).collect();
        // The volumes (later mounted first) before the tmpfs; `…0a1b2c3d0` is a sibling.
        assert_eq!(ids, vec![92, 91, 90]);
    }

    #[test]
    fn the_root_is_mounted_and_a_fresh_directory_is_not() {
        assert!(is_mounted(Path::new("/")));
        let dir = std::env::temp_dir().join(format!("mountinfo-test-{}", std::process::id()));
        assert!(!is_mounted(&dir));
    }
}
