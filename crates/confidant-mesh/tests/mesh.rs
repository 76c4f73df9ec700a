//! End-to-end tests of the mesh proxy: app client → egress → mutual TLS → ingress → app, and
//! every refusal (no client certificate, foreign CA, allow list, wrong peer workload).

mod common;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use confidant_mesh::{EgressConfig, IngressConfig, Mesh, MeshError};

fn ingress(
    ca: &Ca,
    workload: &str,
    target: SocketAddr,
    cfg: impl FnOnce(&mut IngressConfig),
) -> Mesh {
    let mut ingress = IngressConfig::new(workload, any_port(), target);
    cfg(&mut ingress);
    Mesh::start(identity(ca, workload), vec![ingress], vec![]).expect("start ingress mesh")
}

fn egress(ca: &Ca, workload: &str, peer: SocketAddr, peer_workload: &str) -> Mesh {
    let egress = EgressConfig {
        listen: any_port(),
        peer: peer.to_string(),
        peer_workload: peer_workload.to_owned(),
    };
    Mesh::start(identity(ca, workload), vec![], vec![egress]).expect("start egress mesh")
}

/// A connection through an egress whose peer is refused: closed without a byte of the app.
fn assert_closed_without_data(addr: SocketAddr) {
    let mut conn = TcpStream::connect(addr).expect("connect to egress");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = conn.write_all(b"ping");
    let mut buf = [0u8; 16];
    match conn.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the egress to close the connection, got {n} bytes"),
    }
}

#[test]
fn egress_to_ingress_carries_large_payload_and_half_close() {
    init_logs();
    let ca = Ca::new("Confidant");
    let app = echo_server();
    let server = ingress(&ca, "db", app, |_| {});
    let client = egress(&ca, "web", server.ingress_addrs()[0], "db");
    let local = client.egress_addrs()[0];

    // Small exchange: the echo, then the trailer the app writes after our half-close.
    let got = round_trip(local, Arc::new(b"hello".to_vec())).expect("small round trip");
    assert_eq!(got, [b"hello".as_slice(), TRAILER].concat());

    // 16 MiB both ways at once.
    let data = Arc::new(payload(16 << 20));
    let got = round_trip(local, data.clone()).expect("large round trip");
    assert_eq!(got.len(), data.len() + TRAILER.len());
    assert!(got[..data.len()] == data[..], "payload corrupted");
    assert_eq!(&got[data.len()..], TRAILER);

    // An empty request: the half-close alone crosses both proxies.
    let got = round_trip(local, Arc::new(Vec::new())).expect("empty round trip");
    assert_eq!(got, TRAILER);

    wait_for("connections to end", || {
        let s = client.stats();
        s.egress[0].active == 0 && server.stats().ingress[0].active == 0
    });
    let c = &client.stats().egress[0];
    let s = &server.stats().ingress[0];
    assert_eq!((c.accepted, c.refused, c.failed), (3, 0, 0), "{c:?}");
    assert_eq!((s.accepted, s.refused, s.failed), (3, 0, 0), "{s:?}");
    let sent = (5 + (16 << 20)) as u64;
    assert_eq!(c.bytes_in, sent);
    assert_eq!(s.bytes_in, sent);
    assert_eq!(c.bytes_out, sent + 3 * TRAILER.len() as u64);
    // The first handshake is full; the next ones resume its session (TLS 1.3 tickets).
    assert_eq!((c.resumed, s.resumed), (2, 2), "{c:?} {s:?}");
    assert_eq!(s.name, "db");
    assert_eq!(c.name, "db");
    client.shutdown();
    server.shutdown();
}

#[test]
fn many_concurrent_connections() {
    init_logs();
    let ca = Ca::new("Confidant");
    let app = echo_server();
    let server = ingress(&ca, "db", app, |_| {});
    let client = egress(&ca, "web", server.ingress_addrs()[0], "db");
    let local = client.egress_addrs()[0];
    let threads: Vec<_> = (0..32)
        .map(|i| {
            std::thread::spawn(move || {
                let data = Arc::new(payload(1000 + i * 4096));
                let got = round_trip(local, data.clone()).expect("round trip");
                assert_eq!(got, [data.as_slice(), TRAILER].concat());
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert_eq!(client.stats().egress[0].accepted, 32);
    assert_eq!(server.stats().ingress[0].accepted, 32);
}

#[test]
fn tls12_client_with_certificate_is_accepted() {
    init_logs();
    let ca = Ca::new("Confidant");
    let server = ingress(&ca, "db", echo_server(), |_| {});
    let web = ca.issue("web");
    let got = tls_ping(
        server.ingress_addrs()[0],
        tls_client_config(&ca.root_pem(), Some(&web), true),
    )
    .expect("TLS 1.2 exchange");
    assert_eq!(got, b"ping");
    let got = tls_ping(
        server.ingress_addrs()[0],
        tls_client_config(&ca.root_pem(), Some(&web), false),
    )
    .expect("TLS 1.3 exchange");
    assert_eq!(got, b"ping");
    assert_eq!(server.stats().ingress[0].accepted, 2);
}

#[test]
fn client_without_certificate_is_refused() {
    init_logs();
    let ca = Ca::new("Confidant");
    let server = ingress(&ca, "db", echo_server(), |_| {});
    let addr = server.ingress_addrs()[0];
    for tls12 in [false, true] {
        let got = tls_ping(addr, tls_client_config(&ca.root_pem(), None, tls12));
        assert!(
            !matches!(&got, Ok(b) if !b.is_empty()),
            "anonymous client got {got:?}"
        );
    }
    wait_for("two refusals", || server.stats().ingress[0].refused == 2);
    let s = &server.stats().ingress[0];
    assert_eq!(s.accepted, 0);
    let reason = s.last_refusal.as_deref().unwrap_or_default();
    assert!(reason.contains("TLS handshake with 127.0.0.1:"), "{reason}");
    assert!(
        reason.ends_with("expected a client certificate, found none"),
        "{reason}"
    );
}

#[test]
fn anonymous_client_allowed_when_client_cert_not_required() {
    init_logs();
    let ca = Ca::new("Confidant");
    let server = ingress(&ca, "web", echo_server(), |c| c.require_client_cert = false);
    let got = tls_ping(
        server.ingress_addrs()[0],
        tls_client_config(&ca.root_pem(), None, false),
    )
    .expect("anonymous exchange");
    assert_eq!(got, b"ping");
    // A certificate, when presented, must still come from the root.
    let other = Ca::new("Elsewhere").issue("web");
    let got = tls_ping(
        server.ingress_addrs()[0],
        tls_client_config(&ca.root_pem(), Some(&other), false),
    );
    assert!(
        !matches!(&got, Ok(b) if !b.is_empty()),
        "foreign client got {got:?}"
    );
    wait_for("the refusal", || server.stats().ingress[0].refused == 1);
    assert_eq!(server.stats().ingress[0].accepted, 1);
}

#[test]
fn client_certificate_from_another_root_is_refused() {
    init_logs();
    let ca = Ca::new("Confidant");
    let other = Ca::new("Confidant"); // same names, different keys
    let server = ingress(&ca, "db", echo_server(), |_| {});
    let foreign = other.issue("web");
    let got = tls_ping(
        server.ingress_addrs()[0],
        tls_client_config(&ca.root_pem(), Some(&foreign), false),
    );
    assert!(
        !matches!(&got, Ok(b) if !b.is_empty()),
        "foreign client got {got:?}"
    );
    wait_for("the refusal", || server.stats().ingress[0].refused == 1);
    let s = &server.stats().ingress[0];
    assert_eq!(s.accepted, 0);
    let reason = s.last_refusal.as_deref().unwrap_or_default();
    assert!(
        reason.contains("UnknownIssuer") || reason.contains("BadSignature"),
        "{reason}"
    );
}

#[test]
fn allowed_peers_are_enforced() {
    init_logs();
    let ca = Ca::new("Confidant");
    let server = ingress(&ca, "db", echo_server(), |c| {
        c.allowed_peers = Some(vec!["web".into(), "worker".into()]);
    });
    let addr = server.ingress_addrs()[0];

    let web = egress(&ca, "web", addr, "db");
    let got = round_trip(web.egress_addrs()[0], Arc::new(b"hi".to_vec())).expect("allowed peer");
    assert_eq!(got, [b"hi".as_slice(), TRAILER].concat());

    let api = egress(&ca, "api", addr, "db");
    assert_closed_without_data(api.egress_addrs()[0]);
    wait_for("the refusal", || server.stats().ingress[0].refused == 1);
    let s = &server.stats().ingress[0];
    assert_eq!(s.accepted, 1);
    let reason = s.last_refusal.as_deref().unwrap_or_default();
    assert!(
        reason.contains(
            "expected a client workload among [web, worker], found `confidant://workload/api/1`"
        ),
        "{reason}"
    );

    // Directly, without a certificate: refused as well (an allow list requires one).
    let got = tls_ping(addr, tls_client_config(&ca.root_pem(), None, false));
    assert!(
        !matches!(&got, Ok(b) if !b.is_empty()),
        "anonymous client got {got:?}"
    );
    wait_for("the second refusal", || {
        server.stats().ingress[0].refused == 2
    });

    // A certificate from the root without a workload URI: refused, naming what it found.
    let plain = ca.issue_with("api", &["https://example.com/"]);
    let got = tls_ping(addr, tls_client_config(&ca.root_pem(), Some(&plain), false));
    assert!(
        !matches!(&got, Ok(b) if !b.is_empty()),
        "client without identity got {got:?}"
    );
    wait_for("the third refusal", || {
        server.stats().ingress[0].refused == 3
    });
    let reason = server.stats().ingress[0]
        .last_refusal
        .clone()
        .unwrap_or_default();
    assert!(
        reason.contains("found URI SANs [https://example.com/]"),
        "{reason}"
    );
}

#[test]
fn egress_refuses_peer_with_wrong_workload_identity() {
    init_logs();
    let ca = Ca::new("Confidant");
    let server = ingress(&ca, "cache", echo_server(), |_| {});
    let client = egress(&ca, "web", server.ingress_addrs()[0], "db");
    assert_closed_without_data(client.egress_addrs()[0]);
    wait_for("the egress refusal", || {
        client.stats().egress[0].refused == 1
    });
    let c = &client.stats().egress[0];
    assert_eq!(c.accepted, 0);
    let reason = c.last_refusal.as_deref().unwrap_or_default();
    assert!(
        reason.contains("expected the peer workload `db`")
            && reason.contains("found `confidant://workload/cache/1`"),
        "{reason}"
    );
    // The server saw the client abort the handshake.
    wait_for("the ingress refusal", || {
        server.stats().ingress[0].refused == 1
    });
    assert_eq!(server.stats().ingress[0].accepted, 0);
}

#[test]
fn egress_refuses_server_from_another_ca() {
    init_logs();
    let ca = Ca::new("Confidant");
    let rogue = Ca::new("Confidant");
    // The rogue server even claims the expected workload name.
    let server = ingress(&rogue, "db", echo_server(), |c| {
        c.require_client_cert = false
    });
    let client = egress(&ca, "web", server.ingress_addrs()[0], "db");
    assert_closed_without_data(client.egress_addrs()[0]);
    wait_for("the egress refusal", || {
        client.stats().egress[0].refused == 1
    });
    let reason = client.stats().egress[0]
        .last_refusal
        .clone()
        .unwrap_or_default();
    assert!(
        reason.contains("UnknownIssuer") || reason.contains("BadSignature"),
        "{reason}"
    );
    assert_eq!(server.stats().ingress[0].accepted, 0);
}

#[test]
fn unreachable_target_and_peer_count_as_failed() {
    init_logs();
    let ca = Ca::new("Confidant");
    // A port with nothing listening.
    let dead = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let server = ingress(&ca, "db", dead, |_| {});
    let client = egress(&ca, "web", server.ingress_addrs()[0], "db");
    assert_closed_without_data(client.egress_addrs()[0]);
    wait_for("the ingress failure", || {
        server.stats().ingress[0].failed == 1
    });

    let nowhere = egress(&ca, "web", dead, "db");
    assert_closed_without_data(nowhere.egress_addrs()[0]);
    wait_for("the egress failure", || {
        nowhere.stats().egress[0].failed == 1
    });
}

#[test]
fn start_errors_say_what_was_expected() {
    init_logs();
    let ca = Ca::new("Confidant");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = Mesh::start(
        identity(&ca, "db"),
        vec![IngressConfig::new("db", addr, addr)],
        vec![],
    )
    .expect_err("address in use");
    assert!(matches!(err, MeshError::Bind { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("ingress db: expected to listen on {addr}")),
        "{err}"
    );

    // A failing second listener releases the first.
    let free = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = Mesh::start(
        identity(&ca, "db"),
        vec![
            IngressConfig::new("a", free, free),
            IngressConfig::new("b", addr, addr),
        ],
        vec![],
    )
    .expect_err("address in use");
    assert!(matches!(err, MeshError::Bind { .. }), "{err:?}");
    TcpListener::bind(free).expect("the first listener was released");

    let mut bad = identity(&ca, "db");
    bad.key_pem = "not a key".to_owned().into();
    let err = Mesh::start(bad, vec![], vec![]).expect_err("bad key");
    assert_eq!(
        err.to_string(),
        "identity key_pem: expected a PEM PRIVATE KEY block (PKCS#8), found no private key block"
    );

    let mut bad = identity(&ca, "db");
    bad.chain_pem = String::new();
    let err = Mesh::start(bad, vec![], vec![]).expect_err("no chain");
    assert!(
        err.to_string().contains("found no CERTIFICATE block"),
        "{err}"
    );

    let mut bad = identity(&ca, "db");
    bad.key_pem = ca.issue("other").key_pem.into();
    let err = Mesh::start(
        bad,
        vec![IngressConfig::new("db", any_port(), addr)],
        vec![],
    )
    .expect_err("mismatched key");
    assert!(matches!(err, MeshError::Tls { .. }), "{err:?}");

    let err = Mesh::start(
        identity(&ca, "db"),
        vec![],
        vec![EgressConfig {
            listen: any_port(),
            peer: "10.0.0.1".into(),
            peer_workload: "db".into(),
        }],
    )
    .expect_err("no port");
    assert!(
        err.to_string().contains("peer: expected host:port"),
        "{err}"
    );

    let err = Mesh::start(
        identity(&ca, "db"),
        vec![],
        vec![EgressConfig {
            listen: any_port(),
            peer: "10.0.0.1:1".into(),
            peer_workload: "a/b".into(),
        }],
    )
    .expect_err("bad workload");
    assert!(
        err.to_string()
            .contains("peer_workload: expected a workload name"),
        "{err}"
    );
}

#[test]
fn shutdown_closes_listeners_and_connections() {
    init_logs();
    let ca = Ca::new("Confidant");
    let server = ingress(&ca, "db", echo_server(), |_| {});
    let client = egress(&ca, "web", server.ingress_addrs()[0], "db");
    let local = client.egress_addrs()[0];
    let ingress_addr = server.ingress_addrs()[0];

    let mut conn = TcpStream::connect(local).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"ping");

    server.shutdown();
    // The open connection is closed through the egress...
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    // ...and the port is free again.
    TcpListener::bind(ingress_addr).expect("ingress port released");
    client.shutdown();
    TcpListener::bind(local).expect("egress port released");
}

#[test]
fn mesh_can_be_started_and_stopped_inside_a_tokio_runtime() {
    init_logs();
    let ca = Ca::new("Confidant");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = ingress(&ca, "db", echo_server(), |_| {});
        assert_eq!(server.ingress_addrs().len(), 1);
        server.shutdown();
    });
}

/// redis-server behind the mesh, driven by redis-cli through an egress.
#[test]
fn redis_through_the_mesh() {
    init_logs();
    let needs = [
        requirements::program("redis-server"),
        requirements::program("redis-cli"),
    ];
    if !requirements::require(&needs) {
        return;
    }
    struct Redis(Child);
    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _redis = Redis(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    );
    let cli = |port: u16, args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    wait_for("redis-server", || cli(port, &["ping"]) == "PONG");

    let ca = Ca::new("Confidant");
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = ingress(&ca, "redis", target, |c| {
        c.allowed_peers = Some(vec!["web".into()])
    });
    let client = egress(&ca, "web", server.ingress_addrs()[0], "redis");
    let local = client.egress_addrs()[0].port();
    assert_eq!(cli(local, &["SET", "greeting", "hello through mTLS"]), "OK");
    assert_eq!(cli(local, &["GET", "greeting"]), "hello through mTLS");
    assert_eq!(cli(port, &["GET", "greeting"]), "hello through mTLS");
    assert_eq!(server.stats().ingress[0].accepted, 2);
    assert_eq!(client.stats().egress[0].accepted, 2);
}

#[test]
fn connections_between_machines_have_tcp_keepalive() {
    init_logs();
    let ca = Ca::new("Confidant");
    let app = echo_server();
    let server = ingress(&ca, "db", app, |_| {});
    let client = egress(&ca, "web", server.ingress_addrs()[0], "db");
    // A connection held open through egress and ingress.
    let mut conn = TcpStream::connect(client.egress_addrs()[0]).expect("connect to egress");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"ping");

    // Both ends of the TLS hop (the egress's socket to the peer, the ingress's accepted one)
    // probe a silent peer; the local hops (app to egress, ingress to app) do not need to.
    // ss shows one timer per socket: while a segment waits for its ACK it shows the
    // retransmission timer instead, so the (idle) connection is looked at until it settles.
    let port = server.ingress_addrs()[0].port();
    let tls_hop = || {
        let out = Command::new("ss")
            .args(["-tnoH", "state", "established"])
            .arg(format!("( sport = :{port} or dport = :{port} )"))
            .output()
            .expect("run ss (iproute2)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Bounded: the assertions below say what ss showed last if it never settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = tls_hop();
    while Instant::now() < deadline
        && !(text.lines().count() == 2 && text.lines().all(|l| l.contains("timer:(keepalive,")))
    {
        std::thread::sleep(Duration::from_millis(20));
        text = tls_hop();
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "the two ends of the TLS hop: {text}");
    for line in lines {
        assert!(line.contains("timer:(keepalive,"), "no keepalive: {line}");
    }
    let app_port = app.port();
    let out = Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .arg(format!("( dport = :{app_port} )"))
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().count(),
        1,
        "the ingress's connection to the app: {text}"
    );
    assert!(!text.contains("keepalive"), "{text}");
}
