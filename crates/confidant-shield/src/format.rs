//! The on-disk objects of a volume and their byte layouts (`docs/formats/volume.md`).
//!
//! Three parsers face bytes the host controls: [`Header::parse`] (`volume.cfv`),
//! [`IndexTree::parse`] (the plaintext of an `index-<version>` object, after its AEAD check) and
//! [`ChunkTable::parse`] (`m/<file id>-<meta version>`, before its hash check). None of them panics
//! and none allocates more than its input justifies: every count is checked against the bytes
//! that remain before anything is reserved.

use std::collections::BTreeMap;

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 4096;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes of one stored chunk: nonce ‖ ciphertext ‖ tag.
pub const STORED_CHUNK_SIZE: usize = NONCE_LEN + CHUNK_SIZE + TAG_LEN;
/// Length of a volume id and of a file id.
pub const ID_LEN: usize = 16;

/// Magic of `volume.cfv`.
pub const HEADER_MAGIC: [u8; 8] = *b"CFSHIELD";
/// Format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Length of `volume.cfv`.
pub const HEADER_LEN: usize = 72;
/// Bytes of the header covered by the key check (everything before it).
pub const HEADER_CHECKED_LEN: usize = 40;
/// Magic of a meta object.
pub const META_MAGIC: [u8; 8] = *b"CFMETA01";
/// Fixed part of a meta object (magic, file id, meta version, writes, count).
pub const META_FIXED_LEN: usize = 48;
/// Bytes of one chunk-table entry.
pub const META_ENTRY_LEN: usize = 25;
/// Longest directory entry name.
pub const NAME_MAX: usize = 255;
/// Longest symlink target.
pub const SYMLINK_MAX: usize = 4095;

/// Chunks per slot group in a data object (see [`slot_offset`]).
pub const SLOT_GROUP: u64 = 32;

const _: () = assert!(STORED_CHUNK_SIZE == 4124);
const _: () = assert!(HEADER_CHECKED_LEN + 32 == HEADER_LEN);
const _: () = assert!(META_FIXED_LEN == 8 + ID_LEN + 8 + 8 + 8);
const _: () = assert!(META_ENTRY_LEN == 1 + 8 + TAG_LEN);

/// Byte offset of slot `slot` (0 = A, 1 = B) of chunk `index` in its `d/` object.
///
/// Chunks are grouped by [`SLOT_GROUP`]: group `g` holds the A slots of its 32 chunks, then
/// their B slots, so that chunks written together into the same slot (a sequential write) are
/// contiguous on the host and go out in one system call:
/// `((g * 2 + slot) * SLOT_GROUP + index % SLOT_GROUP) * STORED_CHUNK_SIZE`, `g = index / SLOT_GROUP`.
pub fn slot_offset(index: u64, slot: u8) -> u64 {
    let (g, r) = (index / SLOT_GROUP, index % SLOT_GROUP);
    ((g * 2 + u64::from(slot)) * SLOT_GROUP + r) * STORED_CHUNK_SIZE as u64
}

/// A malformed object: which one, and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct FormatError {
    /// The object (`volume header`, `index`, `meta object`).
    pub what: &'static str,
    /// What was expected and what was found.
    pub detail: String,
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }
    fn err(&self, detail: impl Into<String>) -> FormatError {
        FormatError {
            what: self.what,
            detail: detail.into(),
        }
    }
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], FormatError> {
        if self.buf.len() < n {
            return Err(self.err(format!(
                "{field}: expected {n} more bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
    fn u8(&mut self, field: &str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    fn i64(&mut self, field: &str) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }
    /// A count of items of at least `min_item` bytes each, checked against what remains.
    fn count(&mut self, value: u64, min_item: usize, field: &str) -> Result<usize, FormatError> {
        let max = (self.buf.len() / min_item) as u64;
        if value > max {
            return Err(self.err(format!(
                "{field}: {value} items cannot fit in the {} bytes left",
                self.buf.len()
            )));
        }
        Ok(value as usize)
    }
    fn finish(&self) -> Result<(), FormatError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err(format!("{} trailing bytes", self.buf.len())))
        }
    }
}

/// `volume.cfv`: what identifies a volume and lets a wrong key be told apart from tampering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version (bytes 8..12). [`Header::parse`] accepts only [`FORMAT_VERSION`]; new
    /// headers carry [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Random volume id, bound into every AAD and the key derivation's salt.
    pub volume_id: [u8; ID_LEN],
    /// Creation time, seconds since the Unix epoch (informational).
    pub created: u64,
    /// HMAC-SHA256 over the first [`HEADER_CHECKED_LEN`] bytes with the header key.
    pub key_check: [u8; 32],
}

impl Header {
    /// The bytes covered by the key check.
    pub fn checked_bytes(&self) -> [u8; HEADER_CHECKED_LEN] {
        let mut out = [0u8; HEADER_CHECKED_LEN];
        out[0..8].copy_from_slice(&HEADER_MAGIC);
        out[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        out[12..16].copy_from_slice(&(CHUNK_SIZE as u32).to_le_bytes());
        out[16..32].copy_from_slice(&self.volume_id);
        out[32..40].copy_from_slice(&self.created.to_le_bytes());
        out
    }

    /// The 72 bytes of `volume.cfv`.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..HEADER_CHECKED_LEN].copy_from_slice(&self.checked_bytes());
        out[HEADER_CHECKED_LEN..].copy_from_slice(&self.key_check);
        out
    }

    /// Parses `volume.cfv` (the key check is verified by the caller, who has the key).
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "volume header");
        if bytes.len() != HEADER_LEN {
            return Err(r.err(format!("expected {HEADER_LEN} bytes, got {}", bytes.len())));
        }
        let magic: [u8; 8] = r.array("magic")?;
        if magic != HEADER_MAGIC {
            return Err(r.err(format!(
                "magic: expected {}, got {}",
                hex::encode(HEADER_MAGIC),
                hex::encode(magic)
            )));
        }
        let version = r.u32("format version")?;
        if version != FORMAT_VERSION {
            return Err(r.err(format!(
                "format version: expected {FORMAT_VERSION}, got {version}"
            )));
        }
        let chunk = r.u32("chunk size")?;
        if chunk as usize != CHUNK_SIZE {
            return Err(r.err(format!("chunk size: expected {CHUNK_SIZE}, got {chunk}")));
        }
        let volume_id = r.array("volume id")?;
        let created = r.u64("created")?;
        let key_check = r.array("key check")?;
        r.finish()?;
        Ok(Self {
            format_version: version,
            volume_id,
            created,
            key_check,
        })
    }
}

/// A time stamp: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Seconds since the epoch (negative before it).
    pub secs: i64,
    /// Nanoseconds, below 1e9.
    pub nanos: u32,
}

/// What an inode is, with its kind-specific part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexNode {
    /// A regular file: where its chunk table is and what it must hash to.
    File {
        /// Random file id: names `d/` and `m/` objects, salts the file key.
        file_id: [u8; ID_LEN],
        /// Version of the file's meta object (`m/<file id>-<meta version>`).
        meta_version: u64,
        /// SHA-256 of that meta object's bytes.
        meta_hash: [u8; 32],
    },
    /// A directory: name → inode number.
    Dir(BTreeMap<Vec<u8>, u64>),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
}

/// One inode of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInode {
    /// Inode number (1 is the root directory).
    pub ino: u64,
    /// Permission bits (`0o7777`), without the file type.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Size in bytes (files: the logical size; symlinks: the target's length; dirs: 0).
    pub size: u64,
    /// Kind and kind-specific data.
    pub node: IndexNode,
}

const KIND_FILE: u8 = 1;
const KIND_DIR: u8 = 2;
const KIND_SYMLINK: u8 = 3;
const INODE_MIN_LEN: usize = 8 + 1 + 4 * 3 + 12 * 3 + 8 + 4;
const ENTRY_MIN_LEN: usize = 2 + 1 + 8;

/// The plaintext of an index object: the whole tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTree {
    /// The volume version this index is (also bound in the AAD).
    pub version: u64,
    /// Next inode number to hand out (inode numbers are never reused).
    pub next_ino: u64,
    /// All inodes, in ascending inode number.
    pub inodes: Vec<IndexInode>,
}

fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    out.extend_from_slice(&t.secs.to_le_bytes());
    out.extend_from_slice(&t.nanos.to_le_bytes());
}

fn read_time(r: &mut Reader<'_>, field: &str) -> Result<Timestamp, FormatError> {
    let secs = r.i64(field)?;
    let nanos = r.u32(field)?;
    if nanos >= 1_000_000_000 {
        return Err(r.err(format!("{field}: nanoseconds {nanos} out of range")));
    }
    Ok(Timestamp { secs, nanos })
}

/// Whether `name` may be a directory entry: 1..=255 bytes, no `/` or NUL, not `.` or `..`.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

impl IndexTree {
    /// Serializes the tree (the plaintext that gets encrypted into `index-<version>`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.inodes.len() * 96);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.next_ino.to_le_bytes());
        out.extend_from_slice(&(self.inodes.len() as u64).to_le_bytes());
        for i in &self.inodes {
            out.extend_from_slice(&i.ino.to_le_bytes());
            out.push(match i.node {
                IndexNode::File { .. } => KIND_FILE,
                IndexNode::Dir(_) => KIND_DIR,
                IndexNode::Symlink(_) => KIND_SYMLINK,
            });
            out.extend_from_slice(&i.mode.to_le_bytes());
            out.extend_from_slice(&i.uid.to_le_bytes());
            out.extend_from_slice(&i.gid.to_le_bytes());
            put_time(&mut out, i.atime);
            put_time(&mut out, i.mtime);
            put_time(&mut out, i.ctime);
            out.extend_from_slice(&i.size.to_le_bytes());
            match &i.node {
                IndexNode::File {
                    file_id,
                    meta_version,
                    meta_hash,
                } => {
                    out.extend_from_slice(file_id);
                    out.extend_from_slice(&meta_version.to_le_bytes());
                    out.extend_from_slice(meta_hash);
                }
                IndexNode::Dir(entries) => {
                    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                    for (name, ino) in entries {
                        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
                        out.extend_from_slice(name);
                        out.extend_from_slice(&ino.to_le_bytes());
                    }
                }
                IndexNode::Symlink(target) => {
                    out.extend_from_slice(&(target.len() as u32).to_le_bytes());
                    out.extend_from_slice(target);
                }
            }
        }
        out
    }

    /// Parses the plaintext of an index object and checks that it is one tree: inode 1 is a
    /// directory, every other inode is named exactly once, every name is valid and every entry
    /// points at an inode that exists.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "index");
        let version = r.u64("version")?;
        let next_ino = r.u64("next inode")?;
        let raw = r.u64("inode count")?;
        let count = r.count(raw, INODE_MIN_LEN, "inode count")?;
        let mut inodes = Vec::with_capacity(count);
        for n in 0..count {
            let ino = r.u64("inode number")?;
            let kind = r.u8("kind")?;
            let mode = r.u32("mode")?;
            if mode & !0o7777 != 0 {
                return Err(r.err(format!("inode {ino}: mode {mode:o} has bits beyond 0o7777")));
            }
            let uid = r.u32("uid")?;
            let gid = r.u32("gid")?;
            let atime = read_time(&mut r, "atime")?;
            let mtime = read_time(&mut r, "mtime")?;
            let ctime = read_time(&mut r, "ctime")?;
            let size = r.u64("size")?;
            let node = match kind {
                KIND_FILE => IndexNode::File {
                    file_id: r.array("file id")?,
                    meta_version: r.u64("meta version")?,
                    meta_hash: r.array("meta hash")?,
                },
                KIND_DIR => {
                    let raw = r.u32("entry count")?;
                    let entries = r.count(u64::from(raw), ENTRY_MIN_LEN, "entry count")?;
                    let mut map = BTreeMap::new();
                    for _ in 0..entries {
                        let len = r.u16("name length")? as usize;
                        let name = r.take(len, "name")?.to_vec();
                        if !valid_name(&name) {
                            return Err(r.err(format!(
                                "inode {ino}: invalid entry name {:?}",
                                String::from_utf8_lossy(&name)
                            )));
                        }
                        let child = r.u64("entry inode")?;
                        if map.insert(name, child).is_some() {
                            return Err(r.err(format!("inode {ino}: duplicate entry name")));
                        }
                    }
                    IndexNode::Dir(map)
                }
                KIND_SYMLINK => {
                    let len = r.u32("target length")? as usize;
                    if len == 0 || len > SYMLINK_MAX {
                        return Err(r.err(format!("inode {ino}: symlink target length {len}")));
                    }
                    IndexNode::Symlink(r.take(len, "target")?.to_vec())
                }
                other => return Err(r.err(format!("inode {ino}: unknown kind {other}"))),
            };
            if let Some(prev) = inodes.last().map(|p: &IndexInode| p.ino)
                && prev >= ino
            {
                return Err(r.err(format!(
                    "inode #{n}: number {ino} not above the previous {prev}"
                )));
            }
            if ino == 0 || ino >= next_ino {
                return Err(r.err(format!(
                    "inode number {ino} outside 1..{next_ino} (next inode)"
                )));
            }
            inodes.push(IndexInode {
                ino,
                mode,
                uid,
                gid,
                atime,
                mtime,
                ctime,
                size,
                node,
            });
        }
        r.finish()?;
        let tree = Self {
            version,
            next_ino,
            inodes,
        };
        tree.check_shape().map_err(|detail| FormatError {
            what: "index",
            detail,
        })?;
        Ok(tree)
    }

    fn check_shape(&self) -> Result<(), String> {
        let find = |ino: u64| {
            self.inodes
                .binary_search_by_key(&ino, |i| i.ino)
                .ok()
                .map(|p| &self.inodes[p])
        };
        match find(1) {
            Some(IndexInode {
                node: IndexNode::Dir(_),
                ..
            }) => {}
            _ => return Err("inode 1 (the root) is missing or not a directory".into()),
        }
        let mut named = vec![false; self.inodes.len()];
        named[0] = true; // the root (inode 1 is the smallest number, so the first)
        for i in &self.inodes {
            if let IndexNode::Dir(entries) = &i.node {
                for child in entries.values() {
                    let Ok(pos) = self.inodes.binary_search_by_key(child, |i| i.ino) else {
                        return Err(format!(
                            "inode {}: entry points at missing inode {child}",
                            i.ino
                        ));
                    };
                    if named[pos] {
                        return Err(format!("inode {child} is named more than once"));
                    }
                    named[pos] = true;
                }
            }
        }
        if let Some(pos) = named.iter().position(|n| !n) {
            return Err(format!(
                "inode {} is not named by any directory",
                self.inodes[pos].ino
            ));
        }
        // Every inode named exactly once and the root named by none: the only possible defect
        // left is a cycle of directories detached from the root. Walk from the root.
        let mut seen = 0usize;
        let mut stack = vec![1u64];
        while let Some(ino) = stack.pop() {
            seen += 1;
            if let Some(IndexInode {
                node: IndexNode::Dir(entries),
                ..
            }) = find(ino)
            {
                stack.extend(entries.values().copied());
            }
        }
        if seen != self.inodes.len() {
            return Err(format!(
                "{} inodes are not reachable from the root",
                self.inodes.len() - seen
            ));
        }
        Ok(())
    }
}

/// Where a chunk's current ciphertext is and what its tag must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Slot (0 = A, 1 = B) in the `d/` object.
    pub slot: u8,
    /// Volume version the chunk was written for (bound in the AAD).
    pub epoch: u64,
    /// The chunk's AES-GCM tag.
    pub tag: [u8; TAG_LEN],
}

/// A meta object: a file's chunk table (plain bytes, pinned by the SHA-256 in the index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkTable {
    /// The file this table belongs to.
    pub file_id: [u8; ID_LEN],
    /// This table's meta version.
    pub meta_version: u64,
    /// Chunk encryptions done under this file's key so far (the nonce budget).
    pub writes: u64,
    /// Per chunk: `None` for a hole (reads as zeros), or where and what it is.
    pub chunks: Vec<Option<ChunkEntry>>,
}

const FLAG_PRESENT: u8 = 1;
const FLAG_SLOT_B: u8 = 2;

impl ChunkTable {
    /// Serializes the table.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(META_FIXED_LEN + self.chunks.len() * META_ENTRY_LEN);
        out.extend_from_slice(&META_MAGIC);
        out.extend_from_slice(&self.file_id);
        out.extend_from_slice(&self.meta_version.to_le_bytes());
        out.extend_from_slice(&self.writes.to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u64).to_le_bytes());
        for c in &self.chunks {
            match c {
                None => out.extend_from_slice(&[0u8; META_ENTRY_LEN]),
                Some(c) => {
                    out.push(FLAG_PRESENT | if c.slot == 1 { FLAG_SLOT_B } else { 0 });
                    out.extend_from_slice(&c.epoch.to_le_bytes());
                    out.extend_from_slice(&c.tag);
                }
            }
        }
        out
    }

    /// Parses a meta object.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "meta object");
        let magic: [u8; 8] = r.array("magic")?;
        if magic != META_MAGIC {
            return Err(r.err(format!(
                "magic: expected {}, got {}",
                hex::encode(META_MAGIC),
                hex::encode(magic)
            )));
        }
        let file_id = r.array("file id")?;
        let meta_version = r.u64("meta version")?;
        let writes = r.u64("writes")?;
        let raw = r.u64("chunk count")?;
        let count = r.count(raw, META_ENTRY_LEN, "chunk count")?;
        let mut chunks = Vec::with_capacity(count);
        for i in 0..count {
            let flags = r.u8("flags")?;
            let epoch = r.u64("epoch")?;
            let tag = r.array("tag")?;
            chunks.push(match flags {
                0 if epoch == 0 && tag == [0; TAG_LEN] => None,
                f if f & !(FLAG_PRESENT | FLAG_SLOT_B) == 0 && f & FLAG_PRESENT != 0 => {
                    Some(ChunkEntry {
                        slot: u8::from(f & FLAG_SLOT_B != 0),
                        epoch,
                        tag,
                    })
                }
                f => {
                    return Err(r.err(format!("chunk {i}: invalid flags {f:#x} or hole with data")));
                }
            });
        }
        r.finish()?;
        Ok(Self {
            file_id,
            meta_version,
            writes,
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_tree() -> IndexTree {
        let mut root = BTreeMap::new();
        root.insert(b"a".to_vec(), 2);
        root.insert(b"l".to_vec(), 3);
        IndexTree {
            version: 7,
            next_ino: 4,
            inodes: vec![
                IndexInode {
                    ino: 1,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    atime: Timestamp::default(),
                    mtime: Timestamp { secs: 5, nanos: 6 },
                    ctime: Timestamp::default(),
                    size: 0,
                    node: IndexNode::Dir(root),
                },
                IndexInode {
                    ino: 2,
                    mode: 0o644,
                    uid: 1000,
                    gid: 1000,
                    atime: Timestamp::default(),
                    mtime: Timestamp::default(),
                    ctime: Timestamp::default(),
                    size: 5000,
                    node: IndexNode::File {
                        file_id: [9; 16],
                        meta_version: 3,
                        meta_hash: [8; 32],
                    },
                },
                IndexInode {
                    ino: 3,
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    atime: Timestamp::default(),
                    mtime: Timestamp::default(),
                    ctime: Timestamp::default(),
                    size: 1,
                    node: IndexNode::Symlink(b"a".to_vec()),
                },
            ],
        }
    }

    #[test]
    fn index_round_trips() {
        let t = sample_tree();
        assert_eq!(IndexTree::parse(&t.encode()).unwrap(), t);
    }

    #[test]
    fn index_refuses_inode_named_twice() {
        let mut t = sample_tree();
        if let IndexNode::Dir(e) = &mut t.inodes[0].node {
            e.insert(b"b".to_vec(), 2);
        }
        let err = IndexTree::parse(&t.encode()).unwrap_err();
        assert!(err.detail.contains("named more than once"), "{err}");
    }

    #[test]
    fn index_refuses_huge_counts_without_allocating() {
        let mut b = sample_tree().encode();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            IndexTree::parse(&b)
                .unwrap_err()
                .detail
                .contains("cannot fit")
        );
    }

    #[test]
    fn meta_round_trips_and_refuses_truncation() {
        let m = ChunkTable {
            file_id: [1; 16],
            meta_version: 2,
            writes: 3,
            chunks: vec![
                None,
                Some(ChunkEntry {
                    slot: 1,
                    epoch: 4,
                    tag: [5; 16],
                }),
            ],
        };
        let b = m.encode();
        assert_eq!(ChunkTable::parse(&b).unwrap(), m);
        assert!(ChunkTable::parse(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn parsers_never_panic_on_prefixes_and_flips() {
        let samples = [sample_tree().encode(), {
            let h = Header {
                format_version: FORMAT_VERSION,
                volume_id: [3; 16],
                created: 1,
                key_check: [4; 32],
            };
            h.encode().to_vec()
        }];
        for s in &samples {
            for cut in 0..s.len() {
                let _ = IndexTree::parse(&s[..cut]);
                let _ = Header::parse(&s[..cut]);
                let _ = ChunkTable::parse(&s[..cut]);
            }
            for i in 0..s.len() {
                for bit in 0..8 {
                    let mut m = s.clone();
                    m[i] ^= 1 << bit;
                    let _ = IndexTree::parse(&m);
                    let _ = Header::parse(&m);
                    let _ = ChunkTable::parse(&m);
                }
            }
        }
    }
}
