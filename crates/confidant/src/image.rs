//! `confidant image …`: inspect, copy, encrypt, decrypt and unpack images, with skopeo's
//! transport syntax (`oci:DIR[:TAG]`, `docker-archive:FILE[:REF]`, `docker://HOST/REPO:TAG`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use confidant_image::copy::{self, LayerOp, Platform, Progress};
use confidant_image::crypt::{DecryptionKeys, Recipients};
use confidant_image::transport::{ImageName, TransportOptions, open_destination, open_source};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::{Format, Outcome};

/// `confidant image` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Show an image's manifest: layers, media types, encryption, platform.
    Inspect {
        /// The image (`oci:DIR[:TAG]`, `docker-archive:FILE`, `docker://HOST/REPO:TAG`).
        src: String,
        #[command(flatten)]
        transport: TransportArgs,
    },
    /// Copy an image from a registry (or any transport) to another transport.
    Pull(CopyArgs),
    /// Copy an image to a registry (or any transport).
    Push(CopyArgs),
    /// Encrypt every layer (ocicrypt format, readable by skopeo and containerd).
    Encrypt {
        /// A recipient: `jwe:PUBLIC.pem` (RSA or EC P-256/P-384/P-521); repeatable.
        #[arg(long = "recipient", value_name = "jwe:FILE")]
        recipients: Vec<String>,
        /// Also wrap the layer keys for the coordinator (its image public key, PEM).
        #[arg(long, value_name = "FILE")]
        coordinator_key: Option<PathBuf>,
        #[command(flatten)]
        copy: CopyArgs,
    },
    /// Decrypt every encrypted layer.
    Decrypt {
        /// A private key: `jwe:PRIVATE.pem`; repeatable.
        #[arg(long = "key", value_name = "jwe:FILE")]
        keys: Vec<String>,
        #[command(flatten)]
        copy: CopyArgs,
    },
    /// Decrypt (if needed), verify and unpack an image into a directory; nothing is written
    /// outside it, and nothing at all unless every layer verifies.
    Unpack {
        /// A private key for encrypted layers: `jwe:PRIVATE.pem`; repeatable.
        #[arg(long = "key", value_name = "jwe:FILE")]
        keys: Vec<String>,
        /// The image.
        src: String,
        /// The directory to create.
        dir: PathBuf,
        #[command(flatten)]
        transport: TransportArgs,
    },
}

/// Source and destination of a copy.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// Where the image is read.
    src: String,
    /// Where the image is written.
    dst: String,
    #[command(flatten)]
    transport: TransportArgs,
}

/// Registry and platform options.
#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    /// Talk plain HTTP to a loopback registry (refused for any other host).
    #[arg(long)]
    plain_http: bool,
    /// Registry credentials `USER:PASSWORD` (else ~/.docker/config.json and containers auth.json).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// A PEM CA bundle to trust for registry TLS.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Platform to pick from a multi-arch image: `OS/ARCH[/VARIANT]` (default: this machine's).
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
}

impl TransportArgs {
    fn options(&self) -> Result<TransportOptions> {
        let mut o = TransportOptions {
            ca_file: self.ca_file.clone(),
            plain_http: self.plain_http,
            ..Default::default()
        };
        if let Some(c) = &self.creds {
            let (u, p) = c.split_once(':').context("--creds must be USER:PASSWORD")?;
            o.credentials = Some((u.to_string(), p.to_string()));
        }
        if let Some(p) = &self.platform {
            let parts: Vec<&str> = p.split('/').collect();
            o.platform = match parts.as_slice() {
                [os, arch] => Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: None,
                },
                [os, arch, v] => Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(v.to_string()),
                },
                _ => bail!("--platform must be OS/ARCH[/VARIANT], got {p:?}"),
            };
        }
        Ok(o)
    }
}

/// Per-layer progress bars on a terminal.
struct Bars {
    multi: MultiProgress,
    bars: std::sync::Mutex<Vec<ProgressBar>>,
}

impl Bars {
    fn new() -> Option<Bars> {
        std::io::stderr().is_terminal().then(|| Bars {
            multi: MultiProgress::new(),
            bars: Default::default(),
        })
    }
}

impl Progress for Bars {
    fn layer_start(&self, index: usize, digest: &str, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "layer {prefix:>2} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{index}"));
        bar.set_message(digest[..digest.len().min(19)].to_string());
        if let Ok(mut b) = self.bars.lock() {
            b.push(bar);
        }
    }

    fn layer_advance(&self, index: usize, bytes: u64) {
        if let Ok(b) = self.bars.lock()
            && let Some(bar) = b.get(index)
        {
            bar.inc(bytes);
        }
    }

    fn layer_done(&self, index: usize) {
        if let Ok(b) = self.bars.lock()
            && let Some(bar) = b.get(index)
        {
            bar.finish();
        }
    }
}

fn progress(format: Format) -> Box<dyn Progress> {
    match (format, Bars::new()) {
        (Format::Human, Some(b)) => Box::new(b),
        _ => Box::new(copy::NoProgress),
    }
}

fn keys_from(specs: &[String]) -> Result<DecryptionKeys> {
    if specs.is_empty() {
        bail!("give at least one --key jwe:PRIVATE.pem");
    }
    let mut keys = DecryptionKeys::default();
    for s in specs {
        keys.jwe.push(
            confidant_image::crypt::jwe::parse_decryption_key(s)
                .with_context(|| format!("key {s}"))?,
        );
    }
    Ok(keys)
}

/// How a copy is named: while it runs (for errors) and once done.
struct Verb {
    doing: &'static str,
    done: &'static str,
}

const COPY: Verb = Verb {
    doing: "copying",
    done: "copied",
};
const ENCRYPT: Verb = Verb {
    doing: "encrypting",
    done: "encrypted",
};
const DECRYPT: Verb = Verb {
    doing: "decrypting",
    done: "decrypted",
};

fn run_copy(args: &CopyArgs, op: LayerOp<'_>, format: Format, verb: Verb) -> Result<Outcome> {
    let opts = args.transport.options()?;
    let src_name = ImageName::parse(&args.src)?;
    let dst_name = ImageName::parse(&args.dst)?;
    let mut src = open_source(&src_name, &opts)?;
    let mut dst = open_destination(&dst_name, &opts)?;
    let p = progress(format);
    let report = copy::copy_image(src.as_mut(), dst.as_mut(), &opts.platform, op, p.as_ref())
        .with_context(|| format!("{} {src_name} to {dst_name}", verb.doing))?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => {
            crate::outln!("{} {src_name} -> {dst_name}", verb.done);
            crate::outln!("  manifest  {}", report.manifest_digest);
            for (i, l) in report.layers.iter().enumerate() {
                crate::outln!("  layer {i}   {} {} ({} bytes)", l.to, l.media_type, l.size);
            }
        }
    }
    Ok(Outcome::Ok)
}

/// Runs an `image` subcommand.
pub(crate) fn run(cmd: ImageCommand, format: Format) -> Result<Outcome> {
    match cmd {
        ImageCommand::Inspect { src, transport } => inspect(&src, &transport, format),
        ImageCommand::Pull(a) => run_copy(&a, LayerOp::Keep, format, COPY),
        ImageCommand::Push(a) => run_copy(&a, LayerOp::Keep, format, COPY),
        ImageCommand::Encrypt {
            recipients,
            coordinator_key,
            copy,
        } => {
            if recipients.is_empty() && coordinator_key.is_none() {
                bail!("give at least one --recipient jwe:PUBLIC.pem or --coordinator-key FILE");
            }
            let mut r = Recipients::default();
            for s in &recipients {
                r.jwe.push(
                    confidant_image::crypt::jwe::parse_recipient(s)
                        .with_context(|| format!("recipient {s}"))?,
                );
            }
            if let Some(k) = &coordinator_key {
                r.coordinator = Some(confidant_image::crypt::jwe::parse_recipient(&format!(
                    "jwe:{}",
                    k.display()
                ))?);
            }
            run_copy(&copy, LayerOp::Encrypt(&r), format, ENCRYPT)
        }
        ImageCommand::Decrypt { keys, copy } => {
            let k = keys_from(&keys)?;
            run_copy(&copy, LayerOp::Decrypt(&k), format, DECRYPT)
        }
        ImageCommand::Unpack {
            keys,
            src,
            dir,
            transport,
        } => {
            let opts = transport.options()?;
            let k = if keys.is_empty() {
                DecryptionKeys::default()
            } else {
                keys_from(&keys)?
            };
            let name = ImageName::parse(&src)?;
            let mut s = open_source(&name, &opts)?;
            let p = progress(format);
            let report = confidant_image::rootfs::unpack_image(
                s.as_mut(),
                &opts.platform,
                &k,
                &dir,
                &Default::default(),
                p.as_ref(),
            )
            .map_err(|e| {
                // The hint only where it applies: a layer key is missing, and none was given.
                let hint = if keys.is_empty() && matches!(e, confidant_image::Error::Key(_)) {
                    " (encrypted layers need --key jwe:PRIVATE.pem)"
                } else {
                    ""
                };
                anyhow::Error::new(e)
                    .context(format!("unpacking {name} into {}{hint}", dir.display()))
            })?;
            match format {
                Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&report)?),
                Format::Human => crate::outln!(
                    "unpacked {name} into {} ({} layers, {} bytes)",
                    dir.display(),
                    report.layers,
                    report.bytes
                ),
            }
            Ok(Outcome::Ok)
        }
    }
}

fn inspect(src: &str, transport: &TransportArgs, format: Format) -> Result<Outcome> {
    let opts = transport.options()?;
    let name = ImageName::parse(src)?;
    let mut s = open_source(&name, &opts)?;
    let info = confidant_image::inspect::inspect(s.as_mut(), &opts.platform)?;
    match format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&info)?),
        Format::Human => {
            crate::outln!("{name}");
            crate::output::print_fields(&serde_json::to_value(&info)?, 2);
        }
    }
    Ok(Outcome::Ok)
}
