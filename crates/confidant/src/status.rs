//! `confidant status` (the coordinator's state) and `confidant certificate root|chain` (the CA
//! certificates saved by `confidant verify`).

use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{self, API, Address, CoordinatorArg, Saved};
use crate::{Format, Outcome};

/// Arguments of `confidant status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Runs `confidant status`.
pub fn status(args: StatusArgs, home: &Path, format: Format) -> Result<Outcome> {
    let (client, _) = client::pinned_client(home, &args.coordinator, None)?;
    let body = client.get(&format!("{API}/status"))?.body;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&body)?),
        Format::Human => {
            let s = |k: &str| {
                body.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            let simulation = body.get("simulation").and_then(Value::as_bool) == Some(true);
            if simulation {
                crate::outln!("*** SIMULATION TEE: no hardware protection ***");
            }
            crate::outln!("coordinator  {}", args.coordinator.address()?.authority);
            crate::outln!("state        {}", s("state"));
            crate::outln!("tee          {}", s("tee"));
            match body.get("manifest").filter(|m| !m.is_null()) {
                Some(m) => crate::outln!(
                    "manifest     version {}, {}",
                    m.get("version").map(Value::to_string).unwrap_or_default(),
                    m.get("hash").and_then(Value::as_str).unwrap_or("-")
                ),
                None => crate::outln!("manifest     none"),
            }
            if let Some(Value::Object(acts)) = body.get("activations") {
                if acts.is_empty() {
                    crate::outln!("activations  none");
                } else {
                    let list: Vec<String> = acts.iter().map(|(w, n)| format!("{w} {n}")).collect();
                    crate::outln!("activations  {}", list.join(", "));
                }
            }
            if let (Some(r), Some(t)) = (body.get("received"), body.get("threshold")) {
                crate::outln!("recovery     {r} of {t} shares received");
            }
            crate::outln!("version      {}", s("version"));
        }
    }
    Ok(Outcome::Ok)
}

/// `confidant certificate` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
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
pub struct CertificateArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

fn image_key(args: &CertificateArgs, home: &Path, format: Format) -> Result<Outcome> {
    let (client, _) = client::pinned_client(home, &args.coordinator, None)?;
    let body = client.get(&format!("{}/image-key", client::API))?.body;
    let pem = body["public_key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the coordinator's image-key answer has no public_key"))?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&body)?),
        Format::Human => crate::outln!("{}", pem.trim_end()),
    }
    Ok(Outcome::Ok)
}

/// Runs a `certificate` subcommand (no network: the saved certificates; `image-key` asks the
/// verified coordinator).
pub fn certificate(cmd: CertificateCommand, home: &Path, format: Format) -> Result<Outcome> {
    let (args, chain) = match cmd {
        CertificateCommand::Root(a) => (a, false),
        CertificateCommand::Chain(a) => (a, true),
        CertificateCommand::ImageKey(a) => return image_key(&a, home, format),
    };
    let address: Address = args.coordinator.address()?;
    let saved = Saved::load(home, &address)?;
    let root = client::to_pem(&saved.root);
    let intermediate = saved.intermediate.as_ref().map(client::to_pem);
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
