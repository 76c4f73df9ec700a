//! The engine without FUSE: data against an in-memory model, persistence, and every kind of
//! tampering the host can do to the backing directory.

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use common::{Fixture, Rng, copy_dir, create, data_objects, key, meta_objects, read_all};
use confidant_shield::format::slot_offset;
use confidant_shield::{
    Error, FileKind, MemoryRootStore, ROOT_INO, RootStore, RootStoreError, SetAttributes, Volume,
    VolumeKey, VolumeState,
};

const EIO: i32 = 5;
const STORED: u64 = 4124;

fn write_model(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

#[test]
fn files_of_edge_sizes_round_trip_through_random_writes_and_reopen() {
    let (fx, v) = Fixture::new();
    let sizes = [0usize, 1, 4095, 4096, 4097, (1 << 20) + 3];
    let mut rng = Rng::new(1);
    let mut models = Vec::new();
    for (n, &size) in sizes.iter().enumerate() {
        let ino = create(&v, &format!("f{n}"));
        let mut model = Vec::new();
        // Fill sequentially in random pieces, then overwrite random ranges inside.
        while model.len() < size {
            let len = (1 + rng.below(9000) as usize).min(size - model.len());
            let data = rng.bytes(len);
            let off = model.len();
            assert_eq!(v.write(ino, off as u64, &data).unwrap(), len);
            write_model(&mut model, off, &data);
        }
        for _ in 0..20 {
            if size == 0 {
                break;
            }
            let off = rng.below(size as u64) as usize;
            let len = 1 + rng.below((size - off) as u64) as usize;
            let data = rng.bytes(len);
            v.write(ino, off as u64, &data).unwrap();
            write_model(&mut model, off, &data);
            let roff = rng.below(size as u64);
            let rlen = 1 + rng.below(10_000) as u32;
            let got = v.read(ino, roff, rlen).unwrap();
            let end = (roff as usize + rlen as usize).min(size);
            assert_eq!(
                got,
                &model[roff as usize..end],
                "file {n} read at {roff}+{rlen}"
            );
        }
        assert_eq!(v.getattr(ino).unwrap().size, size as u64);
        assert_eq!(read_all(&v, ino).unwrap(), model, "file of size {size}");
        models.push((ino, model));
    }
    v.commit().unwrap();
    drop(v);
    let v = fx.open();
    for (ino, model) in &models {
        assert_eq!(&read_all(&v, *ino).unwrap(), model);
    }
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn random_operations_match_a_model_across_commits_and_reopens() {
    let (fx, mut v) = Fixture::new();
    let mut rng = Rng::new(7);
    let inos: Vec<u64> = (0..3).map(|i| create(&v, &format!("m{i}"))).collect();
    let mut models = vec![Vec::<u8>::new(); 3];
    let mut committed = models.clone();
    for step in 0..400 {
        let f = rng.below(3) as usize;
        match rng.below(10) {
            0..=4 => {
                let off = rng.below(40_000) as usize;
                let len = 1 + rng.below(10_000) as usize;
                let data = rng.bytes(len);
                v.write(inos[f], off as u64, &data).unwrap();
                write_model(&mut models[f], off, &data);
            }
            5 => {
                let size = rng.below(45_000) as usize;
                v.setattr(
                    inos[f],
                    &SetAttributes {
                        size: Some(size as u64),
                        ..Default::default()
                    },
                )
                .unwrap();
                models[f].resize(size, 0);
            }
            6 | 7 => {
                let off = rng.below(50_000);
                let len = rng.below(20_000) as u32;
                let got = v.read(inos[f], off, len).unwrap();
                let m = &models[f];
                let s = (off as usize).min(m.len());
                let e = (off as usize + len as usize).min(m.len());
                assert_eq!(got, &m[s..e], "step {step}: read {off}+{len} of file {f}");
            }
            8 => {
                v.commit().unwrap();
                committed = models.clone();
            }
            _ => {
                // Reopen: sometimes after a commit, sometimes dropping uncommitted changes.
                if rng.below(2) == 0 {
                    v.commit().unwrap();
                    committed = models.clone();
                }
                drop(v);
                v = fx.open();
                models = committed.clone();
                for (i, ino) in inos.iter().enumerate() {
                    assert_eq!(
                        read_all(&v, *ino).unwrap(),
                        models[i],
                        "step {step}: file {i} after reopen"
                    );
                }
            }
        }
    }
    let report = v.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn reopen_after_commit_gives_the_same_tree() {
    let (fx, v) = Fixture::new();
    let d = v
        .mkdir(ROOT_INO, OsStr::new("dir"), 0o750, 1000, 1001)
        .unwrap()
        .ino;
    let sub = v.mkdir(d, OsStr::new("sub"), 0o700, 0, 0).unwrap().ino;
    let f = v
        .create_file(sub, OsStr::new("file"), 0o600, 1000, 1000)
        .unwrap()
        .ino;
    v.write(f, 0, b"hello").unwrap();
    v.symlink(d, OsStr::new("link"), Path::new("sub/file"), 0, 0)
        .unwrap();
    let g = create(&v, "gone");
    v.write(g, 0, &[1; 10000]).unwrap();
    v.unlink(ROOT_INO, OsStr::new("gone")).unwrap();
    let r = create(&v, "renamed-from");
    v.rename(
        ROOT_INO,
        OsStr::new("renamed-from"),
        d,
        OsStr::new("renamed"),
        false,
    )
    .unwrap();
    v.setattr(
        r,
        &SetAttributes {
            mode: Some(0o4755),
            uid: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    let before = tree(&v);
    v.commit().unwrap();
    drop(v);
    let v = fx.open();
    assert_eq!(tree(&v), before);
    assert_eq!(
        v.readlink(v.resolve("dir/link").unwrap().ino).unwrap(),
        Path::new("sub/file")
    );
    assert_eq!(
        read_all(&v, v.resolve("dir/sub/file").unwrap().ino).unwrap(),
        b"hello"
    );
    assert_eq!(v.resolve("dir").unwrap().nlink, 3);
    // The unlinked file's objects are gone from the backing directory.
    assert_eq!(data_objects(&fx.dir()).len(), 1);
}

fn tree(v: &Volume) -> Vec<String> {
    fn walk(v: &Volume, ino: u64, path: String, out: &mut Vec<String>) {
        for e in v.readdir(ino).unwrap() {
            let a = v.getattr(e.ino).unwrap();
            let p = format!("{path}/{}", e.name.to_string_lossy());
            out.push(format!(
                "{p} {:?} {:o} {}:{} size={} mtime={:?}",
                a.kind, a.mode, a.uid, a.gid, a.size, a.mtime
            ));
            if a.kind == FileKind::Dir {
                walk(v, e.ino, p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(v, ROOT_INO, String::new(), &mut out);
    out
}

#[test]
fn rename_replaces_files_and_empty_dirs_and_refuses_the_rest() {
    let (_fx, v) = Fixture::new();
    let a = create(&v, "a");
    v.write(a, 0, b"A").unwrap();
    let b = create(&v, "b");
    v.write(b, 0, b"B").unwrap();
    v.rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), false)
        .unwrap();
    assert_eq!(read_all(&v, v.resolve("b").unwrap().ino).unwrap(), b"A");
    assert_eq!(v.resolve("a").unwrap_err().errno(), 2);
    let c = create(&v, "c");
    assert_eq!(
        v.rename(ROOT_INO, OsStr::new("c"), ROOT_INO, OsStr::new("b"), true)
            .unwrap_err()
            .errno(),
        17
    );
    let d1 = v
        .mkdir(ROOT_INO, OsStr::new("d1"), 0o755, 0, 0)
        .unwrap()
        .ino;
    let d2 = v
        .mkdir(ROOT_INO, OsStr::new("d2"), 0o755, 0, 0)
        .unwrap()
        .ino;
    assert_eq!(
        v.rename(ROOT_INO, OsStr::new("c"), ROOT_INO, OsStr::new("d1"), false)
            .unwrap_err()
            .errno(),
        21
    );
    v.rename(
        ROOT_INO,
        OsStr::new("d1"),
        ROOT_INO,
        OsStr::new("d2"),
        false,
    )
    .unwrap();
    assert_eq!(v.resolve("d2").unwrap().ino, d1);
    assert!(v.getattr(d2).is_err());
    let inner = v.mkdir(d1, OsStr::new("inner"), 0o755, 0, 0).unwrap().ino;
    assert_eq!(
        v.rename(ROOT_INO, OsStr::new("d2"), inner, OsStr::new("x"), false)
            .unwrap_err()
            .errno(),
        22
    );
    assert_eq!(v.rmdir(ROOT_INO, OsStr::new("d2")).unwrap_err().errno(), 39);
    let _ = c;
}

#[test]
fn unlinked_file_stays_readable_while_open() {
    let (_fx, v) = Fixture::new();
    let f = create(&v, "tmp");
    v.write(f, 0, b"still here").unwrap();
    v.open_file(f).unwrap();
    v.unlink(ROOT_INO, OsStr::new("tmp")).unwrap();
    assert_eq!(v.read(f, 0, 100).unwrap(), b"still here");
    v.commit().unwrap();
    assert_eq!(v.read(f, 0, 100).unwrap(), b"still here");
    v.release_file(f);
    assert!(v.getattr(f).is_err());
}

/// A volume with one committed file of three chunks `AAAA…`, `BBBB…`, `CCCC…`.
fn three_chunk_volume() -> (Fixture, u64) {
    let (fx, v) = Fixture::new();
    let f = create(&v, "file");
    let mut data = vec![b'A'; 4096];
    data.extend_from_slice(&[b'B'; 4096]);
    data.extend_from_slice(&[b'C'; 4096]);
    v.write(f, 0, &data).unwrap();
    v.commit().unwrap();
    (fx, f)
}

#[test]
fn flipped_byte_in_a_chunk_gives_eio_for_that_chunk_only() {
    let (fx, f) = three_chunk_volume();
    let obj = &data_objects(&fx.dir())[0];
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(obj)
        .unwrap();
    // Chunk 1, slot A; flip a ciphertext byte.
    let at = slot_offset(1, 0) + 100;
    let mut b = [0u8];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[b[0] ^ 1], at).unwrap();
    let v = fx.open();
    assert_eq!(v.read(f, 0, 4096).unwrap(), vec![b'A'; 4096]);
    let err = v.read(f, 4096, 10).unwrap_err();
    assert_eq!(err.errno(), EIO, "{err}");
    assert!(err.to_string().contains("/file chunk 1"), "{err}");
    assert_eq!(v.read(f, 8192, 4096).unwrap(), vec![b'C'; 4096]);
    // A write that needs the damaged chunk is refused too, and changes nothing.
    assert_eq!(v.write(f, 4100, b"x").unwrap_err().errno(), EIO);
    let report = v.verify().unwrap();
    assert_eq!(report.chunks, 3);
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].chunk, Some(1));
    assert_eq!(report.problems[0].object, "/file");
}

#[test]
fn every_flipped_byte_of_a_stored_chunk_is_detected() {
    let (fx, f) = three_chunk_volume();
    let obj = data_objects(&fx.dir())[0].clone();
    let original = std::fs::read(&obj).unwrap();
    let v = fx.open();
    let mut rng = Rng::new(3);
    // Nonce, ciphertext and tag bytes of chunk 0 (slot A).
    let mut spots = vec![0u64, 11, 12, 500, 4107, 4108, 4123];
    spots.extend((0..20).map(|_| rng.below(STORED)));
    for at in spots {
        let mut bytes = original.clone();
        bytes[at as usize] ^= 1 << rng.below(8);
        std::fs::write(&obj, &bytes).unwrap();
        let v2 = Volume::open(fx.dir(), key(), fx.store(), true).unwrap();
        assert_eq!(v2.read(f, 0, 1).unwrap_err().errno(), EIO, "flip at {at}");
    }
    std::fs::write(&obj, &original).unwrap();
    assert_eq!(v.read(f, 0, 1).unwrap(), b"A");
}

#[test]
fn swapped_data_objects_of_two_files_are_detected() {
    let (fx, v) = Fixture::new();
    let a = create(&v, "a");
    let b = create(&v, "b");
    v.write(a, 0, &[1; 5000]).unwrap();
    v.write(b, 0, &[2; 5000]).unwrap();
    v.commit().unwrap();
    drop(v);
    let objs = data_objects(&fx.dir());
    let tmp = fx.tmp.path().join("swap");
    std::fs::rename(&objs[0], &tmp).unwrap();
    std::fs::rename(&objs[1], &objs[0]).unwrap();
    std::fs::rename(&tmp, &objs[1]).unwrap();
    let v = fx.open();
    assert_eq!(v.read(a, 0, 10).unwrap_err().errno(), EIO);
    assert_eq!(v.read(b, 0, 10).unwrap_err().errno(), EIO);
    assert_eq!(v.verify().unwrap().problems.len(), 4);
}

#[test]
fn chunk_replaced_by_its_older_version_is_detected() {
    let (fx, v) = Fixture::new();
    let f = create(&v, "f");
    v.write(f, 0, &[1; 4096]).unwrap();
    v.commit().unwrap(); // chunk 0 in slot A
    v.write(f, 0, &[2; 4096]).unwrap();
    v.commit().unwrap(); // slot B
    let obj = data_objects(&fx.dir())[0].clone();
    let old = std::fs::read(&obj).unwrap();
    v.write(f, 0, &[3; 4096]).unwrap();
    v.commit().unwrap(); // slot A again, over version 1's chunk
    drop(v);
    std::fs::write(&obj, &old).unwrap(); // slot A holds [1; 4096] again: authentic, but old
    let v = fx.open();
    let err = v.read(f, 0, 10).unwrap_err();
    assert_eq!(err.errno(), EIO);
    assert!(err.to_string().contains("older or foreign copy"), "{err}");
}

#[test]
fn restored_older_copy_of_the_backing_directory_is_refused() {
    let (fx, v) = Fixture::new();
    let f = create(&v, "f");
    v.write(f, 0, b"version 2").unwrap();
    v.commit().unwrap();
    let old = fx.tmp.path().join("old");
    copy_dir(&fx.dir(), &old);
    v.write(f, 0, b"version 3").unwrap();
    v.commit().unwrap();
    v.write(f, 0, b"version 4").unwrap();
    v.commit().unwrap();
    drop(v);
    std::fs::remove_dir_all(fx.dir()).unwrap();
    std::fs::rename(&old, fx.dir()).unwrap();
    let err = fx.try_open().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::RolledBack { trusted: 4, .. }), "{msg}");
    assert!(
        msg.contains("the backing directory holds index version 2 but the trusted state is version 4 (rolled back?)"),
        "{msg}"
    );
}

#[test]
fn older_index_under_the_current_name_is_refused() {
    let (fx, v) = Fixture::new();
    create(&v, "f");
    v.commit().unwrap();
    let old = std::fs::read(fx.dir().join("index-2")).unwrap();
    create(&v, "g");
    v.commit().unwrap();
    drop(v);
    std::fs::write(fx.dir().join("index-3"), old).unwrap();
    let msg = fx.try_open().unwrap_err().to_string();
    assert!(
        msg.contains("index-3") && msg.contains("differs from the trusted root"),
        "{msg}"
    );
}

#[test]
fn truncated_data_object_is_detected() {
    let (fx, f) = three_chunk_volume();
    let obj = &data_objects(&fx.dir())[0];
    let file = std::fs::OpenOptions::new().write(true).open(obj).unwrap();
    file.set_len(slot_offset(2, 0) + 10).unwrap(); // cuts into chunk 2's slot A
    let v = fx.open();
    assert_eq!(v.read(f, 0, 8192).unwrap().len(), 8192);
    let err = v.read(f, 8192, 1).unwrap_err();
    assert_eq!(err.errno(), EIO);
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn tampered_index_meta_and_header_are_refused_with_clear_messages() {
    let (fx, _f) = three_chunk_volume();
    let dir = fx.dir();
    let flip = |p: &Path, at: usize| {
        let mut b = std::fs::read(p).unwrap();
        b[at] ^= 0x80;
        std::fs::write(p, &b).unwrap();
        move || {
            let mut b2 = b.clone();
            b2[at] ^= 0x80;
            b2
        }
    };
    let index = dir.join("index-2");
    let restore = flip(&index, 40);
    let msg = fx.try_open().unwrap_err().to_string();
    assert!(msg.contains("index-2: SHA-256"), "{msg}");
    std::fs::write(&index, restore()).unwrap();

    let meta = meta_objects(&dir)[0].clone();
    let restore = flip(&meta, 60);
    let msg = fx.try_open().unwrap_err().to_string();
    assert!(
        msg.contains("m/") && msg.contains("differs from the index"),
        "{msg}"
    );
    std::fs::write(&meta, restore()).unwrap();

    let header = dir.join("volume.cfv");
    let restore = flip(&header, 35);
    let msg = fx.try_open().unwrap_err().to_string();
    assert!(msg.contains("wrong key for volume"), "{msg}");
    std::fs::write(&header, restore()).unwrap();
    let restore = flip(&header, 0);
    let msg = fx.try_open().unwrap_err().to_string();
    assert!(msg.contains("volume header: magic"), "{msg}");
    std::fs::write(&header, restore()).unwrap();

    assert!(fx.open().verify().unwrap().is_clean());
}

#[test]
fn wrong_key_is_reported_as_such() {
    let (fx, v) = Fixture::new();
    let id = hex::encode(v.id());
    drop(v);
    let err =
        Volume::open(fx.dir(), VolumeKey::from_bytes([1; 32]), fx.store(), false).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("wrong key for volume {id}")),
        "{err}"
    );
}

/// A root store that refuses commits while `refuse` is set.
struct FlakyStore {
    inner: MemoryRootStore,
    refuse: std::sync::atomic::AtomicBool,
}

impl RootStore for FlakyStore {
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError> {
        self.inner.load()
    }
    fn commit(&self, expected: u64, new: VolumeState) -> Result<(), RootStoreError> {
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RootStoreError::Unavailable(
                "coordinator unreachable".into(),
            ));
        }
        self.inner.commit(expected, new)
    }
}

#[test]
fn refused_root_commit_fails_with_eio_and_keeps_the_committed_state() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore {
        inner: MemoryRootStore::new(),
        refuse: false.into(),
    });
    let dir = tmp.path().join("vol");
    let v = Volume::create(&dir, key(), store.clone()).unwrap();
    let f = create(&v, "f");
    v.write(f, 0, b"committed").unwrap();
    v.commit().unwrap();
    store
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    v.write(f, 0, b"COMMITTED but not trusted").unwrap();
    let err = v.commit().unwrap_err();
    assert_eq!(err.errno(), EIO, "{err}");
    assert_eq!(v.state().version, 2);
    // Reopening (the process died) gives the trusted state, intact.
    let v2 = Volume::open(&dir, key(), store.clone(), true).unwrap();
    assert_eq!(read_all(&v2, f).unwrap(), b"committed");
    assert!(v2.verify().unwrap().is_clean());
    drop(v2);
    // Once the store is back, the same volume commits.
    store
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // The refused attempt's version (3) is never reused: the retry is version 4.
    assert_eq!(v.commit().unwrap().version, 4);
    drop(v);
    let v = Volume::open(&dir, key(), store, false).unwrap();
    assert_eq!(read_all(&v, f).unwrap(), b"COMMITTED but not trusted");
}

#[test]
fn dropping_without_commit_reopens_at_the_last_commit() {
    let (fx, v) = Fixture::new();
    let f = create(&v, "f");
    v.write(f, 0, &[7; 10000]).unwrap();
    v.commit().unwrap();
    v.write(f, 100, &[8; 20000]).unwrap();
    create(&v, "new");
    drop(v);
    let v = fx.open();
    assert_eq!(read_all(&v, f).unwrap(), vec![7; 10000]);
    assert!(v.resolve("new").is_err());
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn read_only_volume_refuses_changes() {
    let (fx, v) = Fixture::new();
    let f = create(&v, "f");
    v.commit().unwrap();
    drop(v);
    let v = Volume::open(fx.dir(), key(), fx.store(), true).unwrap();
    assert_eq!(v.write(f, 0, b"x").unwrap_err().errno(), 30);
    assert_eq!(v.unlink(ROOT_INO, OsStr::new("f")).unwrap_err().errno(), 30);
}

#[test]
fn create_refuses_a_store_that_holds_state() {
    let (fx, _v) = Fixture::new();
    let err = Volume::create(fx.tmp.path().join("other"), key(), fx.store()).unwrap_err();
    assert!(err.to_string().contains("already holds version 1"), "{err}");
}

/// A root store that stores the commit but loses the answer (a timeout after the fact).
struct LostAnswerStore {
    inner: MemoryRootStore,
    lose: std::sync::atomic::AtomicBool,
}

impl RootStore for LostAnswerStore {
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError> {
        if self.lose.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RootStoreError::Unavailable("timeout".into()));
        }
        self.inner.load()
    }
    fn commit(&self, expected: u64, new: VolumeState) -> Result<(), RootStoreError> {
        self.inner.commit(expected, new)?;
        if self.lose.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RootStoreError::Unavailable("timeout".into()));
        }
        Ok(())
    }
}

#[test]
fn commit_whose_answer_was_lost_is_built_upon_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(LostAnswerStore {
        inner: MemoryRootStore::new(),
        lose: false.into(),
    });
    let dir = tmp.path().join("vol");
    let v = Volume::create(&dir, key(), store.clone()).unwrap();
    let f = create(&v, "f");
    v.write(f, 0, b"one").unwrap();
    store.lose.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(v.commit().unwrap_err().errno(), EIO);
    // The store holds version 2 although the engine was not told; the index it pins stays.
    assert_eq!(store.inner.load().unwrap().unwrap().version, 2);
    store.lose.store(false, std::sync::atomic::Ordering::SeqCst);
    v.write(f, 0, b"two").unwrap();
    assert_eq!(v.commit().unwrap().version, 3);
    drop(v);
    let v = Volume::open(&dir, key(), store, false).unwrap();
    assert_eq!(read_all(&v, f).unwrap(), b"two");
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn second_writer_is_refused_while_the_first_is_open() {
    let (fx, v) = Fixture::new();
    let err = fx.try_open().unwrap_err();
    assert!(
        err.to_string().contains("already open for writing"),
        "{err}"
    );
    // Read-only opens are allowed alongside.
    Volume::open(fx.dir(), key(), fx.store(), true).unwrap();
    drop(v);
    fx.open();
}

#[test]
fn concurrent_writers_readers_and_commits_stay_consistent() {
    let (fx, v) = Fixture::new();
    let v = Arc::new(v);
    let inos: Vec<u64> = (0..4).map(|i| create(&v, &format!("t{i}"))).collect();
    let writers: Vec<_> = inos
        .iter()
        .enumerate()
        .map(|(t, &ino)| {
            let v = v.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + t as u64);
                let mut model = Vec::new();
                for _ in 0..150 {
                    let off = rng.below(30_000) as usize;
                    let len = 1 + rng.below(9000) as usize;
                    let data = rng.bytes(len);
                    v.write(ino, off as u64, &data).unwrap();
                    write_model(&mut model, off, &data);
                    assert_eq!(read_all(&v, ino).unwrap(), model);
                }
                model
            })
        })
        .collect();
    let committer = {
        let v = v.clone();
        std::thread::spawn(move || {
            for _ in 0..30 {
                v.commit().unwrap();
                assert!(v.verify().unwrap().is_clean());
            }
        })
    };
    let models: Vec<Vec<u8>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    committer.join().unwrap();
    v.commit().unwrap();
    drop(v);
    let v = fx.open();
    for (ino, model) in inos.iter().zip(&models) {
        assert_eq!(&read_all(&v, *ino).unwrap(), model);
    }
}

#[test]
fn import_tree_seals_a_plain_directory() {
    use std::os::unix::fs::PermissionsExt;
    let src = tempfile::tempdir().unwrap();
    let p = src.path();
    std::fs::create_dir_all(p.join("pkg/sub")).unwrap();
    std::fs::write(p.join("pkg/__init__.py"), b"").unwrap();
    std::fs::write(p.join("pkg/sub/mod.py"), b"X = 42\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(p.join("big.bin"), &big).unwrap();
    std::fs::set_permissions(p.join("big.bin"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("pkg/sub/mod.py", p.join("link")).unwrap();

    let (fx, v) = Fixture::new();
    let stats = v.import_tree(p, ROOT_INO).unwrap();
    assert_eq!((stats.files, stats.dirs, stats.symlinks), (3, 2, 1));
    assert_eq!(stats.bytes, 3_000_007);
    v.commit().unwrap();
    drop(v);
    let v = fx.open();
    assert_eq!(
        read_all(&v, v.resolve("pkg/sub/mod.py").unwrap().ino).unwrap(),
        b"X = 42\n"
    );
    let a = v.resolve("big.bin").unwrap();
    assert_eq!(a.mode, 0o640);
    assert_eq!(
        a.mtime,
        std::fs::metadata(p.join("big.bin"))
            .unwrap()
            .modified()
            .unwrap()
    );
    assert_eq!(read_all(&v, a.ino).unwrap(), big);
    assert_eq!(
        v.readlink(v.resolve("link").unwrap().ino).unwrap(),
        Path::new("pkg/sub/mod.py")
    );
    let info = Volume::inspect(fx.dir()).unwrap();
    assert_eq!(info.volume_id, v.id());
    assert_eq!(info.index_versions, vec![v.state().version]);
    // The empty __init__.py has a chunk table but no data object.
    assert_eq!(info.data_objects, 2);
}

/// A store that records every compare-and-swap it is asked for.
struct RecordingStore {
    inner: MemoryRootStore,
    commits: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl RootStore for RecordingStore {
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError> {
        self.inner.load()
    }
    fn commit(&self, expected: u64, new: VolumeState) -> Result<(), RootStoreError> {
        self.commits.lock().unwrap().push((expected, new.version));
        self.inner.commit(expected, new)
    }
}

#[test]
fn create_at_starts_a_fresh_volume_after_the_version_the_store_holds() {
    let tmp = tempfile::tempdir().unwrap();
    // A coordinator after a reset: it holds version 7 of the old volume.
    let old = VolumeState {
        version: 7,
        root: [0xaa; 32],
    };
    let store = Arc::new(RecordingStore {
        inner: MemoryRootStore::new(),
        commits: Default::default(),
    });
    store.inner.set(Some(old));
    let dir = tmp.path().join("vol");
    let v = Volume::create_at(&dir, key(), store.clone(), 8).unwrap();
    assert_eq!(*store.commits.lock().unwrap(), vec![(7, 8)]);
    assert_eq!(v.state().version, 8);
    assert_eq!(store.load().unwrap(), Some(v.state()));
    assert!(v.readdir(ROOT_INO).unwrap().is_empty());
    let f = create(&v, "f");
    v.write(f, 0, &[5; 9000]).unwrap();
    assert_eq!(v.commit().unwrap().version, 9);
    assert_eq!(store.commits.lock().unwrap().last(), Some(&(8, 9)));
    assert!(v.verify().unwrap().is_clean());
    drop(v);
    let info = Volume::inspect(&dir).unwrap();
    assert_eq!(info.index_versions, vec![9]);
    assert_eq!(info.format_version, 1);
    let v = Volume::open(&dir, key(), store.clone(), false).unwrap();
    assert_eq!(v.state().version, 9);
    assert_eq!(
        read_all(&v, v.resolve("f").unwrap().ino).unwrap(),
        vec![5; 9000]
    );
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn create_at_refuses_a_store_that_does_not_hold_the_version_before() {
    let tmp = tempfile::tempdir().unwrap();
    let held = |version| {
        let s = MemoryRootStore::new();
        if version > 0 {
            s.set(Some(VolumeState {
                version,
                root: [1; 32],
            }));
        }
        Arc::new(s)
    };
    for (n, (holds, first)) in [(7u64, 5u64), (7, 9), (7, 7), (0, 3), (4, 1), (0, 0)]
        .into_iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("v{n}"));
        let store = held(holds);
        let err = Volume::create_at(&dir, key(), store.clone(), first).unwrap_err();
        assert_eq!(err.errno(), EIO, "holds {holds}, first {first}: {err}");
        assert!(
            matches!(err, Error::RootStore { .. }),
            "holds {holds}, first {first}: {err}"
        );
        // Nothing was committed and nothing was written.
        assert_eq!(store.load().unwrap().map_or(0, |s| s.version), holds);
        assert!(!dir.join("volume.cfv").exists());
    }
    // The plain `create` is `create_at(.., 1)`: an empty store, version 1.
    let store = held(0);
    let v = Volume::create(tmp.path().join("plain"), key(), store.clone()).unwrap();
    assert_eq!(v.state().version, 1);
    assert_eq!(
        Volume::inspect(tmp.path().join("plain"))
            .unwrap()
            .format_version,
        1
    );
}

#[test]
fn large_reads_over_mixed_slots_and_holes_match_the_model() {
    let (fx, v) = Fixture::new();
    let f = create(&v, "f");
    let mut model = Vec::new();
    let mut rng = Rng::new(11);
    // 100 chunks in slot A, committed; then every third chunk rewritten (slot B), a hole
    // (chunks 100..140 never written) and 30 more chunks after it.
    let data = rng.bytes(100 * 4096);
    v.write(f, 0, &data).unwrap();
    write_model(&mut model, 0, &data);
    v.commit().unwrap();
    for c in (0..100).step_by(3) {
        let d = rng.bytes(4096);
        v.write(f, c * 4096, &d).unwrap();
        write_model(&mut model, c as usize * 4096, &d);
    }
    let d = rng.bytes(30 * 4096 + 123);
    v.write(f, 140 * 4096, &d).unwrap();
    write_model(&mut model, 140 * 4096, &d);
    let check = |v: &Volume| {
        for (off, len) in [
            (0u64, 1u32 << 20),
            (1, 1 << 20),
            (4095, 8194),
            (100 * 4096 - 5, 50_000),
            (33 * 4096, 128 << 10),
            (130 * 4096 + 7, 300_000),
        ] {
            let got = v.read(f, off, len).unwrap();
            let end = (off as usize + len as usize).min(model.len());
            assert_eq!(got, &model[off as usize..end], "read {off} + {len}");
        }
        assert_eq!(read_all(v, f).unwrap(), model);
    };
    check(&v);
    v.commit().unwrap();
    check(&v);
    drop(v);
    check(&fx.open());
}

#[test]
fn damage_inside_a_multi_chunk_read_names_the_damaged_chunk() {
    let (fx, v) = Fixture::new();
    let f = create(&v, "big");
    v.write(f, 0, &[7; 40 * 4096]).unwrap();
    v.commit().unwrap();
    drop(v);
    let obj = data_objects(&fx.dir())[0].clone();
    let original = std::fs::read(&obj).unwrap();
    // A flipped byte in chunk 5 (slot A): a 1 MiB read fails naming chunk 5, reads around it
    // succeed.
    let file = std::fs::OpenOptions::new().write(true).open(&obj).unwrap();
    file.write_all_at(
        &[original[slot_offset(5, 0) as usize + 300] ^ 4],
        slot_offset(5, 0) + 300,
    )
    .unwrap();
    let v = fx.open();
    let err = v.read(f, 0, 1 << 20).unwrap_err();
    assert_eq!(err.errno(), EIO, "{err}");
    assert!(err.to_string().contains("/big chunk 5"), "{err}");
    assert_eq!(v.read(f, 0, 5 * 4096).unwrap(), vec![7; 5 * 4096]);
    assert_eq!(v.read(f, 6 * 4096, 1 << 20).unwrap(), vec![7; 34 * 4096]);
    drop(v);
    // A data object cut inside chunk 20: the read fails naming chunk 20 (not an earlier one).
    std::fs::write(&obj, &original).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&obj).unwrap();
    file.set_len(slot_offset(20, 0) + 100).unwrap();
    let v = fx.open();
    let err = v.read(f, 4096, 1 << 20).unwrap_err();
    assert!(err.to_string().contains("/big chunk 20"), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(v.read(f, 0, 20 * 4096).unwrap(), vec![7; 20 * 4096]);
    // A chunk replaced by another authentic chunk (chunk 3's bytes at chunk 2's slot).
    drop(v);
    let mut moved = original.clone();
    let (a, b) = (slot_offset(2, 0) as usize, slot_offset(3, 0) as usize);
    let chunk3 = moved[b..b + STORED as usize].to_vec();
    moved[a..a + STORED as usize].copy_from_slice(&chunk3);
    std::fs::write(&obj, &moved).unwrap();
    let v = fx.open();
    let err = v.read(f, 0, 8 * 4096).unwrap_err();
    assert!(err.to_string().contains("/big chunk 2"), "{err}");
}
