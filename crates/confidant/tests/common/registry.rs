//! A real registry (Debian's `docker-registry`) on 127.0.0.1 for the length of a test. Included
//! with `#[path = "common/registry.rs"] mod registry;`; the caller checks first that
//! `docker-registry` is installed (`require(&[program("docker-registry")])`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; stopped and its storage removed when dropped.
pub(crate) struct Registry {
    child: Child,
    /// The port it listens on, on 127.0.0.1 (plain HTTP).
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one with its storage in a fresh temporary directory, and waits until it accepts
    /// connections.
    pub(crate) fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is needed for this test (make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
