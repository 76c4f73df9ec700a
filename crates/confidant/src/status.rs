//! `confidant status` (the coordinator's state) and `confidant certificate root|chain` (the CA
//! certificates saved by `confidant verify`).

use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::{self, Address, CoordinatorArg, Saved};
use crate::{Format, Outcome};

/// Arguments of `confidant status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Runs `confidant status`.
pub(crate) fn status(args: StatusArgs, home: &Path, format: Format) -> Result<Outcome> {
    let (client, _) = client::pinned_client(home, &args.coordinator, None)?;
    let status = client.status()?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&status)?),
        Format::Human => {
            if status.simulation {
                crate::outln!("*** SIMULATION TEE: no hardware protection ***");
            }
            crate::outln!("coordinator  {}", args.coordinator.address()?.authority);
            crate::outln!("state        {}", status.state.as_str());
            crate::outln!("tee          {}", status.tee);
            match &status.manifest {
                Some(m) => crate::outln!("manifest     version {}, {}", m.version, m.hash),
                None => crate::outln!("manifest     none"),
            }
            if let Some(acts) = &status.activations {
                if acts.is_empty() {
                    crate::outln!("activations  none");
                } else {
                    let list: Vec<String> = acts.iter().map(|(w, n)| format!("{w} {n}")).collect();
                    crate::outln!("activations  {}", list.join(", "));
                }
            }
            if let Some(r) = status.received {
                match status.threshold {
                    Some(t) => crate::outln!("recovery     {r} of {t} shares received"),
                    None => crate::outln!(
                        "recovery     {r} shares received; no recovery.json: it cannot be recovered"
                    ),
                }
            }
            crate::outln!("version      {}", status.version);
        }
    }
    Ok(Outcome::Ok)
}

/// `confidant certificate` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertificateCommand {
    /// Print the coordinator's root CA (PEM), as saved by `confidant verify`.
    Root(CertificateArgs),
    /// Print the intermediate CA then the root CA (PEM), as saved by `confidant verify`.
    Chain(CertificateArgs),
    /// Print the coordinator's image key (PEM public key, asked over the verified connection):
    /// the recipient of `confidant image encrypt --coordinator-key`.
    ImageKey(CertificateArgs),
}

/// Arguments of `certificate root|chain`.
#[derive(Debug, Args)]
pub(crate) struct CertificateArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

fn image_key(args: &CertificateArgs, home: &Path, format: Format) -> Result<Outcome> {
    let (client, _) = client::pinned_client(home, &args.coordinator, None)?;
    let key = client.image_key()?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&key)?),
        Format::Human => crate::outln!("{}", key.public_key.trim_end()),
    }
    Ok(Outcome::Ok)
}

/// Runs a `certificate` subcommand (no network: the saved certificates; `image-key` asks the
/// verified coordinator).
pub(crate) fn certificate(cmd: CertificateCommand, home: &Path, format: Format) -> Result<Outcome> {
    let (args, chain) = match cmd {
        CertificateCommand::Root(a) => (a, false),
        CertificateCommand::Chain(a) => (a, true),
        CertificateCommand::ImageKey(a) => return image_key(&a, home, format),
    };
    let address: Address = args.coordinator.address()?;
    let saved = Saved::load(home, &address)?;
    let root = confidant_client::to_pem(&saved.root);
    let intermediate = saved.intermediate.as_ref().map(confidant_client::to_pem);
    match format {
        Format::Json => {
            let mut doc = json!({
                "coordinator": address.authority,
                "root_ca": root,
                "simulation": saved.simulation(),
                "dir": saved.dir,
            });
            if chain {
                doc["intermediate_ca"] = json!(intermediate);
            }
            crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Human => {
            if chain && let Some(i) = &intermediate {
                crate::outln!("{}", i.trim_end());
            }
            crate::outln!("{}", root.trim_end());
        }
    }
    Ok(Outcome::Ok)
}
