//! Hostile layers: each tries to write, link, remove or change something outside the target.
//! Every test ends with [`Jail::assert_nothing_outside`]: the full listing of the jail around the
//! target (paths, types, modes, owners, link counts, sizes, content hashes, mtimes, ctimes) is
//! the same as before, and no probe file appeared elsewhere.

mod unpack_support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use confidant_image::Error;
use confidant_image::unpack::UnpackOptions;
use tar::EntryType;
use unpack_support::{Jail, Layer, PROBE, Raw};

fn opts() -> UnpackOptions {
    UnpackOptions::default()
}

/// Unpacks one layer into a fresh jail and expects it refused as an unsafe entry.
fn assert_refused(layer: &[u8]) -> Jail {
    let jail = Jail::new();
    let result = jail.unpack(&[layer], &opts());
    assert!(
        matches!(result, Err(Error::UnsafeEntry { .. })),
        "expected UnsafeEntry, got {result:?}"
    );
    jail.assert_nothing_outside();
    jail
}

fn file_layer(name: &str) -> Vec<u8> {
    Layer::new().file(name, 0o644, b"pwned").finish()
}

#[test]
fn refuses_dotdot_entry_name() {
    assert_refused(&file_layer(&format!("../{PROBE}")));
    assert_refused(&file_layer(&format!("../../{PROBE}")));
}

#[test]
fn refuses_absolute_entry_name() {
    assert_refused(&file_layer(&format!("/abs/{PROBE}")));
    assert_refused(&file_layer(&format!("/tmp/{PROBE}")));
}

#[test]
fn refuses_dotdot_inside_entry_name() {
    assert_refused(&file_layer(&format!("a/../../{PROBE}")));
    assert_refused(&file_layer(&format!("a/b/../../../{PROBE}")));
    // Even one that would stay inside: `..` is refused, not resolved.
    assert_refused(&file_layer("a/../b"));
}

#[test]
fn refuses_dotdot_in_gnu_long_name() {
    let name = format!("../{}/{PROBE}", "d".repeat(120));
    assert_refused(&file_layer(&name));
}

#[test]
fn refuses_dotdot_and_nul_in_pax_path() {
    let mut e = Raw::new("harmless", EntryType::Regular);
    e.pax = vec![("path".into(), format!("../{PROBE}").into_bytes())];
    e.data = b"pwned".to_vec();
    assert_refused(&Layer::new().raw(e.clone()).finish());

    e.pax = vec![("path".into(), format!("ok\0/../../{PROBE}").into_bytes())];
    assert_refused(&Layer::new().raw(e).finish());
}

#[test]
fn symlink_to_root_leads_back_into_target() {
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("x", "/")
        .file(&format!("x/{PROBE}"), 0o644, b"contained")
        .finish();
    jail.unpack(&[&layer], &opts()).unwrap();
    assert_eq!(fs::read(jail.target.join(PROBE)).unwrap(), b"contained");
    jail.assert_nothing_outside();
}

#[test]
fn symlink_with_dotdots_leads_back_into_target() {
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("x", "../../..")
        .symlink("y", "a/../../../../../../../..")
        .file(&format!("x/{PROBE}"), 0o644, b"via x")
        .file("y/sentinel.txt", 0o644, b"via y")
        .finish();
    jail.unpack(&[&layer], &opts()).unwrap();
    assert_eq!(fs::read(jail.target.join(PROBE)).unwrap(), b"via x");
    assert_eq!(
        fs::read(jail.target.join("sentinel.txt")).unwrap(),
        b"via y"
    );
    jail.assert_nothing_outside();
}

#[test]
fn symlink_to_absolute_etc_leads_to_target_etc() {
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("x", "/etc")
        .file("x/passwd", 0o644, b"evil::0:0::/:/bin/sh\n")
        .finish();
    jail.unpack(&[&layer], &opts()).unwrap();
    assert_eq!(
        fs::read(jail.target.join("etc/passwd")).unwrap(),
        b"evil::0:0::/:/bin/sh\n"
    );
    jail.assert_nothing_outside();
}

#[test]
fn symlink_planted_by_lower_layer_leads_back_into_target() {
    let jail = Jail::new();
    let lower = Layer::new().symlink("x", "../..").finish();
    let upper = Layer::new()
        .file("x/sentinel.txt", 0o644, b"contained")
        .file("x/victim/keep.txt", 0o644, b"contained")
        .finish();
    jail.unpack(&[&lower, &upper], &opts()).unwrap();
    assert_eq!(
        fs::read(jail.target.join("sentinel.txt")).unwrap(),
        b"contained"
    );
    assert_eq!(
        fs::read(jail.target.join("victim/keep.txt")).unwrap(),
        b"contained"
    );
    jail.assert_nothing_outside();
}

#[test]
fn chained_absolute_and_dotdot_symlinks_stay_inside() {
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("a", "/b")
        .symlink("b", "../../..")
        .file(&format!("a/c/{PROBE}"), 0o644, b"contained")
        .finish();
    jail.unpack(&[&layer], &opts()).unwrap();
    assert_eq!(
        fs::read(jail.target.join("c").join(PROBE)).unwrap(),
        b"contained"
    );
    jail.assert_nothing_outside();
}

#[test]
fn refuses_hardlink_through_symlink_to_outside() {
    let layer = Layer::new()
        .symlink("x", "../..")
        .hardlink("h", "x/sentinel.txt")
        .finish();
    assert_refused(&layer);
}

#[test]
fn hardlink_through_symlink_resolves_inside() {
    let jail = Jail::new();
    let layer = Layer::new()
        .file("real", 0o644, b"inside")
        .symlink("x", "/")
        .hardlink("h", "x/real")
        .finish();
    jail.unpack(&[&layer], &opts()).unwrap();
    let real = fs::metadata(jail.target.join("real")).unwrap();
    let h = fs::metadata(jail.target.join("h")).unwrap();
    assert_eq!(real.ino(), h.ino());
    jail.assert_nothing_outside();
}

#[test]
fn refuses_hardlink_to_absolute_or_dotdot_path() {
    assert_refused(&Layer::new().hardlink("h", "/etc/passwd").finish());
    assert_refused(&Layer::new().hardlink("h", "../sentinel.txt").finish());
    assert_refused(&Layer::new().hardlink("h", "../../sentinel.txt").finish());
    assert_refused(&Layer::new().hardlink("h", "a/../../etc/passwd").finish());
}

#[test]
fn refuses_hardlink_to_missing_target() {
    assert_refused(&Layer::new().hardlink("h", "etc/passwd").finish());
}

#[test]
fn refuses_symlink_loops() {
    let two = Layer::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/f", 0o644, b"loop")
        .finish();
    assert_refused(&two);

    let own = Layer::new()
        .symlink("s", "s")
        .file("s/f", 0o644, b"loop")
        .finish();
    assert_refused(&own);

    let mut layer = Layer::new();
    for i in 0..41 {
        layer.symlink(&format!("l{i}"), &format!("l{}", i + 1));
    }
    layer.dir("l41", 0o755).file("l0/f", 0o644, b"too deep");
    assert_refused(&layer.finish());
}

#[test]
fn refuses_overlong_names() {
    assert_refused(&file_layer(&"n".repeat(256)));
    let deep = vec!["d".repeat(200); 21].join("/");
    assert!(deep.len() > 4096);
    assert_refused(&file_layer(&deep));
}

#[test]
fn refuses_whiteouts_aimed_outside() {
    assert_refused(&Layer::new().whiteout("../.wh.victim_file").finish());
    assert_refused(&Layer::new().whiteout("../../.wh.victim").finish());
    assert_refused(&Layer::new().whiteout("/.wh.etc").finish());
    // `.wh...` whites out `..`, `.wh..` whites out `.`.
    assert_refused(&Layer::new().whiteout("a/.wh...").finish());
    assert_refused(&Layer::new().whiteout(".wh..").finish());
}

#[test]
fn whiteout_through_symlinked_dir_stays_inside() {
    let jail = Jail::new();
    fs::write(jail.target.join("victim_file"), "inside").unwrap();
    let layer = Layer::new()
        .symlink("x", "../..")
        .whiteout("x/.wh.victim_file")
        .whiteout("x/.wh.victim")
        .whiteout("x/.wh.sentinel.txt")
        .finish();
    jail.unpack(&[&layer], &opts()).unwrap();
    assert!(
        !jail.target.join("victim_file").exists(),
        "the target's own victim stays"
    );
    jail.assert_nothing_outside();
}

#[test]
fn opaque_whiteout_through_symlink_stays_inside() {
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("x", "../../victim")
        .whiteout("x/.wh..wh..opq")
        .symlink("y", "/")
        .whiteout("y/.wh..wh..opq")
        .finish();
    jail.unpack(&[&layer], &opts()).unwrap();
    jail.assert_nothing_outside();
}

#[test]
fn skips_device_node_unless_asked() {
    let jail = Jail::new();
    let mut dev = Raw::new("dev/sda", EntryType::Block);
    dev.device = (8, 0);
    let mut null = Raw::new("dev/null", EntryType::Char);
    null.device = (1, 3);
    let layer = Layer::new().raw(dev).raw(null).finish();
    let stats = jail.unpack(&[&layer], &opts()).unwrap();
    assert_eq!(stats[0].devices_skipped, 2);
    assert_eq!(stats[0].devices, 0);
    assert!(fs::symlink_metadata(jail.target.join("dev/sda")).is_err());
    assert!(fs::symlink_metadata(jail.target.join("dev/null")).is_err());
    jail.assert_nothing_outside();
}

#[test]
fn file_replaces_planted_symlink_instead_of_writing_through_it() {
    let jail = Jail::new();
    let lower = Layer::new()
        .symlink("f", "../../sentinel.txt")
        .symlink("g", "../../etc/passwd")
        .finish();
    let upper = Layer::new()
        .file("f", 0o644, b"pwned")
        .file("g", 0o600, b"pwned")
        .finish();
    jail.unpack(&[&lower, &upper], &opts()).unwrap();
    for name in ["f", "g"] {
        let meta = fs::symlink_metadata(jail.target.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is still a symlink");
    }
    jail.assert_nothing_outside();
}

#[test]
fn directory_replaces_planted_symlink() {
    let jail = Jail::new();
    let lower = Layer::new().symlink("d", "../../victim").finish();
    let upper = Layer::new()
        .dir("d", 0o700)
        .file("d/new", 0o644, b"inside")
        .finish();
    jail.unpack(&[&lower, &upper], &opts()).unwrap();
    assert!(
        fs::symlink_metadata(jail.target.join("d"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(fs::read(jail.target.join("d/new")).unwrap(), b"inside");
    jail.assert_nothing_outside();
}

#[test]
fn links_and_nodes_replace_planted_symlinks() {
    let jail = Jail::new();
    let lower = Layer::new()
        .file("real", 0o644, b"inside")
        .symlink("h", "../../sentinel.txt")
        .symlink("p", "../../victim_file")
        .symlink("s", "../../etc/passwd")
        .finish();
    let mut fifo = Raw::new("p", EntryType::Fifo);
    fifo.mode = 0o666;
    let upper = Layer::new()
        .hardlink("h", "real")
        .raw(fifo)
        .symlink("s", "elsewhere")
        .finish();
    jail.unpack(&[&lower, &upper], &opts()).unwrap();
    assert_eq!(fs::read(jail.target.join("h")).unwrap(), b"inside");
    assert_eq!(
        fs::read_link(jail.target.join("s")).unwrap().to_str(),
        Some("elsewhere")
    );
    jail.assert_nothing_outside();
}

#[test]
fn metadata_of_symlink_is_not_applied_through_it() {
    let jail = Jail::new();
    let mut link = Raw::new("s", EntryType::Symlink);
    link.link = b"../../sentinel.txt".to_vec();
    link.mode = 0o6777;
    link.uid = 4242;
    link.gid = 4242;
    link.mtime = 123;
    link.pax = vec![("SCHILY.xattr.user.evil".into(), b"1".to_vec())];
    let mut abs = link.clone();
    abs.name = b"t".to_vec();
    abs.link = b"/tmp".to_vec();
    let layer = Layer::new().raw(link).raw(abs).finish();
    let stats = jail.unpack(&[&layer], &opts()).unwrap();
    assert_eq!(stats[0].xattrs_skipped, 2);
    jail.assert_nothing_outside();
}

#[test]
fn refuses_to_turn_the_root_into_something_else() {
    let mut root_link = Raw::new("./", EntryType::Symlink);
    root_link.link = b"../..".to_vec();
    assert_refused(&Layer::new().raw(root_link).finish());
    assert_refused(&Layer::new().file(".", 0o644, b"x").finish());
}

#[test]
fn refuses_empty_name() {
    assert_refused(&Layer::new().raw(Raw::new("", EntryType::Regular)).finish());
}
