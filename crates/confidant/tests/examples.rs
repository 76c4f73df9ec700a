//! The four examples end to end, each answering a real request through the mesh: Redis (SET and
//! GET), nginx (a page and a manifest-rendered one), memcached (set and get), and a Python app
//! whose code exists only in the encrypted image. Each `examples/<app>/try.sh` starts its own
//! coordinator, builds and encrypts the image, sets the manifest, runs `confidant run` (this
//! binary), talks to the app with a client certificate from the coordinator, stops it and checks
//! nothing is left mounted. Needs root and the Debian packages `make deps` installs; fails
//! naming what is missing otherwise (tests/requirements.rs).

#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::path::Path;
use std::process::Command;

use requirements::{file, program, require, root};

/// Whether the machine has what the four examples' try.sh scripts use; fails the test if not.
fn ready() -> bool {
    let mut needs = vec![root()];
    needs.extend(
        [
            "runc",
            "umoci",
            "redis-server",
            "redis-cli",
            "nginx",
            "memcached",
            "jq",
            "envsubst",
            "curl",
            "openssl",
        ]
        .map(program),
    );
    // examples/python/build-image.sh copies Debian's python3.11 into the image.
    needs.push(file("/usr/bin/python3.11"));
    require(&needs)
}

fn try_example(app: &str) {
    if !ready() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/{app}/try.sh"));
    let out = Command::new("bash")
        .arg(&script)
        .env("CONFIDANT_BIN", env!("CARGO_BIN_EXE_confidant"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "examples/{app}/try.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("confidant-{app}")),
        "a mount of the {app} run is left"
    );
}

// The examples listen on fixed mesh ports (6380, 8443, 11212, 8001): one test, run in turn.
#[test]
fn the_four_examples_answer_through_the_mesh() {
    for app in ["redis", "nginx", "memcached", "python"] {
        try_example(app);
    }
}
