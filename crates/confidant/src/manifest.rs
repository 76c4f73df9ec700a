//! `confidant manifest …`: offline work on manifests (schema export, validation), and setting
//! and reading the manifest of a coordinator (`set`, `get`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use confidant_manifest::{Manifest, ValidationError};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

use crate::client::{self, CoordinatorArg, UserArgs};
use crate::{EXIT_MALFORMED, Format, Outcome};

/// `confidant manifest` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Print the JSON Schema of the manifest format.
    Schema,
    /// Check a manifest (YAML or JSON) offline: exit 0 valid, 2 invalid, printing every error
    /// as `path: message`.
    Validate {
        /// The manifest file (`-` for stdin).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Set the coordinator's manifest (the first one needs no client certificate; later ones a
    /// user whose role allows `update` on `manifest`).
    Set(SetArgs),
    /// Print a version of the coordinator's manifest (default: the current one), after checking
    /// its hash and the root CA's signature of its record.
    Get(GetArgs),
}

/// Arguments of `manifest set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    #[command(flatten)]
    user: UserArgs,
    /// The manifest (YAML or JSON; `-` for stdin).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Write the recovery owners' encrypted shares here (JSON), when the manifest has a
    /// `recovery` section. They are also served by `GET /api/v1/recovery`.
    #[arg(long, value_name = "FILE")]
    recovery_out: Option<PathBuf>,
}

/// Arguments of `manifest get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The version to print (default: the current one).
    #[arg(long, value_name = "N")]
    version: Option<u64>,
}

/// Runs a `manifest` subcommand.
pub(crate) fn run(cmd: ManifestCommand, home: &Path, format: Format) -> Result<Outcome> {
    match cmd {
        ManifestCommand::Schema => {
            let schema = confidant_manifest::schema();
            crate::outln!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(Outcome::Ok)
        }
        ManifestCommand::Validate { file } => validate(&file, format),
        ManifestCommand::Set(args) => set(args, home, format),
        ManifestCommand::Get(args) => get(args, home, format),
    }
}

fn read_input(path: &Path) -> Result<String> {
    crate::input::read_text_capped(path, "manifest", crate::input::MAX_MANIFEST)
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

/// `manifest set`: `POST /api/v1/manifest`; checks the answered hash against the file's.
fn set(args: SetArgs, home: &Path, format: Format) -> Result<Outcome> {
    let text = read_input(&args.file)?;
    // The hash the coordinator must answer with, when the manifest parses here (an invalid one
    // is still sent: the coordinator lists every error).
    let local = Manifest::parse(&text).ok();
    let local_hash = local.as_ref().map(|m| hex::encode(m.canonical_hash()));
    let simulation = local.as_ref().is_some_and(|m| {
        m.packages
            .values()
            .any(|p| p.tee == confidant_attest::Tee::Sim)
    });
    let (client, _) = client::pinned_client(home, &args.coordinator, Some(&args.user))?;
    let body = client
        .set_manifest(&text)
        .with_context(|| format!("setting the manifest {}", args.file.display()))?;
    let hash = body.hash.as_str();
    if let Some(local) = &local_hash
        && hash.strip_prefix("sha256:").unwrap_or(hash) != local
    {
        bail!("the coordinator answered hash {hash:?}, but the manifest sent hashes to {local}");
    }
    let recovery = body.recovery.as_ref();
    if let (Some(r), Some(out)) = (recovery, &args.recovery_out) {
        std::fs::write(out, format!("{}\n", serde_json::to_string_pretty(r)?))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    match format {
        Format::Json => {
            let mut doc = serde_json::to_value(&body)?;
            if recovery.is_some() {
                doc["recovery_out"] = json!(args.recovery_out);
            }
            crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Human => {
            crate::outln!("manifest set: version {}", body.version);
            crate::outln!("  hash      {hash}");
            crate::outln!("  previous  {}", body.previous.as_deref().unwrap_or("none"));
            if simulation {
                crate::outln!(
                    "SIMULATION: the manifest allows sim packages, which have no hardware protection"
                );
            }
            if let Some(r) = recovery {
                let (n, t) = (r.shares.len(), r.threshold);
                match &args.recovery_out {
                    Some(out) => crate::outln!(
                        "recovery: {n} encrypted shares (threshold {t}) written to {}",
                        out.display()
                    ),
                    None => crate::outln!(
                        "recovery: {n} encrypted shares (threshold {t}); the coordinator serves them \
                         at GET /api/v1/recovery (or pass --recovery-out FILE)"
                    ),
                }
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `manifest get`: `GET /api/v1/manifest[?version=N]`, checked with [`check_record`].
fn get(args: GetArgs, home: &Path, format: Format) -> Result<Outcome> {
    let (client, saved) = client::pinned_client(home, &args.coordinator, None)?;
    let record = client
        .manifest(args.version)
        .context("reading the manifest")?;
    check_record(&record, &saved.root)?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&record)?),
        Format::Human => {
            crate::outln!("version   {}", record.version);
            crate::outln!("hash      {}", record.hash);
            crate::outln!("previous  {}", record.previous.as_deref().unwrap_or("none"));
            crate::outln!("time      {}", record.time);
            crate::outln!(
                "set_by    {}",
                record.set_by.as_deref().unwrap_or("(first manifest)")
            );
            crate::outln!("signature valid (root CA)");
            crate::outln!("{}", serde_json::to_string_pretty(&record.manifest)?);
        }
    }
    Ok(Outcome::Ok)
}

/// The domain of a manifest record's signature.
const RECORD_DOMAIN: &[u8] = b"confidant/v1/manifest-record\0";

/// Checks a `GET manifest` answer: the manifest hashes to `hash`, and the root CA signed the
/// record (ECDSA P-256 SHA-256 over the domain and the compact JSON of version, hash, previous,
/// time and set_by).
pub(crate) fn check_record(
    record: &confidant_api::ManifestRecord,
    root: &CertificateDer<'_>,
) -> Result<()> {
    let parsed = Manifest::from_json(&record.manifest.to_string())
        .map_err(|e| anyhow!("the coordinator's manifest does not parse: {e}"))?;
    let hash = hex::encode(parsed.canonical_hash());
    if record.hash.strip_prefix("sha256:").unwrap_or(&record.hash) != hash {
        bail!(
            "the manifest's record says hash {}, but its content hashes to {hash}",
            record.hash
        );
    }
    let signature = B64
        .decode(record.signature.trim())
        .context("the record's signature is not base64")?;
    let (_, cert) = x509_parser::parse_x509_certificate(root.as_ref())
        .map_err(|e| anyhow!("parsing the saved root CA: {e}"))?;
    let key = &cert.public_key().subject_public_key.data;
    let fields = [
        ("version", json!(record.version)),
        ("hash", json!(record.hash)),
        ("previous", json!(record.previous)),
        ("time", json!(record.time)),
        ("set_by", json!(record.set_by)),
    ];
    // The fields in the order the API lists them; the same fields with sorted keys (canonical
    // JSON as the manifest's hash uses it) are accepted too.
    let mut sorted = fields.clone();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let ok = [fields, sorted].iter().any(|order| {
        let body: Vec<String> = order
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::String((*k).to_string())))
            .collect();
        let mut message = RECORD_DOMAIN.to_vec();
        message.extend_from_slice(format!("{{{}}}", body.join(",")).as_bytes());
        webpki::ring::ECDSA_P256_SHA256
            .verify_signature(key, &message, &signature)
            .is_ok()
    });
    if !ok {
        bail!(
            "the signature of manifest version {} does not verify with the saved root CA",
            record.version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

    /// A root CA certificate and a manifest record it signed, as the coordinator makes them.
    fn signed_record() -> (Value, CertificateDer<'static>) {
        // (the record as JSON, so the tests can alter any field)
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["root".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let rng = ring::rand::SystemRandom::new();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &kp.serialize_der(), &rng)
                .unwrap();
        let manifest = json!({"apiVersion": "confidant/v1"});
        let hash = hex::encode(
            Manifest::from_json(&manifest.to_string())
                .unwrap()
                .canonical_hash(),
        );
        let header = format!(
            r#"{{"version":2,"hash":"{hash}","previous":"{}","time":"2026-11-29T10:00:00Z","set_by":"alice"}}"#,
            "11".repeat(32)
        );
        let mut message = RECORD_DOMAIN.to_vec();
        message.extend_from_slice(header.as_bytes());
        let sig = signer.sign(&rng, &message).unwrap();
        let body = json!({
            "version": 2, "hash": hash, "previous": "11".repeat(32),
            "time": "2026-11-29T10:00:00Z", "set_by": "alice", "manifest": manifest,
            "signature": B64.encode(sig.as_ref()),
        });
        (body, cert.der().clone())
    }

    fn rec(body: &Value) -> confidant_api::ManifestRecord {
        serde_json::from_value(body.clone()).unwrap()
    }

    #[test]
    fn a_signed_record_verifies() {
        let (body, root) = signed_record();
        let r = rec(&body);
        check_record(&r, &root).unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.set_by.as_deref(), Some("alice"));
    }

    #[test]
    fn altered_records_are_refused() {
        let (body, root) = signed_record();
        let mut b = body.clone();
        b["set_by"] = json!("mallory");
        let e = check_record(&rec(&b), &root).unwrap_err().to_string();
        assert!(e.contains("does not verify"), "{e}");
        let mut b = body.clone();
        b["manifest"]["config"] = json!({"allow_simulation": true});
        let e = check_record(&rec(&b), &root).unwrap_err().to_string();
        assert!(e.contains("hashes to"), "{e}");
        let (_, other_root) = signed_record();
        let e = check_record(&rec(&body), &other_root)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not verify"), "{e}");
    }
}
