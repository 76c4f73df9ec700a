//! Namespace operations: lookup, attributes, directories, symlinks, unlink, rename.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};
use std::sync::Mutex;

use rustix::io::Errno;

use super::{
    Attributes, DirEntry, FileData, FileKind, Inode, Node, ROOT_INO, SetAttributes, StatFs, State,
    Volume, now, to_system_time, to_timestamp,
};
use crate::crypto::{self, FileCipher};
use crate::error::{Error, Result};
use crate::format::{ID_LEN, NAME_MAX, SYMLINK_MAX, valid_name};

fn check_name(op: &'static str, name: &OsStr) -> Result<Vec<u8>> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(Error::posix(op, Errno::NAMETOOLONG));
    }
    if !valid_name(b) {
        return Err(Error::posix(op, Errno::INVAL));
    }
    Ok(b.to_vec())
}

fn dir<'a>(st: &'a State, op: &'static str, ino: u64) -> Result<&'a BTreeMap<Vec<u8>, u64>> {
    match st.inodes.get(&ino).map(|i| &i.node) {
        Some(Node::Dir(e)) => Ok(e),
        Some(_) => Err(Error::posix(op, Errno::NOTDIR)),
        None => Err(Error::posix(op, Errno::NOENT)),
    }
}

fn dir_mut<'a>(
    st: &'a mut State,
    op: &'static str,
    ino: u64,
) -> Result<&'a mut BTreeMap<Vec<u8>, u64>> {
    match st.inodes.get_mut(&ino).map(|i| &mut i.node) {
        Some(Node::Dir(e)) => Ok(e),
        Some(_) => Err(Error::posix(op, Errno::NOTDIR)),
        None => Err(Error::posix(op, Errno::NOENT)),
    }
}

fn touch_dir(st: &mut State, ino: u64) {
    if let Some(i) = st.inodes.get_mut(&ino) {
        let t = now();
        i.mtime = t;
        i.ctime = t;
    }
}

struct NewInode {
    mode: u32,
    uid: u32,
    gid: u32,
    node: Node,
    size: u64,
}

impl Volume {
    fn writable(&self, op: &'static str) -> Result<()> {
        if self.read_only {
            Err(Error::posix(op, Errno::ROFS))
        } else {
            Ok(())
        }
    }

    pub(crate) fn attrs(st: &State, ino: u64) -> Result<Attributes> {
        let i = st
            .inodes
            .get(&ino)
            .ok_or(Error::posix("getattr", Errno::NOENT))?;
        let (nlink, blocks) = match &i.node {
            Node::Dir(e) => {
                let subdirs = e
                    .values()
                    .filter(|c| matches!(st.inodes.get(c).map(|c| &c.node), Some(Node::Dir(_))))
                    .count();
                (2 + subdirs as u32, 0)
            }
            Node::File(f) => (
                u32::from(i.linked),
                f.chunks.iter().filter(|c| c.is_some()).count() as u64 * 8,
            ),
            Node::Symlink(_) => (u32::from(i.linked), 0),
        };
        Ok(Attributes {
            ino,
            kind: i.kind(),
            size: i.size,
            blocks,
            mode: i.mode,
            nlink,
            uid: i.uid,
            gid: i.gid,
            atime: to_system_time(i.atime),
            mtime: to_system_time(i.mtime),
            ctime: to_system_time(i.ctime),
        })
    }

    /// Attributes of `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attributes> {
        let st = self.lock_read();
        let child = *dir(&st, "lookup", parent)?
            .get(name.as_bytes())
            .ok_or(Error::posix("lookup", Errno::NOENT))?;
        Self::attrs(&st, child)
    }

    /// Attributes of an inode (by path relative to the root: convenience for tools and tests;
    /// symlinks are not followed).
    pub fn resolve(&self, path: impl AsRef<Path>) -> Result<Attributes> {
        let mut ino = ROOT_INO;
        for c in path.as_ref().components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => ino = self.lookup(ino, name)?.ino,
                _ => return Err(Error::posix("resolve", Errno::INVAL)),
            }
        }
        self.getattr(ino)
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: u64) -> Result<Attributes> {
        Self::attrs(&self.lock_read(), ino)
    }

    /// Changes attributes: mode, owner, size (truncate or extend), times; updates ctime.
    pub fn setattr(&self, ino: u64, set: &SetAttributes) -> Result<Attributes> {
        self.writable("setattr")?;
        let mut st = self.lock_write();
        let kind = st
            .inodes
            .get(&ino)
            .ok_or(Error::posix("setattr", Errno::NOENT))?
            .kind();
        if let Some(size) = set.size {
            match kind {
                FileKind::File => self.truncate_file(&mut st, ino, size)?,
                FileKind::Dir => return Err(Error::posix("truncate", Errno::ISDIR)),
                FileKind::Symlink => return Err(Error::posix("truncate", Errno::INVAL)),
            }
        }
        let Some(i) = st.inodes.get_mut(&ino) else {
            return Err(Error::posix("setattr", Errno::NOENT));
        };
        if let Some(m) = set.mode {
            i.mode = m & 0o7777;
        }
        if let Some(u) = set.uid {
            i.uid = u;
        }
        if let Some(g) = set.gid {
            i.gid = g;
        }
        if let Some(t) = set.atime {
            i.atime = to_timestamp(t);
        }
        if let Some(t) = set.mtime {
            i.mtime = to_timestamp(t);
        }
        i.ctime = now();
        st.dirty = true;
        Self::attrs(&st, ino)
    }

    /// The entries of a directory, sorted by name (without `.` and `..`).
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let st = self.lock_read();
        let entries = dir(&st, "readdir", ino)?;
        Ok(entries
            .iter()
            .filter_map(|(name, child)| {
                Some(DirEntry {
                    ino: *child,
                    kind: st.inodes.get(child)?.kind(),
                    name: OsString::from_vec(name.clone()),
                })
            })
            .collect())
    }

    /// The parent of a directory (the root's parent is the root).
    pub fn parent(&self, ino: u64) -> Result<u64> {
        let st = self.lock_read();
        let i = st
            .inodes
            .get(&ino)
            .ok_or(Error::posix("parent", Errno::NOENT))?;
        Ok(if ino == ROOT_INO { ROOT_INO } else { i.parent })
    }

    fn add_inode(
        &self,
        op: &'static str,
        parent: u64,
        name: &OsStr,
        new: NewInode,
    ) -> Result<Attributes> {
        let NewInode {
            mode,
            uid,
            gid,
            node,
            size,
        } = new;
        self.writable(op)?;
        let name = check_name(op, name)?;
        let mut st = self.lock_write();
        if dir(&st, op, parent)?.contains_key(&name) {
            return Err(Error::posix(op, Errno::EXIST));
        }
        let ino = st.next_ino;
        st.next_ino += 1;
        let t = now();
        st.inodes.insert(
            ino,
            Inode {
                parent,
                linked: true,
                mode: mode & 0o7777,
                uid,
                gid,
                atime: t,
                mtime: t,
                ctime: t,
                size,
                node,
            },
        );
        dir_mut(&mut st, op, parent)?.insert(name, ino);
        touch_dir(&mut st, parent);
        st.dirty = true;
        Self::attrs(&st, ino)
    }

    /// Creates an empty regular file (`EEXIST` if the name exists).
    pub fn create_file(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Attributes> {
        let mut id = [0u8; ID_LEN];
        crypto::random(&mut id)?;
        let node = Node::File(Box::new(FileData {
            id,
            cipher: FileCipher::new(&self.key, self.id, id)?,
            meta_version: 0,
            meta_hash: [0; 32],
            chunks: Vec::new(),
            committed: Vec::new(),
            writes: 0,
            dirty: true,
            data_dirty: false,
            handle: Mutex::new(None),
            changes: 0,
            hints: Default::default(),
        }));
        self.add_inode(
            "create",
            parent,
            name,
            NewInode {
                mode,
                uid,
                gid,
                node,
                size: 0,
            },
        )
    }

    /// Creates a directory.
    pub fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Attributes> {
        self.add_inode(
            "mkdir",
            parent,
            name,
            NewInode {
                mode,
                uid,
                gid,
                node: Node::Dir(BTreeMap::new()),
                size: 0,
            },
        )
    }

    /// Creates a symbolic link to `target` (1..=4095 bytes, stored as is).
    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        uid: u32,
        gid: u32,
    ) -> Result<Attributes> {
        let t = target.as_os_str().as_bytes();
        if t.is_empty() {
            return Err(Error::posix("symlink", Errno::NOENT));
        }
        if t.len() > SYMLINK_MAX {
            return Err(Error::posix("symlink", Errno::NAMETOOLONG));
        }
        self.add_inode(
            "symlink",
            parent,
            name,
            NewInode {
                mode: 0o777,
                uid,
                gid,
                node: Node::Symlink(t.to_vec()),
                size: t.len() as u64,
            },
        )
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> Result<std::path::PathBuf> {
        let st = self.lock_read();
        match st.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::Symlink(t)) => Ok(OsString::from_vec(t.clone()).into()),
            Some(_) => Err(Error::posix("readlink", Errno::INVAL)),
            None => Err(Error::posix("readlink", Errno::NOENT)),
        }
    }

    /// Drops an inode that lost its name: kept while open, its objects deleted after the next
    /// commit otherwise.
    fn drop_inode(&self, st: &mut State, ino: u64) {
        if st.open.get(&ino).copied().unwrap_or(0) > 0 {
            if let Some(i) = st.inodes.get_mut(&ino) {
                i.linked = false;
                i.parent = 0;
                i.ctime = now();
            }
            return;
        }
        if let Some(i) = st.inodes.remove(&ino)
            && let Node::File(f) = i.node
        {
            st.garbage.push(self.data_path(&f.id));
            if f.meta_version > 0 {
                st.garbage.push(self.meta_path(&f.id, f.meta_version));
            }
        }
    }

    /// Removes a file or symlink.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.writable("unlink")?;
        let mut st = self.lock_write();
        let child = *dir(&st, "unlink", parent)?
            .get(name.as_bytes())
            .ok_or(Error::posix("unlink", Errno::NOENT))?;
        if matches!(st.inodes.get(&child).map(|i| &i.node), Some(Node::Dir(_))) {
            return Err(Error::posix("unlink", Errno::ISDIR));
        }
        dir_mut(&mut st, "unlink", parent)?.remove(name.as_bytes());
        touch_dir(&mut st, parent);
        self.drop_inode(&mut st, child);
        st.dirty = true;
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.writable("rmdir")?;
        let mut st = self.lock_write();
        let child = *dir(&st, "rmdir", parent)?
            .get(name.as_bytes())
            .ok_or(Error::posix("rmdir", Errno::NOENT))?;
        match st.inodes.get(&child).map(|i| &i.node) {
            Some(Node::Dir(e)) if e.is_empty() => {}
            Some(Node::Dir(_)) => return Err(Error::posix("rmdir", Errno::NOTEMPTY)),
            _ => return Err(Error::posix("rmdir", Errno::NOTDIR)),
        }
        dir_mut(&mut st, "rmdir", parent)?.remove(name.as_bytes());
        touch_dir(&mut st, parent);
        st.inodes.remove(&child);
        st.dirty = true;
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a file by a file or an empty
    /// directory by a directory, unless `no_replace` (then `EEXIST`). Moving a directory into
    /// itself is `EINVAL`.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<()> {
        self.writable("rename")?;
        let new_name_b = check_name("rename", new_name)?;
        let mut st = self.lock_write();
        let src = *dir(&st, "rename", parent)?
            .get(name.as_bytes())
            .ok_or(Error::posix("rename", Errno::NOENT))?;
        let existing = dir(&st, "rename", new_parent)?.get(&new_name_b).copied();
        let src_is_dir = matches!(st.inodes.get(&src).map(|i| &i.node), Some(Node::Dir(_)));
        if let Some(dst) = existing {
            if dst == src {
                return Ok(());
            }
            if no_replace {
                return Err(Error::posix("rename", Errno::EXIST));
            }
            match (src_is_dir, st.inodes.get(&dst).map(|i| &i.node)) {
                (true, Some(Node::Dir(e))) if !e.is_empty() => {
                    return Err(Error::posix("rename", Errno::NOTEMPTY));
                }
                (false, Some(Node::Dir(_))) => return Err(Error::posix("rename", Errno::ISDIR)),
                (true, Some(n)) if !matches!(n, Node::Dir(_)) => {
                    return Err(Error::posix("rename", Errno::NOTDIR));
                }
                _ => {}
            }
        }
        if src_is_dir {
            let mut cur = new_parent;
            while cur != 0 {
                if cur == src {
                    return Err(Error::posix("rename", Errno::INVAL));
                }
                if cur == ROOT_INO {
                    break;
                }
                cur = st.inodes.get(&cur).map_or(0, |i| i.parent);
            }
        }
        dir_mut(&mut st, "rename", parent)?.remove(name.as_bytes());
        dir_mut(&mut st, "rename", new_parent)?.insert(new_name_b, src);
        if let Some(dst) = existing {
            if matches!(st.inodes.get(&dst).map(|i| &i.node), Some(Node::Dir(_))) {
                st.inodes.remove(&dst);
            } else {
                self.drop_inode(&mut st, dst);
            }
        }
        if let Some(i) = st.inodes.get_mut(&src) {
            i.parent = new_parent;
            i.ctime = now();
        }
        touch_dir(&mut st, parent);
        touch_dir(&mut st, new_parent);
        st.dirty = true;
        Ok(())
    }

    /// Notes an open handle on a file: an unlinked file stays readable while open.
    pub fn open_file(&self, ino: u64) -> Result<()> {
        let mut st = self.lock_write();
        if !st.inodes.contains_key(&ino) {
            return Err(Error::posix("open", Errno::NOENT));
        }
        *st.open.entry(ino).or_insert(0) += 1;
        Ok(())
    }

    /// Whether a file's content is unchanged since it was last opened through the mount (the
    /// kernel may then keep its cached pages: `FOPEN_KEEP_CACHE`); records this open.
    pub(crate) fn unchanged_since_last_open(&self, ino: u64) -> bool {
        let st = self.lock_read();
        match st.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::File(f)) => {
                let prev = f
                    .hints
                    .opened_at
                    .swap(f.changes, std::sync::atomic::Ordering::Relaxed);
                prev == f.changes
            }
            _ => false,
        }
    }

    /// Releases a handle taken by [`Volume::open_file`].
    pub fn release_file(&self, ino: u64) {
        let mut st = self.lock_write();
        let Some(n) = st.open.get_mut(&ino) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        st.open.remove(&ino);
        let unlinked = st.inodes.get(&ino).is_some_and(|i| !i.linked);
        if unlinked {
            self.drop_inode(&mut st, ino);
        } else if let Some(Inode {
            node: Node::File(f),
            ..
        }) = st.inodes.get(&ino)
            && !f.data_dirty
        {
            *f.handle.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Space of the backing file system and the volume's inode count.
    pub fn statfs(&self) -> Result<StatFs> {
        let v = rustix::fs::statvfs(&self.dir).map_err(|e| {
            Error::io(
                &self.dir,
                std::io::Error::from_raw_os_error(e.raw_os_error()),
            )
        })?;
        let files = self.lock_read().inodes.len() as u64;
        Ok(StatFs {
            blocks: v.f_blocks,
            bfree: v.f_bfree,
            bavail: v.f_bavail,
            files,
            ffree: v.f_ffree,
            bsize: v.f_bsize as u32,
            frsize: v.f_frsize as u32,
            namelen: NAME_MAX as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{MemoryRootStore, ROOT_INO, SetAttributes, Volume, VolumeKey};

    #[test]
    fn keep_cache_only_while_the_content_is_unchanged_since_the_last_open() {
        let tmp = tempfile::tempdir().unwrap();
        let v = Volume::create(
            tmp.path().join("v"),
            VolumeKey::generate().unwrap(),
            Arc::new(MemoryRootStore::new()),
        )
        .unwrap();
        let f = v
            .create_file(ROOT_INO, "f".as_ref(), 0o644, 0, 0)
            .unwrap()
            .ino;
        // The first open has nothing cached to keep.
        assert!(!v.unchanged_since_last_open(f));
        assert!(v.unchanged_since_last_open(f));
        v.write(f, 0, b"hello").unwrap();
        assert!(!v.unchanged_since_last_open(f));
        assert!(v.unchanged_since_last_open(f));
        // Reads and commits do not change the content.
        v.read(f, 0, 5).unwrap();
        v.commit().unwrap();
        assert!(v.unchanged_since_last_open(f));
        let truncate = SetAttributes {
            size: Some(2),
            ..SetAttributes::default()
        };
        v.setattr(f, &truncate).unwrap();
        assert!(!v.unchanged_since_last_open(f));
        // Not a file: never.
        assert!(!v.unchanged_since_last_open(ROOT_INO));
    }
}
