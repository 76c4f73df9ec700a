//! `confidant run` with protected volumes, the real coordinator, runc and Redis: Redis keeps its
//! append-only file on a `rollback_protected` volume (examples/redis/manifest-volume.yaml), its
//! keys survive a restart, the backing directory holds only ciphertext, and a run on an older
//! copy of the backing directory (restored after a later commit) is refused with exit 125,
//! leaving nothing behind. And a Python app whose code exists only in a volume sealed on the host
//! and registered with the coordinator by its owner. Needs root, /dev/fuse, runc,
//! redis-server/redis-cli and umoci (and Debian's python3.11 and curl for the Python app); fails naming what is missing otherwise
//! (tests/requirements.rs).

mod coord;
mod redis_run;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coord::{Client, confidant, indent, repo, run_ok, setup};
use redis_run::{Running, prepare, ready};
use requirements::{file, program, require};
use serde_json::Value;

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let s = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(s.success());
}

fn files_contain(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).ok()?;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if meta.is_file() {
            let b = std::fs::read(&p).unwrap();
            if b.windows(needle.len()).any(|w| w == needle) {
                return Some(p);
            }
        }
    }
    None
}

#[test]
fn redis_aof_on_a_protected_volume_survives_restarts_and_rollback_is_refused() {
    if !ready() {
        return;
    }
    let s = prepare(16480, |m| m);

    // Run 1: a new volume; keys written through the mesh, stop (the AOF is fsync'd, the volume
    // committed at unmount).
    let r = s.start("run1.err");
    assert_eq!(s.cli(&["SET", "first", "value-from-run-one"]), "OK");
    assert_eq!(s.cli(&["RPUSH", "list", "a", "b", "c"]), "3");
    let code = r.stop();
    let log1 = s.log("run1.err");
    assert_eq!(code, 0, "{log1}");
    assert!(log1.contains("volume data: created a new volume"), "{log1}");
    assert!(log1.contains("volume data: mounted version"), "{log1}");
    assert!(
        log1.contains("volume data: unmounted, committed version"),
        "{log1}"
    );
    s.assert_nothing_left();
    // Only ciphertext on the host: neither the keys nor the AOF's commands.
    for needle in [&b"value-from-run-one"[..], b"RPUSH", b"appendonly"] {
        assert_eq!(
            files_contain(&s.backing(), needle),
            None,
            "plaintext on disk"
        );
    }
    let saved = s.dir.path().join("data.after-run-1");
    copy_dir(&s.backing(), &saved);

    // Run 2: the keys are there; write more (a later commit).
    let r = s.start("run2.err");
    assert_eq!(s.cli(&["GET", "first"]), "value-from-run-one");
    assert_eq!(s.cli(&["LRANGE", "list", "0", "-1"]), "a\nb\nc");
    assert_eq!(s.cli(&["SET", "second", "value-from-run-two"]), "OK");
    assert_eq!(r.stop(), 0, "{}", s.log("run2.err"));
    s.assert_nothing_left();

    // The host puts back the copy from after run 1: refused, nothing started or left.
    copy_dir(&saved, &s.backing());
    let out = s.run("run3.err").output().unwrap();
    let log3 = s.log("run3.err");
    assert_eq!(out.status.code(), Some(125), "{log3}");
    assert!(log3.contains("refusing to mount"), "{log3}");
    assert!(log3.contains("rolled back"), "{log3}");
    assert!(!log3.contains("panicked"), "{log3}");
    assert!(
        !log3.contains("starting ["),
        "the app must not start: {log3}"
    );
    s.assert_nothing_left();

    // An empty backing directory while the coordinator holds a version: refused too.
    std::fs::remove_dir_all(s.backing()).unwrap();
    let out = s.run("run4.err").output().unwrap();
    let log4 = s.log("run4.err");
    assert_eq!(out.status.code(), Some(125), "{log4}");
    assert!(log4.contains("empty or missing"), "{log4}");
    s.assert_nothing_left();
}

/// A `reinitializable` volume whose backing directory is lost starts over empty (said loudly,
/// committed as a reset the coordinator counts) and then mounts again at the coordinator's later
/// versions; an `ephemeral` volume mounts empty and is gone after the run.
#[test]
fn a_lost_reinitializable_volume_starts_over_and_ephemeral_volumes_vanish() {
    if !ready() {
        return;
    }
    // Both tests' containers share the host network: Redis listens on another port here.
    let s = prepare(16481, |m| {
        m.replace("port 6379", "port 16479")
            .replace("target_port: 6379", "target_port: 16479")
            .replace(
            "data: {size: 1GiB, policy: rollback_protected}",
            "data: {size: 1GiB, policy: reinitializable}\n  scratch: {size: 64MiB, policy: ephemeral}",
        )
        .replace(
            "      - {volume: data, path: /data}\n",
            "      - {volume: data, path: /data}\n      - {volume: scratch, path: /scratch}\n",
        )
    });
    let r = s.start("run1.err");
    assert_eq!(s.cli(&["SET", "kept", "until-reset"]), "OK");
    assert_eq!(r.stop(), 0, "{}", s.log("run1.err"));
    let log1 = s.log("run1.err");
    assert!(log1.contains("volume scratch: mounted version"), "{log1}");
    s.assert_nothing_left();
    // The ephemeral volume's backing directory was made in VOLUME_ROOT/WORKLOAD, and is gone.
    let left: Vec<_> = std::fs::read_dir(s.volume_root().join("redis"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "ephemeral backing left: {left:?}");

    // The host loses the volume: a reset, said loudly; the data is gone.
    std::fs::remove_dir_all(s.backing()).unwrap();
    let r = s.start("run2.err");
    assert_eq!(s.cli(&["GET", "kept"]), "");
    assert_eq!(s.cli(&["SET", "after", "reset"]), "OK");
    assert_eq!(r.stop(), 0, "{}", s.log("run2.err"));
    let log2 = s.log("run2.err");
    assert!(
        log2.contains("STARTING OVER WITH AN EMPTY VOLUME"),
        "{log2}"
    );
    s.assert_nothing_left();

    // The reset volume mounts again (its versions continue the coordinator's).
    let r = s.start("run3.err");
    assert_eq!(s.cli(&["GET", "after"]), "reset");
    assert_eq!(r.stop(), 0, "{}", s.log("run3.err"));
    s.assert_nothing_left();
}

/// The Python app's module, sealed into a volume: its source text (`MARKER` included) must never
/// be in plaintext on the host. Padded so that its ciphertext spans more than a few bytes.
const MARKER: &str = "sealed-module-marker-5f1c9e";

fn sealed_module() -> String {
    let mut src = format!(
        r#""""The app's code, shipped only inside a sealed volume ({MARKER})."""
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "{MARKER}: served from a sealed volume"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = (json.dumps({{"answer": ANSWER, "module": __file__}}) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    host, _, port = os.environ["LISTEN"].rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("sealed app: listening", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()
"#
    );
    for i in 0..100 {
        src.push_str(&format!(
            "# padding line {i:03} so that the module spans several kilobytes\n"
        ));
    }
    src
}

/// A Python HTTP app whose code is sealed on the host (`confidant volume seal --coordinator`),
/// registered with the coordinator by its owner (the key in the volume's `key_secret`, the state
/// committed as the user), mounted read-only by the workload and imported from the mount
/// (PYTHONPATH): it answers through the mesh, and the host holds only ciphertext. Before the
/// key is set the start is refused; a flipped byte in the sealed volume makes the import fail,
/// with a clear log line.
#[test]
fn a_python_app_imports_its_code_from_a_volume_sealed_on_the_host() {
    // examples/python/build-image.sh copies Debian's python3.11 into the image.
    let mut needs = redis_run::needs();
    needs.extend([file("/usr/bin/python3.11"), program("curl")]);
    if !require(&needs) {
        return;
    }
    let (port, listen) = (16484u16, 16485u16);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (home, ops_pem, ops_cert, ops_key) = setup(d);
    let (coordinator, address) = coord::start_verified(&home, d);
    let own = coord::own_measurement();
    let image_key =
        run_ok(confidant(&home).args(["certificate", "image-key", "--coordinator", &address]))
            .stdout;
    std::fs::write(d.join("image-key.pem"), image_key).unwrap();
    let root =
        run_ok(confidant(&home).args(["certificate", "root", "--coordinator", &address])).stdout;
    std::fs::write(d.join("root.pem"), root).unwrap();
    // The image: Debian's python3 and its standard library (examples/python); the app's code is
    // not in it, only in the sealed volume.
    let plain = d.join("plain");
    run_ok(Command::new(repo().join("examples/python/build-image.sh")).arg(&plain));
    let enc = format!("oci:{}:latest", d.join("enc").display());
    run_ok(confidant(&home).args([
        "image",
        "encrypt",
        "--coordinator-key",
        &d.join("image-key.pem").to_string_lossy(),
        &format!("oci:{}:latest", plain.display()),
        &enc,
    ]));
    let inspect = run_ok(confidant(&home).args(["-o", "json", "image", "inspect", &enc]));
    let digest = serde_json::from_slice::<Value>(&inspect.stdout).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let config_id = hex::encode(confidant_attest::attester::sim::SimAttester::config_id(&[
        &digest, "pyapp",
    ]));
    let manifest = format!(
        r#"apiVersion: confidant/v1
packages:
  pyapp:
    tee: sim
    reference_values:
      measurements: ["{own}"]
      sim: {{config_ids: ["{config_id}"]}}
    image_digests: ["{digest}"]
workloads:
  pyapp:
    package: pyapp
    env:
      PYTHONPATH: /code
      LISTEN: "127.0.0.1:{listen}"
    args: ["-u", "-c", "import sealed_app; sealed_app.main()"]
    volumes:
      - {{volume: code, path: /code, read_only: true}}
    mesh:
      sans: [127.0.0.1]
      ingress:
        - {{name: http, port: {port}, target_port: {listen}}}
volumes:
  code: {{size: 16MiB, key_secret: code_key}}
secrets:
  code_key: {{type: plain}}
  py_client: {{type: cert-ecdsa, sans: [py-client]}}
users:
  ops:
    certificate: |
{ops}
roles:
  owner:
    users: [ops]
    rules:
      - {{resource: volumes, names: [code], actions: [write]}}
      - {{resource: secrets, names: [code_key], actions: [write]}}
      - {{resource: secrets, names: [py_client], actions: [read]}}
config:
  allow_simulation: true
"#,
        ops = indent(&ops_pem, 6).trim_end(),
    );
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (code, body) = anon.call("POST", "/api/v1/manifest", Some(manifest.as_bytes()));
    assert_eq!(code, 201, "{body}");

    let backing = d.join("volumes/code");
    let run_dir = d.join("run");
    let run = |log: &str| {
        let mut c = confidant(&home);
        c.args([
            "run",
            "--coordinator",
            &address,
            "--workload",
            "pyapp",
            "--tee",
            "sim",
            "--run-dir",
        ])
        .arg(&run_dir)
        .arg("--volume")
        .arg(format!("code={}", backing.display()))
        .arg(&enc)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join(log)).unwrap());
        c
    };
    let log = |name: &str| std::fs::read_to_string(d.join(name)).unwrap_or_default();
    let nothing_left = || {
        let left: Vec<_> = std::fs::read_dir(&run_dir)
            .map(|e| e.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in the run dir: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&*run_dir.to_string_lossy()),
            "a mount is left"
        );
    };

    // Before the owner sets the volume's key, the start is refused, saying why.
    let out = run("run0.err").output().unwrap();
    let log0 = log("run0.err");
    assert_eq!(out.status.code(), Some(125), "{log0}");
    assert!(
        log0.contains("volume_key_unset") || log0.contains("not set yet"),
        "{log0}"
    );
    assert!(log0.contains("code_key"), "{log0}");
    nothing_left();

    // The owner seals the code on the host and registers it with the coordinator.
    let src = d.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("sealed_app.py"), sealed_module()).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        src.join("sealed_app.py"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let sealed = run_ok(
        confidant(&home)
            .args(["-o", "json", "volume", "seal"])
            .arg(&src)
            .arg(&backing)
            .arg("--key-file")
            .arg(d.join("code.key"))
            .args(["--coordinator", &address, "--volume", "code", "--cert"])
            .arg(&ops_cert)
            .arg("--key")
            .arg(&ops_key),
    );
    let sealed: Value = serde_json::from_slice(&sealed.stdout).unwrap();
    assert_eq!(sealed["key_secret"], "code_key", "{sealed}");
    assert_eq!(sealed["files"], 1, "{sealed}");
    let version = sealed["version"].as_u64().unwrap();
    assert!(
        !d.join("volumes/code.state.json").exists(),
        "no local state file"
    );
    let ops = Client {
        url: coordinator.url.clone(),
        cert: Some((ops_cert.clone(), ops_key.clone())),
    };
    // The coordinator holds the sealed state, committed by ops.
    let (code, audit) = ops.call("GET", "/api/v1/audit", None);
    assert_eq!(code, 200, "{audit}");
    let commits: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "volume.commit")
        .collect();
    assert!(
        !commits.is_empty() && commits.iter().all(|e| e["actor"] == "ops"),
        "{audit}"
    );
    assert!(
        commits.last().unwrap()["target"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "code version {version} root {}",
                sealed["root"].as_str().unwrap()
            )),
        "{audit}"
    );
    // Only ciphertext on the host.
    for needle in [MARKER.as_bytes(), b"ThreadingHTTPServer", b"padding line"] {
        assert_eq!(files_contain(&backing, needle), None, "plaintext on disk");
    }

    // The workload mounts it read-only, imports the module from it, answers through the mesh.
    let client = {
        let (c, k) = (d.join("client.crt"), d.join("client.key"));
        let out = run_ok(
            confidant(&home)
                .args([
                    "-o",
                    "json",
                    "secret",
                    "get",
                    "--coordinator",
                    &address,
                    "--cert",
                ])
                .arg(&ops_cert)
                .arg("--key")
                .arg(&ops_key)
                .arg("py_client"),
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        std::fs::write(&c, v["cert"].as_str().unwrap()).unwrap();
        std::fs::write(&k, v["key"].as_str().unwrap()).unwrap();
        (c, k)
    };
    let get = || {
        Command::new("curl")
            .args(["-sS", "-f", "--max-time", "5", "--cacert"])
            .arg(d.join("root.pem"))
            .arg("--cert")
            .arg(&client.0)
            .arg("--key")
            .arg(&client.1)
            .arg(format!("https://127.0.0.1:{port}/"))
            .output()
            .unwrap()
    };
    let mut child = Running(Some(run("run1.err").spawn().unwrap()));
    let started = Instant::now();
    let answer = loop {
        if let Ok(Some(status)) = child.0.as_mut().unwrap().try_wait() {
            panic!("confidant run exited early ({status}): {}", log("run1.err"));
        }
        let o = get();
        if o.status.success() {
            break serde_json::from_slice::<Value>(&o.stdout).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the app never answered: {}",
            log("run1.err")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        answer["answer"],
        format!("{MARKER}: served from a sealed volume"),
        "{answer}"
    );
    assert_eq!(answer["module"], "/code/sealed_app.py", "{answer}");
    assert_eq!(child.stop(), 0, "{}", log("run1.err"));
    let log1 = log("run1.err");
    assert!(
        log1.contains(&format!(
            "volume code: mounted version {version} at /code (rollback_protected, read-only)"
        )),
        "{log1}"
    );
    nothing_left();
    // A read-only mount committed nothing: the coordinator still holds the sealed version.
    let (_, s) = ops.call("GET", "/api/v1/volumes/code/state", None);
    assert_eq!(s["version"], version, "{s}");
    for needle in [MARKER.as_bytes(), b"padding line"] {
        assert_eq!(files_contain(&backing, needle), None, "plaintext on disk");
    }

    // The host flips a byte of the sealed code: the import fails, loudly, and nothing answers.
    let objects: Vec<PathBuf> = std::fs::read_dir(backing.join("d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&objects[0], &bytes).unwrap();
    let out = run("run2.err").output().unwrap();
    let log2 = log("run2.err");
    assert_ne!(out.status.code(), Some(0), "{log2}");
    assert!(
        log2.contains("tampering detected"),
        "a clear log line: {log2}"
    );
    assert!(
        log2.contains("path=/sealed_app.py"),
        "the log names the file: {log2}"
    );
    assert!(
        log2.contains("OSError: [Errno 5] Input/output error"),
        "the import fails: {log2}"
    );
    assert!(!log2.contains("sealed app: listening"), "{log2}");
    assert!(!log2.contains("panicked"), "{log2}");
    nothing_left();

    // The owner seals the code again (a new volume, same key, after the coordinator's version):
    // the workload answers again.
    std::fs::remove_dir_all(&backing).unwrap();
    let resealed = run_ok(
        confidant(&home)
            .args(["-o", "json", "volume", "seal"])
            .arg(&src)
            .arg(&backing)
            .arg("--key-file")
            .arg(d.join("code.key"))
            .args(["--coordinator", &address, "--volume", "code", "--cert"])
            .arg(&ops_cert)
            .arg("--key")
            .arg(&ops_key)
            .arg("--no-set-key-secret"),
    );
    let resealed: Value = serde_json::from_slice(&resealed.stdout).unwrap();
    assert_eq!(resealed["replaced_version"], version, "{resealed}");
    assert_eq!(resealed["version"], version + 2, "{resealed}");
    let child = Running(Some(run("run3.err").spawn().unwrap()));
    let started = Instant::now();
    while !get().status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the app never answered: {}",
            log("run3.err")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(child.stop(), 0, "{}", log("run3.err"));
    nothing_left();
}
