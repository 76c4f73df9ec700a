//! `confidant init`: a pod's init container. It attests with the pod's TEE, activates the
//! workload and writes the pod credentials (`docs/formats/pod-credentials.md`) into the shared
//! memory volume, marker last; any failure exits non-zero, so the pod does not start.
//!
//! A pod has no state saved by `confidant verify`, so it is told how to trust the coordinator:
//! its root CA (`--coordinator-root`, pinned), or reference values its attestation must match
//! (`--coordinator-reference-values`: verified on first contact, then the root CA it binds is
//! pinned). Either comes from the pod spec, which the pod's attested policy covers. The steps
//! are [`confidant_agent::activation`] and [`confidant_agent::credentials`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args};
use confidant_agent::activation::{self, TeeSource};
use confidant_agent::credentials;
use confidant_attest::sim::{self, SimPlatform};
use confidant_client::{Client, Retry, Trust, read_certificates};
use serde_json::json;

use crate::client::CoordinatorArg;
use crate::run::TeeChoice;
use crate::{Format, Outcome};

/// `confidant init`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("trust").required(true).args(["coordinator_root", "coordinator_root_sha256", "coordinator_reference_values"])))]
pub(crate) struct InitArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The workload's name in the manifest.
    #[arg(long)]
    workload: String,
    /// Where the credentials go: the pod's shared volume (`emptyDir: {medium: Memory}`).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The TEE that signs the workload's evidence.
    #[arg(long, value_enum, default_value_t = TeeChoice::Auto)]
    tee: TeeChoice,
    /// The SIMULATION platform's directory (`platform.pk8`, `platform.pub`; a pod mounts it
    /// from a Secret). Default: `$HOME/sim`, as `confidant run --tee sim`.
    #[arg(long, value_name = "DIR")]
    sim_platform: Option<PathBuf>,
    /// Trust the coordinator whose TLS certificate chains to this root CA (PEM), pinned.
    #[arg(long, value_name = "FILE")]
    coordinator_root: Option<PathBuf>,
    /// Trust the coordinator whose root CA certificate (DER) has this SHA-256 (hex), pinned:
    /// what `confidant generate` writes into a pod spec, which the pod's attested policy
    /// covers. The root is fetched from the coordinator and checked against the hash.
    #[arg(long, value_name = "HEX")]
    coordinator_root_sha256: Option<String>,
    /// Attest the coordinator first, against these reference values (YAML or JSON, listing its
    /// `measurements`), as `confidant verify` does; then pin the root CA its evidence binds.
    /// SIMULATION evidence is trusted only when signed by the platform key of --sim-platform.
    #[arg(long, value_name = "FILE")]
    coordinator_reference_values: Option<PathBuf>,
}

/// Runs `confidant init`.
pub(crate) fn run(args: InitArgs, home: &Path, format: Format) -> Result<Outcome> {
    let address = args.coordinator.address()?;
    let platform_dir = args
        .sim_platform
        .clone()
        .unwrap_or_else(|| SimPlatform::dir(home));
    let simulated = args.tee == TeeChoice::Sim;
    if simulated && format == Format::Human {
        crate::outln!(
            "*** SIMULATION: the workload's evidence is signed by a software platform key, no hardware protection ***"
        );
    }
    // Trust in the coordinator, from the pod spec.
    let trust = match (
        &args.coordinator_root,
        &args.coordinator_root_sha256,
        &args.coordinator_reference_values,
    ) {
        (Some(root), _, _) => pinned(root)?,
        (None, Some(hash), _) => pinned_by_hash(&address, hash)?,
        (None, None, Some(refs)) => match attested(&address, refs, &platform_dir, format)? {
            Some(trust) => trust,
            None => return Ok(Outcome::Rejected),
        },
        (None, None, None) => bail!(
            "give --coordinator-root, --coordinator-root-sha256 or --coordinator-reference-values"
        ),
    };
    // The coordinator may still be starting: requests that never reached it are tried again.
    let client = Client::new(&address, &trust, None)?.with_retry(Retry::STARTUP);
    let tee = if simulated {
        TeeSource::Simulation { platform_dir }
    } else {
        TeeSource::Detect
    };
    let attester = activation::attester(&tee, None, "", &args.workload)?;
    let activated = activation::activate(&client, &args.workload, attester.as_ref(), None)
        .with_context(|| {
            format!(
                "activating workload {} with the coordinator at {}",
                args.workload, address.authority
            )
        })?;
    let marker = credentials::write(&args.out, &activated).with_context(|| {
        format!(
            "writing {}'s credentials into {}",
            activated.name(),
            args.out.display()
        )
    })?;
    match format {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "activation": marker.activation,
                "simulation": marker.simulation,
                "out": args.out,
                "files": marker.files,
                "volumes": marker.volumes,
                "mesh": marker.mesh,
                "warnings": marker.warnings,
            }))?
        ),
        Format::Human => {
            if marker.simulation && !simulated {
                crate::outln!(
                    "*** SIMULATION: the coordinator accepted SIMULATION evidence, no hardware protection ***"
                );
            }
            crate::outln!(
                "activated as {}; credentials in {} ({} rendered files{}{})",
                marker.activation,
                args.out.display(),
                marker.files.len(),
                if marker.volumes.is_empty() {
                    String::new()
                } else {
                    format!(", volumes {}", marker.volumes.join(", "))
                },
                if marker.mesh { ", mesh" } else { "" },
            );
            for w in &marker.warnings {
                crate::outln!("warning: {w}");
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `--coordinator-root FILE`: the root CA, pinned.
fn pinned(path: &Path) -> Result<Trust> {
    let mut certs = read_certificates(path)
        .with_context(|| format!("--coordinator-root {}", path.display()))?;
    if certs.len() != 1 {
        bail!(
            "--coordinator-root {}: expected one certificate (the coordinator's root CA), got {}",
            path.display(),
            certs.len()
        );
    }
    Ok(Trust::Pinned {
        root: certs.remove(0),
        intermediate: None,
    })
}

/// `--coordinator-root-sha256 HEX`: the root CA the coordinator names, if its SHA-256 is the
/// pinned one; then pinned. (The root is public; only its hash needs to come from the pod spec.)
fn pinned_by_hash(address: &confidant_client::Address, hash: &str) -> Result<Trust> {
    let want = hex::decode(hash)
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| {
            anyhow::anyhow!("--coordinator-root-sha256: expected 64 hex digits, got {hash:?}")
        })?;
    let client = Client::new(address, &Trust::FirstContact, None)?.with_retry(Retry::STARTUP);
    let nonce = confidant_client::random_bytes::<32>()?;
    let answer = client.attestation(&nonce).with_context(|| {
        format!(
            "asking the coordinator at {} for its root CA",
            address.authority
        )
    })?;
    let Some(root_pem) = answer.body.root_ca else {
        bail!(
            "the coordinator at {} is in recovery: it has no root CA to pin yet",
            address.authority
        );
    };
    let root = pem::parse(root_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the coordinator's root CA is not PEM: {e}"))?;
    let got = <sha2::Sha256 as sha2::Digest>::digest(root.contents());
    if got[..] != want[..] {
        bail!(
            "the coordinator at {} has another root CA: expected SHA-256 {}, got {} — not the coordinator this pod was generated for",
            address.authority,
            hex::encode(&want),
            hex::encode(got)
        );
    }
    Ok(Trust::Pinned {
        root: root.into_contents().into(),
        intermediate: None,
    })
}

/// `--coordinator-reference-values FILE`: attests the coordinator on first contact and pins the
/// root CA its evidence binds; `None` (after printing why on stderr) when it was rejected.
fn attested(
    address: &confidant_client::Address,
    refs_path: &Path,
    platform_dir: &Path,
    format: Format,
) -> Result<Option<Trust>> {
    let refs = crate::attest::load_reference_values(refs_path)?;
    if refs.measurements.is_empty() {
        bail!(
            "--coordinator-reference-values {}: expected the coordinator's `measurements`, found none",
            refs_path.display()
        );
    }
    let pub_path = platform_dir.join(sim::PUB_FILE);
    let sim_keys = match std::fs::read_to_string(&pub_path) {
        Ok(text) => vec![
            sim::parse_public_key(&text)
                .with_context(|| format!("the platform key in {}", pub_path.display()))?,
        ],
        Err(_) => Vec::new(),
    };
    let client = Client::new(address, &Trust::FirstContact, None)?.with_retry(Retry::STARTUP);
    let hint = format!("the platform key in {}", pub_path.display());
    let att = confidant_client::verify::attest(&client, &refs, &sim_keys, &hint)
        .with_context(|| format!("attesting the coordinator at {}", address.authority))?;
    if !att.accepted() {
        eprintln!(
            "error: the coordinator at {} was REJECTED against {}:",
            address.authority,
            refs_path.display()
        );
        for r in &att.reasons {
            eprintln!("  - {r}");
        }
        return Ok(None);
    }
    if att.simulation() && format == Format::Human {
        crate::outln!(
            "*** SIMULATION: the coordinator's evidence is software-signed, no hardware protection ***"
        );
    }
    let Some(root) = att.root else {
        bail!(
            "the coordinator at {} is in recovery: it has no root CA to pin yet",
            address.authority
        );
    };
    Ok(Some(Trust::Pinned {
        root,
        intermediate: att.intermediate,
    }))
}
