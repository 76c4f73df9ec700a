//! Activation load generator: `clients` concurrent simulated workloads activate against a
//! running coordinator for `seconds`, each over its own HTTP/1.1 keep-alive connection, and the
//! rate and latency of whole activations (`POST nonce` + `POST activate`) are reported.
//!
//! ```text
//! cargo bench -p confidant-coordinator --bench activation_load -- \
//!     --coordinator https://127.0.0.1:4433 --root-ca root.pem --sim-dir $CONFIDANT_HOME/sim \
//!     --workload bench --measurement <96 hex digits> [--clients 64] [--seconds 30] [--threads 1]
//! ```
//!
//! Every flag can also be given as an environment variable: `CONFIDANT_BENCH_COORDINATOR`,
//! `…_ROOT_CA`, `…_SIM_DIR`, `…_WORKLOAD`, `…_MEASUREMENT`, `…_CLIENTS`, `…_SECONDS`,
//! `…_THREADS` (the client runtime's worker threads: the generator shares the machine with the
//! coordinator, so it keeps to one by default). Without a coordinator address it does nothing,
//! so a plain `cargo bench` stays harmless. `bench/coordinator` sets everything up and runs it.
//!
//! Each client makes its key and CSR once (P-256), opens its connection with an untimed
//! `GET status`, then loops until the deadline: a nonce, SIMULATION evidence binding the nonce
//! and the CSR's key (`binding::report_data`, purpose `activate`) from the platform key in
//! `--sim-dir`, and the activation. Any answer but 200 with an `activation` is an error; the
//! first few are printed. Output: a human summary, then one machine-readable line
//! `activations_per_s … p50_ms … p99_ms … errors … clients … seconds …`. The exit status is
//! non-zero when any activation failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use confidant_attest::Attester;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::binding::{Purpose, report_data};
use confidant_attest::sim::SimPlatform;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Error answers printed in full (the rest are only counted).
const SHOWN_ERRORS: usize = 5;
/// The longest error body kept.
const ERROR_BODY_MAX: usize = 600;
/// One request's timeout: long enough never to cut a slow answer short, short enough to end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Config {
    coordinator: String,
    root_ca: PathBuf,
    sim_dir: PathBuf,
    workload: String,
    measurement: [u8; 48],
    clients: usize,
    duration: Duration,
    threads: usize,
}

/// What the flags and environment give: `--name value`, `--name=value` or
/// `CONFIDANT_BENCH_NAME`.
struct Args {
    flags: Vec<(String, String)>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut flags = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            // `cargo bench` adds `--bench`; anything else must be a known flag.
            if a == "--bench" {
                continue;
            }
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument '{a}': expected --name value");
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
                    (name.to_string(), v)
                }
            };
            flags.push((name, value));
        }
        const KNOWN: [&str; 8] = [
            "coordinator",
            "root-ca",
            "sim-dir",
            "workload",
            "measurement",
            "clients",
            "seconds",
            "threads",
        ];
        if let Some((n, _)) = flags.iter().find(|(n, _)| !KNOWN.contains(&n.as_str())) {
            bail!("unknown flag --{n}; known: --{}", KNOWN.join(", --"));
        }
        Ok(Args { flags })
    }

    fn get(&self, name: &str) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                let var = format!("CONFIDANT_BENCH_{}", name.replace('-', "_").to_uppercase());
                std::env::var(var).ok().filter(|v| !v.is_empty())
            })
    }

    fn required(&self, name: &str) -> Result<String> {
        self.get(name).ok_or_else(|| {
            anyhow!(
                "--{name} (or CONFIDANT_BENCH_{}) is required",
                name.replace('-', "_").to_uppercase()
            )
        })
    }

    fn number(&self, name: &str, default: u64) -> Result<u64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("--{name}: expected a positive integer, got '{v}'"),
            },
        }
    }
}

fn config(args: &Args) -> Result<Config> {
    let coordinator = args
        .required("coordinator")?
        .trim_end_matches('/')
        .to_string();
    if !coordinator.starts_with("https://") {
        bail!("--coordinator: expected https://HOST:PORT, got '{coordinator}'");
    }
    let m = args.required("measurement")?;
    let bytes = hex::decode(m.trim()).context("--measurement: expected hex")?;
    let measurement: [u8; 48] = bytes.as_slice().try_into().map_err(|_| {
        anyhow!(
            "--measurement: expected 48 bytes (96 hex digits), got {}",
            bytes.len()
        )
    })?;
    Ok(Config {
        coordinator,
        root_ca: args.required("root-ca")?.into(),
        sim_dir: args.required("sim-dir")?.into(),
        workload: args.required("workload")?,
        measurement,
        clients: usize::try_from(args.number("clients", 64)?)?,
        duration: Duration::from_secs(args.number("seconds", 30)?),
        threads: usize::try_from(args.number("threads", 1)?)?,
    })
}

/// TLS that trusts only the coordinator's root CA (webpki, ring provider).
fn tls_config(root_ca: &PathBuf) -> Result<rustls::ClientConfig> {
    let pem = std::fs::read(root_ca).with_context(|| format!("reading {}", root_ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("parsing {}", root_ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("adding {} as a root", root_ca.display()))?;
        n += 1;
    }
    if n == 0 {
        bail!(
            "{}: expected a PEM CERTIFICATE (the coordinator's root CA), found none",
            root_ca.display()
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS configuration")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What every client shares.
struct Shared {
    base: String,
    workload: String,
    attester: SimAttester,
}

/// One client: its connection and its CSR.
struct Client {
    http: reqwest::Client,
    csr_pem: String,
    spki_der: Vec<u8>,
}

/// What one client measured.
#[derive(Default)]
struct Outcome {
    /// Latency of each successful activation, microseconds.
    latencies_us: Vec<u64>,
    /// Successful activations by the second (since the start) they completed in.
    per_second: Vec<u64>,
    errors: u64,
    shown: Vec<String>,
}

impl Outcome {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.shown.len() < SHOWN_ERRORS {
            self.shown.push(message);
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn truncated(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    if s.len() > ERROR_BODY_MAX {
        let mut end = ERROR_BODY_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.into_owned()
    }
}

async fn new_client(tls: rustls::ClientConfig, shared: &Shared, i: usize) -> Result<Client> {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(true)
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow!("HTTP client: {}", chain(&e)))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("load-{i}"));
    let csr_pem = params.serialize_request(&key)?.pem()?;
    let spki_der = key.public_key_der();
    // Opens the keep-alive connection (TLS handshake) outside the timed window.
    let url = format!("{}/api/v1/status", shared.base);
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow!("GET {url}: {}", chain(&e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| anyhow!("GET {url}: {}", chain(&e)))?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", truncated(&body));
    }
    Ok(Client {
        http,
        csr_pem,
        spki_der,
    })
}

/// One activation: nonce, evidence, activate. `Err` carries the message to show.
async fn activate(client: &Client, shared: &Shared) -> std::result::Result<(), String> {
    let url = format!("{}/api/v1/nonce", shared.base);
    let resp = client
        .http
        .post(&url)
        .send()
        .await
        .map_err(|e| format!("POST nonce: {}", chain(&e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("POST nonce: reading the answer: {}", chain(&e)))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("POST nonce: {status}: {}", truncated(&body)));
    }
    let answer: confidant_api::Nonce = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "POST nonce: expected the API's answer, got {e}: {}",
            truncated(&body)
        )
    })?;
    let nonce_hex = answer.nonce;
    let nonce = hex::decode(&nonce_hex).map_err(|e| format!("POST nonce: nonce not hex: {e}"))?;
    let rd = report_data(Purpose::Activate, &nonce, &client.spki_der);
    let evidence = shared
        .attester
        .attest(&rd)
        .map_err(|e| format!("making evidence: {e}"))?;
    let request = confidant_api::ActivateRequest {
        workload: shared.workload.clone(),
        nonce: nonce_hex,
        csr: client.csr_pem.clone(),
        evidence,
        image_manifest: None,
    };
    let payload = serde_json::to_vec(&request).map_err(|e| format!("encoding: {e}"))?;
    let url = format!("{}/api/v1/activate", shared.base);
    let resp = client
        .http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(payload)
        .send()
        .await
        .map_err(|e| format!("POST activate: {}", chain(&e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("POST activate: reading the answer: {}", chain(&e)))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("POST activate: {status}: {}", truncated(&body)));
    }
    // The whole answer is read as the agent reads it: a missing field is an error.
    let _: confidant_api::Activation = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "POST activate: expected the API's answer, got {e}: {}",
            truncated(&body)
        )
    })?;
    Ok(())
}

async fn run_client(
    client: Client,
    shared: Arc<Shared>,
    start: Instant,
    deadline: Instant,
) -> Outcome {
    let mut out = Outcome::default();
    while Instant::now() < deadline {
        let t0 = Instant::now();
        match activate(&client, &shared).await {
            Ok(()) => {
                let done = Instant::now();
                let us = u64::try_from(done.duration_since(t0).as_micros()).unwrap_or(u64::MAX);
                out.latencies_us.push(us);
                let sec = usize::try_from(done.duration_since(start).as_secs()).unwrap_or(0);
                if out.per_second.len() <= sec {
                    out.per_second.resize(sec + 1, 0);
                }
                out.per_second[sec] += 1;
            }
            Err(message) => out.error(message),
        }
    }
    out
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn run(config: Config) -> Result<bool> {
    let platform = SimPlatform::load(&config.sim_dir).with_context(|| {
        format!(
            "loading the simulation platform in {}",
            config.sim_dir.display()
        )
    })?;
    let shared = Arc::new(Shared {
        base: config.coordinator.clone(),
        workload: config.workload.clone(),
        attester: SimAttester::new(platform, config.measurement),
    });
    let tls = tls_config(&config.root_ca)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        // Phase 1: every client connects (untimed).
        let mut setup = Vec::with_capacity(config.clients);
        for i in 0..config.clients {
            let tls = tls.clone();
            let shared = Arc::clone(&shared);
            setup.push(tokio::spawn(
                async move { new_client(tls, &shared, i).await },
            ));
        }
        let mut clients = Vec::with_capacity(config.clients);
        for (i, h) in setup.into_iter().enumerate() {
            let c = h
                .await
                .map_err(|e| anyhow!("client {i}: {e}"))?
                .with_context(|| format!("client {i}: connecting to {}", config.coordinator))?;
            clients.push(c);
        }
        // Phase 2: the timed window.
        let start = Instant::now();
        let deadline = start + config.duration;
        let mut tasks = Vec::with_capacity(clients.len());
        for c in clients {
            tasks.push(tokio::spawn(run_client(
                c,
                Arc::clone(&shared),
                start,
                deadline,
            )));
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        for (i, t) in tasks.into_iter().enumerate() {
            outcomes.push(t.await.map_err(|e| anyhow!("client {i}: {e}"))?);
        }
        let elapsed = start.elapsed().as_secs_f64();
        Ok::<bool, anyhow::Error>(report(&config, &outcomes, elapsed))
    })
}

/// Prints the summary and the machine line; true when there was no error.
fn report(config: &Config, outcomes: &[Outcome], elapsed: f64) -> bool {
    let mut lat: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let errors: u64 = outcomes.iter().map(|o| o.errors).sum();
    let rate = ok as f64 / elapsed;
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
    };
    let seconds = config.duration.as_secs();
    let mut per_second = vec![0u64; usize::try_from(seconds).unwrap_or(0).max(1)];
    for o in outcomes {
        for (s, n) in o.per_second.iter().enumerate() {
            if let Some(slot) = per_second.get_mut(s) {
                *slot += n;
            }
        }
    }
    // Whole seconds of the window only: answers after its end are not in the table.
    let (slowest_s, slowest) = per_second
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .map_or((0, 0), |(s, n)| (s, *n));
    let fastest = per_second.iter().copied().max().unwrap_or(0);
    println!();
    println!(
        "activation load: {} clients, {} s window ({elapsed:.2} s until the last answer), workload '{}' at {}",
        config.clients, seconds, config.workload, config.coordinator
    );
    println!("  activations   {ok} ok, {errors} errors");
    println!("  rate          {rate:.1} activations/s");
    println!("  per second    min {slowest} (second {slowest_s}), max {fastest}");
    let each: Vec<String> = per_second.iter().map(u64::to_string).collect();
    println!("  each second   {}", each.join(" "));
    println!(
        "  latency ms    mean {mean:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(quantile(&lat, 0.50)),
        ms(quantile(&lat, 0.90)),
        ms(quantile(&lat, 0.99)),
        ms(quantile(&lat, 0.999)),
        ms(lat.last().copied().unwrap_or(0)),
    );
    // The first distinct error messages, each with how often it was among those kept.
    let mut shown: Vec<(&String, usize)> = Vec::new();
    for e in outcomes.iter().flat_map(|o| o.shown.iter()) {
        if let Some(i) = shown.iter().position(|(m, _)| *m == e) {
            shown[i].1 += 1;
        } else if shown.len() < SHOWN_ERRORS {
            shown.push((e, 1));
        }
    }
    if !shown.is_empty() {
        println!("  first distinct errors (times seen among each client's first {SHOWN_ERRORS}):");
        for (e, n) in shown {
            println!("    [{n}x] {e}");
        }
    }
    println!(
        "activations_per_s {rate:.1} p50_ms {:.2} p99_ms {:.2} errors {errors} clients {} seconds {seconds}",
        ms(quantile(&lat, 0.50)),
        ms(quantile(&lat, 0.99)),
        config.clients
    );
    errors == 0 && ok > 0
}

fn main() -> ExitCode {
    let result = Args::parse().and_then(|args| {
        if args.get("coordinator").is_none() {
            println!(
                "activation_load: no --coordinator (or CONFIDANT_BENCH_COORDINATOR) given: nothing to do; bench/coordinator runs it against a fresh coordinator"
            );
            return Ok(true);
        }
        run(config(&args)?)
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("activation_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
