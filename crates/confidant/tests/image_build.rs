//! Confidant's own image (`scripts/build-image.sh`, what `make images` runs) built from this
//! test's `confidant` binary: reproducible, read by skopeo, unpacked by `confidant image unpack`
//! into a rootfs where the binary runs as the image's non-root user under `chroot` (so the
//! libraries it carries are complete), and pushed to a real registry (Debian's
//! `docker-registry`) and pulled back by digest. Needs root (chroot), python3, gzip, skopeo and
//! docker-registry; fails naming what is missing otherwise (tests/requirements.rs).

#[path = "common/registry.rs"]
mod registry;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use registry::Registry;
use requirements::{Need, file, program, require, root};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_confidant");
/// The timestamp the test builds with (SOURCE_DATE_EPOCH): 2024-01-02T03:04:05Z.
const EPOCH: &str = "1704164645";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-image.sh")
}

fn ready(also: Vec<Need>) -> bool {
    let mut needs = vec![
        program("bash"),
        program("python3"),
        program("gzip"),
        program("ldd"),
        file("/etc/ssl/certs/ca-certificates.crt"),
    ];
    needs.extend(also);
    require(&needs)
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Builds the image of this test's binary into `out` with tag `tag` and the epoch `epoch`;
/// returns the manifest digest the script printed.
fn build(out: &Path, tag: &str, epoch: &str) -> String {
    let o = Command::new("bash")
        .arg(script())
        .args([BIN, s(out), tag])
        .env("SOURCE_DATE_EPOCH", epoch)
        .env("CONFIDANT_IMAGE_REVISION", REVISION)
        .output()
        .expect("running scripts/build-image.sh");
    ok(&o, "scripts/build-image.sh");
    let digest = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(
        digest.len() == 71
            && digest.starts_with("sha256:")
            && digest[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "the script prints the manifest digest, got {digest:?}"
    );
    digest
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every file under `dir` with its bytes, by relative path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn skopeo_inspect(reference: &str, config: bool) -> Value {
    let mut c = Command::new("skopeo");
    c.arg("inspect");
    if config {
        c.arg("--config");
    }
    let o = c.arg(reference).output().expect("running skopeo");
    ok(&o, &format!("skopeo inspect {reference}"));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn same_inputs_build_the_same_image_and_skopeo_reads_it() {
    if !ready(vec![program("skopeo")]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let first = build(&a, "v1", EPOCH);
    let second = build(&b, "v1", EPOCH);
    assert_eq!(first, second, "two builds of the same inputs");
    assert_eq!(files(&a), files(&b), "the two layouts differ byte for byte");
    // The digest depends on the inputs: another timestamp is another image.
    let other = build(&c, "v1", "1704164646");
    assert_ne!(
        first, other,
        "a different SOURCE_DATE_EPOCH gave the same digest"
    );

    let info = skopeo_inspect(&format!("oci:{}:v1", s(&a)), false);
    assert_eq!(info["Digest"], first.as_str());
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Created"], "2024-01-02T03:04:05Z");
    let labels = &info["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], REVISION);
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        env!("CARGO_PKG_REPOSITORY")
    );
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
    let config = skopeo_inspect(&format!("oci:{}:v1", s(&a)), true);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/confidant"])
    );
    // The index names the tag; the manifest digest is the one printed.
    let index = read_json(&a.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], first.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
}

#[test]
fn unpacked_image_runs_confidant_as_the_nonroot_user_with_only_its_libraries() {
    if !ready(vec![root(), program("chroot")]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    build(&layout, "v1", EPOCH);
    let rootfs = t.path().join("rootfs");
    ok(
        &Command::new(BIN)
            .args([
                "image",
                "unpack",
                &format!("oci:{}:v1", s(&layout)),
                s(&rootfs),
            ])
            .output()
            .unwrap(),
        "confidant image unpack",
    );
    // Exactly these files: the binary, what ldd lists, the CA bundle and the user database.
    let ldd = Command::new("ldd").arg(BIN).output().unwrap();
    ok(&ldd, "ldd");
    let mut expected: BTreeSet<String> = String::from_utf8(ldd.stdout)
        .unwrap()
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(|w| w.trim_start_matches('/').to_string())
        .collect();
    assert!(
        expected.iter().any(|l| l.contains("libc.so")),
        "the test binary links glibc: {expected:?}"
    );
    for f in [
        "usr/bin/confidant",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "etc/group",
        "etc/nsswitch.conf",
    ] {
        expected.insert(f.to_string());
    }
    let found: BTreeSet<String> = files(&rootfs).into_iter().map(|(p, _)| p).collect();
    assert_eq!(found, expected);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l == "nonroot:x:65532:"), "{group}");

    // The binary runs in the rootfs as 65532 (the loader finds every library it needs there),
    // and that user can create state in the image's CONFIDANT_HOME, /var/lib/confidant.
    let run = |args: &[&str]| {
        Command::new("chroot")
            .args(["--userspec=65532:65532", s(&rootfs), "/usr/bin/confidant"])
            .args(args)
            .env("CONFIDANT_HOME", "/var/lib/confidant")
            .output()
            .unwrap()
    };
    let version = run(&["--version"]);
    ok(&version, "chroot … confidant --version");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("confidant {}", env!("CARGO_PKG_VERSION"))
    );
    ok(
        &run(&["attest", "sim", "init"]),
        "chroot … confidant attest sim init",
    );
    let key = rootfs.join("var/lib/confidant/sim/platform.pk8");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(&key).unwrap().uid(), 65532);
}

#[test]
fn image_pushed_to_a_registry_pulls_back_by_digest() {
    if !ready(vec![program("docker-registry")]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let digest = build(&layout, "v1", EPOCH);
    let reg = Registry::start();
    let o = Command::new(BIN)
        .args([
            "image",
            "push",
            "--plain-http",
            &format!("oci:{}:v1", s(&layout)),
            &format!("docker://127.0.0.1:{}/confidant:v1", reg.port),
        ])
        .output()
        .unwrap();
    ok(&o, "confidant image push");
    let pulled = t.path().join("pulled");
    let o = Command::new(BIN)
        .args([
            "image",
            "pull",
            "--plain-http",
            &format!("docker://127.0.0.1:{}/confidant@{digest}", reg.port),
            &format!("oci:{}:pulled", s(&pulled)),
        ])
        .output()
        .unwrap();
    ok(&o, "confidant image pull by digest");
    let index = read_json(&pulled.join("index.json"));
    assert_eq!(
        index["manifests"][0]["digest"],
        digest.as_str(),
        "the pulled manifest is the pushed one"
    );
    // Every blob came back unchanged.
    let blobs = |d: &Path| -> Vec<(String, Vec<u8>)> {
        files(&d.join("blobs"))
            .into_iter()
            .filter(|(p, _)| !p.contains(".tmp"))
            .collect()
    };
    assert_eq!(blobs(&pulled), blobs(&layout));
}
