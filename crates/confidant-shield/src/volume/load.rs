//! Opening: loading the trusted index and every chunk table, and removing what the committed
//! state does not reference.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::{FileData, Inode, Node, Volume};
use crate::crypto::{self, FileCipher};
use crate::error::{Error, Result};
use crate::format::{CHUNK_SIZE, ChunkTable, ID_LEN, IndexNode, IndexTree};
use crate::roots::VolumeState;

impl Volume {
    pub(super) fn load(&self, trusted: VolumeState) -> Result<()> {
        let name = Self::index_name(trusted.version);
        let path = self.dir.join(&name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let found = match self.index_versions().last() {
                    Some(v) => format!("index version {v}"),
                    None => "no index".into(),
                };
                let err = Error::RolledBack {
                    volume: self.id_hex.clone(),
                    found,
                    trusted: trusted.version,
                };
                tracing::error!("{err}");
                return Err(err);
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let hash = crypto::sha256(&bytes);
        if hash != trusted.root {
            return Err(self.tampered(
                &name,
                format!(
                    "SHA-256 {} differs from the trusted root {} of version {}",
                    hex::encode(hash),
                    hex::encode(trusted.root),
                    trusted.version
                ),
            ));
        }
        let plain = self.index.open(trusted.version, &bytes).ok_or_else(|| {
            self.tampered(
                &name,
                "fails authentication (not sealed with this key for this version)",
            )
        })?;
        let tree = IndexTree::parse(&plain).map_err(|source| Error::Format {
            volume: self.id_hex.clone(),
            source,
        })?;
        if tree.version != trusted.version {
            return Err(self.tampered(
                &name,
                format!(
                    "holds version {}, expected {}",
                    tree.version, trusted.version
                ),
            ));
        }
        let mut st = self.lock_write();
        st.next_ino = tree.next_ino;
        let mut parents = HashMap::new();
        for i in &tree.inodes {
            if let IndexNode::Dir(entries) = &i.node {
                for child in entries.values() {
                    parents.insert(*child, i.ino);
                }
            }
        }
        for i in tree.inodes {
            let node = match i.node {
                IndexNode::Dir(e) => Node::Dir(e),
                IndexNode::Symlink(t) => Node::Symlink(t),
                IndexNode::File {
                    file_id,
                    meta_version,
                    meta_hash,
                } => {
                    let table = self.load_meta(&file_id, meta_version, &meta_hash, i.size)?;
                    Node::File(Box::new(FileData {
                        id: file_id,
                        cipher: FileCipher::new(&self.key, self.id, file_id)?,
                        meta_version,
                        meta_hash,
                        committed: table.chunks.clone(),
                        chunks: table.chunks,
                        writes: table.writes,
                        dirty: false,
                        data_dirty: false,
                        handle: Mutex::new(None),
                        changes: 0,
                        hints: Default::default(),
                    }))
                }
            };
            st.inodes.insert(
                i.ino,
                Inode {
                    parent: parents.get(&i.ino).copied().unwrap_or(0),
                    linked: true,
                    mode: i.mode,
                    uid: i.uid,
                    gid: i.gid,
                    atime: i.atime,
                    mtime: i.mtime,
                    ctime: i.ctime,
                    size: i.size,
                    node,
                },
            );
        }
        Ok(())
    }

    fn load_meta(
        &self,
        file_id: &[u8; ID_LEN],
        meta_version: u64,
        meta_hash: &[u8; 32],
        size: u64,
    ) -> Result<ChunkTable> {
        if meta_version == 0 {
            return Err(self.tampered(
                format!("file {}", hex::encode(file_id)),
                "index references meta version 0",
            ));
        }
        let path = self.meta_path(file_id, meta_version);
        let object = format!("m/{}-{meta_version}", hex::encode(file_id));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.tampered(object, "missing"));
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let hash = crypto::sha256(&bytes);
        if &hash != meta_hash {
            return Err(self.tampered(
                object,
                format!(
                    "SHA-256 {} differs from the index's {}",
                    hex::encode(hash),
                    hex::encode(meta_hash)
                ),
            ));
        }
        let table = ChunkTable::parse(&bytes).map_err(|source| Error::Format {
            volume: self.id_hex.clone(),
            source,
        })?;
        let max_chunks = size.div_ceil(CHUNK_SIZE as u64);
        if &table.file_id != file_id
            || table.meta_version != meta_version
            || table.chunks.len() as u64 > max_chunks
        {
            return Err(self.tampered(
                object,
                "file id, meta version or chunk count inconsistent with the index",
            ));
        }
        Ok(table)
    }

    /// Deletes backing objects the committed state does not reference. Failures are logged
    /// only: garbage costs space, never correctness.
    pub(super) fn collect_unreferenced(&self) {
        let st = self.lock_read();
        let mut data = HashSet::new();
        let mut metas = HashSet::new();
        for i in st.inodes.values() {
            if let Node::File(f) = &i.node {
                data.insert(hex::encode(f.id));
                metas.insert(format!("{}-{}", hex::encode(f.id), f.meta_version));
            }
        }
        let current = Self::index_name(st.version);
        let mut remove = Vec::new();
        for (sub, keep) in [("", None), ("d", Some(&data)), ("m", Some(&metas))] {
            let dir = if sub.is_empty() {
                self.dir.clone()
            } else {
                self.dir.join(sub)
            };
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let garbage = match keep {
                    None => name.starts_with("index-") && name != current,
                    Some(k) => !k.contains(&name),
                };
                if garbage {
                    remove.push(e.path());
                }
            }
        }
        drop(st);
        for p in remove {
            tracing::debug!(path = %p.display(), "removing unreferenced backing object");
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), "cannot remove unreferenced object: {e}");
            }
        }
    }
}
