//! What a test needs from the machine (root, a program, a device), checked the same way in every
//! crate: a test whose requirements are missing fails with a message naming them, so that a
//! machine without runc cannot report runc's tests green. Only when the person running the tests
//! opts out with `CONFIDANT_TEST_ALLOW_MISSING=1` (CI never sets it) does such a test print
//! `skipped: …` and pass.
//!
//! One file for the whole workspace, included by each crate's tests with
//! `#[path = "../../../tests/requirements.rs"] mod requirements;` (no test-support crate needed).
//!
//! ```ignore
//! if !requirements::require(&[root(), program("runc"), file("/dev/fuse")]) {
//!     return; // only with CONFIDANT_TEST_ALLOW_MISSING=1
//! }
//! ```
#![allow(dead_code)] // Each test file uses a different part.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// The variable that turns a missing requirement from a failure into a skip. CI never sets it.
pub(crate) const ALLOW_MISSING: &str = "CONFIDANT_TEST_ALLOW_MISSING";

/// One thing a test needs, and why this machine lacks it (`None`: it has it).
pub(crate) struct Need {
    what: String,
    missing: Option<String>,
}

/// The tests run as root (runc, mounts, namespaces, file owners and device nodes need it).
pub(crate) fn root() -> Need {
    // The owner of /proc/self is the effective uid (std has no geteuid, and not every crate
    // that includes this file depends on rustix).
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    let missing = (uid != 0).then(|| format!("root (running as uid {uid})"));
    Need {
        what: "root".into(),
        missing,
    }
}

/// The program `name` on the PATH.
pub(crate) fn program(name: &str) -> Need {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(name))));
    Need {
        what: name.into(),
        missing: (!found).then(|| format!("{name} (not on PATH)")),
    }
}

/// The file at `path`: a device such as `/dev/fuse`, or a program the test needs at a fixed path.
pub(crate) fn file(path: &str) -> Need {
    Need {
        what: path.into(),
        missing: (!Path::new(path).exists()).then(|| format!("{path} (does not exist)")),
    }
}

/// Anything else the test needs: `what`, with `missing` saying why this machine lacks it.
pub(crate) fn condition(what: &str, missing: Option<String>) -> Need {
    Need {
        what: what.into(),
        missing,
    }
}

impl Need {
    /// Whether this machine has it.
    pub(crate) fn is_met(&self) -> bool {
        self.missing.is_none()
    }
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the test can run: `true` when every need is met. Otherwise it panics with what is
/// missing, or, when `CONFIDANT_TEST_ALLOW_MISSING=1`, prints `skipped: …` and returns `false`
/// (the test then returns without checking anything).
#[must_use]
pub(crate) fn require(needs: &[Need]) -> bool {
    let missing: Vec<&str> = needs.iter().filter_map(|n| n.missing.as_deref()).collect();
    if missing.is_empty() {
        return true;
    }
    let all: Vec<&str> = needs.iter().map(|n| n.what.as_str()).collect();
    // libtest names each test's thread after the test (not with --test-threads=1: then "main").
    let test = match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    };
    let what = format!(
        "{test} needs {}; missing: {}",
        all.join(", "),
        missing.join(", ")
    );
    if std::env::var_os(ALLOW_MISSING).is_some_and(|v| v == "1") {
        eprintln!("skipped: {what} ({ALLOW_MISSING}=1)");
        return false;
    }
    panic!(
        "{what}. Run the tests as root after `make deps` (it installs every program they use), \
         or set {ALLOW_MISSING}=1 to skip tests whose requirements are missing"
    );
}
