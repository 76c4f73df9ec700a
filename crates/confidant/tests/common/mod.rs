//! Helpers shared by the CLI tests: run the real binary, read its exit code and output.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `confidant` with `args` (and `CONFIDANT_HOME` when given).
pub(crate) fn run_confidant(home: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confidant"));
    if let Some(h) = home {
        c.env("CONFIDANT_HOME", h);
    }
    c.args(args).output().expect("running confidant")
}

/// The exit code, after checking confidant did not panic.
pub(crate) fn code(o: &Output) -> i32 {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "confidant panicked: {stderr}");
    o.status.code().expect("exit code")
}

/// Standard output as text.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard output as JSON.
pub(crate) fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}
