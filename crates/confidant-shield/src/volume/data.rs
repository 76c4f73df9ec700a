//! File data: chunked reads and writes, truncation and `verify`.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::io::Errno;

use super::{FileData, MAX_CHUNK_WRITES_PER_FILE, MAX_FILE_SIZE, Node, State, Volume, now};
use crate::crypto::{self, ChunkFault};
use crate::error::{Error, Result};
use crate::format::{CHUNK_SIZE, ChunkEntry, NONCE_LEN, STORED_CHUNK_SIZE, slot_offset};

const CS: u64 = CHUNK_SIZE as u64;
/// Most stored chunks read with one `pread` (1 MiB of plaintext: the largest FUSE read).
const RUN_MAX: usize = 256;
/// Chunks a sequential reader has announced ahead of it to the kernel (1 MiB of plaintext).
pub(crate) const READAHEAD_CHUNKS: u64 = 256;
/// How far (in chunks) a read may start from where the previous one ended and still count as
/// sequential.
const SEQUENTIAL_SLACK: u64 = 32;

thread_local! {
    /// Stored chunks of a read, decrypted in place (reused: no allocation per read).
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `pread` until `buf` is full or the end of the file; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub(crate) enum ChunkError {
    Fault(u64, ChunkFault),
    Io(std::io::Error),
}

/// One problem [`Volume::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    /// The file's path in the volume, or the backing object (`index-5`, `m/…`).
    pub object: String,
    /// The chunk index, for chunk problems.
    pub chunk: Option<u64>,
    /// What was wrong.
    pub detail: String,
}

/// What [`Volume::verify`] checked and every problem it found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// The committed version verified against.
    pub version: u64,
    /// Files checked.
    pub files: u64,
    /// Stored chunks checked.
    pub chunks: u64,
    /// Problems, in no particular order.
    pub problems: Vec<VerifyProblem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Volume {
    pub(crate) fn data_file(&self, f: &FileData, create: bool) -> std::io::Result<Arc<File>> {
        let mut h = f.handle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = &*h {
            return Ok(file.clone());
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(!self.read_only)
                .create(create && !self.read_only)
                .truncate(false)
                .open(self.data_path(&f.id))?,
        );
        *h = Some(file.clone());
        Ok(file)
    }

    /// Reads and checks chunk `index` of `f` into `out` (zeros for a hole).
    pub(crate) fn read_chunk(
        &self,
        f: &FileData,
        index: u64,
        out: &mut [u8; CHUNK_SIZE],
    ) -> Result<(), ChunkError> {
        let Some(Some(entry)) = f.chunks.get(index as usize) else {
            out.fill(0);
            return Ok(());
        };
        let file = self.data_file(f, false).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ChunkError::Fault(index, ChunkFault::Missing)
            } else {
                ChunkError::Io(e)
            }
        })?;
        let mut stored = [0u8; STORED_CHUNK_SIZE];
        file.read_exact_at(&mut stored, slot_offset(index, entry.slot))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    ChunkError::Fault(index, ChunkFault::Missing)
                } else {
                    ChunkError::Io(e)
                }
            })?;
        f.cipher
            .open(index, entry.epoch, &entry.tag, &mut stored)
            .map_err(|fault| ChunkError::Fault(index, fault))?;
        out.copy_from_slice(&stored[NONCE_LEN..NONCE_LEN + CHUNK_SIZE]);
        Ok(())
    }

    /// Encrypts `plain` as chunk `index` into the slot the committed state does not use.
    fn store_chunk(
        &self,
        f: &mut FileData,
        file: &File,
        index: u64,
        epoch: u64,
        plain: &[u8; CHUNK_SIZE],
        stored: &mut [u8; STORED_CHUNK_SIZE],
    ) -> std::io::Result<()> {
        let slot = f
            .committed
            .get(index as usize)
            .copied()
            .flatten()
            .map_or(0, |c| 1 - c.slot);
        let tag = f.cipher.seal(index, epoch, plain, stored)?;
        file.write_all_at(stored, slot_offset(index, slot))?;
        let i = index as usize;
        if f.chunks.len() <= i {
            f.chunks.resize(i + 1, None);
        }
        f.chunks[i] = Some(ChunkEntry { slot, epoch, tag });
        f.writes += 1;
        f.dirty = true;
        f.data_dirty = true;
        Ok(())
    }

    pub(crate) fn chunk_error(&self, st: &State, ino: u64, e: ChunkError) -> Error {
        match e {
            ChunkError::Io(e) => Error::io(self.dir.join("d"), e),
            ChunkError::Fault(chunk, fault) => {
                let path = Self::path_of(st, ino);
                let detail = fault.describe();
                tracing::error!(volume = %self.id_hex, path = %path, chunk, "tampering detected: {detail}");
                Error::Tampered {
                    volume: self.id_hex.clone(),
                    object: format!("{path} chunk {chunk}"),
                    detail: detail.into(),
                }
            }
        }
    }

    /// Reads up to `size` bytes at `offset` (fewer at end of file). A chunk that fails its
    /// checks fails the read with [`Error::Tampered`] (EIO); other chunks stay readable.
    ///
    /// Chunks whose slots are adjacent on the host are read with one `pread` and decrypted in
    /// place in a per-thread buffer; every chunk is still checked against the table's tag and
    /// authenticated before any of its bytes are returned. A read that continues the previous
    /// one asks the kernel to read the next [`READAHEAD_CHUNKS`] chunks' slots ahead.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to(ino, offset, size, &mut out)?;
        Ok(out)
    }

    /// [`Volume::read`] into `out` (cleared first; its allocation is reused).
    pub fn read_to(&self, ino: u64, offset: u64, size: u32, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        let st = self.lock_read();
        let inode = st
            .inodes
            .get(&ino)
            .ok_or(Error::posix("read", Errno::NOENT))?;
        let f = match &inode.node {
            Node::File(f) => f,
            Node::Dir(_) => return Err(Error::posix("read", Errno::ISDIR)),
            Node::Symlink(_) => return Err(Error::posix("read", Errno::INVAL)),
        };
        if offset >= inode.size || size == 0 {
            return Ok(());
        }
        let end = inode.size.min(offset.saturating_add(u64::from(size)));
        // Zeroed: holes (chunks never written) read as zeros.
        out.resize((end - offset) as usize, 0);
        let mut file = None;
        if let Err(e) = self.read_into(f, &mut file, offset, out) {
            out.clear();
            return Err(self.chunk_error(&st, ino, e));
        }
        self.read_ahead(f, file.as_deref(), offset / CS, (end - 1) / CS);
        Ok(())
    }

    /// Reads `out.len()` bytes at `offset` (inside the file's size) into `out`, which is
    /// zeroed; chunks without an entry (holes) are left as they are.
    fn read_into(
        &self,
        f: &FileData,
        file: &mut Option<Arc<File>>,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), ChunkError> {
        let end = offset + out.len() as u64;
        let (first, last) = (offset / CS, (end - 1) / CS);
        READ_BUF.with_borrow_mut(|buf| {
            // The current run: chunks run_first.. (run_len of them) stored contiguously at run_at.
            let (mut run_first, mut run_len, mut run_at) = (0u64, 0usize, 0u64);
            for index in first..=last + 1 {
                let at = if index <= last {
                    f.chunks
                        .get(index as usize)
                        .copied()
                        .flatten()
                        .map(|e| slot_offset(index, e.slot))
                } else {
                    None
                };
                if run_len > 0
                    && (at != Some(run_at + (run_len * STORED_CHUNK_SIZE) as u64)
                        || run_len == RUN_MAX)
                {
                    self.read_run(f, file, buf, run_first, run_len, run_at, offset, out)?;
                    run_len = 0;
                }
                if let Some(at) = at {
                    if run_len == 0 {
                        (run_first, run_at) = (index, at);
                    }
                    run_len += 1;
                }
            }
            Ok(())
        })
    }

    /// Reads `n` stored chunks from `first` on, stored contiguously at `at`, with one `pread`;
    /// checks and decrypts each in place and copies its part of `[offset, offset + out.len())`
    /// into `out`.
    #[allow(clippy::too_many_arguments)]
    fn read_run(
        &self,
        f: &FileData,
        file: &mut Option<Arc<File>>,
        buf: &mut Vec<u8>,
        first: u64,
        n: usize,
        at: u64,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), ChunkError> {
        let handle = match file {
            Some(h) => h,
            None => file.insert(self.data_file(f, false).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    ChunkError::Fault(first, ChunkFault::Missing)
                } else {
                    ChunkError::Io(e)
                }
            })?),
        };
        let len = n * STORED_CHUNK_SIZE;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let got = read_full_at(handle, &mut buf[..len], at).map_err(ChunkError::Io)?;
        // Chunks are checked in order: a missing chunk is reported after the ones before it.
        let complete = got / STORED_CHUNK_SIZE;
        let end = offset + out.len() as u64;
        for (k, stored) in buf[..complete * STORED_CHUNK_SIZE]
            .chunks_exact_mut(STORED_CHUNK_SIZE)
            .enumerate()
        {
            let index = first + k as u64;
            // A run holds stored chunks only, and `chunks_exact_mut` yields whole chunks.
            let (Some(Some(entry)), Ok(stored)) = (
                f.chunks.get(index as usize).copied(),
                <&mut [u8; STORED_CHUNK_SIZE]>::try_from(stored),
            ) else {
                return Err(ChunkError::Fault(index, ChunkFault::Missing));
            };
            f.cipher
                .open(index, entry.epoch, &entry.tag, stored)
                .map_err(|fault| ChunkError::Fault(index, fault))?;
            let cstart = index * CS;
            let lo = offset.max(cstart) - cstart;
            let hi = end.min(cstart + CS) - cstart;
            let dst = (cstart + lo - offset) as usize;
            out[dst..dst + (hi - lo) as usize]
                .copy_from_slice(&stored[NONCE_LEN + lo as usize..NONCE_LEN + hi as usize]);
        }
        if complete < n {
            return Err(ChunkError::Fault(
                first + complete as u64,
                ChunkFault::Missing,
            ));
        }
        Ok(())
    }

    /// After a read of chunks `first..=last`: if it and the read before it each continued the
    /// read before them (or it started at chunk 0), asks the kernel to read the slots of the
    /// next [`READAHEAD_CHUNKS`] chunks into its page cache in the background
    /// (`POSIX_FADV_WILLNEED`), in steps of half that. Without this, each FUSE request (at
    /// most 128 KiB: the kernel's read-ahead window) is one synchronous `pread` on the host,
    /// and the host's own read-ahead never kicks in because slot groups are not contiguous.
    /// The host's page cache holds only ciphertext; what is read ahead is checked like any
    /// other chunk when it is read.
    fn read_ahead(&self, f: &FileData, file: Option<&File>, first: u64, last: u64) {
        let h = &f.hints;
        let previous = h.next_chunk.swap(last + 1, Ordering::Relaxed);
        // Near the previous read's end counts as sequential: the kernel's read-ahead requests
        // run on several threads and can arrive slightly out of order. Only the second
        // sequential read in a row reads ahead, so that random reads that happen to land
        // close together do not.
        let sequential = first == 0 || previous.abs_diff(first) <= SEQUENTIAL_SLACK;
        if !sequential {
            h.streak.store(0, Ordering::Relaxed);
            h.prefetched.store(last + 1, Ordering::Relaxed);
            return;
        }
        if h.streak.fetch_add(1, Ordering::Relaxed) == 0 && first != 0 {
            return;
        }
        let from = last + 1;
        let done = h.prefetched.load(Ordering::Relaxed).max(from);
        let upto = (from + READAHEAD_CHUNKS).min(f.chunks.len() as u64);
        if done >= upto || done >= from + READAHEAD_CHUNKS / 2 {
            return;
        }
        h.prefetched.store(upto, Ordering::Relaxed);
        let opened;
        let file = match file {
            Some(file) => file,
            None => match self.data_file(f, false) {
                Ok(h) => {
                    opened = h;
                    &opened
                }
                Err(_) => return,
            },
        };
        let (mut span_at, mut span_len) = (0u64, 0u64);
        for index in done..=upto {
            let at = (index < upto)
                .then(|| f.chunks[index as usize])
                .flatten()
                .map(|e| slot_offset(index, e.slot));
            if span_len > 0 && at != Some(span_at + span_len) {
                let _ = rustix::fs::fadvise(
                    file,
                    span_at,
                    std::num::NonZeroU64::new(span_len),
                    rustix::fs::Advice::WillNeed,
                );
                span_len = 0;
            }
            if let Some(at) = at {
                if span_len == 0 {
                    span_at = at;
                }
                span_len += STORED_CHUNK_SIZE as u64;
            }
        }
    }

    /// Writes `data` at `offset`, extending the file if needed; partial chunks are read,
    /// checked and rewritten. Returns the bytes written (all of them).
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<usize> {
        if self.read_only {
            return Err(Error::posix("write", Errno::ROFS));
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_FILE_SIZE)
            .ok_or(Error::posix("write", Errno::FBIG))?;
        if data.is_empty() {
            return Ok(0);
        }
        let mut st = self.lock_write();
        let epoch = st.version + 1;
        let result = {
            let inode = st
                .inodes
                .get_mut(&ino)
                .ok_or(Error::posix("write", Errno::NOENT))?;
            let f = match &mut inode.node {
                Node::File(f) => f,
                Node::Dir(_) => return Err(Error::posix("write", Errno::ISDIR)),
                Node::Symlink(_) => return Err(Error::posix("write", Errno::INVAL)),
            };
            self.write_chunks(f, epoch, offset, data)
        };
        if let Err(e) = result {
            return Err(match e {
                WriteError::Chunk(e) => self.chunk_error(&st, ino, e),
                WriteError::Budget => {
                    tracing::error!(volume = %self.id_hex, path = %Self::path_of(&st, ino), "file key's nonce budget ({MAX_CHUNK_WRITES_PER_FILE} chunk writes) exhausted; copy the file to a new one");
                    Error::posix("write", Errno::NOSPC)
                }
            });
        }
        let Some(inode) = st.inodes.get_mut(&ino) else {
            return Err(Error::posix("write", Errno::NOENT));
        };
        if let Node::File(f) = &mut inode.node {
            f.changes += 1;
        }
        inode.size = inode.size.max(end);
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        st.dirty = true;
        Ok(data.len())
    }

    fn write_chunks(
        &self,
        f: &mut FileData,
        epoch: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), WriteError> {
        let end = offset + data.len() as u64;
        let (first, last) = (offset / CS, (end - 1) / CS);
        if f.writes + (last - first + 1) > MAX_CHUNK_WRITES_PER_FILE {
            return Err(WriteError::Budget);
        }
        // Read the partial first and last chunks before writing anything, so that a refused
        // chunk leaves the file as it was.
        let mut head = [0u8; CHUNK_SIZE];
        let mut tail = [0u8; CHUNK_SIZE];
        if !offset.is_multiple_of(CS) || end - offset < CS {
            self.read_chunk(f, first, &mut head)?;
        }
        if last != first && !end.is_multiple_of(CS) {
            self.read_chunk(f, last, &mut tail)?;
        }
        let file = self.data_file(f, true).map_err(ChunkError::Io)?;
        // Chunks whose slots are adjacent on the host are sealed into one buffer and written
        // with one call; the table is updated run by run, after each run is written.
        let mut run: Vec<u8> = Vec::with_capacity(STORED_CHUNK_SIZE * 32);
        let mut run_start = 0u64;
        let mut run_entries: Vec<(usize, ChunkEntry)> = Vec::with_capacity(32);
        let mut plain = [0u8; CHUNK_SIZE];
        for index in first..=last {
            let cstart = index * CS;
            let lo = (offset.max(cstart) - cstart) as usize;
            let hi = (end.min(cstart + CS) - cstart) as usize;
            let src = &data
                [(cstart + lo as u64 - offset) as usize..(cstart + hi as u64 - offset) as usize];
            if index == first {
                plain = head;
            } else if index == last {
                plain = tail;
            }
            plain[lo..hi].copy_from_slice(src);
            let slot = f
                .committed
                .get(index as usize)
                .copied()
                .flatten()
                .map_or(0, |c| 1 - c.slot);
            let at = slot_offset(index, slot);
            if !run.is_empty() && run_start + run.len() as u64 != at {
                Self::flush_run(f, &file, run_start, &mut run, &mut run_entries)?;
            }
            if run.is_empty() {
                run_start = at;
            }
            let len = run.len();
            run.resize(len + STORED_CHUNK_SIZE, 0);
            let Ok(out) = <&mut [u8; STORED_CHUNK_SIZE]>::try_from(&mut run[len..]) else {
                return Err(ChunkError::Io(std::io::Error::other(
                    "expected one stored chunk's room at the end of the write run",
                ))
                .into());
            };
            let tag = f
                .cipher
                .seal(index, epoch, &plain, out)
                .map_err(|e| ChunkError::Io(e.into()))?;
            run_entries.push((index as usize, ChunkEntry { slot, epoch, tag }));
        }
        Self::flush_run(f, &file, run_start, &mut run, &mut run_entries)?;
        Ok(())
    }

    fn flush_run(
        f: &mut FileData,
        file: &File,
        at: u64,
        run: &mut Vec<u8>,
        entries: &mut Vec<(usize, ChunkEntry)>,
    ) -> Result<(), ChunkError> {
        if run.is_empty() {
            return Ok(());
        }
        file.write_all_at(run, at).map_err(ChunkError::Io)?;
        for (i, entry) in entries.drain(..) {
            if f.chunks.len() <= i {
                f.chunks.resize(i + 1, None);
            }
            f.chunks[i] = Some(entry);
            f.writes += 1;
        }
        f.dirty = true;
        f.data_dirty = true;
        run.clear();
        Ok(())
    }

    /// Sets a file's size: shrinking drops whole chunks and zeroes the tail of the new last
    /// chunk (so that growing it again reads zeros); growing leaves a hole.
    pub(crate) fn truncate_file(&self, st: &mut State, ino: u64, new_size: u64) -> Result<()> {
        if new_size > MAX_FILE_SIZE {
            return Err(Error::posix("truncate", Errno::FBIG));
        }
        let epoch = st.version + 1;
        let result = {
            let inode = st
                .inodes
                .get_mut(&ino)
                .ok_or(Error::posix("truncate", Errno::NOENT))?;
            let old = inode.size;
            let Node::File(f) = &mut inode.node else {
                return Err(Error::posix("truncate", Errno::ISDIR));
            };
            let mut r = Ok(());
            if new_size < old {
                let keep = new_size.div_ceil(CS);
                if (f.chunks.len() as u64) > keep {
                    f.chunks.truncate(keep as usize);
                    f.dirty = true;
                }
                let cut = (new_size % CS) as usize;
                if cut != 0 && f.chunks.get(keep as usize - 1).copied().flatten().is_some() {
                    let mut plain = [0u8; CHUNK_SIZE];
                    r = self.read_chunk(f, keep - 1, &mut plain).and_then(|()| {
                        plain[cut..].fill(0);
                        let file = self.data_file(f, true).map_err(ChunkError::Io)?;
                        let mut stored = [0u8; STORED_CHUNK_SIZE];
                        self.store_chunk(f, &file, keep - 1, epoch, &plain, &mut stored)
                            .map_err(ChunkError::Io)
                    });
                }
            }
            r
        };
        if let Err(e) = result {
            return Err(self.chunk_error(st, ino, e));
        }
        let Some(inode) = st.inodes.get_mut(&ino) else {
            return Err(Error::posix("truncate", Errno::NOENT));
        };
        if let Node::File(f) = &mut inode.node {
            f.changes += 1;
        }
        inode.size = new_size;
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        st.dirty = true;
        Ok(())
    }

    /// Checks the committed index and every meta object against the hash chain, and every
    /// stored chunk of every file (including changes not yet committed) against its table;
    /// reports every problem rather than stopping at the first. Each problem is also logged.
    pub fn verify(&self) -> Result<VerifyReport> {
        let st = self.lock_read();
        let mut report = VerifyReport {
            version: st.version,
            ..VerifyReport::default()
        };
        let name = Self::index_name(st.version);
        match std::fs::read(self.dir.join(&name)) {
            Ok(bytes) if crypto::sha256(&bytes) == st.root => {}
            Ok(_) => report.problems.push(VerifyProblem {
                object: name,
                chunk: None,
                detail: "SHA-256 differs from the trusted root".into(),
            }),
            Err(e) => report.problems.push(VerifyProblem {
                object: name,
                chunk: None,
                detail: format!("cannot read: {e}"),
            }),
        }
        let mut inos: Vec<u64> = st.inodes.keys().copied().collect();
        inos.sort_unstable();
        let mut plain = [0u8; CHUNK_SIZE];
        for ino in inos {
            let inode = &st.inodes[&ino];
            let Node::File(f) = &inode.node else { continue };
            report.files += 1;
            let path = Self::path_of(&st, ino);
            if f.meta_version > 0 && inode.linked {
                let object = format!("m/{}-{}", hex::encode(f.id), f.meta_version);
                match std::fs::read(self.meta_path(&f.id, f.meta_version)) {
                    Ok(b) if crypto::sha256(&b) == f.meta_hash => {}
                    Ok(_) => report.problems.push(VerifyProblem {
                        object: format!("{path} ({object})"),
                        chunk: None,
                        detail: "meta object's SHA-256 differs from the index's".into(),
                    }),
                    Err(e) => report.problems.push(VerifyProblem {
                        object: format!("{path} ({object})"),
                        chunk: None,
                        detail: format!("cannot read meta object: {e}"),
                    }),
                }
            }
            for index in 0..f.chunks.len() as u64 {
                if f.chunks[index as usize].is_none() {
                    continue;
                }
                report.chunks += 1;
                match self.read_chunk(f, index, &mut plain) {
                    Ok(()) => {}
                    Err(ChunkError::Fault(chunk, fault)) => report.problems.push(VerifyProblem {
                        object: path.clone(),
                        chunk: Some(chunk),
                        detail: fault.describe().into(),
                    }),
                    Err(ChunkError::Io(e)) => report.problems.push(VerifyProblem {
                        object: path.clone(),
                        chunk: Some(index),
                        detail: format!("I/O error: {e}"),
                    }),
                }
            }
        }
        for p in &report.problems {
            tracing::error!(volume = %self.id_hex, object = %p.object, chunk = ?p.chunk, "verify: {}", p.detail);
        }
        Ok(report)
    }
}

pub(crate) enum WriteError {
    Chunk(ChunkError),
    Budget,
}

impl From<ChunkError> for WriteError {
    fn from(e: ChunkError) -> Self {
        WriteError::Chunk(e)
    }
}
