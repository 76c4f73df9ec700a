//! Shared by the `unpack_*` tests: layers built entry by entry (malformed ones included, with
//! raw header bytes where `tar::Builder` would refuse a name), a jail around the target with
//! sentinels outside it, and listings of directory trees to compare.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use confidant_image::Result;
use confidant_image::unpack::{Budget, LayerStats, UnpackOptions, unpack_layer_at};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// A name no test creates on purpose: an escape would write it somewhere outside the target.
pub(crate) const PROBE: &str = "confidant-escape-probe";

/// Places outside any jail where an escaping write of [`PROBE`] would land.
fn global_probe_paths() -> Vec<PathBuf> {
    [
        "/",
        "/tmp",
        "/etc",
        "/abs",
        std::env::temp_dir().to_str().unwrap(),
    ]
    .iter()
    .map(|d| Path::new(d).join(PROBE))
    .chain([PathBuf::from("/abs")])
    .collect()
}

/// One tar entry, with every field settable, written with raw header bytes.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub device: (u32, u32),
    pub pax: Vec<(String, Vec<u8>)>,
    /// Written as the typeflag byte instead of `kind`'s (for pre-POSIX NUL typeflags).
    pub typeflag: Option<u8>,
}

impl Raw {
    pub(crate) fn new(name: impl AsRef<[u8]>, kind: EntryType) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            kind,
            data: Vec::new(),
            link: Vec::new(),
            mode: if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            device: (0, 0),
            pax: Vec::new(),
            typeflag: None,
        }
    }
}

/// A layer tar under construction.
pub(crate) struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub(crate) fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub(crate) fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let mut e = Raw::new(name, EntryType::Directory);
        e.mode = mode;
        self.raw(e)
    }

    pub(crate) fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        let mut e = Raw::new(name, EntryType::Regular);
        e.mode = mode;
        e.data = data.to_vec();
        self.raw(e)
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut e = Raw::new(name, EntryType::Symlink);
        e.mode = 0o777;
        e.link = target.as_bytes().to_vec();
        self.raw(e)
    }

    pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut e = Raw::new(name, EntryType::Link);
        e.link = target.as_bytes().to_vec();
        self.raw(e)
    }

    /// A whiteout entry: an empty regular file named `name` (`dir/.wh.x`, `dir/.wh..wh..opq`).
    pub(crate) fn whiteout(&mut self, name: &str) -> &mut Self {
        self.file(name, 0o644, b"")
    }

    /// Appends `e` with its name and link name written straight into the header (GNU long name
    /// and long link entries when they do not fit), so nothing is checked or normalized.
    pub(crate) fn raw(&mut self, e: Raw) -> &mut Self {
        if !e.pax.is_empty() {
            self.builder
                .append_pax_extensions(e.pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .unwrap();
        }
        if e.name.len() > 100 {
            self.long(EntryType::GNULongName, &e.name);
        }
        if e.link.len() > 100 {
            self.long(EntryType::GNULongLink, &e.link);
        }
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            let n = e.name.len().min(100);
            old.name[..n].copy_from_slice(&e.name[..n]);
            let n = e.link.len().min(100);
            old.linkname[..n].copy_from_slice(&e.link[..n]);
        }
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        h.set_entry_type(e.kind);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(e.device.0).unwrap();
            h.set_device_minor(e.device.1).unwrap();
        }
        if let Some(typeflag) = e.typeflag {
            h.as_old_mut().linkflag = [typeflag];
        }
        h.set_cksum();
        self.builder.append(&h, e.data.as_slice()).unwrap();
        self
    }

    fn long(&mut self, kind: EntryType, bytes: &[u8]) {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64 + 1);
        h.set_entry_type(kind);
        h.set_cksum();
        let mut data = bytes.to_vec();
        data.push(0);
        self.builder.append(&h, data.as_slice()).unwrap();
    }

    /// The finished tar stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

/// Unpacks `layers` in order into `target` with `opts` and one budget; the stats of each.
pub(crate) fn unpack_all(
    target: &Path,
    layers: &[&[u8]],
    opts: &UnpackOptions,
) -> Result<Vec<LayerStats>> {
    let mut budget = Budget::new();
    layers
        .iter()
        .map(|layer| unpack_layer_at(target, *layer, opts, &mut budget))
        .collect()
}

/// A temporary "jail" with the unpack target deep inside it and sentinels around it:
///
/// ```text
/// jail/sentinel.txt  jail/etc/passwd  jail/victim/keep.txt  jail/victim_file
/// jail/stage/sibling.txt  jail/stage/rootfs/   <- the target
/// ```
///
/// A symlink `x -> ../..` in the target points at `jail`.
pub(crate) struct Jail {
    pub dir: tempfile::TempDir,
    pub target: PathBuf,
    before: BTreeMap<String, String>,
}

impl Default for Jail {
    fn default() -> Self {
        Self::new()
    }
}

impl Jail {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("unpack-jail-")
            .tempdir()
            .unwrap();
        let j = dir.path();
        fs::write(j.join("sentinel.txt"), "outside the target").unwrap();
        fs::create_dir(j.join("etc")).unwrap();
        fs::write(j.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::create_dir(j.join("victim")).unwrap();
        fs::write(j.join("victim/keep.txt"), "keep me").unwrap();
        fs::write(j.join("victim_file"), "keep me too").unwrap();
        fs::create_dir(j.join("stage")).unwrap();
        fs::write(j.join("stage/sibling.txt"), "beside the target").unwrap();
        let target = j.join("stage/rootfs");
        fs::create_dir(&target).unwrap();
        for probe in global_probe_paths() {
            assert!(
                fs::symlink_metadata(&probe).is_err(),
                "{} exists before the test; remove it",
                probe.display()
            );
        }
        let before = listing(j, Some(&target));
        Self {
            dir,
            target,
            before,
        }
    }

    /// Unpacks `layers` into the target (one budget for all).
    pub(crate) fn unpack(&self, layers: &[&[u8]], opts: &UnpackOptions) -> Result<Vec<LayerStats>> {
        unpack_all(&self.target, layers, opts)
    }

    /// Asserts that nothing outside the target changed: every path, type, mode, owner, link
    /// count, size, content hash, link target, mtime and ctime in the jail, and that no probe
    /// appeared in the usual places outside the jail.
    pub(crate) fn assert_nothing_outside(&self) {
        let after = listing(self.dir.path(), Some(&self.target));
        assert_same_listing(&self.before, &after, "outside the target");
        for probe in global_probe_paths() {
            assert!(
                fs::symlink_metadata(&probe).is_err(),
                "{} was created outside the jail",
                probe.display()
            );
        }
    }

    /// The target's tree (see [`listing`]), without times.
    pub(crate) fn target_tree(&self) -> BTreeMap<String, String> {
        tree(&self.target)
    }
}

/// Panics with the differences if `before` and `after` differ.
pub(crate) fn assert_same_listing(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) {
    if before == after {
        return;
    }
    let mut diff = String::new();
    for (path, b) in before {
        match after.get(path) {
            None => diff += &format!("  removed {path}: {b}\n"),
            Some(a) if a != b => diff += &format!("  changed {path}:\n    was {b}\n    now {a}\n"),
            _ => {}
        }
    }
    for (path, a) in after {
        if !before.contains_key(path) {
            diff += &format!("  added {path}: {a}\n");
        }
    }
    panic!("{what} differs:\n{diff}");
}

/// Every path under `root` (not following symlinks, skipping `exclude`) with its type, mode,
/// owner, link count, size, content hash or link target, mtime and ctime.
pub(crate) fn listing(root: &Path, exclude: Option<&Path>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, exclude, true, &mut out);
    out
}

/// Every path under `root` (not following symlinks) with its type, mode, owner, size and
/// content hash or link target: what two unpacks of the same layers must agree on.
pub(crate) fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, None, false, &mut out);
    out.remove("");
    out
}

fn walk(
    root: &Path,
    path: &Path,
    exclude: Option<&Path>,
    times: bool,
    out: &mut BTreeMap<String, String>,
) {
    if Some(path) == exclude {
        return;
    }
    let meta = fs::symlink_metadata(path).unwrap();
    let ft = meta.file_type();
    let what = if ft.is_symlink() {
        format!("symlink -> {}", fs::read_link(path).unwrap().display())
    } else if ft.is_file() {
        let mut hasher = Sha256::new();
        let mut file = fs::File::open(path).unwrap();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        format!(
            "file {} bytes sha256:{}",
            meta.len(),
            hex::encode(hasher.finalize())
        )
    } else if ft.is_dir() {
        "dir".to_string()
    } else if ft.is_fifo() {
        "fifo".to_string()
    } else if ft.is_char_device() || ft.is_block_device() {
        let kind = if ft.is_char_device() { "char" } else { "block" };
        let rdev = meta.rdev();
        format!(
            "{kind} {}:{}",
            rustix::fs::major(rdev),
            rustix::fs::minor(rdev)
        )
    } else {
        "socket".to_string()
    };
    let mut line = format!(
        "{what} mode {:o} owner {}:{}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    if times {
        line += &format!(
            " nlink {} mtime {}.{} ctime {}.{}",
            meta.nlink(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
    }
    let rel = path
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    out.insert(rel, line);
    if ft.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for child in children {
            walk(root, &child, exclude, times, out);
        }
    }
}

/// Groups of paths under `root` that share an inode (hardlinks), each group sorted.
pub(crate) fn hardlink_groups(root: &Path) -> Vec<Vec<String>> {
    let mut by_inode: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for rel in tree(root).keys() {
        let meta = fs::symlink_metadata(root.join(rel)).unwrap();
        if meta.file_type().is_file() && meta.nlink() > 1 {
            by_inode
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
    }
    let mut groups: Vec<Vec<String>> = by_inode.into_values().collect();
    groups.iter_mut().for_each(|g| g.sort());
    groups.sort();
    groups
}
