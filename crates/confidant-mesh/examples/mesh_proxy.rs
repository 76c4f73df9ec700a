//! A stand-alone mesh proxy (used by `bench/mesh`): runs ingress and/or egress listeners with
//! an identity from PEM files until SIGTERM or SIGINT, then prints each listener's counters.
//!
//! ```text
//! mesh_proxy gen-certs DIR WORKLOAD...
//!     A coordinator-like CA in DIR: root.pem, and per workload <w>.chain.pem (leaf, then
//!     intermediate) and <w>.key.pem (PKCS#8) with the URI SAN confidant://workload/<w>/1.
//! mesh_proxy run --chain FILE --key FILE --root FILE [--ingress SPEC]... [--egress SPEC]...
//!     --ingress NAME,LISTEN,TARGET[,allow=W1+W2][,anonymous]
//!     --egress  LISTEN,PEER_HOST:PORT,PEER_WORKLOAD
//!     Prints `ready ingress=ADDR,.. egress=ADDR,..` on stdout once every listener is bound.
//! ```
//!
//! Logs go to stderr (`MESH_LOG=debug|info|warn`, default info).

#![forbid(unsafe_code)]

#[path = "../tests/common/pki.rs"]
mod pki;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use confidant_mesh::{EgressConfig, Identity, IngressConfig, Mesh};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const USAGE: &str = "usage:
  mesh_proxy gen-certs DIR WORKLOAD...
  mesh_proxy run --chain FILE --key FILE --root FILE [--ingress NAME,LISTEN,TARGET[,allow=W1+W2][,anonymous]]... [--egress LISTEN,PEER_HOST:PORT,PEER_WORKLOAD]...";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("mesh_proxy: {e}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen-certs") => gen_certs(&args[1..]),
        Some("run") => run(&args[1..]),
        _ => Err(USAGE.into()),
    }
}

fn gen_certs(args: &[String]) -> Result<()> {
    let (dir, workloads) = args.split_first().ok_or(USAGE)?;
    if workloads.is_empty() {
        return Err(USAGE.into());
    }
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let ca = pki::Ca::try_new("Confidant bench")?;
    std::fs::write(dir.join("root.pem"), ca.root_pem())?;
    for w in workloads {
        let issued = ca.try_issue(w)?;
        std::fs::write(dir.join(format!("{w}.chain.pem")), &issued.chain_pem)?;
        // The key readable by its owner only (stunnel warns about anything wider).
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(format!("{w}.key.pem")))?
            .write_all(issued.key_pem.as_bytes())?;
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    let level = match std::env::var("MESH_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();

    let (mut chain, mut key, mut root) = (None, None, None);
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--chain" => chain = Some(std::fs::read_to_string(value)?),
            "--key" => key = Some(std::fs::read_to_string(value)?),
            "--root" => root = Some(std::fs::read_to_string(value)?),
            "--ingress" => ingress.push(parse_ingress(value)?),
            "--egress" => egress.push(parse_egress(value)?),
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    let identity = Identity {
        chain_pem: chain.ok_or("--chain is required")?,
        key_pem: key.ok_or("--key is required")?.into(),
        root_pem: root.ok_or("--root is required")?,
    };
    let mesh = Mesh::start(identity, ingress, egress)?;
    let list = |addrs: Vec<SocketAddr>| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "ready ingress={} egress={}",
        list(mesh.ingress_addrs()),
        list(mesh.egress_addrs())
    )?;
    out.flush()?;
    drop(out);

    // Wait for SIGTERM or SIGINT on a small runtime of our own (the mesh has its own).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
        Ok::<(), std::io::Error>(())
    })?;
    let stats = mesh.stats();
    for s in stats.ingress.iter().chain(&stats.egress) {
        eprintln!(
            "listener {} {}: accepted {} refused {} failed {} bytes_in {} bytes_out {}",
            s.name, s.listen, s.accepted, s.refused, s.failed, s.bytes_in, s.bytes_out
        );
    }
    mesh.shutdown();
    Ok(())
}

fn parse_ingress(spec: &str) -> Result<IngressConfig> {
    let bad = || format!("--ingress {spec}: expected NAME,LISTEN,TARGET[,allow=W1+W2][,anonymous]");
    let mut parts = spec.split(',');
    let (Some(name), Some(listen), Some(target)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad().into());
    };
    let mut cfg = IngressConfig::new(
        name,
        listen.parse().map_err(|_| bad())?,
        target.parse().map_err(|_| bad())?,
    );
    for opt in parts {
        match opt.split_once('=') {
            Some(("allow", list)) => {
                cfg.allowed_peers = Some(list.split('+').map(str::to_owned).collect());
            }
            None if opt == "anonymous" => cfg.require_client_cert = false,
            _ => return Err(bad().into()),
        }
    }
    Ok(cfg)
}

fn parse_egress(spec: &str) -> Result<EgressConfig> {
    let bad = || format!("--egress {spec}: expected LISTEN,PEER_HOST:PORT,PEER_WORKLOAD");
    let parts: Vec<&str> = spec.split(',').collect();
    let [listen, peer, workload] = parts.as_slice() else {
        return Err(bad().into());
    };
    Ok(EgressConfig {
        listen: listen.parse().map_err(|_| bad())?,
        peer: (*peer).to_owned(),
        peer_workload: (*workload).to_owned(),
    })
}
