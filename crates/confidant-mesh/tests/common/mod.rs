//! Shared test fixtures: identities from a coordinator-like CA, a TCP echo app, plain TLS
//! clients built directly on rustls, and polling helpers.

#![allow(dead_code)]

pub(crate) mod pki;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use confidant_mesh::Identity;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub(crate) use pki::{Ca, Issued};

/// What the echo app writes after it has seen the client's EOF, before closing: proves that the
/// direction back to the client stays open after the client half-closed.
pub(crate) const TRAILER: &[u8] = b"<eof seen>";

impl Ca {
    /// A fresh root and intermediate (panics on failure: tests only).
    pub(crate) fn new(org: &str) -> Ca {
        Ca::try_new(org).expect("CA")
    }

    /// See [`Ca::try_issue`].
    pub(crate) fn issue(&self, workload: &str) -> Issued {
        self.try_issue(workload).expect("leaf")
    }

    /// See [`Ca::try_issue_with`].
    pub(crate) fn issue_with(&self, cn: &str, uris: &[&str]) -> Issued {
        self.try_issue_with(cn, uris).expect("leaf")
    }
}

/// Logs to the test's captured output (shown for failing tests).
pub(crate) fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
}

/// The mesh identity of `workload` issued by `ca`.
pub(crate) fn identity(ca: &Ca, workload: &str) -> Identity {
    let issued = ca.issue(workload);
    Identity {
        chain_pem: issued.chain_pem,
        key_pem: issued.key_pem.into(),
        root_pem: ca.root_pem(),
    }
}

/// A loopback address on a free port (for listeners that must be created by `Mesh`).
pub(crate) fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// A TCP echo app on 127.0.0.1: echoes every byte; once the client has shut down its side, it
/// writes [`TRAILER`] and closes.
pub(crate) fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                let _ = conn.write_all(TRAILER);
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Sends `payload` on a plain connection to `addr` (from another thread), shuts down writing, and
/// reads everything until EOF.
pub(crate) fn round_trip(addr: SocketAddr, payload: Arc<Vec<u8>>) -> io::Result<Vec<u8>> {
    let conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = conn.try_clone()?;
    let sender = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&payload)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut received = Vec::new();
    let mut reader = conn;
    let read = reader.read_to_end(&mut received);
    sender
        .join()
        .map_err(|_| io::Error::other("sender thread panicked"))??;
    read?;
    Ok(received)
}

/// A rustls client configuration trusting `root_pem` (the server is checked for `localhost`
/// as usual) and presenting `client` if given; `tls12` forces TLS 1.2.
pub(crate) fn tls_client_config(
    root_pem: &str,
    client: Option<&Issued>,
    tls12: bool,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.expect("root PEM")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("chain");
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects to a TLS listener directly, writes `ping`, and reads the echo (4 bytes) back.
pub(crate) fn tls_ping(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(b"ping")?;
    tls.flush()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while got.len() < 4 {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

/// Polls `cond` every 10 ms for up to 10 s.
pub(crate) fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A deterministic, non-repeating-looking payload of `len` bytes.
pub(crate) fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
