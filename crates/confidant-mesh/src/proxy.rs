//! The listeners' accept loops and the per-connection proxying.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, HandshakeKind};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::netns::AppNetwork;
use crate::{ListenerStats, PeerIdentityError};

/// Copy buffer per direction and connection.
pub(crate) const COPY_BUFFER: usize = 64 * 1024;
/// A TLS handshake (including certificate checks) must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A TCP connection to the target or the peer must be established within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error such as "too many open files", so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// TCP keepalive on the connections to and from other machines: the first probe after this
/// much silence, then every [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_PROBES`] times. A peer that
/// vanished (its VM stopped, the network cut) is noticed after about two minutes and both sides
/// of the proxied connection are closed, instead of holding them forever. Idle but live
/// connections are not closed (no idle timeout: Redis clients, pub/sub and pools stay idle).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// See [`KEEPALIVE_IDLE`].
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// See [`KEEPALIVE_IDLE`].
const KEEPALIVE_PROBES: u32 = 6;

/// A listener's counters, shared by its accept loop, its connections and [`crate::Mesh::stats`].
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    accepted: AtomicU64,
    resumed: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    active: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    last_refusal: Mutex<Option<String>>,
}

impl Counters {
    pub(crate) fn new(name: String, listen: SocketAddr) -> Counters {
        Counters {
            name,
            listen,
            accepted: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            active: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            last_refusal: Mutex::new(None),
        }
    }

    pub(crate) fn snapshot(&self) -> ListenerStats {
        ListenerStats {
            name: self.name.clone(),
            listen: self.listen,
            accepted: self.accepted.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            last_refusal: self
                .last_refusal
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|poisoned| poisoned.into_inner().clone()),
        }
    }

    fn established(&self, handshake: Option<HandshakeKind>) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if handshake == Some(HandshakeKind::Resumed) {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn refuse(&self, reason: String) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut last = self
            .last_refusal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = Some(reason);
    }
}

/// Counts a connection as active while it lives.
struct Active<'a>(&'a Counters);

impl<'a> Active<'a> {
    fn new(counters: &'a Counters) -> Active<'a> {
        counters.active.fetch_add(1, Ordering::Relaxed);
        Active(counters)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an ingress listener's connections share.
pub(crate) struct Ingress {
    pub(crate) counters: Arc<Counters>,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) target: SocketAddr,
    /// The app's network namespace, where the connections to `target` are made.
    pub(crate) app: Option<Arc<AppNetwork>>,
}

/// What an egress listener's connections share.
pub(crate) struct Egress {
    pub(crate) counters: Arc<Counters>,
    pub(crate) connector: TlsConnector,
    pub(crate) peer: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) server_name: ServerName<'static>,
}

/// Accepts connections until the runtime shuts down.
pub(crate) async fn run_ingress(listener: TcpListener, ctx: Arc<Ingress>) {
    loop {
        match listener.accept().await {
            Ok((tcp, from)) => {
                tokio::spawn(ingress_connection(tcp, from, ctx.clone()));
            }
            Err(e) => accept_error(&ctx.counters, &e).await,
        }
    }
}

/// Accepts connections until the runtime shuts down.
pub(crate) async fn run_egress(listener: TcpListener, ctx: Arc<Egress>) {
    loop {
        match listener.accept().await {
            Ok((tcp, from)) => {
                tokio::spawn(egress_connection(tcp, from, ctx.clone()));
            }
            Err(e) => accept_error(&ctx.counters, &e).await,
        }
    }
}

async fn accept_error(counters: &Counters, e: &io::Error) {
    tracing::warn!(listener = %counters.name, listen = %counters.listen, error = %e, "accept failed");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

async fn ingress_connection(tcp: TcpStream, from: SocketAddr, ctx: Arc<Ingress>) {
    let counters = &*ctx.counters;
    let _active = Active::new(counters);
    // Nagle would hold back small records (request/response protocols stall on delayed ACKs).
    let _ = tcp.set_nodelay(true);
    keepalive(&tcp, &counters.name);
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, ctx.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = format!("TLS handshake with {from} failed: {}", describe(&e));
            tracing::warn!(listener = %counters.name, client = %from, reason = %reason, "ingress refused a connection");
            counters.refuse(reason);
            return;
        }
        Err(_) => {
            let reason = format!(
                "TLS handshake with {from} did not finish within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            );
            tracing::warn!(listener = %counters.name, client = %from, reason = %reason, "ingress refused a connection");
            counters.refuse(reason);
            return;
        }
    };
    let mut upstream = match connect(ctx.target, ctx.app.as_deref()).await {
        Ok(s) => s,
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(listener = %counters.name, client = %from, target = %ctx.target, error = %e, "ingress could not reach its target; closing the client connection");
            return;
        }
    };
    counters.established(tls.get_ref().1.handshake_kind());
    if tracing::enabled!(tracing::Level::DEBUG) {
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| crate::tls::workload_identity(c).ok())
            .map_or_else(|| "no workload identity".to_owned(), |id| id.uri);
        tracing::debug!(listener = %counters.name, client = %from, %peer, "ingress connection established");
    }
    let result =
        tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut upstream, COPY_BUFFER, COPY_BUFFER)
            .await;
    finish(counters, from, result);
}

async fn egress_connection(local: TcpStream, from: SocketAddr, ctx: Arc<Egress>) {
    let counters = &*ctx.counters;
    let _active = Active::new(counters);
    let _ = local.set_nodelay(true);
    let mut local = local;
    let tcp = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((ctx.host.as_str(), ctx.port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(listener = %counters.name, peer = %ctx.peer, error = %e, "egress could not reach its peer; closing the local connection");
            return;
        }
        Err(_) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(listener = %counters.name, peer = %ctx.peer, "egress could not reach its peer within {} s; closing the local connection", CONNECT_TIMEOUT.as_secs());
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    keepalive(&tcp, &counters.name);
    let handshake = ctx.connector.connect(ctx.server_name.clone(), tcp);
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = format!(
                "TLS handshake with peer {} (workload `{}`) failed: {}",
                ctx.peer,
                counters.name,
                describe(&e)
            );
            tracing::warn!(listener = %counters.name, peer = %ctx.peer, reason = %reason, "egress refused the peer; closing the local connection");
            counters.refuse(reason);
            return;
        }
        Err(_) => {
            let reason = format!(
                "TLS handshake with peer {} did not finish within {} s",
                ctx.peer,
                HANDSHAKE_TIMEOUT.as_secs()
            );
            tracing::warn!(listener = %counters.name, peer = %ctx.peer, reason = %reason, "egress refused the peer; closing the local connection");
            counters.refuse(reason);
            return;
        }
    };
    counters.established(tls.get_ref().1.handshake_kind());
    tracing::debug!(listener = %counters.name, local = %from, peer = %ctx.peer, "egress connection established");
    let result =
        tokio::io::copy_bidirectional_with_sizes(&mut local, &mut tls, COPY_BUFFER, COPY_BUFFER)
            .await;
    finish(counters, from, result);
}

/// A handshake error for logs: the workload identity check's own message (expected and found
/// identity), or what rustls found wrong with the certificate.
fn describe(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            match other.0.downcast_ref::<PeerIdentityError>() {
                Some(identity) => format!("peer certificate refused: {identity}"),
                None => e.to_string(),
            }
        }
        Some(rustls::Error::InvalidCertificate(problem)) => format!(
            "peer certificate refused: expected a valid chain to the root CA, found {problem:?}"
        ),
        Some(rustls::Error::NoCertificatesPresented) => {
            "expected a client certificate, found none".to_owned()
        }
        _ => e.to_string(),
    }
}

/// Connects to the app's `addr`, from inside its network namespace if it has one.
async fn connect(addr: SocketAddr, app: Option<&AppNetwork>) -> io::Result<TcpStream> {
    let socket = match app {
        Some(app) => app.socket(addr.is_ipv6()).await?,
        None if addr.is_ipv4() => TcpSocket::new_v4()?,
        None => TcpSocket::new_v6()?,
    };
    let s = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            )
        })??;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Turns on TCP keepalive ([`KEEPALIVE_IDLE`]); a failure is logged, the connection kept.
fn keepalive(tcp: &TcpStream, listener: &str) {
    use rustix::net::sockopt;
    let set = sockopt::set_socket_keepalive(tcp, true)
        .and_then(|()| sockopt::set_tcp_keepidle(tcp, KEEPALIVE_IDLE))
        .and_then(|()| sockopt::set_tcp_keepintvl(tcp, KEEPALIVE_INTERVAL))
        .and_then(|()| sockopt::set_tcp_keepcnt(tcp, KEEPALIVE_PROBES));
    if let Err(e) = set {
        tracing::warn!(%listener, error = %e, "could not turn on TCP keepalive");
    }
}

/// Records the bytes of a connection that ended (the listener side is `a`).
fn finish(counters: &Counters, from: SocketAddr, result: io::Result<(u64, u64)>) {
    match result {
        Ok((a_to_b, b_to_a)) => {
            counters.bytes_in.fetch_add(a_to_b, Ordering::Relaxed);
            counters.bytes_out.fetch_add(b_to_a, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(listener = %counters.name, client = %from, error = %e, "connection ended with an error");
        }
    }
}
