//! The commit protocol (`docs/formats/volume.md`, "Commit protocol").

use std::collections::HashMap;
use std::fs::File;

use super::{Inode, Node, State, Volume, io_at, sync_dir, write_synced};
use crate::crypto;
use crate::error::{Error, Result};
use crate::format::{ChunkTable, IndexInode, IndexNode, IndexTree};
use crate::roots::VolumeState;

impl Volume {
    /// Makes everything written so far durable and trusted: fsyncs the data written, writes
    /// new meta objects for changed files and `index-<v+1>`, then asks the root store to move
    /// from `v` to `(v+1, root)`. Only when the store has accepted are the old objects deleted
    /// and the slots of version `v` reused. If the store refuses or cannot be reached, returns
    /// the error (EIO at the FUSE boundary) and the committed state stays `v`, intact.
    /// A no-op when nothing changed.
    pub fn commit(&self) -> Result<VolumeState> {
        let mut st = self.lock_write();
        if self.read_only || !st.dirty {
            return Ok(VolumeState {
                version: st.version,
                root: st.root,
            });
        }
        // A commit the store did not confirm may have been stored anyway (the answer was
        // lost): never reuse its version number, and build on it if the store holds it.
        let mut expected = st.version;
        let mut new_version = st.version + 1;
        if let Some(attempt) = st.failed_attempt {
            new_version = attempt.version + 1;
            if let Ok(Some(s)) = self.roots.load()
                && s == attempt
            {
                tracing::warn!(volume = %self.id_hex, version = s.version, "the root store holds the commit it did not confirm; building on it");
                expected = s.version;
            }
        }
        let mut new_metas: HashMap<u64, (u64, [u8; 32])> = HashMap::new();
        let mut synced_dirs = false;
        let linked: Vec<u64> = st
            .inodes
            .iter()
            .filter(|(_, i)| i.linked)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in &linked {
            let Some(Inode {
                node: Node::File(f),
                ..
            }) = st.inodes.get(ino)
            else {
                continue;
            };
            if f.data_dirty {
                let path = self.data_path(&f.id);
                let handle = f.handle.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let synced = match handle {
                    Some(h) => h.sync_data(),
                    None => File::open(&path).and_then(|h| h.sync_data()),
                };
                synced.map_err(io_at(&path))?;
            }
            if f.dirty || f.meta_version == 0 {
                let mv = f.meta_version + 1;
                let bytes = ChunkTable {
                    file_id: f.id,
                    meta_version: mv,
                    writes: f.writes,
                    chunks: f.chunks.clone(),
                }
                .encode();
                write_synced(&self.meta_path(&f.id, mv), &bytes)?;
                new_metas.insert(*ino, (mv, crypto::sha256(&bytes)));
                synced_dirs = true;
            }
        }
        if synced_dirs {
            sync_dir(&self.dir.join("d"))?;
            sync_dir(&self.dir.join("m"))?;
        }
        let tree = self.index_tree(&st, new_version, &new_metas);
        let plain = zeroize::Zeroizing::new(tree.encode());
        let sealed = self.index.seal(new_version, &plain)?;
        let name = Self::index_name(new_version);
        let tmp = self.dir.join(format!("{name}.tmp"));
        write_synced(&tmp, &sealed)?;
        let final_path = self.dir.join(&name);
        std::fs::rename(&tmp, &final_path).map_err(io_at(&final_path))?;
        sync_dir(&self.dir)?;
        let new_state = VolumeState {
            version: new_version,
            root: crypto::sha256(&sealed),
        };
        if let Err(source) = self.roots.commit(expected, new_state) {
            let stored = matches!(self.roots.load(), Ok(Some(s)) if s == new_state);
            if !stored {
                tracing::error!(volume = %self.id_hex, version = new_version, "root store refused the commit: {source}; the committed state stays version {expected}");
                st.failed_attempt = Some(new_state);
                return Err(Error::RootStore {
                    volume: self.id_hex.clone(),
                    source,
                });
            }
        }
        st.failed_attempt = None;
        let old_version = st.version;
        st.version = new_version;
        st.root = new_state.root;
        st.dirty = false;
        let mut garbage = std::mem::take(&mut st.garbage);
        for v in old_version.max(1)..new_version {
            garbage.push(self.dir.join(Self::index_name(v)));
        }
        let State { inodes, open, .. } = &mut *st;
        for (ino, i) in inodes.iter_mut() {
            let Node::File(f) = &mut i.node else { continue };
            if let Some((mv, hash)) = new_metas.get(ino) {
                if f.meta_version > 0 {
                    garbage.push(self.meta_path(&f.id, f.meta_version));
                }
                f.meta_version = *mv;
                f.meta_hash = *hash;
                f.committed = f.chunks.clone();
                f.dirty = false;
            }
            f.data_dirty = false;
            if !open.contains_key(ino) {
                *f.handle.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
        drop(st);
        for p in garbage {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), "cannot remove old backing object: {e}");
            }
        }
        tracing::debug!(volume = %self.id_hex, version = new_version, "committed");
        Ok(new_state)
    }

    fn index_tree(
        &self,
        st: &State,
        version: u64,
        new_metas: &HashMap<u64, (u64, [u8; 32])>,
    ) -> IndexTree {
        let mut inodes: Vec<IndexInode> = st
            .inodes
            .iter()
            .filter(|(_, i)| i.linked)
            .map(|(ino, i)| IndexInode {
                ino: *ino,
                mode: i.mode,
                uid: i.uid,
                gid: i.gid,
                atime: i.atime,
                mtime: i.mtime,
                ctime: i.ctime,
                size: i.size,
                node: match &i.node {
                    Node::Dir(e) => IndexNode::Dir(e.clone()),
                    Node::Symlink(t) => IndexNode::Symlink(t.clone()),
                    Node::File(f) => {
                        let (meta_version, meta_hash) = new_metas
                            .get(ino)
                            .copied()
                            .unwrap_or((f.meta_version, f.meta_hash));
                        IndexNode::File {
                            file_id: f.id,
                            meta_version,
                            meta_hash,
                        }
                    }
                },
            })
            .collect();
        inodes.sort_unstable_by_key(|i| i.ino);
        IndexTree {
            version,
            next_ino: st.next_ino,
            inodes,
        }
    }
}
