//! Decompression bombs and other resource exhaustion: every limit stops the unpack early, before
//! the disk or memory fills, with `Error::Limit`.

mod unpack_support;

use std::cell::Cell;
use std::fs;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::{Duration, Instant};

use confidant_image::Error;
use confidant_image::unpack::{Budget, UnpackOptions, unpack_layer_at};
use tar::{EntryType, Header};
use unpack_support::{Jail, Layer, tree};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A tar stream made up on the fly: one header declaring `size` bytes, then that many zeros,
/// then the end-of-archive blocks. Nothing of it is allocated; `served` counts what was read.
struct LazyTar {
    header: Vec<u8>,
    size: u64,
    pos: u64,
    served: Rc<Cell<u64>>,
}

impl LazyTar {
    fn new(name: &str, kind: EntryType, size: u64) -> (Self, Rc<Cell<u64>>) {
        let mut h = Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_cksum();
        let served = Rc::new(Cell::new(0));
        let tar = Self {
            header: h.as_bytes().to_vec(),
            size: size.div_ceil(512) * 512,
            pos: 0,
            served: served.clone(),
        };
        (tar, served)
    }
}

impl Read for LazyTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let total = 512 + self.size + 1024;
        if self.pos >= total {
            return Ok(0);
        }
        let n = buf.len().min((total - self.pos) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let at = self.pos + i as u64;
            *b = if at < 512 {
                self.header[at as usize]
            } else {
                0
            };
        }
        self.pos += n as u64;
        self.served.set(self.pos);
        Ok(n)
    }
}

fn small(max_total_bytes: u64) -> UnpackOptions {
    UnpackOptions {
        max_total_bytes,
        ..UnpackOptions::default()
    }
}

fn assert_limit<T: std::fmt::Debug>(result: confidant_image::Result<T>) {
    assert!(
        matches!(result, Err(Error::Limit(_))),
        "expected Error::Limit, got {result:?}"
    );
}

/// The limit reached was the one on header bytes (not the total or the entry count).
fn assert_header_limit<T: std::fmt::Debug>(result: confidant_image::Result<T>) {
    match result {
        Err(Error::Limit(message)) if message.contains("max_header_bytes") => {}
        other => panic!("expected the max_header_bytes limit, got {other:?}"),
    }
}

#[test]
fn ten_gib_entry_stops_before_any_data_is_written() {
    let jail = Jail::new();
    let (bomb, served) = LazyTar::new("bomb", EntryType::Regular, 10 * GIB);
    let started = Instant::now();
    let result = unpack_layer_at(&jail.target, bomb, &small(MIB), &mut Budget::new());
    assert_limit(result);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        served.get() <= MIB,
        "read {} bytes of the stream",
        served.get()
    );
    assert!(
        tree(&jail.target).is_empty(),
        "something was written: {:?}",
        tree(&jail.target)
    );
    jail.assert_nothing_outside();
}

#[test]
fn gzip_bomb_stops_at_the_budget() {
    use std::io::Write;
    let layer = Layer::new()
        .file("small", 0o644, b"fine")
        .file("zeros", 0o644, &vec![0u8; 64 << 20])
        .finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    assert!(
        gz.len() < 1 << 20,
        "the bomb compresses to {} bytes",
        gz.len()
    );

    let jail = Jail::new();
    let tar = confidant_image::unpack::decompressing_reader("gzip", gz.as_slice()).unwrap();
    assert_limit(unpack_layer_at(
        &jail.target,
        tar,
        &small(MIB),
        &mut Budget::new(),
    ));
    assert_eq!(fs::read(jail.target.join("small")).unwrap(), b"fine");
    assert!(!jail.target.join("zeros").exists());
    jail.assert_nothing_outside();
}

#[test]
fn budget_is_shared_across_layers() {
    let jail = Jail::new();
    let chunk = vec![1u8; 600 * 1024];
    let first = Layer::new().file("one", 0o644, &chunk).finish();
    let second = Layer::new().file("two", 0o644, &chunk).finish();
    let mut budget = Budget::new();
    let opts = small(MIB);
    unpack_layer_at(&jail.target, first.as_slice(), &opts, &mut budget).unwrap();
    assert_eq!(budget.bytes(), chunk.len() as u64);
    assert_eq!(budget.entries(), 1);
    assert_limit(unpack_layer_at(
        &jail.target,
        second.as_slice(),
        &opts,
        &mut budget,
    ));
    assert!(!jail.target.join("two").exists());
    assert_eq!(
        budget.bytes(),
        chunk.len() as u64,
        "the refused entry is not counted"
    );
}

#[test]
fn entry_limit_stops_a_flood_of_empty_entries() {
    let jail = Jail::new();
    let mut layer = Layer::new();
    for i in 0..100 {
        layer.file(&format!("f{i}"), 0o644, b"");
    }
    let opts = UnpackOptions {
        max_entries: 50,
        ..UnpackOptions::default()
    };
    assert_limit(jail.unpack(&[&layer.finish()], &opts));
    assert_eq!(tree(&jail.target).len(), 50);
    jail.assert_nothing_outside();
}

#[test]
fn huge_pax_header_stops_without_allocating_it() {
    let jail = Jail::new();
    // A PAX header declaring 10 GiB of records: the tar parser would read it all into memory.
    let (bomb, served) = LazyTar::new("pax", EntryType::XHeader, 10 * GIB);
    let started = Instant::now();
    let result = unpack_layer_at(&jail.target, bomb, &small(100 * GIB), &mut Budget::new());
    assert_header_limit(result);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        served.get() <= 2 * MIB,
        "read {} bytes of the stream",
        served.get()
    );
    jail.assert_nothing_outside();
}

#[test]
fn huge_gnu_long_name_stops_without_allocating_it() {
    let jail = Jail::new();
    let (bomb, served) = LazyTar::new("././@LongLink", EntryType::GNULongName, 10 * GIB);
    let result = unpack_layer_at(&jail.target, bomb, &small(100 * GIB), &mut Budget::new());
    assert_header_limit(result);
    assert!(
        served.get() <= 2 * MIB,
        "read {} bytes of the stream",
        served.get()
    );
    jail.assert_nothing_outside();
}

#[test]
fn data_of_skipped_entries_counts_against_the_budget() {
    // A device entry (skipped without root or `devices`) or a directory declaring 10 GiB of
    // data would otherwise make the parser read and discard it all.
    let jail = Jail::new();
    let (bomb, served) = LazyTar::new("dir", EntryType::Directory, 10 * GIB);
    assert_limit(unpack_layer_at(
        &jail.target,
        bomb,
        &small(MIB),
        &mut Budget::new(),
    ));
    assert!(served.get() <= MIB);
    jail.assert_nothing_outside();
}

#[test]
fn layers_within_limits_unpack() {
    let jail = Jail::new();
    let mut layer = Layer::new();
    for i in 0..200 {
        layer.file(&format!("d{}/f{i}", i % 7), 0o644, &[i as u8; 1000]);
    }
    let opts = UnpackOptions {
        max_total_bytes: 200_000,
        max_entries: 200,
        ..UnpackOptions::default()
    };
    let stats = jail.unpack(&[&layer.finish()], &opts).unwrap();
    assert_eq!(stats[0].files, 200);
    assert_eq!(stats[0].bytes, 200_000);
    jail.assert_nothing_outside();
}
