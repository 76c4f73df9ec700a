//! The four examples end to end, each answering a real request through the mesh: Redis (SET and
//! GET), nginx (a page and a manifest-rendered one), memcached (set and get), and a Python app
//! whose code exists only in the encrypted image. Each `examples/<app>/try.sh` starts its own
//! coordinator, builds and encrypts the image, sets the manifest, runs `confidant run` (this
//! binary), talks to the app with a client certificate from the coordinator, stops it and checks
//! nothing is left mounted. Needs root and the Debian packages `make deps` installs.

use std::path::Path;
use std::process::Command;

fn ready() -> bool {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let have = |b: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let tools = [
        "runc",
        "umoci",
        "redis-server",
        "nginx",
        "memcached",
        "jq",
        "envsubst",
        "curl",
        "openssl",
    ];
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if !root || !missing.is_empty() {
        eprintln!("skipped: needs root and {missing:?}");
        return false;
    }
    true
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
