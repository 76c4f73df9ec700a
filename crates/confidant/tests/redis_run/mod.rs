//! A Redis workload with a protected volume under `confidant run`, for the tests of the agent:
//! a coordinator with examples/redis/manifest-volume.yaml, the image encrypted for it, runs in
//! the background and redis-cli through the mesh.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::coord::{self, Client, confidant, indent, repo, run_ok, setup};
use crate::requirements::{Need, file, program, require, root};
use serde_json::Value;

/// What a Redis run with a protected volume needs from the machine.
pub(crate) fn needs() -> Vec<Need> {
    vec![
        root(),
        file("/dev/fuse"),
        program("runc"),
        program("redis-server"),
        program("redis-cli"),
        program("umoci"),
    ]
}

/// Whether the machine has [`needs`]; fails the test if not (see [`require`]).
pub(crate) fn ready() -> bool {
    require(&needs())
}

pub(crate) struct Setup {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    _coordinator: coord::Coordinator,
    pub address: String,
    pub ops: (PathBuf, PathBuf),
    pub run_dir: PathBuf,
    pub port: u16,
}

/// A coordinator, the Redis image encrypted for it, and examples/redis/manifest-volume.yaml
/// (changed by `edit`) with the mesh on `port`.
pub(crate) fn prepare(port: u16, edit: impl Fn(String) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (home, ops_pem, cert, key) = setup(dir.path());
    let (coordinator, address) = coord::start_verified(&home, dir.path());
    let own = coord::own_measurement();
    let root =
        run_ok(confidant(&home).args(["certificate", "root", "--coordinator", &address])).stdout;
    std::fs::write(dir.path().join("root.pem"), root).unwrap();
    let digest = coord::encrypted_example_image(&home, &address, dir.path(), "redis");
    let config_id = hex::encode(confidant_attest::attester::sim::SimAttester::config_id(&[
        &digest, "redis",
    ]));
    let manifest = std::fs::read_to_string(repo().join("examples/redis/manifest-volume.yaml"))
        .unwrap()
        .replace("${MEASUREMENT}", &own)
        .replace("${CONFIG_ID}", &config_id)
        .replace("${IMAGE_DIGEST}", &digest)
        .replace("${OPS_CERT}", indent(&ops_pem, 6).trim_end())
        .replace("port: 6380", &format!("port: {port}"));
    let manifest = edit(manifest);
    let anon = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    let (code, body) = anon.call("POST", "/api/v1/manifest", Some(manifest.as_bytes()));
    assert_eq!(code, 201, "{body}");
    let run_dir = dir.path().join("run");
    Setup {
        home,
        _coordinator: coordinator,
        address,
        ops: (cert, key),
        run_dir,
        dir,
        port,
    }
}

/// A `confidant run` in the background, stopped with SIGTERM on drop (then killed).
pub(crate) struct Running(pub Option<Child>);

impl Running {
    /// SIGTERM, and the exit code.
    pub(crate) fn stop(mut self) -> i32 {
        let mut c = self.0.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Running {
    /// The agent's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL to the agent, as the OOM killer sends it: it cannot clean up. Reaped.
    pub(crate) fn kill_agent(mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut c) = self.0.take() else { return };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Setup {
    pub(crate) fn image(&self) -> String {
        format!("oci:{}:latest", self.dir.path().join("enc").display())
    }

    pub(crate) fn backing(&self) -> PathBuf {
        self.dir.path().join("volumes/data")
    }

    /// `--volume-root`: where the volumes not given by `--volume` (the ephemeral ones) go.
    pub(crate) fn volume_root(&self) -> PathBuf {
        self.dir.path().join("volume-root")
    }

    pub(crate) fn run(&self, log: &str) -> Command {
        let mut c = confidant(&self.home);
        c.args([
            "run",
            "--coordinator",
            &self.address,
            "--workload",
            "redis",
            "--tee",
            "sim",
            "--run-dir",
        ])
        .arg(&self.run_dir)
        .arg("--volume")
        .arg(format!("data={}", self.backing().display()))
        .arg("--volume-root")
        .arg(self.volume_root())
        .arg(self.image())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(self.dir.path().join(log)).unwrap());
        c
    }

    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    pub(crate) fn start(&self, log: &str) -> Running {
        let mut child = self.run(log).spawn().unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("confidant run exited early ({status}): {}", self.log(log));
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "port never opened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = Running(Some(child));
        let start = Instant::now();
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "redis never answered: {}",
                self.log(log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        r
    }

    pub(crate) fn secret(&self, name: &str) -> Value {
        let out = run_ok(
            confidant(&self.home)
                .args([
                    "-o",
                    "json",
                    "secret",
                    "get",
                    "--coordinator",
                    &self.address,
                    "--cert",
                ])
                .arg(&self.ops.0)
                .arg("--key")
                .arg(&self.ops.1)
                .arg(name),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// redis-cli through the mesh with a client certificate and the password.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let d = self.dir.path();
        if !d.join("client.crt").exists() {
            let c = self.secret("redis_client");
            std::fs::write(d.join("client.crt"), c["cert"].as_str().unwrap()).unwrap();
            std::fs::write(d.join("client.key"), c["key"].as_str().unwrap()).unwrap();
            let p = self.secret("redis_password");
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p["value"].as_str().unwrap())
                .unwrap();
            std::fs::write(d.join("password"), hex::encode(raw)).unwrap();
        }
        let password = std::fs::read_to_string(d.join("password")).unwrap();
        let out = Command::new("timeout")
            .args(["20", "redis-cli", "--tls", "--cacert"])
            .arg(d.join("root.pem"))
            .arg("--cert")
            .arg(d.join("client.crt"))
            .arg("--key")
            .arg(d.join("client.key"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
            ])
            .args(["-a", &password])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub(crate) fn assert_nothing_left(&self) {
        coord::assert_run_dir_clean(&self.run_dir);
    }
}
