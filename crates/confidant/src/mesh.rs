//! `confidant mesh`: a pod's mesh sidecar. It reads the identity and the mesh section the init
//! container (`confidant init`) wrote (`docs/formats/pod-credentials.md`), waiting for their
//! marker, and runs the mutual-TLS proxies ([`confidant_agent::mesh::start_mesh_with`]) until
//! SIGTERM or SIGINT. The pod's containers share one network namespace, so the app's plain
//! ports are on 127.0.0.1.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use confidant_agent::credentials;
use confidant_agent::mesh::start_mesh_with;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::{Format, Outcome};

/// `confidant mesh`.
#[derive(Debug, Args)]
pub(crate) struct MeshArgs {
    /// The init container's output: the pod's shared volume.
    #[arg(long, value_name = "DIR")]
    credentials: PathBuf,
    /// Seconds to wait for the complete credentials (their marker) before giving up.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    wait: u64,
    /// Listen for a mesh ingress port on another port: `HOST:CONTAINER`, where CONTAINER is one
    /// of the manifest's `mesh.ingress[].port`.
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONTAINER")]
    publish: Vec<String>,
    /// Where an egress peer workload is reached: `WORKLOAD=HOST:PORT` (default 127.0.0.1 and the
    /// manifest's port).
    #[arg(long, value_name = "WORKLOAD=HOST:PORT")]
    peer: Vec<String>,
}

/// Runs `confidant mesh` until SIGTERM or SIGINT.
pub(crate) fn run(args: MeshArgs, format: Format) -> Result<Outcome> {
    // Signals are taken over first: from here on they stop the sidecar cleanly (exit 0).
    let signals =
        RefCell::new(Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?);
    let settings = crate::run::mesh_settings(&args.publish, &args.peer)?;
    let creds = credentials::wait(
        &args.credentials,
        Duration::from_secs(args.wait),
        Duration::from_millis(100),
        &|| signals.borrow_mut().pending().next().is_some(),
    );
    let creds = match creds {
        Ok(c) => c,
        Err(credentials::CredentialsError::Cancelled(_)) => return Ok(Outcome::Ok),
        Err(e) => return Err(e).context("reading the pod's credentials"),
    };
    let marker = &creds.marker;
    if marker.simulation && format == Format::Human {
        crate::outln!(
            "*** SIMULATION: this identity was issued for SIMULATION evidence, no hardware protection ***"
        );
    }
    let Some(section) = &creds.mesh else {
        bail!(
            "{}: activation {} has no mesh section (the manifest's workload gives it no `mesh`)",
            creds.dir.display(),
            marker.activation
        );
    };
    let Some(mesh) = start_mesh_with(section, creds.identity.clone(), &settings)? else {
        bail!(
            "{}: activation {}'s mesh section names no ingress and no egress",
            creds.dir.display(),
            marker.activation
        );
    };
    match format {
        Format::Human => {
            let list = |addrs: Vec<std::net::SocketAddr>| {
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            crate::outln!(
                "mesh for {}: ingress [{}], egress [{}]; stop with SIGTERM",
                marker.activation,
                list(mesh.ingress_addrs()),
                list(mesh.egress_addrs())
            );
        }
        Format::Json => crate::outln!(
            "{}",
            serde_json::json!({
                "activation": marker.activation,
                "simulation": marker.simulation,
                "ingress": mesh.ingress_addrs(),
                "egress": mesh.egress_addrs(),
            })
        ),
    }
    if let Some(signal) = signals.into_inner().forever().next() {
        tracing::info!(signal, "stopping the mesh");
    }
    mesh.shutdown();
    Ok(Outcome::Ok)
}
