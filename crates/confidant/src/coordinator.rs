//! `confidant coordinator run`: run the coordinator (HTTPS API and metrics) in the foreground.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use confidant_attest::sim::SimPlatform;
use confidant_coordinator::server::{self, Limits, ServerConfig, Started};
use serde_json::json;

use crate::{Format, Outcome};

/// `confidant coordinator` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CoordinatorCommand {
    /// Run the coordinator until SIGINT or SIGTERM.
    Run(RunArgs),
}

/// Arguments of `coordinator run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The state directory (default: $HOME_DIR/coordinator, where HOME_DIR is --home).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Where the HTTPS API listens.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4433")]
    listen: SocketAddr,
    /// Where Prometheus metrics are served (plain HTTP, path /metrics).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9433",
        conflicts_with = "no_metrics"
    )]
    metrics: SocketAddr,
    /// Serve no metrics.
    #[arg(long)]
    no_metrics: bool,
    /// A DNS name or IP address for the TLS certificate; repeatable (default: localhost,
    /// 127.0.0.1).
    #[arg(long = "san", value_name = "NAME")]
    sans: Vec<String>,
    /// The coordinator's address as workloads reach it, HOST:PORT (default: the listen address,
    /// with an unspecified IP replaced by loopback).
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What one client may cost the coordinator (docs/formats/coordinator-api.md, "Limits and
/// timeouts").
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits (per listener)")]
struct LimitArgs {
    /// Connections served at once; more are closed when accepted [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// Connections from one IP address at once [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_client: Option<u32>,
    /// Seconds for a TLS handshake, and for a request's headers (also how long a kept-alive
    /// connection may sit idle) [default: 10].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: Option<u64>,
    /// Seconds for a whole request body [default: 10].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: Option<u64>,
    /// Seconds a write may stay blocked on a client that does not read [default: 10].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout: Option<u64>,
    /// MiB of request bodies held at once over all connections (at least 4, the largest
    /// body) [default: 64].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(4..))]
    body_budget: Option<u32>,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        let d = Limits::default();
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        let header = secs(self.header_timeout, d.header_timeout);
        Limits {
            max_connections: self
                .max_connections
                .map_or(d.max_connections, |n| n as usize),
            max_connections_per_client: self
                .max_connections_per_client
                .map_or(d.max_connections_per_client, |n| n as usize),
            handshake_timeout: secs(self.header_timeout, d.handshake_timeout),
            header_timeout: header,
            body_timeout: secs(self.body_timeout, d.body_timeout),
            write_timeout: secs(self.write_timeout, d.write_timeout),
            body_budget: self
                .body_budget
                .map_or(d.body_budget, |m| (m as usize) << 20),
        }
    }
}

/// Runs a `coordinator` subcommand.
pub(crate) fn run(cmd: CoordinatorCommand, home: &Path, format: Format) -> Result<Outcome> {
    match cmd {
        CoordinatorCommand::Run(args) => run_server(args, home, format),
    }
}

/// The default `--address`: the listen address, reachable (0.0.0.0 → 127.0.0.1, :: → ::1).
fn default_address(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port()).to_string()
}

/// Builds the server configuration from the arguments and runs it until a signal.
fn run_server(args: RunArgs, home: &Path, format: Format) -> Result<Outcome> {
    let state_dir = args.state.unwrap_or_else(|| home.join("coordinator"));
    let sans = if args.sans.is_empty() {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        args.sans
    };
    let config = ServerConfig {
        state_dir: state_dir.clone(),
        sim_dir: SimPlatform::dir(home),
        listen: args.listen,
        metrics_listen: (!args.no_metrics).then_some(args.metrics),
        sans,
        address: args.address.unwrap_or_else(|| default_address(args.listen)),
        limits: args.limits.limits(),
    };
    let on_start = move |s: &Started| announce(s, &state_dir, format);
    server::run(config, on_start)
        .map_err(|e| anyhow!("{e}"))
        .context("running the coordinator")?;
    Ok(Outcome::Ok)
}

/// Prints the one line that says the coordinator listens (tests read the port from it).
fn announce(s: &Started, state_dir: &Path, format: Format) {
    let api = format!("https://{}", s.api);
    let metrics = s.metrics.map(|m| format!("http://{m}/metrics"));
    match format {
        Format::Json => {
            let doc = json!({
                "api": api,
                "metrics": metrics,
                "state": s.state,
                "simulation": s.simulation,
                "state_dir": state_dir,
            });
            crate::outln!("{doc}");
        }
        Format::Human => {
            let sim = if s.simulation {
                " — SIMULATION TEE: no hardware protection"
            } else {
                ""
            };
            crate::outln!("coordinator listening on {api} (state: {}){sim}", s.state);
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_address_replaces_unspecified_ips() {
        assert_eq!(
            default_address("0.0.0.0:4433".parse().unwrap()),
            "127.0.0.1:4433"
        );
        assert_eq!(default_address("[::]:1".parse().unwrap()), "[::1]:1");
        assert_eq!(default_address("10.1.2.3:7".parse().unwrap()), "10.1.2.3:7");
    }
}
