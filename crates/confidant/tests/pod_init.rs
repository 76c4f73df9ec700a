//! `confidant init` (a pod's init container) and `confidant mesh` (its mesh sidecar) against a
//! real coordinator: the complete credentials set, the two ways to trust the coordinator and
//! their refusals, refused activations that write nothing, and the sidecar in front of a real
//! redis-server with a coordinator-issued client certificate. Needs root, openssl, redis-server
//! and redis-cli; fails naming what is missing otherwise (tests/requirements.rs).

mod coord;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use coord::{Client, confidant, own_measurement, run_ok, setup};
use requirements::{program, require, root};
use serde_json::Value;

/// The test workloads: `web` with files, env, args, an ephemeral volume and a mesh ingress of
/// `MESH_PORT` in front of `TARGET_PORT`; `client`, with nothing (its certificate is a client's).
const MANIFEST: &str = r#"apiVersion: confidant/v1
packages:
  p:
    tee: sim
    reference_values:
      measurements: ["MEASUREMENT"]
workloads:
  web:
    package: p
    files:
      /etc/web/app.conf: |
        workload = "{{ confidant.workload }}"
        key = "{{ session.hex }}"
      /etc/web/ca.pem: "{{ confidant.root_ca }}"
      /etc/web/cert.pem: "{{ confidant.cert }}"
    env:
      WORKLOAD: "{{ confidant.workload }}"
      SESSION_KEY: "{{ session.hex }}"
    args: ["--name={{ confidant.workload }}"]
    volumes:
      - {volume: scratch, path: /scratch}
    mesh:
      ingress:
        - {name: redis, port: 6380, target_port: TARGET_PORT}
  client:
    package: p
secrets:
  session: {type: symmetric-key, size: 256}
volumes:
  scratch: {size: 16MiB, policy: ephemeral}
config:
  allow_simulation: true
"#;

/// A coordinator with [`MANIFEST`] set; `target_port` is web's plain port.
struct Pod {
    dir: tempfile::TempDir,
    /// The operator's state (sim platform, the coordinator verified).
    home: PathBuf,
    /// An empty state directory: a pod has nothing saved.
    pod_home: PathBuf,
    /// Kept running until the test ends.
    _coordinator: coord::Coordinator,
    address: String,
    /// The coordinator's root CA (PEM), as an operator puts it into the pod spec.
    root: PathBuf,
    /// Reference values matching the coordinator (its sim measurement).
    refs: PathBuf,
}

fn prepare(target_port: u16) -> Pod {
    prepare_measuring(target_port, &own_measurement())
}

/// [`prepare`] with the package's reference `measurement` (hex).
fn prepare_measuring(target_port: u16, measurement: &str) -> Pod {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let (coordinator, address) = coord::start_verified(&home, dir.path());
    let manifest = MANIFEST
        .replace("MEASUREMENT", measurement)
        .replace("TARGET_PORT", &target_port.to_string());
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (code, body) = anon.call("POST", "/api/v1/manifest", Some(manifest.as_bytes()));
    assert_eq!(code, 201, "{body}");
    let root = dir.path().join("root.pem");
    let out = run_ok(confidant(&home).args(["certificate", "root", "--coordinator", &address]));
    std::fs::write(&root, out.stdout).unwrap();
    let pod_home = dir.path().join("pod-home");
    std::fs::create_dir(&pod_home).unwrap();
    Pod {
        refs: dir.path().join("ref.json"),
        home,
        pod_home,
        _coordinator: coordinator,
        address,
        root,
        dir,
    }
}

impl Pod {
    fn sim_platform(&self) -> PathBuf {
        self.home.join("sim")
    }

    /// `confidant init` for `workload` into `out`, as a pod runs it (nothing saved in its home,
    /// the sim platform mounted from elsewhere), trusting the coordinator with `trust`.
    fn init(&self, workload: &str, out: &Path, trust: &[&str]) -> Output {
        confidant(&self.pod_home)
            .args([
                "init",
                "--coordinator",
                &self.address,
                "--workload",
                workload,
                "--tee",
                "sim",
                "--sim-platform",
            ])
            .arg(self.sim_platform())
            .arg("--out")
            .arg(out)
            .args(trust)
            .output()
            .unwrap()
    }

    fn pinned(&self) -> [String; 2] {
        ["--coordinator-root".into(), self.root.display().to_string()]
    }
}

fn ready() -> bool {
    require(&[root(), program("openssl")])
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// Nothing, or at least no marker, in `out`: a reader never takes it for a complete set.
fn assert_no_credentials(out: &Path) {
    assert!(
        !out.join("activation.json").exists(),
        "{} has a marker",
        out.display()
    );
    if out.exists() {
        let left: Vec<_> = std::fs::read_dir(out).unwrap().collect();
        assert!(left.is_empty(), "written into {}: {left:?}", out.display());
    }
}

#[test]
fn init_writes_the_complete_set_the_manifest_renders() {
    if !ready() {
        return;
    }
    let pod = prepare(6379);
    let out = pod.dir.path().join("creds");
    let pinned = pod.pinned();
    let result = pod.init("web", &out, &[&pinned[0], &pinned[1]]);
    let said = text(&result);
    assert!(result.status.success(), "{said}");
    assert!(said.contains("SIMULATION"), "{said}");
    assert!(said.contains("activated as web/1"), "{said}");

    // The marker, written last, says what the set holds.
    let marker: Value = serde_json::from_str(&read(&out.join("activation.json"))).unwrap();
    assert_eq!(marker["format"], "confidant/pod-credentials/v1");
    assert_eq!(marker["activation"], "web/1");
    assert_eq!(marker["simulation"], true);
    assert_eq!(marker["volumes"], serde_json::json!(["scratch"]));
    assert_eq!(marker["mesh"], true);
    assert!(!out.join(".staging").exists());

    // The certificate chains to the coordinator's root, the one the pod pinned.
    let verify = run_ok(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(out.join("root-ca.pem"))
            .arg("-untrusted")
            .arg(out.join("chain.pem"))
            .arg(out.join("cert.pem")),
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains(": OK"));
    assert_eq!(
        read(&out.join("root-ca.pem")).trim(),
        read(&pod.root).trim()
    );
    // The key is the certificate's (openssl: same public key) and only its owner reads it.
    let pubkey =
        |args: &[&str], file: &Path| run_ok(Command::new("openssl").args(args).arg(file)).stdout;
    assert_eq!(
        pubkey(&["x509", "-noout", "-pubkey", "-in"], &out.join("cert.pem")),
        pubkey(&["pkey", "-pubout", "-in"], &out.join("key.pem"))
    );
    assert_eq!(mode(&out.join("key.pem")), 0o400);
    assert_eq!(mode(&out.join("env.json")), 0o400);
    assert_eq!(mode(&out.join("volumes.json")), 0o400);
    assert_eq!(mode(&out.join("cert.pem")), 0o444);

    // Rendered files, env and args as the manifest's templates say, for this activation.
    let conf = read(&out.join("files/etc/web/app.conf"));
    let key = conf
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no key in {conf:?}"));
    assert_eq!(key.len(), 64, "{conf}");
    assert!(conf.starts_with("workload = \"web\"\n"), "{conf}");
    assert_eq!(
        read(&out.join("files/etc/web/cert.pem")).trim(),
        read(&out.join("cert.pem")).trim()
    );
    assert_eq!(
        read(&out.join("files/etc/web/ca.pem")).trim(),
        read(&pod.root).trim()
    );
    assert_eq!(mode(&out.join("files/etc/web/app.conf")), 0o444);
    let env: Value = serde_json::from_str(&read(&out.join("env.json"))).unwrap();
    assert_eq!(
        env,
        serde_json::json!({"WORKLOAD": "web", "SESSION_KEY": key})
    );
    let args: Value = serde_json::from_str(&read(&out.join("args.json"))).unwrap();
    assert_eq!(args, serde_json::json!(["--name=web"]));
    let volumes: Value = serde_json::from_str(&read(&out.join("volumes.json"))).unwrap();
    assert_eq!(volumes[0]["volume"], "scratch");
    assert_eq!(volumes[0]["path"], "/scratch");
    assert_eq!(volumes[0]["policy"], "ephemeral");
    assert!(volumes[0]["key"].as_str().is_some_and(|k| !k.is_empty()));
    let mesh: Value = serde_json::from_str(&read(&out.join("mesh.json"))).unwrap();
    assert_eq!(mesh["ingress"][0]["port"], 6380);

    // The init container runs again in the same pod: a new activation replaces the set.
    std::fs::copy(out.join("cert.pem"), pod.dir.path().join("first-cert.pem")).unwrap();
    let again = pod.init("web", &out, &[&pinned[0], &pinned[1]]);
    assert!(again.status.success(), "{}", text(&again));
    let marker: Value = serde_json::from_str(&read(&out.join("activation.json"))).unwrap();
    assert_eq!(marker["activation"], "web/2");
    assert_ne!(
        read(&out.join("files/etc/web/cert.pem")),
        read(&pod.dir.path().join("first-cert.pem"))
    );
    // A refused activation leaves the set it found as it was, complete.
    let before = read(&out.join("activation.json"));
    let refused = pod.init("nope", &out, &[&pinned[0], &pinned[1]]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert_eq!(read(&out.join("activation.json")), before);
}

#[test]
fn init_attests_the_coordinator_with_reference_values_then_pins_its_root() {
    if !ready() {
        return;
    }
    let pod = prepare(6379);
    let out = pod.dir.path().join("creds");
    let refs = pod.refs.display().to_string();
    let result = pod.init("web", &out, &["--coordinator-reference-values", &refs]);
    let said = text(&result);
    assert!(result.status.success(), "{said}");
    assert!(
        said.contains("SIMULATION: the coordinator's evidence"),
        "{said}"
    );
    assert_eq!(
        read(&out.join("root-ca.pem")).trim(),
        read(&pod.root).trim()
    );
    assert!(out.join("activation.json").exists());
}

#[test]
fn init_pins_the_root_by_the_hash_generate_writes_into_the_pod_spec() {
    if !ready() {
        return;
    }
    let pod = prepare(6379);
    let der = pem::parse(read(&pod.root)).unwrap().into_contents();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der));
    let out = pod.dir.path().join("creds");
    let result = pod.init("web", &out, &["--coordinator-root-sha256", &hash]);
    assert!(result.status.success(), "{}", text(&result));
    assert_eq!(
        read(&out.join("root-ca.pem")).trim(),
        read(&pod.root).trim()
    );
    assert!(out.join("activation.json").exists());

    // Another hash: not the coordinator this pod was generated for; nothing written.
    let out = pod.dir.path().join("other");
    let result = pod.init(
        "web",
        &out,
        &["--coordinator-root-sha256", &"cd".repeat(32)],
    );
    let said = text(&result);
    assert_eq!(result.status.code(), Some(2), "{said}");
    assert!(said.contains("has another root CA"), "{said}");
    assert_no_credentials(&out);
    let result = pod.init("web", &out, &["--coordinator-root-sha256", "xyz"]);
    assert_eq!(result.status.code(), Some(2), "{}", text(&result));
}

#[test]
fn init_refuses_a_coordinator_it_cannot_trust_and_writes_nothing() {
    if !ready() {
        return;
    }
    let pod = prepare(6379);
    let d = pod.dir.path();

    // A root CA that is not the coordinator's: the TLS handshake is refused.
    let other = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
    let wrong = d.join("wrong-root.pem");
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    let out = d.join("wrong-root");
    let result = pod.init(
        "web",
        &out,
        &["--coordinator-root", &wrong.display().to_string()],
    );
    let said = text(&result);
    assert_eq!(result.status.code(), Some(2), "{said}");
    assert!(said.contains("activating workload web"), "{said}");
    assert!(said.contains("TLS certificate was refused"), "{said}");
    assert!(said.contains("UnknownIssuer"), "{said}");
    assert_no_credentials(&out);

    // Reference values the coordinator does not match: rejected before anything is sent.
    let refs = d.join("other-ref.json");
    std::fs::write(
        &refs,
        format!("{{\"measurements\": [\"{}\"]}}", "ab".repeat(48)),
    )
    .unwrap();
    let out = d.join("wrong-refs");
    let result = pod.init(
        "web",
        &out,
        &[
            "--coordinator-reference-values",
            &refs.display().to_string(),
        ],
    );
    let said = text(&result);
    assert_eq!(result.status.code(), Some(1), "{said}");
    assert!(said.contains("REJECTED"), "{said}");
    assert!(said.contains("measurement"), "{said}");
    assert_no_credentials(&out);

    // The right reference values, but SIMULATION evidence from a platform the pod does not
    // trust (its --sim-platform is another one).
    let stranger = d.join("stranger");
    run_ok(confidant(&stranger).args(["attest", "sim", "init"]));
    let out = d.join("untrusted-sim");
    let result = confidant(&pod.pod_home)
        .args(["init", "--coordinator", &pod.address, "--workload", "web"])
        .args(["--tee", "sim", "--sim-platform"])
        .arg(stranger.join("sim"))
        .arg("--out")
        .arg(&out)
        .arg("--coordinator-reference-values")
        .arg(&pod.refs)
        .output()
        .unwrap();
    let said = text(&result);
    assert_eq!(result.status.code(), Some(1), "{said}");
    assert!(said.contains("REJECTED"), "{said}");
    assert_no_credentials(&out);

    // Neither way to trust it: a usage error.
    let result = confidant(&pod.pod_home)
        .args(["init", "--coordinator", &pod.address, "--workload", "web"])
        .arg("--out")
        .arg(d.join("no-trust"))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(2), "{}", text(&result));
    assert!(
        text(&result).contains("--coordinator-root"),
        "{}",
        text(&result)
    );
}

#[test]
fn a_refused_activation_fails_the_pod_and_writes_nothing() {
    if !ready() {
        return;
    }
    let pod = prepare(6379);
    let d = pod.dir.path();
    let pinned = pod.pinned();

    // A workload the manifest does not have.
    let out = d.join("unknown");
    let result = pod.init("nope", &out, &[&pinned[0], &pinned[1]]);
    let said = text(&result);
    assert_eq!(result.status.code(), Some(1), "{said}");
    assert!(said.contains("nope"), "{said}");
    assert_no_credentials(&out);

    // No TEE on this machine and no --tee sim: refused before the coordinator is asked.
    let out = d.join("no-tee");
    let result = confidant(&pod.pod_home)
        .args(["init", "--coordinator", &pod.address, "--workload", "web"])
        .args(["--tee", "auto", "--out"])
        .arg(&out)
        .args(&pinned)
        .output()
        .unwrap();
    let said = text(&result);
    assert_eq!(result.status.code(), Some(2), "{said}");
    assert!(said.contains("no TEE found"), "{said}");
    assert_no_credentials(&out);

    // Evidence the package's reference values refuse: the manifest names another launch
    // measurement than this binary's.
    let strict = prepare_measuring(6379, &"cd".repeat(48));
    let out = d.join("refused");
    let pinned = strict.pinned();
    let result = strict.init("web", &out, &[&pinned[0], &pinned[1]]);
    let said = text(&result);
    assert_eq!(result.status.code(), Some(1), "{said}");
    assert!(said.contains("measurement"), "{said}");
    assert_no_credentials(&out);
}

/// A loopback port nobody listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_cli(port: u16, tls: &[&Path; 3], with_cert: bool) -> Output {
    let mut c = Command::new("timeout");
    c.args(["20", "redis-cli", "--tls", "--cacert"]).arg(tls[0]);
    if with_cert {
        c.arg("--cert").arg(tls[1]).arg("--key").arg(tls[2]);
    }
    c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
        .output()
        .unwrap()
}

#[test]
fn the_mesh_sidecar_serves_redis_to_coordinator_clients_until_sigterm() {
    if !require(&[
        root(),
        program("redis-server"),
        program("redis-cli"),
        program("timeout"),
        program("kill"),
    ]) {
        return;
    }
    let redis_port = free_port();
    let pod = prepare(redis_port);
    let d = pod.dir.path();
    let _redis = Killed(
        Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(d)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Command::new("redis-cli")
        .args(["-p", &redis_port.to_string(), "PING"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Without credentials the sidecar gives up after --wait, naming the marker.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let gave_up = confidant(&pod.pod_home)
        .args(["mesh", "--wait", "1", "--credentials"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(gave_up.status.code(), Some(2), "{}", text(&gave_up));
    assert!(
        text(&gave_up).contains("activation.json"),
        "{}",
        text(&gave_up)
    );

    // The sidecar starts first and waits for the init container's marker.
    let creds = d.join("creds");
    let published = free_port();
    let mut sidecar = Killed(
        confidant(&pod.pod_home)
            .args(["mesh", "--wait", "60", "--credentials"])
            .arg(&creds)
            .args(["--publish", &format!("{published}:6380")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let pinned = pod.pinned();
    let init = pod.init("web", &creds, &[&pinned[0], &pinned[1]]);
    assert!(init.status.success(), "{}", text(&init));
    let mut lines = BufReader::new(sidecar.0.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("the sidecar ended before its mesh ran")
            .unwrap();
        said.push(line.clone());
        if line.starts_with("mesh for web/1") {
            break;
        }
    }
    assert!(said[0].contains("SIMULATION"), "{said:?}");

    // A client certificate from the coordinator (another workload's activation) gets PONG.
    let client = d.join("client-creds");
    let init = pod.init("client", &client, &[&pinned[0], &pinned[1]]);
    assert!(init.status.success(), "{}", text(&init));
    let tls = [
        &client.join("root-ca.pem"),
        &client.join("chain.pem"),
        &client.join("key.pem"),
    ];
    let tls = [tls[0].as_path(), tls[1].as_path(), tls[2].as_path()];
    let pong = redis_cli(published, &tls, true);
    assert_eq!(
        String::from_utf8_lossy(&pong.stdout).trim(),
        "PONG",
        "{}",
        text(&pong)
    );
    // Without a certificate: refused.
    let refused = redis_cli(published, &tls, false);
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("PONG"),
        "{}",
        text(&refused)
    );

    // SIGTERM stops it, exit 0.
    run_ok(Command::new("kill").args(["-TERM", &sidecar.0.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = sidecar.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    // Its port is closed.
    assert!(std::net::TcpStream::connect(("127.0.0.1", published)).is_err());
}
