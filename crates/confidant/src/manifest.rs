//! `confidant manifest …`: offline work on manifests (schema export, validation).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use confidant_manifest::{Manifest, ValidationError};
use serde_json::json;

use crate::{EXIT_MALFORMED, Format, Outcome};

/// `confidant manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Print the JSON Schema of the manifest format.
    Schema,
    /// Check a manifest (YAML or JSON) offline: exit 0 valid, 2 invalid, printing every error
    /// as `path: message`.
    Validate {
        /// The manifest file (`-` for stdin).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs a `manifest` subcommand.
pub fn run(cmd: ManifestCommand, format: Format) -> Result<Outcome> {
    match cmd {
        ManifestCommand::Schema => {
            let schema = confidant_manifest::schema();
            crate::outln!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(Outcome::Ok)
        }
        ManifestCommand::Validate { file } => validate(&file, format),
    }
}

fn read_input(path: &Path) -> Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the manifest from stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
    }
    Ok(text)
}

fn validate(path: &Path, format: Format) -> Result<Outcome> {
    let text = read_input(path)?;
    let parsed = Manifest::parse(&text);
    let errors: Vec<ValidationError> = match &parsed {
        Err(e) => vec![e.clone()],
        Ok(m) => m.check().err().unwrap_or_default(),
    };
    if errors.is_empty() {
        let m = parsed.as_ref().ok();
        let hash = m
            .map(|m| hex::encode(m.canonical_hash()))
            .unwrap_or_default();
        let simulation = m.is_some_and(|m| {
            m.packages
                .values()
                .any(|p| p.tee == confidant_attest::Tee::Sim)
        });
        match format {
            Format::Json => {
                let doc = json!({
                    "valid": true,
                    "errors": [],
                    "canonical_hash": format!("sha256:{hash}"),
                    "simulation": simulation,
                });
                crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
            }
            Format::Human => {
                crate::outln!("valid: {}", path.display());
                crate::outln!("canonical hash: sha256:{hash}");
                if simulation {
                    crate::outln!(
                        "SIMULATION: the manifest allows sim packages, which have no hardware protection"
                    );
                }
            }
        }
        return Ok(Outcome::Ok);
    }
    match format {
        Format::Json => {
            let doc = json!({"valid": false, "errors": errors});
            crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Human => {
            for e in &errors {
                crate::outln!("{e}");
            }
            let noun = if errors.len() == 1 { "error" } else { "errors" };
            eprintln!("invalid: {} ({} {noun})", path.display(), errors.len());
        }
    }
    // An invalid manifest is malformed input: exit 2, after the report above.
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(EXIT_MALFORMED));
}
