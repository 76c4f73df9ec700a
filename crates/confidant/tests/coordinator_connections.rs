//! Strangers holding connections open: silent TCP connections, bodies that never finish,
//! kept-alive connections left idle, more connections than one client may hold. Each is closed
//! at its timeout or cap, the coordinator's memory stays under the bound
//! `docs/formats/coordinator-api.md` documents, and a normal client is served all along.
//!
//! The attackers connect from other loopback addresses (127.0.0.2–4) than the normal client
//! (127.0.0.1), as clients on other machines would.

mod coord;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coord::{Client, setup};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

/// A manifest with one sim workload, `web`, that no real evidence matches.
const MANIFEST: &str = coord::ONE_WORKLOAD_MANIFEST;

/// The limits the coordinator runs with here (short timeouts, so the test is quick).
const MAX_CONNECTIONS: usize = 400;
const PER_CLIENT: usize = 150;
const HEADER_TIMEOUT: u64 = 5;
const BODY_TIMEOUT: u64 = 4;
const BODY_BUDGET_MIB: usize = 8;
/// The documented memory bound per open connection (coordinator-api.md, "Limits and timeouts").
const PER_CONNECTION: u64 = 256 << 10;
/// The documented allowance for the runtime's own growth (worker and blocking threads,
/// allocator arenas) under load.
const RUNTIME_SLACK: u64 = 16 << 20;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Accepts any server certificate: these clients are attackers, not verifiers.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector(alpn: &[&[u8]]) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tcp_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(to).await
}

/// Waits until the peer closes (EOF or reset) and returns how long that took, or `None` if it
/// is still open after `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads an HTTP/1.1 answer's status line.
async fn status_of<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<(u16, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    // Read the (small, JSON) body that follows, if it is already there.
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

#[test]
fn slow_idle_and_excess_connections_are_closed_and_cost_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let max = MAX_CONNECTIONS.to_string();
    let per_client = PER_CLIENT.to_string();
    let header = HEADER_TIMEOUT.to_string();
    let body = BODY_TIMEOUT.to_string();
    let budget = BODY_BUDGET_MIB.to_string();
    let (child, line) = coord::spawn(
        &home,
        &[
            "coordinator",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--no-metrics",
            "--max-connections",
            &max,
            "--max-connections-per-client",
            &per_client,
            "--header-timeout",
            &header,
            "--body-timeout",
            &body,
            "--write-timeout",
            &body,
            "--body-budget",
            &budget,
        ],
    );
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let pid = child.id();
    let coordinator = coord::Coordinator {
        child,
        url: url.clone(),
    };
    let addr: SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let normal = Client {
        url: url.clone(),
        cert: None,
    };
    let (code, answer) = normal.call("POST", "/api/v1/manifest", Some(MANIFEST.as_bytes()));
    assert_eq!(code, 201, "{answer}");
    for _ in 0..5 {
        assert_eq!(normal.call("GET", "/api/v1/status", None).0, 200);
    }
    let baseline = rss_bytes(pid);
    assert!(baseline > 0, "no VmRSS for pid {pid}");

    // Sample the coordinator's memory all along.
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::SeqCst) {
                peak.fetch_max(rss_bytes(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // The normal client, served all along (checked after the attack).
    let served = std::thread::spawn({
        let url = url.clone();
        let sampling = sampling.clone();
        move || {
            let normal = Client { url, cert: None };
            let mut codes = Vec::new();
            while sampling.load(Ordering::SeqCst) {
                codes.push(normal.call("GET", "/api/v1/status", None).0);
                std::thread::sleep(Duration::from_millis(200));
            }
            codes
        }
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let header_timeout = Duration::from_secs(HEADER_TIMEOUT);
        let body_timeout = Duration::from_secs(BODY_TIMEOUT);
        let margin = Duration::from_secs(5);

        // A: silent TCP connections (no TLS handshake) from 127.0.0.2, as many as one client
        // may hold; B: more from the same address, refused at once.
        let a = Ipv4Addr::new(127, 0, 0, 2);
        let mut silent = Vec::new();
        for _ in 0..PER_CLIENT {
            silent.push(tcp_from(a, addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut excess = Vec::new();
        for _ in 0..20 {
            excess.push(tcp_from(a, addr).await.unwrap());
        }
        let excess_closed = futures_join(excess.into_iter().map(|mut s| async move {
            closed_within(&mut s, header_timeout - Duration::from_secs(2)).await
        }))
        .await;
        assert!(
            excess_closed.iter().all(Option::is_some),
            "connections beyond the per-client cap were not closed before the handshake timeout: {excess_closed:?}"
        );

        // C: TLS connections from 127.0.0.3 that declare a 4 MB body. The 8 MiB body budget
        // holds two such bodies at a time; the others are refused at once (503). A connection
        // not refused within 300 ms sends 3.5 MiB of its body and stalls: without the budget,
        // the coordinator would hold 100 × 3.5 MiB.
        let c = Ipv4Addr::new(127, 0, 0, 3);
        let tls = connector(&[b"http/1.1"]);
        let mut answers = Vec::new();
        let mut stalled = Vec::new();
        for _ in 0..100 {
            let tcp = tcp_from(c, addr).await.unwrap();
            let mut s = tls.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
            s.write_all(
                b"POST /api/v1/activate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n",
            )
            .await
            .unwrap();
            match status_of(&mut s, Duration::from_millis(300)).await {
                Some(answer) => answers.push((answer, Duration::ZERO)),
                None => {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        s.write_all(&vec![b' '; 3584 << 10]),
                    )
                    .await;
                    stalled.push(s);
                }
            }
        }

        // D: TLS connections from 127.0.0.4 that make one request and then idle, kept alive.
        let d = Ipv4Addr::new(127, 0, 0, 4);
        let mut idle = Vec::new();
        for _ in 0..100 {
            let tcp = tcp_from(d, addr).await.unwrap();
            let mut s = tls.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
            s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let (code, text) = status_of(&mut s, Duration::from_secs(10)).await.expect("an answer");
            assert_eq!(code, 200, "{text}");
            idle.push((Instant::now(), s));
        }

        // The stalled bodies: refused with 503 `overloaded` at once, or 408 `request_timeout`
        // at the body timeout.
        answers.extend(
            futures_join(stalled.into_iter().map(|mut s| async move {
                let start = Instant::now();
                let answer = status_of(&mut s, body_timeout + margin).await;
                (answer.expect("a stalled body got no answer"), start.elapsed())
            }))
            .await,
        );
        let mut overloaded = 0;
        let mut timed_out = 0;
        for ((code, text), _) in &answers {
            let (code, text) = (*code, text);
            match code {
                503 => {
                    assert!(text.contains("\"overloaded\""), "{text}");
                    assert!(text.to_ascii_lowercase().contains("retry-after: 1"), "{text}");
                    overloaded += 1;
                }
                408 => {
                    assert!(text.contains("\"request_timeout\""), "{text}");
                    timed_out += 1;
                }
                other => panic!("a stalled body was answered {other}: {text}"),
            }
        }
        // Two bodies fit the budget at a time; while they are held, the others are refused.
        assert!(
            timed_out >= 1 && overloaded >= 50,
            "expected most stalled bodies refused by the {BODY_BUDGET_MIB} MiB budget: {timed_out} timeouts, {overloaded} refusals"
        );

        // The idle kept-alive connections: closed at the header (idle) timeout.
        let idle_closed = futures_join(idle.into_iter().map(|(answered, mut s)| async move {
            closed_within(&mut s, header_timeout + margin)
                .await
                .map(|_| answered.elapsed())
        }))
        .await;
        for t in &idle_closed {
            let t = t.expect("an idle kept-alive connection stayed open past its timeout");
            assert!(
                t + Duration::from_millis(500) >= header_timeout,
                "an idle connection was closed after {t:?}, before the {header_timeout:?} timeout"
            );
        }

        // The silent connections: closed at the handshake timeout.
        let silent_closed = futures_join(silent.into_iter().map(|mut s| async move {
            closed_within(&mut s, header_timeout + margin).await
        }))
        .await;
        assert!(
            silent_closed.iter().all(Option::is_some),
            "a silent connection stayed open past the handshake timeout"
        );
    });

    sampling.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    let codes = served.join().unwrap();
    assert!(
        codes.len() >= 5,
        "the normal client made only {} calls",
        codes.len()
    );
    assert!(
        codes.iter().all(|&c| c == 200),
        "the normal client was not served all along: {codes:?}"
    );
    let grown = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    let bound = MAX_CONNECTIONS as u64 * PER_CONNECTION
        + (BODY_BUDGET_MIB as u64) * (1 << 20)
        + RUNTIME_SLACK;
    eprintln!(
        "coordinator memory: baseline {} KiB, grew {} KiB under attack, bound {} KiB",
        baseline >> 10,
        grown >> 10,
        bound >> 10
    );
    assert!(
        grown <= bound,
        "the coordinator grew {grown} bytes, over the documented bound of {bound}"
    );
    // And it still serves.
    assert_eq!(normal.call("GET", "/api/v1/status", None).0, 200);
    drop(coordinator);
}

/// Runs the futures concurrently and collects their results in order.
async fn futures_join<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn http2_is_not_spoken_without_alpn_and_not_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let coordinator = coord::start(&home);
    let addr: SocketAddr = coordinator
        .url
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // A client offering only h2 in ALPN: the handshake fails (no protocol in common).
        let tcp = TcpStream::connect(addr).await.unwrap();
        let refused = connector(&[b"h2"])
            .connect("localhost".try_into().unwrap(), tcp)
            .await;
        assert!(
            refused.is_err(),
            "a TLS handshake offering only h2 succeeded"
        );

        // A client offering both gets HTTP/1.1.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let s = connector(&[b"h2", b"http/1.1"])
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

        // HTTP/2 with prior knowledge (no ALPN): the preface is not HTTP/1.1; closed unanswered.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = connector(&[])
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        assert!(
            closed.is_ok(),
            "a connection that sent HTTP/2's preface stayed open"
        );
        assert!(
            got.is_empty(),
            "expected no answer to a prior-knowledge HTTP/2 preface, got {:?}",
            String::from_utf8_lossy(&got)
        );
    });
}

#[test]
fn malformed_framing_is_refused_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let coordinator = coord::start(&home);
    let addr: SocketAddr = coordinator
        .url
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let many_headers: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge_header = format!("x-big: {}\r\n", "a".repeat(33 << 10));
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        // (what, bytes, status, JSON body: answered by the API rather than the HTTP layer)
        ("a request line that is not HTTP", b"GARBAGE\r\n\r\n".to_vec(), 400, false),
        (
            "two different Content-Lengths",
            b"POST /api/v1/nonce HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            400,
            false,
        ),
        (
            "more headers than the limit",
            format!("GET /api/v1/status HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            false,
        ),
        (
            "headers larger than 32 KiB",
            format!("GET /api/v1/status HTTP/1.1\r\nHost: x\r\n{huge_header}\r\n").into_bytes(),
            431,
            false,
        ),
        (
            "a chunk size that is not hex",
            b"POST /api/v1/activate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
            400,
            true,
        ),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        for (what, bytes, status, json) in cases {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut s = connector(&[b"http/1.1"])
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap();
            let _ = s.write_all(&bytes).await;
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
            let text = String::from_utf8_lossy(&got).to_string();
            assert!(
                read.is_ok(),
                "{what}: the connection stayed open; got {text:?}"
            );
            let code: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("{what}: no HTTP answer: {text:?}"));
            assert_eq!(code, status, "{what}: {text}");
            if json {
                assert!(text.contains("\"code\":\"malformed\""), "{what}: {text}");
            }
        }
    });
    let normal = Client {
        url: coordinator.url.clone(),
        cert: None,
    };
    assert_eq!(normal.call("GET", "/api/v1/status", None).0, 200);
}
