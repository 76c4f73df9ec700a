//! `confidant generate`: makes the opted-in pods of users' Kubernetes YAML confidential, in
//! place ([`confidant_kube::generate`] does the work; this reads and writes the files and asks
//! the registry for digests).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use std::io::Read as _;

use confidant_image::digest::Digest;
use confidant_image::transport::{ImageName, TransportOptions, open_source};
use confidant_kube::{ImageDefaults, Offline, Options, Platform, Resolve};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::{Format, Outcome};

/// `confidant generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Where the pods run: aks (runtime class kata-cc-isolation), coco-snp (kata-qemu-snp),
    /// coco-tdx (kata-qemu-tdx), sim (any cluster, the SIMULATION TEE: no protection).
    #[arg(long, value_name = "PLATFORM")]
    platform: Platform,
    /// The coordinator as pods reach it, HOST:PORT (e.g. the chart's Service,
    /// confidant.confidant.svc.cluster.local:4433).
    #[arg(long, value_name = "HOST:PORT")]
    coordinator: String,
    /// The coordinator's root CA certificate (PEM; `confidant certificate root` prints the one
    /// `confidant verify` saved). The init container trusts only a coordinator whose chain ends
    /// in it.
    #[arg(long, value_name = "FILE")]
    coordinator_root: PathBuf,
    /// Confidant's own image for the init container and the sidecar, pinned by digest
    /// (`make images` prints it): REPO@sha256:….
    #[arg(long, value_name = "IMAGE")]
    image: String,
    /// Do not ask registries for digests: every image must already be pinned.
    #[arg(long)]
    offline: bool,
    /// Talk plain HTTP to loopback registries when pinning images.
    #[arg(long)]
    plain_http: bool,
    /// Change nothing; exit 1 when a file would change (for CI).
    #[arg(long)]
    check: bool,
    /// YAML files, or directories searched for *.yaml and *.yml (like `kubectl apply -f`).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Digests from the image's registry.
struct Registry {
    options: TransportOptions,
}

impl Resolve for Registry {
    fn digest(&self, image: &str) -> Result<String, String> {
        let name = ImageName::parse(&format!("docker://{image}")).map_err(|e| e.to_string())?;
        let mut source = open_source(&name, &self.options).map_err(|e| e.to_string())?;
        let (bytes, _) = source.manifest().map_err(|e| e.to_string())?;
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))))
    }

    fn image_defaults(&self, image: &str) -> Result<ImageDefaults, String> {
        let name = ImageName::parse(&format!("docker://{image}")).map_err(|e| e.to_string())?;
        let mut source = open_source(&name, &self.options).map_err(|e| e.to_string())?;
        let (mut bytes, _) = source.manifest().map_err(|e| e.to_string())?;
        let parse = |b: &[u8], what: &str| -> Result<serde_json::Value, String> {
            serde_json::from_slice(b).map_err(|e| format!("{image}: its {what} is not JSON: {e}"))
        };
        let mut manifest = parse(&bytes, "manifest")?;
        if let Some(entries) = manifest["manifests"].as_array() {
            // An index: the linux/amd64 image, as the nodes here run it.
            let digest = entries
                .iter()
                .find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"
                })
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| format!("{image}: its index has no linux/amd64 image"))?;
            let digest = Digest::parse(digest).map_err(|e| e.to_string())?;
            bytes = source
                .manifest_by_digest(&digest)
                .map_err(|e| e.to_string())?;
            manifest = parse(&bytes, "manifest")?;
        }
        let config = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| format!("{image}: its manifest names no config"))?;
        let config = Digest::parse(config).map_err(|e| e.to_string())?;
        let mut blob = Vec::new();
        source
            .blob(&config)
            .map_err(|e| e.to_string())?
            .take(4 << 20)
            .read_to_end(&mut blob)
            .map_err(|e| format!("{image}: reading its config: {e}"))?;
        let config = parse(&blob, "config")?;
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(ImageDefaults {
            entrypoint: strings(&config["config"]["Entrypoint"]),
            cmd: strings(&config["config"]["Cmd"]),
            env: strings(&config["config"]["Env"]),
        })
    }
}

/// The YAML files under `paths`, sorted, each once.
fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files)?;
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// SHA-256 (hex) of the first certificate in a PEM file (its DER).
fn root_sha256(path: &Path) -> Result<String> {
    let text =
        crate::input::read_text_capped(path, "the coordinator's root certificate", 256 << 10)?;
    let pem = pem::parse_many(text.as_bytes())
        .map_err(|e| anyhow!("{}: expected a PEM certificate: {e}", path.display()))?
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .ok_or_else(|| anyhow!("{}: expected a PEM CERTIFICATE, found none", path.display()))?;
    x509_parser::parse_x509_certificate(pem.contents())
        .map_err(|e| anyhow!("{}: not an X.509 certificate: {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(pem.contents())))
}

/// Runs `confidant generate`.
pub(crate) fn run(args: GenerateArgs, format: Format) -> Result<Outcome> {
    if !args.image.contains("@sha256:") {
        bail!(
            "--image {}: expected Confidant's image pinned by digest (REPO@sha256:…), as `make images` prints it",
            args.image
        );
    }
    let options = Options {
        platform: args.platform,
        coordinator: args.coordinator.clone(),
        coordinator_root_sha256: root_sha256(&args.coordinator_root)?,
        confidant_image: args.image.clone(),
    };
    let registry = Registry {
        options: TransportOptions {
            plain_http: args.plain_http,
            ..TransportOptions::default()
        },
    };
    let resolve: &dyn Resolve = if args.offline { &Offline } else { &registry };
    if args.platform.is_simulation() {
        eprintln!(
            "SIMULATION: --platform sim: the pods attest with the simulation TEE, which protects nothing; never for real secrets"
        );
    }
    let files = yaml_files(&args.paths)?;
    let mut refusals = Vec::new();
    let mut outputs = Vec::new();
    for path in &files {
        let text = crate::input::read_text_capped(path, "Kubernetes YAML", 16 << 20)?;
        match confidant_kube::generate(&path.display().to_string(), &text, &options, resolve) {
            Ok(g) => outputs.push((path, g)),
            Err(r) => refusals.extend(r),
        }
    }
    if !refusals.is_empty() {
        let lines: Vec<String> = refusals.iter().map(ToString::to_string).collect();
        bail!(
            "{} problem(s), nothing written:\n{}",
            lines.len(),
            lines.join("\n")
        );
    }
    let changed: Vec<&PathBuf> = outputs
        .iter()
        .filter(|(_, g)| g.changed)
        .map(|(p, _)| *p)
        .collect();
    if !args.check {
        for (path, g) in outputs.iter().filter(|(_, g)| g.changed) {
            write_atomically(path, &g.text)?;
        }
    }
    let pods: Vec<_> = outputs
        .iter()
        .flat_map(|(p, g)| g.pods.iter().map(move |pod| (p, pod)))
        .collect();
    match format {
        Format::Json => crate::outln!(
            "{}",
            json!({
                "platform": args.platform.as_str(),
                "simulation": args.platform.is_simulation(),
                "check": args.check,
                "changed": changed,
                "pods": pods.iter().map(|(p, pod)| json!({
                    "file": p, "object": pod.object, "workload": pod.workload,
                    "images": pod.images, "mesh": pod.mesh,
                    "policy_sha256": pod.policy_sha256,
                })).collect::<Vec<_>>(),
            })
        ),
        Format::Human => {
            for (p, pod) in &pods {
                crate::outln!(
                    "{}: {} is workload '{}'{}",
                    p.display(),
                    pod.object,
                    pod.workload,
                    if pod.mesh {
                        ", with the mesh sidecar"
                    } else {
                        ""
                    }
                );
            }
            let verb = if args.check {
                "would change"
            } else {
                "changed"
            };
            for p in &changed {
                crate::outln!("{verb}: {}", p.display());
            }
            if changed.is_empty() {
                crate::outln!("{} file(s) already up to date", files.len());
            }
        }
    }
    Ok(if args.check && !changed.is_empty() {
        Outcome::Rejected
    } else {
        Outcome::Ok
    })
}

/// Replaces `path`'s contents with `text` (a temporary file beside it, renamed over it).
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".confidant-generate.tmp");
    let tmp = PathBuf::from(tmp_name);
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, text)?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("writing {}: {e}", path.display())
    })
}
