//! `confidant run`: arguments and output. The run itself — activate, decrypt and unpack the
//! image into memory, write the rendered files, mount volumes, start the mesh, run the app
//! under an OCI runtime, tear down — is [`confidant_agent::lifecycle`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::{Args, ValueEnum};
use confidant_agent::activation::TeeSource;
use confidant_agent::lifecycle::{self, NetworkMode, Observer, RunConfig};
use confidant_agent::mesh::MeshSettings;
use confidant_agent::runtime::{DEFAULT_STOP_TIMEOUT, hold_signals};
use confidant_attest::sim::SimPlatform;
use confidant_image::transport::TransportOptions;

use crate::client::{self, CoordinatorArg};
use crate::{Format, Outcome};

/// Exit code when the agent could not start the app (refused, unreachable, bad image): like
/// `docker run`, 125, so it cannot be mistaken for the app's own exit code.
pub(crate) const EXIT_AGENT_FAILED: u8 = lifecycle::EXIT_NOT_STARTED;

/// Which TEE produces the workload's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TeeChoice {
    /// Detect TDX or SNP (configfs-tsm) or SGX (Gramine); never falls back to simulation.
    Auto,
    /// The SIMULATION TEE: a software platform key, no hardware protection.
    Sim,
}

/// The app's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NetworkChoice {
    /// Its own network namespace with only a loopback interface: its ports are reachable
    /// through the mesh's ingress only, and it reaches out through the mesh's egress only.
    Isolated,
    /// The agent's (host's) network: its plain ports are open to every local process.
    Host,
}

/// `confidant run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The workload's name in the manifest.
    #[arg(long)]
    workload: String,
    /// The image, with skopeo's transport syntax (`oci:DIR[:TAG]`, `docker://…`,
    /// `docker-archive:FILE`).
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
    /// Publish a mesh ingress port on another host port: `HOST:CONTAINER`, where CONTAINER is
    /// one of the manifest's `mesh.ingress[].port`.
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONTAINER")]
    publish: Vec<String>,
    /// Where an egress peer workload is reached: `WORKLOAD=HOST:PORT` (default 127.0.0.1 and the
    /// manifest's port).
    #[arg(long, value_name = "WORKLOAD=HOST:PORT")]
    peer: Vec<String>,
    /// The TEE that signs the workload's evidence.
    #[arg(long, value_enum, default_value_t = TeeChoice::Auto)]
    tee: TeeChoice,
    /// The app's network: `isolated` (its own namespace, reachable only through the mesh) or
    /// `host` (the agent's network; for apps that need other network access).
    #[arg(long, value_enum, default_value_t = NetworkChoice::Isolated)]
    network: NetworkChoice,
    /// Size of the memory-backed file system holding the decrypted image and rendered files.
    #[arg(long, default_value = "2GiB", value_name = "SIZE")]
    memory: String,
    /// Where the per-run tmpfs is mounted (a new directory under it).
    #[arg(long, default_value = "/run/confidant", value_name = "DIR")]
    run_dir: PathBuf,
    /// Registry: use plain HTTP (loopback registries only).
    #[arg(long)]
    plain_http: bool,
    /// The backing directory of a protected volume the activation grants: `NAME=HOSTDIR`
    /// (default: VOLUME_ROOT/WORKLOAD/NAME). The host sees only ciphertext there.
    #[arg(long = "volume", value_name = "NAME=HOSTDIR")]
    volumes: Vec<String>,
    /// Where protected volumes' backing directories are kept by default.
    #[arg(long, default_value = "/var/lib/confidant/volumes", value_name = "DIR")]
    volume_root: PathBuf,
    /// Seconds the app has to exit after a stop request before it is killed (SIGKILL), as
    /// `docker stop --time`. A stop request is SIGTERM to `confidant run` (the app receives the
    /// image's StopSignal, SIGTERM when unset) or SIGINT/Ctrl-C (the app receives SIGINT).
    #[arg(long, default_value_t = DEFAULT_STOP_TIMEOUT.as_secs(), value_name = "SECONDS")]
    stop_timeout: u64,
}

/// Progress lines on stderr for people; nothing in `--output json`.
struct Say(Format);

impl Observer for Say {
    fn say(&self, line: &str) {
        if self.0 == Format::Human {
            eprintln!("confidant run: {line}");
        }
    }
}

/// Runs `confidant run`; the app's exit code becomes ours.
pub(crate) fn run(args: RunArgs, home: &Path, format: Format) -> Result<Outcome> {
    agent(args, home, format)
        .map(Outcome::Exit)
        .map_err(|e| e.context(AgentFailed))
}

/// Marks an error of the agent (exit 125).
#[derive(Debug)]
pub(crate) struct AgentFailed;

impl std::fmt::Display for AgentFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the app was not started")
    }
}

fn agent(args: RunArgs, home: &Path, format: Format) -> Result<u8> {
    // From here on SIGTERM/SIGINT/SIGHUP stop the agent at its next step (with cleanup), or go
    // to the app once it runs (SIGTERM and SIGINT as stop requests, see --stop-timeout).
    hold_signals()?;
    let config = config(&args, home)?;
    // What runs killed earlier left (their agent gone) goes before this run mounts anything.
    crate::cleanup::before_run(&args.run_dir, &args.runtime, format);
    let report = lifecycle::run(&config, &Say(format))?;
    if format == Format::Json {
        crate::outln!("{}", serde_json::to_string(&report)?);
    }
    std::io::stdout().flush().ok();
    Ok(report.exit_code)
}

/// The run's configuration from the arguments and the saved, verified coordinator.
fn config(args: &RunArgs, home: &Path) -> Result<RunConfig> {
    let coordinator = args.coordinator.address()?;
    let saved = client::Saved::load(home, &coordinator)?;
    Ok(RunConfig {
        trust: saved.trust(),
        coordinator,
        workload: args.workload.clone(),
        image: args.image.clone(),
        transport: TransportOptions {
            plain_http: args.plain_http,
            ..TransportOptions::default()
        },
        tee: match args.tee {
            TeeChoice::Sim => TeeSource::Simulation {
                platform_dir: SimPlatform::dir(home),
            },
            TeeChoice::Auto => TeeSource::Detect,
        },
        runtime: args.runtime.clone(),
        network: match args.network {
            NetworkChoice::Isolated => NetworkMode::Isolated,
            NetworkChoice::Host => NetworkMode::Host,
        },
        mesh: mesh_settings(&args.publish, &args.peer)?,
        memory: confidant_agent::memfs::parse_size(&args.memory)
            .map_err(|e| anyhow!("--memory: {e}"))?,
        run_dir: args.run_dir.clone(),
        volume_dirs: pairs(&args.volumes, '=', "--volume", "NAME=HOSTDIR", |n, d| {
            client::check_name("--volume name", n)?;
            Ok((n.to_string(), PathBuf::from(d)))
        })?,
        volume_root: args.volume_root.clone(),
        stop_timeout: Duration::from_secs(args.stop_timeout),
    })
}

/// `--publish HOST:CONTAINER` and `--peer WORKLOAD=HOST:PORT` as the mesh's settings (`run` and
/// the `mesh` sidecar).
pub(crate) fn mesh_settings(publish: &[String], peer: &[String]) -> Result<MeshSettings> {
    Ok(MeshSettings {
        publish: pairs(publish, ':', "--publish", "HOST:CONTAINER", |h, c| {
            Ok((c.parse()?, h.parse()?))
        })?,
        peers: pairs(peer, '=', "--peer", "WORKLOAD=HOST:PORT", |w, a| {
            Ok((w.to_string(), a.to_string()))
        })?,
        app_netns: None,
    })
}

/// `A<sep>B` arguments into a map, each pair made by `make` (errors name the flag).
fn pairs<K: Ord, V>(
    values: &[String],
    sep: char,
    flag: &str,
    form: &str,
    make: impl Fn(&str, &str) -> Result<(K, V)>,
) -> Result<BTreeMap<K, V>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (a, b) = v
            .split_once(sep)
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| anyhow!("{flag} {v:?}: expected {form}"))?;
        let (k, val) = make(a, b).map_err(|e| anyhow!("{flag} {v:?}: expected {form}: {e}"))?;
        out.insert(k, val);
    }
    Ok(out)
}
