//! `confidant secret set|get`: a manifest secret's value, through the coordinator.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::{self, CoordinatorArg, UserArgs};
use crate::{Format, Outcome};

/// The largest value `secret set` sends (the API's limit).
const MAX_VALUE: usize = 1 << 20;

/// `confidant secret` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Set a `plain` secret's value (role: `write` on `secrets`).
    Set(SetArgs),
    /// Read a secret's value (role: `read` on `secrets`).
    Get(GetArgs),
}

/// Arguments of `secret set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    #[command(flatten)]
    user: UserArgs,
    /// The secret's name in the manifest.
    name: String,
    /// Read the value from this file (`-` for stdin), bytes as they are.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "value",
        required_unless_present = "value"
    )]
    file: Option<PathBuf>,
    /// The value, as text (visible in the process list and shell history: prefer --file).
    #[arg(long, value_name = "STRING")]
    value: Option<String>,
}

/// Arguments of `secret get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    #[command(flatten)]
    user: UserArgs,
    /// The secret's name in the manifest.
    name: String,
    /// Write the value to this file (mode 0600) instead of stdout; certificates as certificate
    /// then key PEM.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs a `secret` subcommand.
pub(crate) fn run(cmd: SecretCommand, home: &Path, format: Format) -> Result<Outcome> {
    match cmd {
        SecretCommand::Set(args) => set(args, home, format),
        SecretCommand::Get(args) => get(args, home, format),
    }
}

/// `secret set`: `PUT /api/v1/secrets/NAME` with the value in base64.
fn set(args: SetArgs, home: &Path, format: Format) -> Result<Outcome> {
    client::check_name("secret name", &args.name)?;
    let value = match (&args.file, &args.value) {
        (Some(p), _) if p == Path::new("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("reading the value from stdin")?;
            buf
        }
        (Some(p), _) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        (None, Some(v)) => v.as_bytes().to_vec(),
        (None, None) => bail!("give --file FILE or --value STRING"),
    };
    if value.len() > MAX_VALUE {
        bail!(
            "the value is {} bytes; the coordinator takes at most {MAX_VALUE}",
            value.len()
        );
    }
    let (client, _) = client::pinned_client(home, &args.coordinator, Some(&args.user))?;
    let answer = client
        .put_secret(&args.name, &value)
        .with_context(|| format!("setting secret {}", args.name))?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&answer)?),
        Format::Human => crate::outln!("secret {} set ({} bytes)", args.name, value.len()),
    }
    Ok(Outcome::Ok)
}

/// `secret get`: `GET /api/v1/secrets/NAME`; the value to stdout or `--out`.
fn get(args: GetArgs, home: &Path, format: Format) -> Result<Outcome> {
    client::check_name("secret name", &args.name)?;
    let (client, _) = client::pinned_client(home, &args.coordinator, Some(&args.user))?;
    let body = client
        .secret(&args.name)
        .with_context(|| format!("reading secret {}", args.name))?;
    let kind = body.kind.clone();
    // A `value` is base64 bytes; `cert-*` secrets are PEM certificate, key and public key.
    let bytes: Vec<u8> = match &body.value {
        Some(v) => B64.decode(v.expose().trim()).map_err(|e| {
            anyhow!(
                "the coordinator's value for {} is not base64: {e}",
                args.name
            )
        })?,
        None => {
            let mut pem = String::new();
            for p in [body.cert.as_deref(), body.key.as_ref().map(|k| k.expose())]
                .into_iter()
                .flatten()
            {
                pem.push_str(p);
                if !p.ends_with('\n') {
                    pem.push('\n');
                }
            }
            if pem.is_empty() {
                bail!(
                    "the coordinator's answer for {} has neither `value` nor `cert`",
                    args.name
                );
            }
            pem.into_bytes()
        }
    };
    if let Some(out) = &args.out {
        write_private(out, &bytes)?;
        match format {
            Format::Json => {
                let doc = json!({"name": args.name, "type": kind, "out": out, "size": bytes.len()});
                crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
            }
            Format::Human => crate::outln!(
                "secret {} ({kind}, {} bytes) written to {}",
                args.name,
                bytes.len(),
                out.display()
            ),
        }
        return Ok(Outcome::Ok);
    }
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&body)?),
        Format::Human => match std::str::from_utf8(&bytes) {
            Ok(text) if !text.contains('\0') => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                if !text.ends_with('\n') {
                    let _ = out.write_all(b"\n");
                }
                let _ = out.flush();
            }
            _ => {
                eprintln!("({kind}: binary value, shown as base64; use --out FILE for the bytes)");
                crate::outln!("{}", B64.encode(&bytes));
            }
        },
    }
    Ok(Outcome::Ok)
}

/// Writes `bytes` to a new or truncated file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
