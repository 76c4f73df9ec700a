//! `confidant manifest schema` and `confidant manifest validate`, run as a user runs them.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{code, json, stdout};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/manifest.yaml")
}

fn confidant(args: &[&str]) -> Output {
    common::run_confidant(None, args)
}

const THREE_PROBLEMS: &str = "apiVersion: confidant/v1
packages:
  dev: {tee: sim}
workloads:
  web: {package: ghost, files: {/etc/x: '{{ db.cert }}'}}
";

fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn schema_prints_json_schema_with_top_level_fields() {
    let o = confidant(&["manifest", "schema"]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(v["title"], "Manifest");
    for f in [
        "apiVersion",
        "packages",
        "workloads",
        "secrets",
        "users",
        "roles",
        "recovery",
        "volumes",
        "config",
    ] {
        assert!(v["properties"].get(f).is_some(), "schema lacks {f}");
    }
}

#[test]
fn validate_accepts_the_example_and_prints_its_hash() {
    let o = confidant(&["manifest", "validate", example().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.starts_with("valid: "), "{out}");
    assert!(out.contains("canonical hash: sha256:"), "{out}");
    assert!(
        out.contains("SIMULATION"),
        "sim packages must be flagged: {out}"
    );

    let o = confidant(&[
        "manifest",
        "validate",
        "--output",
        "json",
        example().to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(v["valid"], true);
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["simulation"], true);
    assert_eq!(
        v["canonical_hash"].as_str().unwrap().len(),
        "sha256:".len() + 64
    );
}

#[test]
fn validate_prints_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_temp(dir.path(), "bad.yaml", THREE_PROBLEMS);
    let o = confidant(&["manifest", "validate", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stdout(&o),
        "packages.dev.tee: sim packages require config.allow_simulation: true (simulation gives no hardware protection)\n\
         workloads.web.package: unknown package 'ghost'\n\
         workloads.web.files./etc/x: unknown secret 'db'\n"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("(3 errors)"));
}

#[test]
fn validate_json_output_lists_errors_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_temp(dir.path(), "bad.yaml", THREE_PROBLEMS);
    let o = confidant(&[
        "manifest",
        "validate",
        "--output",
        "json",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    let v = json(&o);
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3);
    assert_eq!(errors[2]["path"], "workloads.web.files./etc/x");
    assert_eq!(errors[2]["message"], "unknown secret 'db'");
}

#[test]
fn validate_reports_unknown_field_as_invalid_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_temp(
        dir.path(),
        "bad.json",
        r#"{"apiVersion": "confidant/v1", "config": {"allow_simulation": true, "yolo": 1}}"#,
    );
    let o = confidant(&["-o", "json", "manifest", "validate", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["path"], "config.yolo");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown field `yolo`")
    );
}

#[test]
fn validate_reads_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_confidant"))
        .args(["manifest", "validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: confidant/v1\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn validate_missing_file_is_an_error_exit_2() {
    let o = confidant(&["manifest", "validate", "/nonexistent/manifest.yaml"]);
    assert_eq!(code(&o), 2);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("reading manifest /nonexistent/manifest.yaml")
    );
}
