//! Runs the coordinator: opens (or creates) its sealed state, serves the HTTPS API and the
//! metrics endpoint, and handles recovery when the state cannot be unsealed.
//!
//! This is the wiring between [`crate::core`], [`crate::store::RedbStore`] and [`crate::api`].
//! On this machine the coordinator's TEE is the simulation TEE: its evidence is signed, and
//! its state sealed, with keys derived from the simulation platform key. SIMULATION: that
//! protects nothing against the host, which can read the platform key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use confidant_attest::Verifiers;
use confidant_attest::attester::Attester;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::sim::SimPlatform;
use confidant_attest::verify::sim::SimVerifier;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::Service;

use crate::api::{self, Api, BodyLimits, Mode, RecoveryMode};
use crate::core::{Coordinator, Options, RecoveryShares};
use crate::store::{RedbStore, Sealer, SimSealer, StoreError};

pub use self::limits::{
    ConnectionGate, Limits, MAX_HEADER_BYTES, MAX_HEADERS, READ_BUFFER, Refused, WriteDeadline,
};

mod limits;

/// File in the state directory holding the owners' encrypted recovery shares (outside the
/// sealed state: it must be readable when the state cannot be unsealed).
pub const RECOVERY_FILE: &str = "recovery.json";
/// Validity of the coordinator's TLS certificate (renewed at every start).
pub const TLS_VALIDITY: Duration = Duration::from_secs(90 * 86_400);

/// What `confidant coordinator run` configures.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The state directory (`state.redb`, `recovery.json`).
    pub state_dir: PathBuf,
    /// The simulation platform's directory (`platform.pk8`): the coordinator's own sim evidence
    /// and its sealing key derive from it. SIMULATION: no hardware protection.
    pub sim_dir: PathBuf,
    /// Where the HTTPS API listens.
    pub listen: SocketAddr,
    /// Where Prometheus metrics are served over plain HTTP (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Names and addresses in the TLS server certificate.
    pub sans: Vec<String>,
    /// The coordinator's address as workloads reach it (`{{ confidant.coordinator }}`).
    pub address: String,
    /// What one client may cost: connection caps, timeouts, the request body budget.
    pub limits: Limits,
}

/// What the server reports once it listens.
#[derive(Debug, Clone)]
pub struct Started {
    /// The bound API address (useful with port 0).
    pub api: SocketAddr,
    /// The bound metrics address.
    pub metrics: Option<SocketAddr>,
    /// The state it started in: `accepting-manifest`, `running` or `recovery`.
    pub state: String,
    /// Whether the coordinator runs on the simulation TEE.
    pub simulation: bool,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServerError(pub String);

fn err(context: &str) -> impl Fn(&dyn std::fmt::Display) -> ServerError + '_ {
    move |e| ServerError(format!("{context}: {e}"))
}

struct Sim {
    dir: PathBuf,
    measurement: [u8; 48],
}

impl Sim {
    fn attester(&self) -> Result<Box<dyn Attester>, String> {
        let platform = SimPlatform::load(&self.dir).map_err(|e| e.to_string())?;
        Ok(Box::new(SimAttester::new(platform, self.measurement)))
    }

    fn verifiers(&self) -> Result<Verifiers, String> {
        let platform = SimPlatform::load(&self.dir).map_err(|e| e.to_string())?;
        Ok(Verifiers::new().with_sim(SimVerifier::new(vec![platform.public_key()])))
    }
}

/// Writes `recovery.json` (or removes it when there are no shares), atomically.
pub fn write_recovery_file(
    state_dir: &Path,
    shares: Option<&RecoveryShares>,
) -> Result<(), String> {
    let path = state_dir.join(RECOVERY_FILE);
    match shares {
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {}: {e}", path.display())),
        },
        Some(s) => {
            let tmp = state_dir.join(format!("{RECOVERY_FILE}.tmp"));
            let bytes = serde_json::to_vec_pretty(s).map_err(|e| e.to_string())?;
            let write = || -> std::io::Result<()> {
                use std::io::Write as _;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(state_dir)?.sync_all()
            };
            write().map_err(|e| format!("writing {}: {e}", path.display()))
        }
    }
}

fn read_recovery_file(state_dir: &Path) -> Result<Option<RecoveryShares>, String> {
    let path = state_dir.join(RECOVERY_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn tls_for(
    coordinator: &Coordinator<RedbStore>,
    sans: &[String],
) -> Result<(Arc<rustls::ServerConfig>, Vec<u8>), String> {
    let issued = coordinator
        .ca()
        .issue_tls_server(sans, SystemTime::now(), TLS_VALIDITY)
        .map_err(|e| format!("issuing the TLS certificate: {e}"))?;
    let config = api::tls::server_config(&issued.chain_pem, &issued.key_pem)?;
    let spki = api::spki_of_cert_pem(&issued.cert_pem).unwrap_or_default();
    Ok((config, spki))
}

fn self_signed_tls(sans: &[String]) -> Result<(Arc<rustls::ServerConfig>, Vec<u8>), String> {
    let ck = rcgen::generate_simple_self_signed(sans.to_vec())
        .map_err(|e| format!("recovery TLS certificate: {e}"))?;
    let cert_pem = ck.cert.pem();
    let config = api::tls::server_config(&cert_pem, &ck.key_pair.serialize_pem())?;
    let spki = api::spki_of_cert_pem(&cert_pem).unwrap_or_default();
    Ok((config, spki))
}

fn open_coordinator(
    store: RedbStore,
    sim: &Sim,
    address: &str,
) -> Result<Coordinator<RedbStore>, String> {
    let recovery_key = Some(store.data_key().clone());
    let options = Options {
        attester: sim.attester()?,
        verifiers: sim.verifiers()?,
        address: address.to_string(),
        recovery_key,
        random: crate::core::system_random(),
    };
    Coordinator::open(store, options, SystemTime::now()).map_err(|e| e.to_string())
}

/// Runs the coordinator until SIGINT or SIGTERM. `on_start` is called once it listens.
pub fn run(mut config: ServerConfig, on_start: impl FnOnce(&Started)) -> Result<(), ServerError> {
    // Bind first, so that an address given with port 0 can name the real port in templates.
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| err(&format!("listening on {}", config.listen))(&e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| err("local address")(&e))?;
    if let Some(host) = config.address.strip_suffix(":0") {
        config.address = format!("{host}:{}", bound.port());
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| err("listening socket")(&e))?;
    let measurement =
        SimAttester::measure_file_cached(Path::new("/proc/self/exe"), &config.sim_dir)
            .map_err(|e| err("reading /proc/self/exe to measure the coordinator")(&e))?;
    let sim = Arc::new(Sim {
        dir: config.sim_dir.clone(),
        measurement,
    });
    let sealer = SimSealer::load(&config.sim_dir).map_err(|e| {
        ServerError(format!(
            "no sealing key: {e} (on this machine the coordinator runs on the simulation TEE; run `confidant attest sim init` first)"
        ))
    })?;
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| err(&format!("creating {}", config.state_dir.display()))(&e))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o700));
    }
    let (mode, tls, spki, state) = match RedbStore::open(&config.state_dir, &sealer) {
        Ok(store) => {
            let c = open_coordinator(store, &sim, &config.address).map_err(ServerError)?;
            let shares = c
                .recovery_shares()
                .map_err(|e| ServerError(e.to_string()))?;
            write_recovery_file(&config.state_dir, shares.as_ref()).map_err(ServerError)?;
            let (tls, spki) = tls_for(&c, &config.sans).map_err(ServerError)?;
            let state = c.state().as_str().to_string();
            (Mode::Running(Arc::new(c)), tls, spki, state)
        }
        Err(StoreError::Sealed { sealer: s, reason }) => {
            tracing::warn!("state cannot be unsealed ({s}: {reason}); entering recovery");
            let shares = read_recovery_file(&config.state_dir).map_err(ServerError)?;
            let dir = config.state_dir.clone();
            let sim2 = sim.clone();
            let address = config.address.clone();
            let sealer_dir = config.sim_dir.clone();
            let reopen: api::Reopen<RedbStore> = Arc::new(move |key| {
                let store = RedbStore::open_with_data_key(&dir, key).map_err(|e| e.to_string())?;
                let sealer = SimSealer::load(&sealer_dir).map_err(|e| e.to_string())?;
                store.rewrap(&sealer).map_err(|e| e.to_string())?;
                open_coordinator(store, &sim2, &address)
            });
            let sans = config.sans.clone();
            let after: api::TlsFor<RedbStore> = Arc::new(move |c| tls_for(c, &sans));
            let (tls, spki) = self_signed_tls(&config.sans).map_err(ServerError)?;
            let mode = Mode::Recovery(RecoveryMode {
                collector: crate::core::ShareCollector::new(shares.as_ref().map(|s| s.threshold)),
                shares,
                attester: sim.attester().map_err(ServerError)?,
                reopen,
                after,
            });
            (mode, tls, spki, "recovery".to_string())
        }
        Err(e) => return Err(ServerError(format!("opening the state: {e}"))),
    };
    let _ = sealer.kind();
    let api = Api::new(mode, tls, spki);
    api.set_recovery_dir(config.state_dir.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| err("starting the async runtime")(&e))?;
    runtime.block_on(serve(api, listener, config, state, on_start))
}

async fn serve(
    api: Arc<Api<RedbStore>>,
    listener: std::net::TcpListener,
    config: ServerConfig,
    state: String,
    on_start: impl FnOnce(&Started),
) -> Result<(), ServerError> {
    let listener = TcpListener::from_std(listener).map_err(|e| err("listening socket")(&e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| err("local address")(&e))?;
    let limits = Arc::new(config.limits.clone());
    let body = BodyLimits::new(limits.body_timeout, limits.body_budget);
    let metrics = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| err(&format!("listening on {addr} (metrics)"))(&e))?;
            let a = l.local_addr().map_err(|e| err("local address")(&e))?;
            tokio::spawn(serve_metrics(l, api.metrics_router(), limits.clone()));
            Some(a)
        }
    };
    on_start(&Started {
        api: bound,
        metrics,
        state,
        simulation: true,
    });
    let router = api.router(&body);
    let gate = ConnectionGate::new(&limits);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| err("installing the SIGTERM handler")(&e))?;
    let mut refusals = Refusals::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for connections to close.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let ticket = match gate.admit(peer.ip()) {
            Ok(t) => t,
            Err(why) => {
                refusals.note(why, peer, &limits);
                drop(tcp);
                continue;
            }
        };
        let Some(tls) = api.tls_config() else { break };
        let router = router.clone();
        let api = api.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _ticket = ticket;
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let stream =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    _ => return,
                };
            let principal =
                api.principal(stream.get_ref().1.peer_certificates(), SystemTime::now());
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(principal.clone());
                    let mut router = router.clone();
                    async move { router.call(req).await }
                },
            );
            let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
            let _ = http1(&limits).serve_connection(io, svc).await;
        });
    }
    Ok(())
}

/// The HTTP/1.1 server of one connection. HTTP/1.1 is the only protocol: TLS offers only
/// `http/1.1` in ALPN, and a connection that sends HTTP/2's preface anyway is closed unanswered.
fn http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    builder
}

/// Serves `/metrics` over plain HTTP with the API's connection limits.
async fn serve_metrics(listener: TcpListener, router: axum::Router, limits: Arc<Limits>) {
    let gate = ConnectionGate::new(&limits);
    let mut refusals = Refusals::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept (metrics): {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ticket = match gate.admit(peer.ip()) {
            Ok(t) => t,
            Err(why) => {
                refusals.note(why, peer, &limits);
                continue;
            }
        };
        let router = router.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _ticket = ticket;
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut router = router.clone();
                    async move { router.call(req).await }
                });
            let io = TokioIo::new(WriteDeadline::new(tcp, limits.write_timeout));
            let _ = http1(&limits).serve_connection(io, svc).await;
        });
    }
}

/// Logs refused connections, at most once a second (a flood must not become a log flood).
#[derive(Default)]
struct Refusals {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, why: Refused, peer: SocketAddr, limits: &Limits) {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let cap = match why {
            Refused::Full => format!("{} connections open", limits.max_connections),
            Refused::ClientFull => format!(
                "{} connections open from {}",
                limits.max_connections_per_client,
                peer.ip()
            ),
        };
        tracing::warn!(
            "refused {} connection(s) since the last report; latest from {peer}: {cap}",
            self.unlogged
        );
        self.last = Some(std::time::Instant::now());
        self.unlogged = 0;
    }
}
