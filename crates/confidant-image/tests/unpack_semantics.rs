//! Layer changeset semantics (OCI image-spec `layer.md`): whiteouts, opaque directories,
//! replacement, hardlinks, symlinks, modes, owners, xattrs, times, device nodes.

#[path = "../../../tests/requirements.rs"]
mod requirements;
mod unpack_support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use confidant_image::Error;
use confidant_image::unpack::{UnpackOptions, decompressing_reader};
use requirements::{condition, require, root};
use tar::EntryType;
use unpack_support::{Layer, Raw, unpack_all};

fn opts() -> UnpackOptions {
    UnpackOptions::default()
}

fn unpack(layers: &[&[u8]]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    unpack_all(dir.path(), layers, &opts()).unwrap();
    dir
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The names in a directory, sorted.
fn names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn whiteout_removes_lower_file() {
    let lower = Layer::new()
        .dir("etc", 0o755)
        .file("etc/motd", 0o644, b"hi")
        .file("etc/keep", 0o644, b"kept")
        .finish();
    let upper = Layer::new().whiteout("etc/.wh.motd").finish();
    let root = unpack(&[&lower, &upper]);
    assert!(!exists(&root.path().join("etc/motd")));
    assert_eq!(names(&root.path().join("etc")), ["keep"]);
}

#[test]
fn whiteout_removes_lower_directory_recursively() {
    let lower = Layer::new()
        .dir("opt/app/lib", 0o755)
        .file("opt/app/lib/x.so", 0o755, b"elf")
        .symlink("opt/app/current", "lib")
        .finish();
    let upper = Layer::new().whiteout("opt/.wh.app").finish();
    let root = unpack(&[&lower, &upper]);
    assert_eq!(names(&root.path().join("opt")), Vec::<String>::new());
}

#[test]
fn whiteouts_are_never_materialized() {
    let layer = Layer::new()
        .whiteout(".wh.nothing")
        .dir("d", 0o755)
        .whiteout("d/.wh..wh..opq")
        .whiteout(".wh..wh.plnk")
        .finish();
    let root = unpack(&[&layer]);
    assert_eq!(names(root.path()), ["d"]);
    assert!(names(&root.path().join("d")).is_empty());
}

#[test]
fn whiteout_spares_entry_of_same_layer() {
    let lower = Layer::new().file("a", 0o644, b"lower").finish();
    let upper = Layer::new()
        .file("a", 0o644, b"upper")
        .whiteout(".wh.a")
        .finish();
    let root = unpack(&[&lower, &upper]);
    assert_eq!(fs::read(root.path().join("a")).unwrap(), b"upper");
}

#[test]
fn whiteout_of_directory_keeps_same_layer_children_only() {
    let lower = Layer::new()
        .dir("d", 0o755)
        .file("d/old", 0o644, b"lower")
        .finish();
    let upper = Layer::new()
        .file("d/new", 0o644, b"upper")
        .whiteout(".wh.d")
        .finish();
    let root = unpack(&[&lower, &upper]);
    assert_eq!(names(&root.path().join("d")), ["new"]);
}

#[test]
fn whiteout_of_missing_path_is_a_no_op() {
    let layer = Layer::new()
        .whiteout(".wh.absent")
        .whiteout("no/such/dir/.wh.absent")
        .finish();
    let root = unpack(&[&layer]);
    assert!(names(root.path()).is_empty(), "no parent created");
}

#[test]
fn opaque_whiteout_hides_lower_contents_and_keeps_same_layer_entries() {
    let lower = Layer::new()
        .dir("a", 0o755)
        .file("a/lower1", 0o644, b"1")
        .dir("a/sub", 0o755)
        .file("a/sub/lower2", 0o644, b"2")
        .finish();
    // The marker before the new entries (as Docker writes it) ...
    let marker_first = Layer::new()
        .dir("a", 0o755)
        .whiteout("a/.wh..wh..opq")
        .file("a/new", 0o644, b"new")
        .finish();
    let root = unpack(&[&lower, &marker_first]);
    assert_eq!(names(&root.path().join("a")), ["new"]);

    // ... and after them: order must not matter.
    let marker_last = Layer::new()
        .dir("a", 0o755)
        .file("a/new", 0o644, b"new")
        .file("a/sub/new2", 0o644, b"new2")
        .whiteout("a/.wh..wh..opq")
        .finish();
    let root = unpack(&[&lower, &marker_last]);
    assert_eq!(names(&root.path().join("a")), ["new", "sub"]);
    assert_eq!(names(&root.path().join("a/sub")), ["new2"]);
}

#[test]
fn opaque_whiteout_creates_missing_directory() {
    let layer = Layer::new().whiteout("fresh/.wh..wh..opq").finish();
    let root = unpack(&[&layer]);
    assert!(root.path().join("fresh").is_dir());
}

#[test]
fn later_entry_replaces_earlier_one() {
    let lower = Layer::new()
        .file("file_then_dir", 0o644, b"file")
        .dir("dir_then_file", 0o755)
        .file("dir_then_file/child", 0o644, b"child")
        .dir("dir_then_symlink", 0o755)
        .file("same_layer", 0o644, b"first")
        .file("same_layer", 0o600, b"second")
        .finish();
    let upper = Layer::new()
        .dir("file_then_dir", 0o750)
        .file("dir_then_file", 0o644, b"now a file")
        .symlink("dir_then_symlink", "file_then_dir")
        .finish();
    let root = unpack(&[&lower, &upper]);
    let p = root.path();
    assert!(
        fs::symlink_metadata(p.join("file_then_dir"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(fs::read(p.join("dir_then_file")).unwrap(), b"now a file");
    assert_eq!(
        fs::read_link(p.join("dir_then_symlink")).unwrap(),
        Path::new("file_then_dir")
    );
    assert_eq!(fs::read(p.join("same_layer")).unwrap(), b"second");
    assert_eq!(mode(&p.join("same_layer")), 0o600);
}

#[test]
fn directory_over_directory_keeps_contents_and_takes_metadata() {
    let lower = Layer::new()
        .dir("etc", 0o755)
        .file("etc/hosts", 0o644, b"127.0.0.1 localhost\n")
        .finish();
    let mut etc = Raw::new("etc/", EntryType::Directory);
    etc.mode = 0o750;
    etc.mtime = 1_234_567_890;
    let upper = Layer::new().raw(etc).finish();
    let root = unpack(&[&lower, &upper]);
    let etc = root.path().join("etc");
    assert_eq!(names(&etc), ["hosts"]);
    assert_eq!(mode(&etc), 0o750);
    assert_eq!(fs::metadata(&etc).unwrap().mtime(), 1_234_567_890);
}

#[test]
fn hardlink_shares_inode_and_outlives_replaced_source() {
    let lower = Layer::new()
        .file("usr/bin/tool", 0o755, b"v1")
        .hardlink("usr/bin/tool-alias", "usr/bin/tool")
        .hardlink("./usr/bin/tool-alias2", "./usr/bin/tool")
        .finish();
    let root = unpack(&[&lower]);
    let p = root.path();
    let ino = |n: &str| fs::metadata(p.join(n)).unwrap().ino();
    assert_eq!(ino("usr/bin/tool"), ino("usr/bin/tool-alias"));
    assert_eq!(ino("usr/bin/tool"), ino("usr/bin/tool-alias2"));
    assert_eq!(fs::metadata(p.join("usr/bin/tool")).unwrap().nlink(), 3);

    // Replacing the file never writes into the shared inode.
    let upper = Layer::new().file("usr/bin/tool", 0o755, b"v2").finish();
    unpack_all(p, &[&upper], &opts()).unwrap();
    assert_eq!(fs::read(p.join("usr/bin/tool")).unwrap(), b"v2");
    assert_eq!(fs::read(p.join("usr/bin/tool-alias")).unwrap(), b"v1");
}

#[test]
fn refuses_hardlink_to_directory() {
    let layer = Layer::new().dir("d", 0o755).hardlink("h", "d").finish();
    let dir = tempfile::tempdir().unwrap();
    let result = unpack_all(dir.path(), &[&layer], &opts());
    assert!(
        matches!(result, Err(Error::UnsafeEntry { .. })),
        "{result:?}"
    );
}

#[test]
fn symlink_targets_are_stored_verbatim() {
    let targets = [
        ("abs", "/etc/passwd"),
        ("rel", "../lib/x.so"),
        ("dangling", "does/not/exist"),
        ("dots", "./a/../b/./c"),
        ("up", "../../../../.."),
    ];
    let mut layer = Layer::new();
    for (name, target) in targets {
        layer.symlink(&format!("links/{name}"), target);
    }
    let root = unpack(&[&layer.finish()]);
    for (name, target) in targets {
        let link = root.path().join("links").join(name);
        assert_eq!(fs::read_link(&link).unwrap(), Path::new(target), "{name}");
    }
}

#[test]
fn modes_are_applied() {
    let layer = Layer::new()
        .file("exec", 0o755, b"x")
        .file("plain", 0o644, b"x")
        .file("secret", 0o600, b"x")
        .file("none", 0o000, b"x")
        .dir("private", 0o700)
        .dir("tmp", 0o1777)
        .dir("readonly", 0o555)
        .file("readonly/inside", 0o444, b"x")
        .finish();
    let root = unpack(&[&layer]);
    let p = root.path();
    for (name, expected) in [
        ("exec", 0o755),
        ("plain", 0o644),
        ("secret", 0o600),
        ("none", 0o000),
        ("private", 0o700),
        ("tmp", 0o1777),
        ("readonly", 0o555),
        ("readonly/inside", 0o444),
    ] {
        assert_eq!(mode(&p.join(name)), expected, "{name}");
    }
}

#[test]
fn implicit_parent_directories_get_mode_0755() {
    let root = unpack(&[&Layer::new().file("a/b/c", 0o644, b"x").finish()]);
    assert_eq!(mode(&root.path().join("a")), 0o755);
    assert_eq!(mode(&root.path().join("a/b")), 0o755);
}

#[test]
fn setuid_is_kept_only_with_ownership() {
    let mut su = Raw::new("usr/bin/su", EntryType::Regular);
    su.mode = 0o4755;
    su.data = b"elf".to_vec();
    let mut wall = Raw::new("usr/bin/wall", EntryType::Regular);
    wall.mode = 0o2755;
    wall.gid = 5;
    let layer = Layer::new().raw(su).raw(wall).finish();

    let without = tempfile::tempdir().unwrap();
    let no_owners = UnpackOptions {
        ownership: false,
        ..opts()
    };
    unpack_all(without.path(), &[&layer], &no_owners).unwrap();
    assert_eq!(mode(&without.path().join("usr/bin/su")), 0o755);
    assert_eq!(mode(&without.path().join("usr/bin/wall")), 0o755);

    // The half with ownership applies setuid and setgid bits, which needs root.
    if !require(&[root()]) {
        return;
    }
    let with = unpack(&[&layer]);
    assert_eq!(mode(&with.path().join("usr/bin/su")), 0o4755);
    assert_eq!(mode(&with.path().join("usr/bin/wall")), 0o2755);
}

#[test]
fn ownership_is_applied_as_root() {
    if !require(&[root()]) {
        return;
    }
    let entry = |name: &str, kind: EntryType| {
        let mut e = Raw::new(name, kind);
        e.uid = 1234;
        e.gid = 5678;
        e
    };
    let mut link = entry("link", EntryType::Symlink);
    link.link = b"/nonexistent".to_vec();
    let layer = Layer::new()
        .raw(entry("dir", EntryType::Directory))
        .raw(entry("dir/file", EntryType::Regular))
        .raw(link)
        .raw(entry("fifo", EntryType::Fifo))
        .finish();
    let root = unpack(&[&layer]);
    for name in ["dir", "dir/file", "link", "fifo"] {
        let meta = fs::symlink_metadata(root.path().join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "{name}");
    }

    let off = tempfile::tempdir().unwrap();
    let no_owners = UnpackOptions {
        ownership: false,
        ..opts()
    };
    unpack_all(off.path(), &[&layer], &no_owners).unwrap();
    let meta = fs::metadata(off.path().join("dir/file")).unwrap();
    assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
}

#[test]
fn xattrs_are_applied() {
    let mut file = Raw::new("file", EntryType::Regular);
    file.pax = vec![
        ("SCHILY.xattr.user.origin".into(), b"layer-1".to_vec()),
        ("SCHILY.xattr.trusted.overlay.opaque".into(), b"y".to_vec()),
    ];
    let mut dir = Raw::new("dir", EntryType::Directory);
    dir.pax = vec![("SCHILY.xattr.user.kind".into(), b"dir".to_vec())];
    let layer = Layer::new().raw(file).raw(dir).finish();
    let root = tempfile::tempdir().unwrap();
    let stats = unpack_all(root.path(), &[&layer], &opts()).unwrap();
    let stats = &stats[0];

    let get = |name: &str, attr: &str| {
        let mut buf = vec![0u8; 256];
        rustix::fs::lgetxattr(root.path().join(name), attr, &mut buf[..]).map(|n| buf[..n].to_vec())
    };
    // The overlay attribute is never applied, whatever the filesystem.
    assert!(get("file", "trusted.overlay.opaque").is_err());
    if stats.xattrs_set == 0 {
        assert_eq!(stats.xattrs_skipped, 3);
    }
    let xattrs = condition(
        "user.* xattrs on the filesystem of TMPDIR",
        (stats.xattrs_set == 0).then(|| {
            format!(
                "user.* xattrs on the filesystem of {} (not supported: {:?}; point TMPDIR \
                 elsewhere)",
                root.path().display(),
                stats.warnings
            )
        }),
    );
    if !require(&[xattrs]) {
        return;
    }
    assert_eq!(stats.xattrs_set, 2, "{:?}", stats.warnings);
    assert_eq!(stats.xattrs_skipped, 1);
    assert_eq!(get("file", "user.origin").unwrap(), b"layer-1");
    assert_eq!(get("dir", "user.kind").unwrap(), b"dir");

    let off = tempfile::tempdir().unwrap();
    let no_xattrs = UnpackOptions {
        xattrs: false,
        ..opts()
    };
    unpack_all(off.path(), &[&layer], &no_xattrs).unwrap();
    let mut buf = [0u8; 64];
    assert!(rustix::fs::lgetxattr(off.path().join("file"), "user.origin", &mut buf[..]).is_err());
}

#[test]
fn merged_usr_symlink_leads_into_usr_lib() {
    let base = Layer::new()
        .dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .dir("usr/lib64", 0o755)
        .symlink("lib", "usr/lib")
        .symlink("lib64", "/usr/lib64")
        .finish();
    let app = Layer::new()
        .file("lib/x.so", 0o755, b"elf")
        .file("lib64/ld.so", 0o755, b"ld")
        .dir("lib/deep/", 0o755)
        .file("lib/deep/y.so", 0o644, b"y")
        .finish();
    let root = unpack(&[&base, &app]);
    let p = root.path();
    assert_eq!(fs::read(p.join("usr/lib/x.so")).unwrap(), b"elf");
    assert_eq!(fs::read(p.join("usr/lib64/ld.so")).unwrap(), b"ld");
    assert_eq!(fs::read(p.join("usr/lib/deep/y.so")).unwrap(), b"y");
    assert!(fs::symlink_metadata(p.join("lib")).unwrap().is_symlink());
    assert!(fs::symlink_metadata(p.join("lib64")).unwrap().is_symlink());
}

#[test]
fn mtimes_are_applied_to_files_and_directories() {
    let mut dir = Raw::new("d", EntryType::Directory);
    dir.mtime = 1_000_000_000;
    let mut file = Raw::new("d/f", EntryType::Regular);
    file.mtime = 1_100_000_000;
    let mut link = Raw::new("d/l", EntryType::Symlink);
    link.link = b"f".to_vec();
    link.mtime = 1_200_000_000;
    let mut pax = Raw::new("d/precise", EntryType::Regular);
    pax.pax = vec![("mtime".into(), b"1300000000.25".to_vec())];
    // Children created after the directory's entry must not leave it with a new mtime.
    let layer = Layer::new().raw(dir).raw(file).raw(link).raw(pax).finish();
    let root = unpack(&[&layer]);
    let meta = |n: &str| fs::symlink_metadata(root.path().join(n)).unwrap();
    assert_eq!(meta("d").mtime(), 1_000_000_000);
    assert_eq!(meta("d/f").mtime(), 1_100_000_000);
    assert_eq!(meta("d/l").mtime(), 1_200_000_000);
    assert_eq!(
        (meta("d/precise").mtime(), meta("d/precise").mtime_nsec()),
        (1_300_000_000, 250_000_000)
    );
}

#[test]
fn fifo_is_created() {
    let mut fifo = Raw::new("run/pipe", EntryType::Fifo);
    fifo.mode = 0o620;
    let root = unpack(&[&Layer::new().raw(fifo).finish()]);
    let meta = fs::symlink_metadata(root.path().join("run/pipe")).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.mode() & 0o7777, 0o620);
}

#[test]
fn device_node_is_created_when_asked_as_root() {
    if !require(&[root()]) {
        return;
    }
    let mut null = Raw::new("dev/null", EntryType::Char);
    null.device = (1, 3);
    null.mode = 0o666;
    let layer = Layer::new().raw(null).finish();
    let root = tempfile::tempdir().unwrap();
    let devices = UnpackOptions {
        devices: true,
        ..opts()
    };
    let stats = unpack_all(root.path(), &[&layer], &devices).unwrap();
    assert_eq!(stats[0].devices, 1);
    let meta = fs::symlink_metadata(root.path().join("dev/null")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(
        (
            rustix::fs::major(meta.rdev()),
            rustix::fs::minor(meta.rdev())
        ),
        (1, 3)
    );
    assert_eq!(meta.mode() & 0o7777, 0o666);
}

#[test]
fn root_directory_entry_updates_target_metadata() {
    let mut root_entry = Raw::new("./", EntryType::Directory);
    root_entry.mode = 0o751;
    let root = unpack(&[&Layer::new()
        .raw(root_entry)
        .file("./a", 0o644, b"a")
        .finish()]);
    assert_eq!(mode(root.path()), 0o751);
    assert_eq!(names(root.path()), ["a"]);
}

#[test]
fn long_names_and_link_targets_unpack() {
    let dir = format!("{}/{}", "a".repeat(90), "b".repeat(90));
    let name = format!("{dir}/{}", "c".repeat(90));
    let layer = Layer::new()
        .file(&name, 0o644, b"long")
        .hardlink("short", &name)
        .symlink(&format!("{dir}/link"), &"../".repeat(60))
        .finish();
    let root = unpack(&[&layer]);
    assert_eq!(fs::read(root.path().join("short")).unwrap(), b"long");
    assert_eq!(
        fs::read_link(root.path().join(&dir).join("link")).unwrap(),
        Path::new(&"../".repeat(60))
    );
}

#[test]
fn old_style_directory_entry_unpacks_as_directory() {
    let mut entry = Raw::new("olddir/", EntryType::Regular);
    entry.typeflag = Some(0);
    let root = unpack(&[&Layer::new().raw(entry).finish()]);
    assert!(root.path().join("olddir").is_dir());
}

#[test]
fn compressed_layers_unpack_through_decompressing_reader() {
    use std::io::Write;
    let layer = Layer::new().file("hello", 0o644, b"world").finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(layer.as_slice(), 3).unwrap();
    for (media_type, blob) in [
        ("application/vnd.oci.image.layer.v1.tar+gzip", gz.as_slice()),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            zst.as_slice(),
        ),
        ("application/vnd.oci.image.layer.v1.tar", layer.as_slice()),
    ] {
        let root = tempfile::tempdir().unwrap();
        let tar = decompressing_reader(media_type, blob).unwrap();
        let mut budget = confidant_image::unpack::Budget::new();
        confidant_image::unpack::unpack_layer_at(root.path(), tar, &opts(), &mut budget).unwrap();
        assert_eq!(
            fs::read(root.path().join("hello")).unwrap(),
            b"world",
            "{media_type}"
        );
    }
}

#[test]
fn refuses_truncated_layer() {
    let layer = Layer::new().file("big", 0o644, &[7u8; 4096]).finish();
    let root = tempfile::tempdir().unwrap();
    let result = unpack_all(root.path(), &[&layer[..512 + 1000]], &opts());
    assert!(matches!(result, Err(Error::Malformed { .. })), "{result:?}");
}
