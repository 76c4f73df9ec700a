//! `confidant run` with the real coordinator, runc and Redis: refused starts leave nothing
//! behind (no mounts, processes or files), each with a clear reason; after a run no plaintext of
//! the image or of any secret is on disk; the egress proxy refuses a peer with the wrong identity.
//! Needs root, runc, redis-server and umoci (Debian packages); fails naming what is missing otherwise
//! (tests/requirements.rs).

mod coord;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use coord::{Client, confidant, indent, repo, setup};
use requirements::{program, require, root};

/// Whether the machine has what these runs need; fails the test if not (see [`require`]).
fn ready() -> bool {
    require(&[
        root(),
        program("runc"),
        program("redis-server"),
        program("umoci"),
    ])
}

/// A coordinator with the Redis image built, encrypted for it, and a manifest template.
struct Setup {
    dir: tempfile::TempDir,
    home: PathBuf,
    coordinator: coord::Coordinator,
    address: String,
    digest: String,
    ops: (PathBuf, PathBuf),
    ops_pem: String,
    run_dir: PathBuf,
}

fn prepare() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (home, ops_pem, cert, key) = setup(dir.path());
    let (coordinator, address) = coord::start_verified(&home, dir.path());
    let digest = coord::encrypted_example_image(&home, &address, dir.path(), "redis");
    let run_dir = dir.path().join("run");
    Setup {
        home,
        coordinator,
        address,
        digest,
        ops: (cert, key),
        ops_pem,
        run_dir,
        dir,
    }
}

impl Setup {
    fn image(&self) -> String {
        format!("oci:{}:latest", self.dir.path().join("enc").display())
    }

    /// The Redis example's manifest with `port` for the mesh, `measurement` (default: this
    /// binary's) and `allow_simulation`.
    fn manifest(&self, port: u16, measurement: Option<&str>, extra: &str) -> String {
        let own = hex::encode(confidant_attest::attester::sim::SimAttester::measure(
            &std::fs::read(env!("CARGO_BIN_EXE_confidant")).unwrap(),
        ));
        let config_id = hex::encode(confidant_attest::attester::sim::SimAttester::config_id(&[
            &self.digest,
            "redis",
        ]));
        std::fs::read_to_string(repo().join("examples/redis/manifest.yaml"))
            .unwrap()
            .replace("${MEASUREMENT}", measurement.unwrap_or(&own))
            .replace("${CONFIG_ID}", &config_id)
            .replace("${IMAGE_DIGEST}", &self.digest)
            .replace("${OPS_CERT}", indent(&self.ops_pem, 6).trim_end())
            .replace("port: 6380", &format!("port: {port}"))
            .replace("secrets:\n", &format!("{extra}secrets:\n"))
    }

    fn set_manifest(&self, text: &str) {
        let f = self.dir.path().join("manifest.yaml");
        std::fs::write(&f, text).unwrap();
        let ops = Client {
            url: self.coordinator.url.clone(),
            cert: Some(self.ops.clone()),
        };
        let (code, body) = ops.call("POST", "/api/v1/manifest", Some(text.as_bytes()));
        if code == 401 {
            // The first manifest: anonymous.
            let anon = Client {
                url: self.coordinator.url.clone(),
                cert: None,
            };
            let (code, body) = anon.call("POST", "/api/v1/manifest", Some(text.as_bytes()));
            assert_eq!(code, 201, "{body}");
        } else {
            assert_eq!(code, 201, "{body}");
        }
    }

    fn run(&self, workload: &str, extra: &[&str]) -> Command {
        let mut c = confidant(&self.home);
        c.args([
            "run",
            "--coordinator",
            &self.address,
            "--workload",
            workload,
            "--tee",
            "sim",
            "--run-dir",
        ])
        .arg(&self.run_dir)
        .args(extra)
        .arg(self.image());
        c
    }

    /// Nothing of a run is left: no directory under the run dir, no mount under it, no runc
    /// container, no redis process started from it.
    fn assert_nothing_left(&self) {
        coord::assert_run_dir_clean(&self.run_dir);
    }
}

fn refused(out: &Output, reason: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains(reason), "expected {reason:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn refused_starts_leave_nothing_behind() {
    if !ready() {
        return;
    }
    let s = prepare();
    // A manifest pinning another measurement: the evidence is refused.
    s.set_manifest(&s.manifest(16380, Some(&"ab".repeat(48)), ""));
    let out = s.run("redis", &[]).output().unwrap();
    refused(&out, "evidence.measurement");
    s.assert_nothing_left();

    // The right measurement, but a tampered layer: refused before anything runs.
    s.set_manifest(&s.manifest(16380, None, ""));
    let blobs = s.dir.path().join("enc/blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let original = std::fs::read(&layer).unwrap();
    let mut tampered = original.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    std::fs::write(&layer, &tampered).unwrap();
    let out = s.run("redis", &[]).output().unwrap();
    refused(&out, "integrity check failed");
    s.assert_nothing_left();
    std::fs::write(&layer, &original).unwrap();

    // An image larger than the run's memory: refused by the unpack budget, not by a full tmpfs.
    let out = s.run("redis", &["--memory", "1MiB"]).output().unwrap();
    refused(&out, "limit exceeded");
    s.assert_nothing_left();

    // An unknown workload, and a coordinator that is not there.
    let out = s.run("nope", &[]).output().unwrap();
    refused(&out, "no workload 'nope'");
    s.assert_nothing_left();
    let mut c = confidant(&s.home);
    c.args([
        "run",
        "--coordinator",
        "127.0.0.1:1",
        "--workload",
        "redis",
        "--tee",
        "sim",
        "--run-dir",
    ])
    .arg(&s.run_dir)
    .arg(s.image());
    let out = c.output().unwrap();
    refused(&out, "127.0.0.1:1");
    s.assert_nothing_left();

    // No TEE and no --tee sim: never a silent fallback to simulation.
    let mut c = confidant(&s.home);
    c.args([
        "run",
        "--coordinator",
        &s.address,
        "--workload",
        "redis",
        "--run-dir",
    ])
    .arg(&s.run_dir)
    .arg(s.image());
    let out = c.output().unwrap();
    refused(&out, "--tee sim");
    s.assert_nothing_left();
}

#[test]
fn simulation_is_refused_when_the_manifest_does_not_allow_it() {
    if !ready() {
        return;
    }
    let s = prepare();
    let manifest = format!(
        "apiVersion: confidant/v1\npackages:\n  redis:\n    tee: tdx\n    reference_values: {{measurements: [\"{}\"]}}\n    image_digests: [\"{}\"]\nworkloads:\n  redis: {{package: redis}}\n",
        "cd".repeat(48),
        s.digest
    );
    s.set_manifest(&manifest);
    let out = s.run("redis", &[]).output().unwrap();
    refused(&out, "allow_simulation");
    s.assert_nothing_left();
}

/// A `confidant run` in the background, stopped with SIGTERM on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        if !std::thread::panicking() {
            panic!("confidant run did not stop within 30 s of SIGTERM");
        }
    }
}

/// The network namespace of a running workload's app: named like its run's entry in `run_dir`
/// (the container id, `confidant-<workload>-<hex>`).
fn netns_of(run_dir: &Path, workload: &str, child: &mut Child) -> String {
    let start = Instant::now();
    let prefix = format!("confidant-{workload}-");
    loop {
        let name = std::fs::read_dir(run_dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with(&prefix))
        });
        if let Some(name) = name
            && Path::new("/run/netns").join(&name).exists()
        {
            return name;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("confidant run exited early with {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no network namespace for {workload}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `args` inside the network namespace `netns` (`ip netns exec`).
fn in_netns(netns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .output()
        .unwrap()
}

fn wait_port(port: u16, child: &mut Child) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("confidant run exited early with {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn after_a_run_no_plaintext_is_on_disk_and_egress_checks_the_peer() {
    if !ready() {
        return;
    }
    let s = prepare();
    // Two workloads from the same image: `redis` serves on the mesh; `cache` has an egress to
    // the peer `api`, which we point at `redis`'s port: the wrong identity.
    let extra = "  api:\n    package: redis\n    mesh:\n      ingress: [{name: r, port: 16382, target_port: 6379}]\n  cache:\n    package: redis\n    files:\n      /etc/redis/redis.conf: \"bind 127.0.0.1\\nport 16390\\nsave \\\"\\\"\\n\"\n    mesh:\n      egress: [{workload: api, port: 16382, local_port: 16391}]\n";
    let manifest = s
        .manifest(16381, None, "")
        .replace("workloads:\n", &format!("workloads:\n{extra}"))
        .replace(
            "      sim: {config_ids: [",
            &format!(
                "      sim: {{config_ids: [\"{}\", ",
                hex::encode(confidant_attest::attester::sim::SimAttester::config_id(&[
                    &s.digest, "cache"
                ]))
            ),
        );
    s.set_manifest(&manifest);
    let log = |name: &str| std::fs::File::create(s.dir.path().join(name)).unwrap();
    // Each agent is stopped (SIGTERM, then waited for) however the test ends.
    let mut redis = Running(
        s.run("redis", &[])
            .stderr(log("redis.err"))
            .spawn()
            .unwrap(),
    );
    wait_port(16381, &mut redis.0);
    let mut cache = Running(
        s.run("cache", &["--peer", "api=127.0.0.1:16381"])
            .stderr(log("cache.err"))
            .spawn()
            .unwrap(),
    );
    // `cache` runs in its own network namespace (the default): its app port and its egress
    // listener exist there only.
    let netns = netns_of(&s.run_dir, "cache", &mut cache.0);
    let start = Instant::now();
    while !String::from_utf8_lossy(
        &in_netns(
            &netns,
            &["redis-cli", "-h", "127.0.0.1", "-p", "16390", "PING"],
        )
        .stdout,
    )
    .contains("PONG")
    {
        if let Ok(Some(status)) = cache.0.try_wait() {
            panic!("confidant run exited early with {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "cache's redis never answered inside its namespace"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for port in [16390, 16391] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} of the isolated app is reachable from the host"
        );
    }
    // The egress accepts locally, then refuses the peer's identity and closes.
    let out = in_netns(
        &netns,
        &[
            "timeout",
            "20",
            "redis-cli",
            "-h",
            "127.0.0.1",
            "-p",
            "16391",
            "PING",
        ],
    );
    assert_ne!(
        out.status.code(),
        Some(124),
        "redis-cli hung on the refused egress"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PONG"));
    drop(cache);
    drop(redis);
    s.assert_nothing_left();
    assert!(
        !Path::new("/run/netns").join(&netns).exists(),
        "network namespace {netns} left behind"
    );
    // The password and the image's plaintext are nowhere on disk: not in the run dir (gone),
    // not in the state or client dirs, not in the encrypted layout.
    let ops = Client {
        url: s.coordinator.url.clone(),
        cert: Some(s.ops.clone()),
    };
    let password = coord::secret_value(&ops, "redis_password");
    let needles = [hex::encode(&password).into_bytes(), b"requirepass".to_vec()];
    let mut stack = vec![s.home.clone(), s.dir.path().join("enc"), s.run_dir.clone()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            stack.extend(
                std::fs::read_dir(&p)
                    .unwrap()
                    .filter_map(Result::ok)
                    .map(|e| e.path()),
            );
        } else if meta.is_file() {
            files += 1;
            let bytes = std::fs::read(&p).unwrap();
            for n in &needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == &n[..]),
                    "{} holds plaintext",
                    p.display()
                );
            }
        }
    }
    assert!(files > 3);
}
