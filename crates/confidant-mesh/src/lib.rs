//! The Confidant mesh proxy: lets unmodified apps talk mutual TLS.
//!
//! The agent starts a [`Mesh`] inside the workload's TEE, next to the app, with the workload's
//! [`Identity`] from activation (leaf certificate for its own key with the URI SAN
//! `confidant://workload/<workload>/<activation>`, the intermediate, and the root CA):
//!
//! * **Ingress** ([`IngressConfig`]): a TLS 1.3/1.2 server presenting the identity. Client
//!   certificates are required and verified against the root (the only trust anchor); an
//!   optional allow list names the client workloads accepted. Each authenticated connection is
//!   forwarded as plain TCP to the app's port on 127.0.0.1.
//! * **Egress** ([`EgressConfig`]): a plain local port for the app; each connection is forwarded
//!   over TLS to a peer workload, presenting the identity as client certificate. The peer's
//!   certificate must chain to the root *and* name the expected workload in its URI SAN; this
//!   identity check replaces host name verification.
//!
//! Bytes are copied both ways with 64 KiB buffers; a half-close (one side shuts down writing) is
//! passed on while the other direction keeps flowing. The TLS hop's TCP connections probe a
//! silent peer (keepalive after 60 s, closed after about two minutes without an answer); idle
//! connections to live peers are never closed. Refused connections are logged
//! (`tracing::warn!`, with the reason: expected and found identity) and counted
//! ([`Mesh::stats`]).
//!
//! The mesh owns a multi-thread tokio runtime (half the CPUs the process may use, 1 to 4 worker
//! threads: the proxy shares the TEE's CPUs with the app), so it is driven from
//! synchronous code: [`Mesh::start`] binds every listener before it returns, and
//! [`Mesh::shutdown`] (or dropping the [`Mesh`]) stops the listeners and closes all connections.
//!
//! ```no_run
//! use confidant_mesh::{EgressConfig, Identity, IngressConfig, Mesh};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity {
//!     chain_pem: std::fs::read_to_string("/run/confidant/chain.pem")?,
//!     key_pem: std::fs::read_to_string("/run/confidant/key.pem")?.into(),
//!     root_pem: std::fs::read_to_string("/run/confidant/root.pem")?,
//! };
//! let mesh = Mesh::start(
//!     identity,
//!     vec![IngressConfig::new("db", "0.0.0.0:6380".parse()?, "127.0.0.1:6379".parse()?)],
//!     vec![EgressConfig {
//!         listen: "127.0.0.1:7000".parse()?,
//!         peer: "10.0.0.7:8443".into(),
//!         peer_workload: "api".into(),
//!     }],
//! )?;
//! // ... run the app ...
//! mesh.shutdown();
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod netns;
mod proxy;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zeroize::Zeroizing;

pub use error::{MeshError, PeerIdentityError};
pub use tls::{WorkloadId, workload_identity};

use proxy::{Counters, Egress, Ingress};

/// At most this many worker threads in the mesh's runtime.
const MAX_WORKER_THREADS: usize = 4;
/// Pending connections each listener queues.
const LISTEN_BACKLOG: u32 = 1024;
/// How long [`Mesh::shutdown`] waits for the runtime's threads to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The workload's TLS identity, as the coordinator issued it at activation.
#[derive(Clone)]
pub struct Identity {
    /// The leaf certificate, then the intermediate CA (PEM): what the proxy presents.
    pub chain_pem: String,
    /// The leaf's private key (PEM, PKCS#8).
    pub key_pem: Zeroizing<String>,
    /// The root CA (PEM): the only trust anchor for peers.
    pub root_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"<redacted>")
            .field("root_pem", &self.root_pem)
            .finish()
    }
}

/// A TLS listener in front of a local app port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressConfig {
    /// A name for logs and stats (e.g. the port's name in the manifest).
    pub name: String,
    /// Where the TLS listener binds (port 0: any free port, see [`Mesh::ingress_addrs`]).
    pub listen: SocketAddr,
    /// The app's plain TCP port, usually on 127.0.0.1.
    pub target: SocketAddr,
    /// Require a client certificate chaining to the root (the default, [`IngressConfig::new`]).
    /// `false` lets clients without a certificate in; one that presents a certificate must still
    /// chain to the root.
    pub require_client_cert: bool,
    /// The workloads (names from the client leaf's URI SAN) allowed as clients; `None`: any
    /// certificate from the root. `Some` implies a client certificate is required.
    pub allowed_peers: Option<Vec<String>>,
}

impl IngressConfig {
    /// A listener on `listen` forwarding to `target`, client certificates required, any workload
    /// of the root allowed.
    pub fn new(name: impl Into<String>, listen: SocketAddr, target: SocketAddr) -> IngressConfig {
        IngressConfig {
            name: name.into(),
            listen,
            target,
            require_client_cert: true,
            allowed_peers: None,
        }
    }
}

/// A local plain port whose connections are carried over mutual TLS to a peer workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressConfig {
    /// The local plain listener, usually `127.0.0.1:<port>` (port 0: any free port).
    pub listen: SocketAddr,
    /// The peer's TLS address, `host:port` (`[v6]:port` for IPv6); a host name is resolved for
    /// each connection.
    pub peer: String,
    /// The workload the peer must be: its leaf's URI SAN must be
    /// `confidant://workload/<peer_workload>/<activation>`.
    pub peer_workload: String,
}

/// How the mesh reaches the app (see [`Mesh::start_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeshOptions {
    /// The app's own network namespace (`/run/netns/NAME` or `/proc/PID/ns/net`), if it has
    /// one: the ingress listeners' connections to their targets and the egress listeners are
    /// made inside it, so the app's plain ports are reachable by the proxy only; the TLS sides
    /// stay in the proxy's namespace. `None`: the app shares the proxy's namespace.
    pub app_netns: Option<std::path::PathBuf>,
}

impl MeshOptions {
    /// Options for an app in the network namespace at `path`.
    pub fn app_netns(path: impl Into<std::path::PathBuf>) -> MeshOptions {
        MeshOptions {
            app_netns: Some(path.into()),
        }
    }
}

/// Counters of one listener since [`Mesh::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// The ingress name, or the egress's peer workload.
    pub name: String,
    /// The bound address.
    pub listen: SocketAddr,
    /// Connections authenticated (TLS handshake and identity checks passed) and forwarded.
    /// On an egress listener with TLS 1.3, the client's handshake completes before the peer has
    /// checked our certificate: a connection the peer then refuses is counted here (and in the
    /// peer's `refused`), and closed as soon as the peer's alert arrives.
    pub accepted: u64,
    /// Of the accepted connections, those whose TLS handshake resumed an earlier session.
    pub resumed: u64,
    /// Connections refused: TLS handshake failed or timed out, certificate or workload identity
    /// not accepted (on either side).
    pub refused: u64,
    /// Connections dropped because the other end could not be reached (ingress: the target;
    /// egress: the peer's TCP port).
    pub failed: u64,
    /// Connections open now (including those still in their handshake).
    pub active: u64,
    /// Bytes received on the listener side and forwarded, over connections that ended cleanly.
    pub bytes_in: u64,
    /// Bytes forwarded back to the listener side, over connections that ended cleanly.
    pub bytes_out: u64,
    /// The reason of the latest refusal (also logged).
    pub last_refusal: Option<String>,
}

/// Counters of every listener, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeshStats {
    /// One entry per [`IngressConfig`].
    pub ingress: Vec<ListenerStats>,
    /// One entry per [`EgressConfig`].
    pub egress: Vec<ListenerStats>,
}

/// A running mesh proxy: its listeners and connections live on its own tokio runtime.
pub struct Mesh {
    runtime: Option<Runtime>,
    ingress: Vec<Arc<Counters>>,
    egress: Vec<Arc<Counters>>,
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("ingress", &self.ingress_addrs())
            .field("egress", &self.egress_addrs())
            .finish_non_exhaustive()
    }
}

/// An egress listener's peer, checked at start.
struct PeerAddr {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl Mesh {
    /// Parses the identity, builds one TLS configuration per listener, binds every listener and
    /// starts serving. Returns only once all listeners are bound; nothing keeps running if it
    /// fails.
    ///
    /// Callable from synchronous code and from within another tokio runtime.
    pub fn start(
        identity: Identity,
        ingress: Vec<IngressConfig>,
        egress: Vec<EgressConfig>,
    ) -> Result<Mesh, MeshError> {
        Mesh::start_with(identity, ingress, egress, &MeshOptions::default())
    }

    /// [`Mesh::start`] with options: an app in its own network namespace
    /// ([`MeshOptions::app_netns`]).
    pub fn start_with(
        identity: Identity,
        ingress: Vec<IngressConfig>,
        egress: Vec<EgressConfig>,
        options: &MeshOptions,
    ) -> Result<Mesh, MeshError> {
        let app = match &options.app_netns {
            Some(path) => Some(Arc::new(netns::AppNetwork::enter(path)?)),
            None => None,
        };
        let material = tls::Material::parse(&identity)?;
        drop(identity);
        let mut ingress_plans = Vec::with_capacity(ingress.len());
        for cfg in ingress {
            let listener = format!("ingress {}", cfg.name);
            if let Some(allowed) = &cfg.allowed_peers
                && let Some(bad) = allowed.iter().find(|a| !tls::is_label(a))
            {
                return Err(MeshError::Config {
                    listener,
                    field: "allowed_peers",
                    expected: "workload names ([A-Za-z0-9._-]+)",
                    found: bad.clone(),
                });
            }
            let config = material.server_config(&listener, &cfg)?;
            ingress_plans.push((cfg, config));
        }
        let mut egress_plans = Vec::with_capacity(egress.len());
        for cfg in egress {
            let listener = format!("egress {}", cfg.peer_workload);
            if !tls::is_label(&cfg.peer_workload) {
                return Err(MeshError::Config {
                    listener,
                    field: "peer_workload",
                    expected: "a workload name ([A-Za-z0-9._-]+)",
                    found: cfg.peer_workload.clone(),
                });
            }
            let peer = parse_peer(&listener, &cfg.peer)?;
            let config = material.client_config(&listener, &cfg.peer_workload)?;
            egress_plans.push((cfg, peer, config));
        }
        match &material.own {
            Some(id) => tracing::info!(identity = %id.uri, "mesh identity"),
            None => tracing::warn!(
                "the mesh identity's leaf has no URI SAN confidant://workload/<workload>/<activation>; peers that check workload identities will refuse it"
            ),
        }
        if let Err(e) = material.check_own_chain() {
            tracing::warn!(error = %e, "the mesh identity's chain does not lead to its root_pem; peers checking it against the same root will refuse it");
        }
        drop(material);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("confidant-mesh")
            .enable_io()
            .enable_time()
            .build()
            .map_err(MeshError::Runtime)?;
        let bound = {
            let _entered = runtime.enter();
            bind_all(&ingress_plans, &egress_plans, app.as_deref())
        };
        let (ingress_listeners, egress_listeners) = match bound {
            Ok(b) => b,
            Err(e) => {
                stop_runtime(runtime);
                return Err(e);
            }
        };

        let mut ingress_counters = Vec::with_capacity(ingress_plans.len());
        for ((cfg, config), listener) in ingress_plans.into_iter().zip(ingress_listeners) {
            let (listener, addr) = listener;
            let counters = Arc::new(Counters::new(cfg.name.clone(), addr));
            tracing::info!(listener = %cfg.name, listen = %addr, target = %cfg.target,
                app_netns = ?app.as_ref().map(|a| a.path().display().to_string()),
                require_client_cert = cfg.require_client_cert || cfg.allowed_peers.is_some(),
                allowed_peers = ?cfg.allowed_peers, "mesh ingress listening");
            let ctx = Arc::new(Ingress {
                counters: counters.clone(),
                acceptor: TlsAcceptor::from(config),
                target: cfg.target,
                app: app.clone(),
            });
            runtime.spawn(proxy::run_ingress(listener, ctx));
            ingress_counters.push(counters);
        }
        let mut egress_counters = Vec::with_capacity(egress_plans.len());
        for ((cfg, peer, config), listener) in egress_plans.into_iter().zip(egress_listeners) {
            let (listener, addr) = listener;
            let counters = Arc::new(Counters::new(cfg.peer_workload.clone(), addr));
            tracing::info!(listen = %addr, peer = %cfg.peer, peer_workload = %cfg.peer_workload,
                "mesh egress listening");
            let ctx = Arc::new(Egress {
                counters: counters.clone(),
                connector: TlsConnector::from(config),
                peer: cfg.peer,
                host: peer.host,
                port: peer.port,
                server_name: peer.server_name,
            });
            runtime.spawn(proxy::run_egress(listener, ctx));
            egress_counters.push(counters);
        }
        Ok(Mesh {
            runtime: Some(runtime),
            ingress: ingress_counters,
            egress: egress_counters,
        })
    }

    /// The bound addresses of the ingress listeners, in configuration order.
    pub fn ingress_addrs(&self) -> Vec<SocketAddr> {
        self.ingress.iter().map(|c| c.listen).collect()
    }

    /// The bound addresses of the egress listeners, in configuration order.
    pub fn egress_addrs(&self) -> Vec<SocketAddr> {
        self.egress.iter().map(|c| c.listen).collect()
    }

    /// The listeners' counters now.
    pub fn stats(&self) -> MeshStats {
        MeshStats {
            ingress: self.ingress.iter().map(|c| c.snapshot()).collect(),
            egress: self.egress.iter().map(|c| c.snapshot()).collect(),
        }
    }

    /// Stops the listeners and closes every connection. From synchronous code it returns once
    /// the runtime's threads have stopped (the ports are free again); from within an async
    /// context it cannot wait, and the runtime stops in the background.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            stop_runtime(runtime);
            tracing::info!(ingress = ?self.ingress_addrs(), egress = ?self.egress_addrs(), "mesh stopped");
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Worker threads for the mesh's runtime: half the CPUs this process may run on (affinity and
/// cgroup quota included), at least one, at most [`MAX_WORKER_THREADS`]. The proxy shares the
/// TEE's CPUs with the app it fronts; on two CPUs one worker costs about a tenth less CPU per
/// proxied request than two (fewer cross-thread wake-ups) at the same throughput
/// (`docs/benchmarks.md`, mesh).
fn worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cpus / 2).clamp(1, MAX_WORKER_THREADS)
}

/// Shuts a runtime down: every task (listeners, connections) is dropped, closing its sockets.
/// Waiting is not allowed inside an async context, where the shutdown finishes in the background.
fn stop_runtime(runtime: Runtime) {
    if tokio::runtime::Handle::try_current().is_ok() {
        runtime.shutdown_background();
    } else {
        runtime.shutdown_timeout(SHUTDOWN_WAIT);
    }
}

type Bound = Vec<(TcpListener, SocketAddr)>;

/// Binds every listener (inside the runtime's context); on error, those bound are closed. The
/// egress listeners go into the app's network namespace if it has one.
fn bind_all(
    ingress: &[(IngressConfig, Arc<rustls::ServerConfig>)],
    egress: &[(EgressConfig, PeerAddr, Arc<rustls::ClientConfig>)],
    app: Option<&netns::AppNetwork>,
) -> Result<(Bound, Bound), MeshError> {
    let mut ingress_bound = Vec::with_capacity(ingress.len());
    for (cfg, _) in ingress {
        ingress_bound.push(bind(&format!("ingress {}", cfg.name), cfg.listen, None)?);
    }
    let mut egress_bound = Vec::with_capacity(egress.len());
    for (cfg, _, _) in egress {
        egress_bound.push(bind(
            &format!("egress {}", cfg.peer_workload),
            cfg.listen,
            app,
        )?);
    }
    Ok((ingress_bound, egress_bound))
}

fn bind(
    listener: &str,
    addr: SocketAddr,
    netns: Option<&netns::AppNetwork>,
) -> Result<(TcpListener, SocketAddr), MeshError> {
    let err = |source| MeshError::Bind {
        listener: listener.to_owned(),
        addr,
        source,
    };
    let socket = match netns {
        Some(app) => app.socket_blocking(addr.is_ipv6()),
        None if addr.is_ipv4() => TcpSocket::new_v4(),
        None => TcpSocket::new_v6(),
    }
    .map_err(err)?;
    // A restarted proxy can rebind while old connections linger in TIME_WAIT; a port another
    // socket listens on is still refused.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// Splits `host:port` (`[v6]:port`) and derives the TLS server name (an IP address sends no SNI).
fn parse_peer(listener: &str, peer: &str) -> Result<PeerAddr, MeshError> {
    let bad = |expected: &'static str| MeshError::Config {
        listener: listener.to_owned(),
        field: "peer",
        expected,
        found: peer.to_owned(),
    };
    let (host, port) = peer
        .rsplit_once(':')
        .ok_or_else(|| bad("host:port (a port is required)"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("host:port with a port from 1 to 65535"))?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .ok_or_else(|| bad("[IPv6 address]:port"))?,
        None if host.contains(':') => return Err(bad("an IPv6 peer written [address]:port")),
        None => host,
    };
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| bad("host:port with an IP address or a DNS name as host"))?;
    Ok(PeerAddr {
        host: host.to_owned(),
        port,
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers() {
        let p = parse_peer("egress x", "10.0.0.1:443").expect("ipv4");
        assert_eq!((p.host.as_str(), p.port), ("10.0.0.1", 443));
        let p = parse_peer("egress x", "[::1]:8443").expect("ipv6");
        assert_eq!((p.host.as_str(), p.port), ("::1", 8443));
        let p = parse_peer("egress x", "db.internal:5432").expect("dns");
        assert_eq!(
            p.server_name,
            ServerName::try_from("db.internal").expect("name")
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:x",
            "::1:80",
            "[::1:80",
            "bad host:1",
        ] {
            let e = parse_peer("egress x", bad).err().expect(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
