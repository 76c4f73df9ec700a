//! The mesh in front of an app in its own network namespace (`MeshOptions::app_netns`): the
//! app's port and the egress listener exist only inside that namespace, the TLS sides in the
//! proxy's. Needs root and iproute2 (`ip netns`), as `confidant run` does; fails naming what is
//! missing otherwise (tests/requirements.rs).

mod common;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::fs::File;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use common::*;
use confidant_mesh::{EgressConfig, IngressConfig, Mesh, MeshError, MeshOptions};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// A network namespace for one test, with its loopback up; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    /// Fails the test without root (namespaces need CAP_SYS_ADMIN) or `ip`; `None` only when
    /// skipping is allowed (see [`requirements::require`]).
    fn new(tag: &str) -> Option<TestNetns> {
        if !requirements::require(&[requirements::root(), requirements::program("ip")]) {
            return None;
        }
        let name = format!("confidant-mesh-test-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        let ns = TestNetns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        Some(ns)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }

    /// Runs `f` on a thread inside the namespace (threads it spawns stay there too).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = File::open(self.path()).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(move || {
                move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                    .expect("setns");
                f()
            })
            .join()
            .expect("thread in the namespace")
        })
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

#[test]
fn an_app_in_its_own_namespace_is_reached_only_through_the_mesh() {
    init_logs();
    let Some(ns) = TestNetns::new("only") else {
        return;
    };
    // The app listens inside the namespace: the host's loopback has nothing on its port.
    let app = ns.run(echo_server);
    assert!(
        TcpStream::connect(app).is_err(),
        "the app's port {app} must not be reachable from the proxy's namespace"
    );

    let ca = Ca::new("Confidant");
    let options = MeshOptions::app_netns(ns.path());
    let server = Mesh::start_with(
        identity(&ca, "db"),
        vec![IngressConfig::new("db", any_port(), app)],
        vec![],
        &options,
    )
    .expect("ingress in front of the namespaced app");
    let ingress = server.ingress_addrs()[0];

    // A TLS client in the proxy's namespace reaches the app through the ingress.
    let web = ca.issue("web");
    let got = tls_ping(
        ingress,
        tls_client_config(&ca.root_pem(), Some(&web), false),
    )
    .expect("TLS through the ingress");
    assert_eq!(got, b"ping");

    // An egress for an app in the namespace listens there, and carries its connections over
    // mutual TLS from the proxy's namespace to the ingress.
    let client = Mesh::start_with(
        identity(&ca, "web"),
        vec![],
        vec![EgressConfig {
            listen: any_port(),
            peer: ingress.to_string(),
            peer_workload: "db".into(),
        }],
        &options,
    )
    .expect("egress for the namespaced app");
    let local = client.egress_addrs()[0];
    assert!(
        TcpStream::connect(local).is_err(),
        "the egress listener {local} must exist only in the app's namespace"
    );
    let got = ns
        .run(|| round_trip(local, Arc::new(b"hello".to_vec())))
        .expect("round trip from inside the namespace");
    assert_eq!(got, [b"hello".as_slice(), TRAILER].concat());

    let stats = server.stats();
    assert_eq!(stats.ingress[0].accepted, 2, "{stats:?}");
    assert_eq!(stats.ingress[0].failed, 0, "{stats:?}");
}

#[test]
fn a_missing_namespace_is_a_clear_start_error() {
    let ca = Ca::new("Confidant");
    let missing = PathBuf::from("/run/netns/confidant-no-such-namespace");
    let e = Mesh::start_with(
        identity(&ca, "db"),
        vec![IngressConfig::new("db", any_port(), any_port())],
        vec![],
        &MeshOptions::app_netns(&missing),
    )
    .expect_err("no such namespace");
    assert!(matches!(e, MeshError::AppNetwork { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("expected to join the app's network namespace")
            && text.contains("confidant-no-such-namespace"),
        "{text}"
    );
}
