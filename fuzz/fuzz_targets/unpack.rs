//! Layer unpacking of untrusted tar streams (`confidant_image::unpack`): whatever the bytes,
//! nothing outside the target directory may change. Each input is unpacked into a fresh target
//! inside a fresh temporary "jail" that holds sentinels, on top of a planted lower layer of
//! hostile symlinks (to the jail, to `/`, a loop) and a merged-usr one; afterwards the jail
//! outside the target must list exactly as before (paths, types, modes, owners, link counts,
//! sizes, contents, mtimes, ctimes), and `/` must have gained no entry. Errors are expected;
//! a panic or a changed listing is a bug.
//!
//! The first input byte picks how the rest is read: odd, its tar header checksums are fixed up
//! first (so mutations of header fields reach the unpacker instead of failing the checksum);
//! even, it is unpacked as is.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use confidant_image::unpack::{Budget, UnpackOptions, unpack_layer_at};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tar = if mode & 1 == 1 {
        fix_checksums(rest)
    } else {
        rest.to_vec()
    };

    let jail = tempfile::tempdir().expect("create the jail");
    let j = jail.path();
    fs::write(j.join("sentinel"), b"outside").unwrap();
    fs::create_dir_all(j.join("victim")).unwrap();
    fs::write(j.join("victim/keep"), b"keep").unwrap();
    let target = j.join("stage/rootfs");
    fs::create_dir_all(target.join("usr/lib")).unwrap();
    fs::write(target.join("usr/lib/libc.so"), b"libc").unwrap();
    symlink("../..", target.join("up")).unwrap();
    symlink("/", target.join("abs")).unwrap();
    symlink("../../victim", target.join("victim")).unwrap();
    symlink("../../sentinel", target.join("sentinel")).unwrap();
    symlink("usr/lib", target.join("lib")).unwrap();
    symlink("loop2", target.join("loop1")).unwrap();
    symlink("loop1", target.join("loop2")).unwrap();

    let before = listing(j, &target);
    let slash_before = names("/");
    let opts = UnpackOptions {
        max_total_bytes: 1 << 20,
        max_entries: 256,
        max_header_bytes: 64 << 10,
        devices: true,
        ..UnpackOptions::default()
    };
    let _ = unpack_layer_at(&target, tar.as_slice(), &opts, &mut Budget::new());

    assert_eq!(
        before,
        listing(j, &target),
        "the unpack changed something outside its target"
    );
    assert_eq!(
        slash_before,
        names("/"),
        "the unpack created something in /"
    );
});

/// Recomputes the checksum of each tar header, walking the stream the way a reader does.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut tar = data.to_vec();
    let mut at = 0usize;
    while at + 512 <= tar.len() {
        let block = &mut tar[at..at + 512];
        if block.iter().all(|b| *b == 0) {
            break;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = std::str::from_utf8(&block[124..136])
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_matches(|c| c == ' ' || c == '\0'), 8).ok())
            .unwrap_or(0);
        let blocks = usize::try_from(size.div_ceil(512)).unwrap_or(usize::MAX);
        at = at
            .saturating_add(512)
            .saturating_add(blocks.saturating_mul(512));
    }
    tar
}

/// Every path under `root` except `exclude`'s subtree, with what an escaping write would change.
fn listing(root: &Path, exclude: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path == exclude {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(&path).unwrap())
        } else if meta.is_file() {
            format!("{:?}", fs::read(&path).unwrap())
        } else {
            String::new()
        };
        out.insert(
            path.to_string_lossy().into_owned(),
            format!(
                "{what} mode {:o} owner {}:{} nlink {} size {} mtime {}.{} ctime {}.{}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.nlink(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec()
            ),
        );
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out
}

/// The names in a directory, sorted.
fn names(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
