//! `confidant image` end to end with the real peers: skopeo and umoci (Debian) for interop, and
//! a real registry (Debian's `docker-registry`) on 127.0.0.1. `make test` installs them; a test
//! fails naming what is missing otherwise (tests/requirements.rs).

#[path = "common/registry.rs"]
mod registry;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use registry::Registry;
use requirements::{file, program, require};
use serde_json::Value;

fn confidant(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confidant"))
        .args(args)
        .output()
        .expect("running confidant")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Whether the machine has what [`build_image`] and [`keys`] use (umoci, busybox-static,
/// openssl) and the programs `also`; fails the test if not (see [`require`]).
fn ready(also: &[&str]) -> bool {
    let mut needs = vec![program("umoci"), file("/bin/busybox"), program("openssl")];
    needs.extend(also.iter().map(|p| program(p)));
    require(&needs)
}

fn tool(bin: &str, args: &[&str]) -> Output {
    let o = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} is needed for this test (make test installs it): {e}"));
    ok(&o, &format!("{bin} {}", args.join(" ")));
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A two-layer image built with umoci from Debian's busybox-static: layer 1 has busybox,
/// symlinks, a hardlink, files of several modes; layer 2 deletes a file (a whiteout) and adds one.
fn build_image(dir: &Path) -> PathBuf {
    let layout = dir.join("base");
    let bundle = dir.join("bundle");
    tool("umoci", &["init", "--layout", s(&layout)]);
    tool("umoci", &["new", "--image", &format!("{}:v1", s(&layout))]);
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", s(&layout)),
            s(&bundle),
        ],
    );
    let root = bundle.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("/etc/app/config", root.join("config-link")).unwrap();
    std::fs::write(root.join("etc/app/config"), b"answer = 42\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/app/config"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(root.join("etc/app/secret"), b"only owner\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/app/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(root.join("doomed"), b"removed by layer 2\n").unwrap();
    std::fs::hard_link(
        root.join("etc/app/config"),
        root.join("etc/app/config.hardlink"),
    )
    .unwrap();
    // Incompressible content so the encrypted layer is not trivially small.
    let noise: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("noise.bin"), noise).unwrap();
    tool(
        "umoci",
        &[
            "repack",
            "--refresh-bundle",
            "--image",
            &format!("{}:v1", s(&layout)),
            s(&bundle),
        ],
    );
    std::fs::remove_file(root.join("doomed")).unwrap();
    std::fs::write(root.join("added-in-layer-2"), b"second layer\n").unwrap();
    tool(
        "umoci",
        &[
            "repack",
            "--image",
            &format!("{}:v1", s(&layout)),
            s(&bundle),
        ],
    );
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{}:v1", s(&layout)),
            "--config.cmd",
            "/bin/sh",
        ],
    );
    let index = read_json(&layout.join("index.json"));
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    assert_eq!(
        read_json(&layout.join("blobs/sha256").join(m))["layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    layout
}

fn keys(dir: &Path) -> BTreeMap<&'static str, (PathBuf, PathBuf)> {
    let mut out = BTreeMap::new();
    for (name, args) in [
        (
            "rsa",
            vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
        (
            "ec",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
    ] {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub"));
        let mut a = vec!["genpkey"];
        a.extend(args);
        a.extend(["-out", s(&private)]);
        tool("openssl", &a);
        tool(
            "openssl",
            &["pkey", "-in", s(&private), "-pubout", "-out", s(&public)],
        );
        out.insert(name, (private, public));
    }
    out
}

/// Every path under `root` with its type, mode, size, content hash and link target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(root, &p, out);
                format!("dir {:o}", m.mode() & 0o7777)
            } else {
                let bytes = std::fs::read(&p).unwrap();
                use sha2::Digest;
                format!(
                    "file {:o} {} {}",
                    m.mode() & 0o7777,
                    bytes.len(),
                    hex::encode(sha2::Sha256::digest(&bytes))
                )
            };
            out.insert(rel, desc);
        }
    }
    walk(root, root, &mut out);
    out
}

fn umoci_rootfs(layout_tag: &str, dir: &Path) -> BTreeMap<String, String> {
    tool("umoci", &["unpack", "--image", layout_tag, s(dir)]);
    tree(&dir.join("rootfs"))
}

#[test]
fn skopeo_and_confidant_decrypt_each_others_images_to_identical_trees() {
    if !ready(&["skopeo"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = build_image(d);
    let k = keys(d);
    let base_tag = format!("oci:{}:v1", s(&base));
    let reference = umoci_rootfs(&format!("{}:v1", s(&base)), &d.join("ref-bundle"));
    assert!(
        reference.contains_key("bin/busybox") && !reference.contains_key("doomed"),
        "{reference:?}"
    );

    // confidant encrypts for RSA and EC recipients; skopeo decrypts with either key.
    let enc = d.join("enc-confidant");
    ok(
        &confidant(&[
            "image",
            "encrypt",
            "--recipient",
            &format!("jwe:{}", s(&k["rsa"].1)),
            "--recipient",
            &format!("jwe:{}", s(&k["ec"].1)),
            &base_tag,
            &format!("oci:{}:v1", s(&enc)),
        ]),
        "confidant image encrypt",
    );
    for name in ["rsa", "ec"] {
        let plain = d.join(format!("skopeo-plain-{name}"));
        tool(
            "skopeo",
            &[
                "copy",
                "--decryption-key",
                s(&k[name].0),
                &format!("oci:{}:v1", s(&enc)),
                &format!("oci:{}:v1", s(&plain)),
            ],
        );
        let got = umoci_rootfs(&format!("{}:v1", s(&plain)), &d.join(format!("b-{name}")));
        assert_eq!(got, reference, "skopeo-decrypted ({name}) tree differs");
    }

    // skopeo encrypts; confidant decrypts and unpacks.
    let enc2 = d.join("enc-skopeo");
    tool(
        "skopeo",
        &[
            "copy",
            "--encryption-key",
            &format!("jwe:{}", s(&k["ec"].1)),
            &base_tag,
            &format!("oci:{}:v1", s(&enc2)),
        ],
    );
    let rootfs = d.join("confidant-rootfs");
    ok(
        &confidant(&[
            "image",
            "unpack",
            "--key",
            &format!("jwe:{}", s(&k["ec"].0)),
            &format!("oci:{}:v1", s(&enc2)),
            s(&rootfs),
        ]),
        "confidant image unpack",
    );
    assert_eq!(
        tree(&rootfs),
        reference,
        "confidant-unpacked tree differs from umoci's"
    );
    let plain = d.join("confidant-plain");
    ok(
        &confidant(&[
            "image",
            "decrypt",
            "--key",
            &format!("jwe:{}", s(&k["ec"].0)),
            &format!("oci:{}:v1", s(&enc2)),
            &format!("oci:{}:v1", s(&plain)),
        ]),
        "confidant image decrypt",
    );
    assert_eq!(
        umoci_rootfs(&format!("{}:v1", s(&plain)), &d.join("b-plain")),
        reference
    );
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Rewrites the manifest of the only image in `layout` and repoints index.json at it.
fn edit_manifest(layout: &Path, f: impl FnOnce(&mut Value)) {
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path);
    let old = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let mut m = read_json(&layout.join("blobs/sha256").join(&old));
    f(&mut m);
    let bytes = serde_json::to_vec(&m).unwrap();
    let hex = sha256_hex(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    index["manifests"][0]["digest"] = Value::String(format!("sha256:{hex}"));
    index["manifests"][0]["size"] = Value::from(bytes.len());
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Replaces a layer blob's bytes, keeping the descriptor honest about digest and size so that
/// only the cryptographic checks can notice.
fn replace_layer_blob(layout: &Path, layer: usize, f: impl FnOnce(&mut Vec<u8>)) {
    edit_manifest(layout, |m| {
        let old = m["layers"][layer]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let mut bytes = std::fs::read(layout.join("blobs/sha256").join(&old)).unwrap();
        f(&mut bytes);
        let hex = sha256_hex(&bytes);
        std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
        m["layers"][layer]["digest"] = Value::String(format!("sha256:{hex}"));
        m["layers"][layer]["size"] = Value::from(bytes.len());
    });
}

fn copy_dir(from: &Path, to: &Path) {
    tool("cp", &["-a", s(from), s(to)]);
}

#[test]
fn tampered_or_wrongly_keyed_images_are_refused_and_leave_nothing_behind() {
    if !ready(&[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = build_image(d);
    let k = keys(d);
    let enc = d.join("enc");
    ok(
        &confidant(&[
            "image",
            "encrypt",
            "--recipient",
            &format!("jwe:{}", s(&k["ec"].1)),
            &format!("oci:{}:v1", s(&base)),
            &format!("oci:{}:v1", s(&enc)),
        ]),
        "encrypt",
    );
    let key = format!("jwe:{}", s(&k["ec"].0));
    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "flipped ciphertext byte",
            Box::new(|l: &Path| replace_layer_blob(l, 0, |b| b[1000] ^= 1)),
            "integrity check failed",
        ),
        (
            "flipped blob byte, descriptor unchanged",
            Box::new(|l: &Path| {
                let m = read_json(&l.join("index.json"));
                let mh = m["manifests"][0]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
                    .to_string();
                let man = read_json(&l.join("blobs/sha256").join(mh));
                let lh = man["layers"][0]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
                    .to_string();
                let p = l.join("blobs/sha256").join(lh);
                let mut b = std::fs::read(&p).unwrap();
                b[10] ^= 1;
                std::fs::write(&p, b).unwrap();
            }),
            "integrity check failed",
        ),
        (
            "truncated blob",
            Box::new(|l: &Path| replace_layer_blob(l, 0, |b| b.truncate(b.len() / 2))),
            "integrity check failed",
        ),
        (
            "changed HMAC in pubopts",
            Box::new(|l: &Path| {
                edit_manifest(l, |m| {
                    let ann =
                        &mut m["layers"][0]["annotations"]["org.opencontainers.image.enc.pubopts"];
                    use base64::Engine;
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let mut opts: Value =
                        serde_json::from_slice(&b64.decode(ann.as_str().unwrap()).unwrap())
                            .unwrap();
                    let mut h = b64.decode(opts["hmac"].as_str().unwrap()).unwrap();
                    h[0] ^= 1;
                    opts["hmac"] = Value::String(b64.encode(h));
                    *ann = Value::String(b64.encode(serde_json::to_vec(&opts).unwrap()));
                })
            }),
            "integrity check failed",
        ),
        (
            "changed pubopts cipher",
            Box::new(|l: &Path| {
                edit_manifest(l, |m| {
                    use base64::Engine;
                    let b64 = base64::engine::general_purpose::STANDARD;
                    m["layers"][0]["annotations"]["org.opencontainers.image.enc.pubopts"] =
                        Value::String(b64.encode(
                            br#"{"cipher":"AES_128_GCM","hmac":"AAAA","cipheroptions":{}}"#,
                        ));
                })
            }),
            "cipher",
        ),
        (
            "two layers swapped",
            Box::new(|l: &Path| {
                edit_manifest(l, |m| {
                    let layers = m["layers"].as_array_mut().unwrap();
                    layers.swap(0, 1);
                })
            }),
            "diff_id",
        ),
    ];
    for (name, tamper, expect) in cases {
        let layout = d.join(format!("t-{}", name.replace(' ', "-")));
        copy_dir(&enc, &layout);
        tamper(&layout);
        let target = d.join(format!("rootfs-{}", name.replace(' ', "-")));
        let o = confidant(&[
            "image",
            "unpack",
            "--key",
            &key,
            &format!("oci:{}:v1", s(&layout)),
            s(&target),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{name}: expected refusal, got {:?}\n{err}",
            o.status.code()
        );
        assert!(
            err.to_lowercase().contains(expect),
            "{name}: error should mention {expect:?}:\n{err}"
        );
        assert!(
            !target.exists(),
            "{name}: the target exists after a refused unpack"
        );
        let leftovers: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".confidant-unpack-")
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "{name}: staging directories left behind: {leftovers:?}"
        );
        assert!(!err.contains("panicked"));
    }
    // A wrong key: refused before anything is read.
    let target = d.join("rootfs-wrong-key");
    let o = confidant(&[
        "image",
        "unpack",
        "--key",
        &format!("jwe:{}", s(&k["rsa"].0)),
        &format!("oci:{}:v1", s(&enc)),
        s(&target),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("key"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!target.exists());
    // No key at all: the hint says encrypted layers need one; a plain image's failure
    // (tampered, above, with a key) never carried it.
    let o = confidant(&[
        "image",
        "unpack",
        &format!("oci:{}:v1", s(&enc)),
        s(&target),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("encrypted layers need --key"), "{err}");
    assert!(!target.exists());
}

#[test]
fn encrypted_image_round_trips_through_a_registry_by_tag_and_by_digest() {
    if !ready(&["docker-registry", "skopeo"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = build_image(d);
    let k = keys(d);
    let reg = Registry::start();
    let remote = format!("docker://127.0.0.1:{}/demo/app:enc", reg.port);
    let o = confidant(&[
        "image",
        "encrypt",
        "--plain-http",
        "--recipient",
        &format!("jwe:{}", s(&k["rsa"].1)),
        &format!("oci:{}:v1", s(&base)),
        &remote,
        "-o",
        "json",
    ]);
    ok(&o, "encrypt to registry");
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    let reference = umoci_rootfs(&format!("{}:v1", s(&base)), &d.join("ref"));
    let key = format!("jwe:{}", s(&k["rsa"].0));
    for (i, src) in [
        remote.clone(),
        format!("docker://127.0.0.1:{}/demo/app@{digest}", reg.port),
    ]
    .iter()
    .enumerate()
    {
        let rootfs = d.join(format!("rootfs-{i}"));
        ok(
            &confidant(&[
                "image",
                "unpack",
                "--plain-http",
                "--key",
                &key,
                src,
                s(&rootfs),
            ]),
            "unpack from registry",
        );
        assert_eq!(tree(&rootfs), reference, "{src}");
    }
    // Pulled as is, the layers stay encrypted; skopeo can decrypt the pulled copy.
    let pulled = d.join("pulled");
    ok(
        &confidant(&[
            "image",
            "pull",
            "--plain-http",
            &remote,
            &format!("oci:{}:enc", s(&pulled)),
        ]),
        "pull",
    );
    let info = confidant(&[
        "image",
        "inspect",
        &format!("oci:{}:enc", s(&pulled)),
        "-o",
        "json",
    ]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(
        info["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["encrypted"] == true && l["jwe_recipients"] == 1)
    );
    tool(
        "skopeo",
        &[
            "copy",
            "--decryption-key",
            s(&k["rsa"].0),
            &format!("oci:{}:enc", s(&pulled)),
            &format!("oci:{}:plain", s(&d.join("plain"))),
        ],
    );
}

#[test]
fn docker_archive_round_trips_and_refuses_encrypted_layers() {
    if !ready(&["skopeo"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = build_image(d);
    let archive = d.join("image.tar");
    ok(
        &confidant(&[
            "image",
            "pull",
            &format!("oci:{}:v1", s(&base)),
            &format!("docker-archive:{}:demo:v1", s(&archive)),
        ]),
        "to docker-archive",
    );
    // skopeo reads what we wrote; we read it back; both unpack to the reference tree.
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", s(&archive)),
            &format!("oci:{}:v1", s(&d.join("via-skopeo"))),
        ],
    );
    let reference = umoci_rootfs(&format!("{}:v1", s(&base)), &d.join("ref"));
    assert_eq!(
        umoci_rootfs(&format!("{}:v1", s(&d.join("via-skopeo"))), &d.join("b1")),
        reference
    );
    let rootfs = d.join("rootfs");
    ok(
        &confidant(&[
            "image",
            "unpack",
            &format!("docker-archive:{}:demo:v1", s(&archive)),
            s(&rootfs),
        ]),
        "unpack docker-archive",
    );
    assert_eq!(tree(&rootfs), reference);
    // An encrypted image cannot go into a docker-archive.
    let k = keys(d);
    let o = confidant(&[
        "image",
        "encrypt",
        "--recipient",
        &format!("jwe:{}", s(&k["ec"].1)),
        &format!("oci:{}:v1", s(&base)),
        &format!("docker-archive:{}", s(&d.join("enc.tar"))),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("docker-archive cannot hold encrypted layers")
    );
}

#[test]
fn reads_a_docker_archive_written_by_skopeo() {
    if !ready(&["skopeo"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = build_image(d);
    let archive = d.join("skopeo.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:v1", s(&base)),
            &format!("docker-archive:{}:demo/app:v1", s(&archive)),
        ],
    );
    let reference = umoci_rootfs(&format!("{}:v1", s(&base)), &d.join("ref"));
    let rootfs = d.join("rootfs");
    ok(
        &confidant(&[
            "image",
            "unpack",
            &format!("docker-archive:{}:demo/app:v1", s(&archive)),
            s(&rootfs),
        ]),
        "unpack skopeo's archive",
    );
    assert_eq!(tree(&rootfs), reference);
    let o = confidant(&[
        "image",
        "inspect",
        &format!("docker-archive:{}:no/such:tag", s(&archive)),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("demo/app:v1"),
        "the error should list the tags present"
    );
}

#[test]
fn multi_arch_index_picks_the_requested_platform() {
    if !ready(&[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = build_image(d);
    // Wrap the image's manifest in an OCI index that lists it for two platforms.
    let index_path = base.join("index.json");
    let mut index = read_json(&index_path);
    let manifest = index["manifests"][0].clone();
    let mut amd = manifest.clone();
    amd["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    amd.as_object_mut().unwrap().remove("annotations");
    let mut arm = amd.clone();
    arm["platform"] = serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let inner = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [amd, arm]});
    let bytes = serde_json::to_vec(&inner).unwrap();
    let hex = sha256_hex(&bytes);
    std::fs::write(base.join("blobs/sha256").join(&hex), &bytes).unwrap();
    index["manifests"][0] = serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"), "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"}
    });
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let src = format!("oci:{}:multi", s(&base));
    for platform in ["linux/amd64", "linux/arm64/v8"] {
        let o = confidant(&[
            "image",
            "inspect",
            "--platform",
            platform,
            &src,
            "-o",
            "json",
        ]);
        ok(&o, platform);
    }
    let o = confidant(&["image", "inspect", "--platform", "linux/s390x", &src]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no manifest for linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );
}
