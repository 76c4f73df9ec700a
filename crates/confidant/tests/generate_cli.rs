//! `confidant generate` on files: in place, idempotent, `--check` for CI, images pinned through
//! a real registry (Debian's `docker-registry`, an image pushed with skopeo), refusals that
//! write nothing.

mod common;
#[path = "common/registry.rs"]
mod registry;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{code, run_confidant};
use registry::Registry;
use requirements::{program, require};

const IMAGE: &str = "ghcr.io/confidant-dev/confidant@sha256:9999999999999999999999999999999999999999999999999999999999999999";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../confidant-kube/tests/corpus")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A root certificate file, as `confidant certificate root` prints one (made once per dir).
fn root_pem(dir: &Path) -> PathBuf {
    let path = dir.join("root.pem");
    if !path.exists() {
        let ck = rcgen::generate_simple_self_signed(vec!["root".into()]).unwrap();
        std::fs::write(&path, ck.cert.pem()).unwrap();
    }
    path
}

fn generate(dir: &Path, extra: &[&str], paths: &[&Path]) -> std::process::Output {
    let root = root_pem(dir);
    let mut args = vec![
        "--output",
        "json",
        "generate",
        "--platform",
        "aks",
        "--coordinator",
        "confidant.confidant.svc.cluster.local:4433",
        "--coordinator-root",
        s(&root),
        "--image",
        IMAGE,
    ];
    args.extend_from_slice(extra);
    let paths: Vec<&str> = paths.iter().map(|p| s(p)).collect();
    args.extend(paths);
    run_confidant(None, &args)
}

#[test]
fn unpinned_images_offline_are_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let files = t.path().join("k8s");
    std::fs::create_dir(&files).unwrap();
    for f in ["redis.yaml", "plain.yaml"] {
        std::fs::copy(corpus().join(f), files.join(f)).unwrap();
    }
    let before = std::fs::read_to_string(files.join("redis.yaml")).unwrap();
    let o = generate(t.path(), &["--offline"], &[&files]);
    // In --output json the error is the JSON document on stdout.
    let err = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("Deployment/redis: spec.template.spec.containers[0].image: cannot pin docker.io/library/redis:7.2 by digest"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("redis.yaml")).unwrap(),
        before
    );
    // A missing path and a bad --image are usage errors.
    let o = generate(t.path(), &[], &[&t.path().join("nope")]);
    assert_eq!(code(&o), 2);
    let root = root_pem(t.path());
    let o = run_confidant(
        None,
        &[
            "generate",
            "--platform",
            "sim",
            "--coordinator",
            "c:1",
            "--coordinator-root",
            s(&root),
            "--image",
            "confidant:latest",
            s(&files),
        ],
    );
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("pinned by digest"));
}

fn tool(bin: &str, args: &[&str]) -> String {
    let o = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} is needed for this test (make test installs it): {e}"));
    assert!(
        o.status.success(),
        "{bin} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn images_are_pinned_from_the_registry_in_place_idempotently_with_check_for_ci() {
    if !require(&[
        program("docker-registry"),
        program("skopeo"),
        program("umoci"),
    ]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    // An image in the registry: an empty one made by umoci, pushed by skopeo.
    let layout = t.path().join("layout");
    tool("umoci", &["init", "--layout", s(&layout)]);
    tool("umoci", &["new", "--image", &format!("{}:v1", s(&layout))]);
    let remote = format!("127.0.0.1:{}/team/app:v1", registry.port);
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", s(&layout)),
            &format!("docker://{remote}"),
        ],
    );
    let inspected: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{remote}"),
        ],
    ))
    .unwrap();
    let digest = inspected["Digest"].as_str().unwrap().to_string();

    let file = t.path().join("app.yaml");
    std::fs::write(
        &file,
        format!(
            "# the app\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  selector: {{matchLabels: {{app: a}}}}\n  template:\n    metadata:\n      labels: {{app: a}}\n      annotations: {{confidant/workload: app}}\n    spec:\n      containers: [{{name: app, image: \"{remote}\"}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app}}  # untouched\nspec: {{selector: {{app: a}}, ports: [{{port: 80}}]}}\n"
        ),
    )
    .unwrap();
    let original = std::fs::read_to_string(&file).unwrap();

    // --check: would change (exit 1), writes nothing.
    let o = generate(t.path(), &["--plain-http", "--check"], &[&file]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);

    // In place: the image pinned to the registry's digest, the pod made confidential.
    let o = generate(t.path(), &["--plain-http"], &[&file]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let doc = common::json(&o);
    assert_eq!(doc["pods"][0]["object"], "Deployment/app");
    assert_eq!(doc["pods"][0]["images"][0], format!("{remote}@{digest}"));
    let out = std::fs::read_to_string(&file).unwrap();
    assert!(out.starts_with("# the app\n"), "{out}");
    assert!(out.contains(&format!("image: {remote}@{digest}")), "{out}");
    assert!(out.contains("runtimeClassName: kata-cc-isolation"), "{out}");
    assert!(out.contains("name: confidant-init"), "{out}");
    assert!(out.contains("metadata: {name: app}  # untouched"), "{out}");

    // Again, offline: nothing changes; --check agrees (exit 0).
    for extra in [&["--offline"][..], &["--offline", "--check"][..]] {
        let o = generate(t.path(), extra, &[&file]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(common::json(&o)["changed"], serde_json::json!([]));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), out);
    }
}

#[test]
fn every_generated_file_is_valid_kubernetes() {
    if !require(&[program("kubernetes-validate")]) {
        return;
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../confidant-kube/tests/golden");
    let mut files = Vec::new();
    for platform in std::fs::read_dir(&golden).unwrap() {
        for f in std::fs::read_dir(platform.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    let o = Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.30.0"])
        .args(&files)
        .output()
        .expect("running kubernetes-validate");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{text}");
    // Every document was checked against a schema, none skipped as unknown.
    let documents: usize = files
        .iter()
        .map(|f| {
            confidant_kube::stream::split(&std::fs::read_to_string(f).unwrap())
                .iter()
                .filter(|d| !d.is_blank())
                .count()
        })
        .sum();
    let passed = text.lines().filter(|l| l.contains(" passed ")).count();
    assert_eq!(passed, documents, "{text}");
}
