//! `confidant verify`: attest the coordinator and pin its root CA.
//!
//! The client picks a fresh nonce, fetches `GET /api/v1/attestation?nonce=…` and checks, before
//! trusting anything the coordinator says:
//!
//! 1. the evidence is authentic (`confidant_attest` verifiers; the simulation TEE only with the
//!    platform keys of `--sim-platform-key`, else the local `$HOME/sim/platform.pub`) and
//!    matches the reference values;
//! 2. its report data binds the nonce, the manifest hash and the root CA's public key
//!    (`report_data(coordinator, nonce ‖ H, SPKI(root_ca))`), or in recovery the public key of
//!    the TLS certificate of this very connection;
//! 3. the TLS certificate the server presented chains to that root CA and names the host.
//!
//! Then the root CA (and intermediate) is saved in `$HOME/client/<address>/`, and every other
//! command pins it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use confidant_attest::ReferenceValues;
use confidant_attest::sim::{self, SimPlatform};
use confidant_attest::time::rfc3339;
use serde_json::{Value, json};

use crate::client::{
    self, Address, Client, CoordinatorArg, INFO_FILE, INTERMEDIATE_FILE, ROOT_FILE, Trust,
};
use crate::{Format, Outcome};

/// Arguments of `confidant verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// What the coordinator's evidence must match.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// Reference values (YAML or JSON) the coordinator's evidence must match; they must list its
    /// accepted `measurements` unless --insecure-skip-measurement.
    #[arg(long, value_name = "FILE")]
    reference_values: Option<PathBuf>,
    /// Accept any measurement (INSECURE: any code the TEE runs passes; for tests and demos).
    #[arg(long)]
    insecure_skip_measurement: bool,
    /// Trust SIMULATION evidence signed by this platform key (hex, or a file holding hex, as
    /// `platform.pub`); repeatable. Default: the local platform's key, `$HOME/sim/platform.pub`,
    /// when it exists.
    #[arg(long, value_name = "HEX|FILE")]
    sim_platform_key: Vec<String>,
}

impl PolicyArgs {
    /// The reference values to apply: the file given, else (when `saved` is given) the TEE and
    /// measurement recorded when the coordinator was verified. Without a measurement, refuses
    /// unless --insecure-skip-measurement.
    pub(crate) fn reference_values(
        &self,
        saved: Option<&client::SavedInfo>,
    ) -> Result<ReferenceValues> {
        let mut refs = match &self.reference_values {
            Some(p) => crate::attest::load_reference_values(p)?,
            None => ReferenceValues::default(),
        };
        if self.reference_values.is_none()
            && !self.insecure_skip_measurement
            && let Some(info) = saved
        {
            if let Some(m) = &info.measurement {
                let bytes = hex::decode(m).context("the saved measurement is not hex")?;
                refs.measurements = vec![confidant_attest::reference::HexBytes(bytes)];
            }
            refs.tee = Some(info.tee);
        }
        if refs.measurements.is_empty() && !self.insecure_skip_measurement {
            bail!(
                "the coordinator's measurement must be checked: give --reference-values FILE \
                 listing its `measurements`, or --insecure-skip-measurement to accept any code \
                 (tests and demos only)"
            );
        }
        Ok(refs)
    }

    /// The simulation platform keys to trust: --sim-platform-key, else the local platform's
    /// key when there is one (none: simulation evidence is refused).
    pub(crate) fn sim_keys(&self, home: &Path) -> Result<Vec<[u8; 32]>> {
        let mut keys = Vec::new();
        for k in &self.sim_platform_key {
            let text = if Path::new(k).is_file() {
                std::fs::read_to_string(k).with_context(|| format!("reading {k}"))?
            } else {
                k.clone()
            };
            keys.push(
                sim::parse_public_key(&text).with_context(|| format!("--sim-platform-key {k}"))?,
            );
        }
        if keys.is_empty() {
            let path = SimPlatform::dir(home).join(sim::PUB_FILE);
            if path.exists() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                keys.push(
                    sim::parse_public_key(&text)
                        .with_context(|| format!("the platform key in {}", path.display()))?,
                );
            }
        }
        Ok(keys)
    }

    /// Whether the measurement goes unchecked.
    pub(crate) fn skips_measurement(&self) -> bool {
        self.insecure_skip_measurement
    }
}

/// The outcome of attesting the coordinator ([`confidant_client::verify`]), and how the CLI
/// shows it.
pub(crate) use confidant_client::verify::CoordinatorAttestation as Attestation;

/// How `verify` and `recover` print an attestation.
pub(crate) trait Report {
    /// The report as JSON (`verify -o json`, `recover -o json`).
    fn to_json(&self, address: &Address) -> Value;
    /// The report for people; `extra` lines (`key  value`, indented) follow the fields.
    fn print_human(&self, address: &Address, extra: &[String]);
}

impl Report for Attestation {
    fn to_json(&self, address: &Address) -> Value {
        json!({
            "verdict": if self.accepted() { "accepted" } else { "rejected" },
            "coordinator": address.authority,
            "tee": self.tee(),
            "simulation": self.simulation(),
            "state": self.answer.state,
            "measurement": self.measurement(),
            "manifest_hash": self.answer.manifest_hash,
            "verified_at": rfc3339(self.verified_at),
            "claims": self.claims,
            "mismatches": self.mismatches,
            "reasons": self.reasons,
            "warnings": self.warnings,
        })
    }

    fn print_human(&self, address: &Address, extra: &[String]) {
        if self.simulation() {
            crate::outln!(
                "*** SIMULATION: the coordinator's evidence is software-signed, no hardware protection ***"
            );
        }
        let verdict = if self.accepted() {
            "ACCEPTED"
        } else {
            "REJECTED"
        };
        crate::outln!("coordinator {}: {verdict}", address.authority);
        crate::outln!("  tee          {}", self.tee());
        if let Some(m) = self.measurement() {
            crate::outln!("  measurement  {m}");
        }
        crate::outln!("  state        {}", self.answer.state.as_str());
        crate::outln!(
            "  manifest     {}",
            self.answer.manifest_hash.as_deref().unwrap_or("none")
        );
        for line in extra {
            crate::outln!("  {line}");
        }
        for w in &self.warnings {
            crate::outln!("warning: {w}");
        }
        for r in &self.reasons {
            crate::outln!("  - {r}");
        }
    }
}

/// Attests the coordinator behind `client` ([`confidant_client::verify::attest`]).
pub(crate) fn attest(
    client: &Client,
    home: &Path,
    refs: &ReferenceValues,
    sim_keys: &[[u8; 32]],
) -> Result<Attestation> {
    let hint = format!(
        "--sim-platform-key or the local platform key in {}",
        SimPlatform::dir(home).join(sim::PUB_FILE).display()
    );
    Ok(confidant_client::verify::attest(
        client, refs, sim_keys, &hint,
    )?)
}

/// Runs `confidant verify`.
pub(crate) fn run(args: VerifyArgs, home: &Path, format: Format) -> Result<Outcome> {
    let address = args.coordinator.address()?;
    let refs = args.policy.reference_values(None)?;
    let sim_keys = args.policy.sim_keys(home)?;
    let client = Client::new(&address, &Trust::FirstContact, None)?;
    let mut att = attest(&client, home, &refs, &sim_keys)?;
    if args.policy.skips_measurement() {
        att.warnings.push(
            "the measurement was NOT checked (--insecure-skip-measurement): any code passes".into(),
        );
    }
    let saved = if att.accepted() {
        save(home, &address, &att)?
    } else {
        None
    };
    if let (Some(dir), Some(root), Some(hash)) = (&saved, &att.root, &att.answer.manifest_hash) {
        save_manifest(&client, dir, root, hash)?;
    }
    match format {
        Format::Json => {
            let mut doc = att.to_json(&address);
            doc["saved"] = json!(saved);
            crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Human => {
            let mut extra: Vec<String> = saved
                .iter()
                .map(|dir| format!("root CA      saved in {}", dir.display()))
                .collect();
            if let (Some(dir), Some(_)) = (&saved, &att.answer.manifest_hash) {
                extra.push(format!(
                    "manifest     saved in {}",
                    dir.join(MANIFEST_FILE).display()
                ));
            }
            att.print_human(&address, &extra);
            match &saved {
                Some(_) => {}
                None if att.accepted() => crate::outln!(
                    "the coordinator is in recovery: its root CA is sealed and nothing was saved; \
                     recovery owners run `confidant recover`"
                ),
                None => {}
            }
        }
    }
    Ok(if att.accepted() {
        Outcome::Ok
    } else {
        Outcome::Rejected
    })
}

/// Saves an accepted coordinator's root CA, intermediate and record; `None` without a root CA
/// (recovery).
fn save(home: &Path, address: &Address, att: &Attestation) -> Result<Option<PathBuf>> {
    let Some(root) = &att.root else {
        return Ok(None);
    };
    let dir = client::saved_dir(home, address);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write(&dir.join(ROOT_FILE), &client::to_pem(root))?;
    let inter = dir.join(INTERMEDIATE_FILE);
    match &att.intermediate {
        Some(i) => write(&inter, &client::to_pem(i))?,
        None if inter.exists() => std::fs::remove_file(&inter)
            .with_context(|| format!("removing the stale {}", inter.display()))?,
        None => {}
    }
    let info = client::SavedInfo {
        address: address.authority.clone(),
        manifest_hash: att.answer.manifest_hash.clone(),
        state: att.answer.state,
        simulation: att.simulation(),
        tee: att.tee(),
        measurement: att.measurement(),
        verified_at: rfc3339(att.verified_at),
    };
    write(
        &dir.join(INFO_FILE),
        &format!("{}\n", serde_json::to_string_pretty(&info)?),
    )?;
    Ok(Some(dir))
}

/// Fetches the current manifest record over the attested connection, checks that it is the
/// manifest the evidence binds and that the root CA signed it, and saves it as `manifest.json`.
fn save_manifest(
    client: &Client,
    dir: &Path,
    root: &rustls_pki_types::CertificateDer<'_>,
    attested_hash: &str,
) -> Result<()> {
    let record = client
        .manifest(None)
        .context("reading the attested manifest")?;
    crate::manifest::check_record(&record, root)?;
    if record.hash != attested_hash {
        anyhow::bail!(
            "the coordinator's current manifest has hash {}, but its evidence binds {attested_hash} (it changed in between; verify again)",
            record.hash
        );
    }
    write(
        &dir.join(MANIFEST_FILE),
        &format!("{}\n", serde_json::to_string_pretty(&record)?),
    )
}

/// The attested manifest record, saved next to the root CA.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// Writes a file through a temporary one, so a reader never sees half of it.
fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
