//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use confidant_shield::{MemoryRootStore, ROOT_INO, RootStore, Volume, VolumeKey};

/// A small deterministic PRNG (xorshift64*), so failures reproduce from the seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub(crate) const KEY: [u8; 32] = [0x42; 32];

pub(crate) fn key() -> VolumeKey {
    VolumeKey::from_bytes(KEY)
}

/// A fresh volume in a temporary directory with an in-memory root store.
pub(crate) struct Fixture {
    pub tmp: tempfile::TempDir,
    pub roots: MemoryRootStore,
}

impl Fixture {
    pub(crate) fn new() -> (Self, Volume) {
        let tmp = tempfile::tempdir().unwrap();
        let roots = MemoryRootStore::new();
        let v = Volume::create(tmp.path().join("vol"), key(), Arc::new(roots.clone())).unwrap();
        (Self { tmp, roots }, v)
    }
    pub(crate) fn dir(&self) -> PathBuf {
        self.tmp.path().join("vol")
    }
    pub(crate) fn store(&self) -> Arc<dyn RootStore> {
        Arc::new(self.roots.clone())
    }
    pub(crate) fn open(&self) -> Volume {
        Volume::open(self.dir(), key(), self.store(), false).unwrap()
    }
    pub(crate) fn try_open(&self) -> confidant_shield::Result<Volume> {
        Volume::open(self.dir(), key(), self.store(), false)
    }
}

pub(crate) fn create(v: &Volume, name: &str) -> u64 {
    v.create_file(ROOT_INO, OsStr::new(name), 0o644, 0, 0)
        .unwrap()
        .ino
}

pub(crate) fn read_all(v: &Volume, ino: u64) -> confidant_shield::Result<Vec<u8>> {
    let size = v.getattr(ino)?.size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let chunk = v.read(ino, out.len() as u64, 1 << 20)?;
        assert!(!chunk.is_empty());
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The one `d/` object of a volume with one file.
pub(crate) fn data_objects(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

pub(crate) fn meta_objects(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("m"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}
