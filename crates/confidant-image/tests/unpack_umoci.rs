//! The same layers unpacked by umoci (the OCI project's reference unpacker, `umoci raw unpack`)
//! and by us give the same tree: paths, types, modes, owners, link targets, contents and
//! hardlink groups. The OCI layout umoci reads is written here by hand.

#[path = "../../../tests/requirements.rs"]
mod requirements;
mod unpack_support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use confidant_image::unpack::{Budget, UnpackOptions, decompressing_reader, unpack_layer_at};
use requirements::{program, require, root};
use serde_json::json;
use sha2::{Digest, Sha256};
use tar::EntryType;
use unpack_support::{Layer, Raw, assert_same_listing, hardlink_groups, tree};

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A base layer the way a distribution image looks: merged-usr symlinks, setuid and setgid
/// files, a sticky directory, owners other than root, hardlinks, a fifo.
fn base_layer() -> Vec<u8> {
    let mut layer = Layer::new();
    for dir in [
        "etc",
        "usr",
        "usr/bin",
        "usr/lib",
        "var",
        "var/cache",
        "opt",
        "opt/app",
    ] {
        layer.dir(dir, 0o755);
    }
    layer
        .dir("opt/app/sub", 0o700)
        .dir("tmp", 0o1777)
        .dir("gone-dir", 0o755)
        .dir("replaced", 0o755)
        .symlink("lib", "usr/lib")
        .symlink("bin", "usr/bin")
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        .file("etc/motd", 0o644, b"welcome\n")
        .file("usr/bin/tool", 0o755, b"tool v1")
        .hardlink("usr/bin/tool2", "usr/bin/tool")
        .file("usr/lib/libx.so.1", 0o644, b"libx")
        .symlink("usr/lib/libx.so", "libx.so.1")
        .file("var/cache/a", 0o644, b"cache")
        .file("opt/app/old", 0o644, b"old")
        .file("opt/app/sub/old2", 0o600, b"old2")
        .file("gone-file", 0o644, b"bye")
        .file("gone-dir/child", 0o644, b"bye")
        .file("replaced/child", 0o644, b"bye");
    let mut shadow = Raw::new("etc/shadow", EntryType::Regular);
    shadow.mode = 0o640;
    shadow.gid = 42;
    shadow.data = b"root:*:19000:0:99999:7:::\n".to_vec();
    let mut su = Raw::new("usr/bin/su", EntryType::Regular);
    su.mode = 0o4755;
    su.data = b"su".to_vec();
    let mut home = Raw::new("home/user", EntryType::Directory);
    home.mode = 0o750;
    home.uid = 1000;
    home.gid = 1000;
    let mut profile = Raw::new("home/user/.profile", EntryType::Regular);
    profile.uid = 1000;
    profile.gid = 1000;
    profile.data = b"export PS1='$ '\n".to_vec();
    let mut fifo = Raw::new("var/pipe", EntryType::Fifo);
    fifo.mode = 0o600;
    layer
        .dir("home", 0o755)
        .raw(shadow)
        .raw(su)
        .raw(home)
        .raw(profile)
        .raw(fifo);
    layer.finish()
}

/// A layer on top: whiteouts, an opaque directory, writes through the merged-usr symlink,
/// replacements of every kind, a directory entry over a directory, a hardlink to a new file.
fn app_layer() -> Vec<u8> {
    let mut etc = Raw::new("etc", EntryType::Directory);
    etc.mode = 0o750;
    Layer::new()
        .whiteout(".wh.gone-file")
        .whiteout(".wh.gone-dir")
        .whiteout("var/cache/.wh.a")
        .dir("opt/app", 0o755)
        .whiteout("opt/app/.wh..wh..opq")
        .file("opt/app/new", 0o644, b"new")
        .file("lib/x.so", 0o755, b"x.so via lib/")
        .raw(etc)
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/bash\n")
        .hardlink("etc/passwd-", "etc/passwd")
        .symlink("etc/motd", "/run/motd")
        .file("usr/bin/tool", 0o755, b"tool v2")
        .file("replaced", 0o644, b"now a file")
        .finish()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Writes `blob` into the layout; its descriptor.
fn put_blob(layout: &Path, media_type: &str, blob: &[u8]) -> serde_json::Value {
    let digest = sha256(blob);
    fs::write(layout.join("blobs/sha256").join(&digest), blob).unwrap();
    json!({"mediaType": media_type, "digest": format!("sha256:{digest}"), "size": blob.len()})
}

/// An OCI image layout with one image, tagged `test`, of the given uncompressed layers.
fn write_layout(layout: &Path, layers: &[&[u8]]) -> Vec<Vec<u8>> {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let descriptors: Vec<_> = blobs
        .iter()
        .map(|b| put_blob(layout, LAYER_GZIP, b))
        .collect();
    let diff_ids: Vec<_> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256(l)))
        .collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let config = put_blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descriptors,
    });
    let mut manifest = put_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    manifest["annotations"] = json!({"org.opencontainers.image.ref.name": "test"});
    let index = json!({"schemaVersion": 2, "manifests": [manifest]});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    blobs
}

#[test]
fn matches_umoci_on_a_realistic_image() {
    // The comparison applies owners and setuid bits, which needs root.
    if !require(&[program("umoci"), root()]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let layers = [base_layer(), app_layer()];
    let blobs = write_layout(&layout, &[&layers[0], &layers[1]]);

    let theirs = work.path().join("umoci-rootfs");
    let output = Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:test", layout.display()))
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "umoci raw unpack failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let ours = work.path().join("our-rootfs");
    fs::create_dir(&ours).unwrap();
    let mut budget = Budget::new();
    for blob in &blobs {
        let tar = decompressing_reader(LAYER_GZIP, blob.as_slice()).unwrap();
        unpack_layer_at(&ours, tar, &UnpackOptions::default(), &mut budget).unwrap();
    }

    let our_tree = tree(&ours);
    assert_same_listing(
        &tree(&theirs),
        &our_tree,
        "our unpack compared with umoci's",
    );
    assert_eq!(hardlink_groups(&ours), hardlink_groups(&theirs));

    // The comparison covered what it was meant to.
    for expected in [
        "usr/lib/x.so",
        "opt/app/new",
        "etc/passwd-",
        "home/user/.profile",
    ] {
        assert!(our_tree.contains_key(expected), "{expected} missing");
    }
    for gone in [
        "gone-file",
        "gone-dir",
        "var/cache/a",
        "opt/app/old",
        "opt/app/sub",
    ] {
        assert!(!our_tree.contains_key(gone), "{gone} still there");
    }
    assert!(our_tree["usr/bin/su"].contains("mode 4755"));
    assert!(our_tree["etc"].contains("mode 750"));
    assert_eq!(hardlink_groups(&ours), [["etc/passwd", "etc/passwd-"]]);
}
