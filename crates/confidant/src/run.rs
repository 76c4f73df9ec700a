//! `confidant run`: the agent. Activates the workload with the coordinator, decrypts and unpacks
//! its image into memory, writes the rendered files, starts the mesh proxy and runs the
//! unmodified app under an OCI runtime; on exit it tears everything down.
//!
//! On this machine the isolation is a container on the host's kernel plus the SIMULATION TEE:
//! the host's root can read the agent's memory and the tmpfs. On a Kata/CoCo pod VM with TDX or
//! SNP the same agent runs inside the guest and the hardware keeps the host out.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, ValueEnum};
use confidant_agent::activation::{WorkloadKey, config_id};
use confidant_agent::memfs::MemFs;
use confidant_agent::netns::NetNs;
use confidant_agent::process::app_process;
use confidant_agent::run_record::RunRecord;
use confidant_agent::runtime::{
    BindMount, BundleSpec, Network, RunOptions, Runtime, User, hold_signals, parse_signal,
    received_signal,
};
use confidant_attest::attester::Attester;
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::sim::SimPlatform;
use confidant_image::copy::{Platform, resolve_manifest_bytes};
use confidant_image::crypt::DecryptionKeys;
use confidant_image::crypt::opts::PrivateLayerBlockCipherOptions;
use confidant_image::rootfs::{image_config, unpack_image};
use confidant_image::transport::{ImageName, TransportOptions, open_source};
use confidant_image::unpack::UnpackOptions;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{self, API, CoordinatorArg};
use crate::{Format, Outcome};

/// Exit code when the agent could not start the app (refused, unreachable, bad image): like
/// `docker run`, 125, so it cannot be mistaken for the app's own exit code.
pub const EXIT_AGENT_FAILED: u8 = 125;

/// Which TEE produces the workload's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TeeChoice {
    /// Detect TDX or SNP (configfs-tsm) or SGX (Gramine); never falls back to simulation.
    Auto,
    /// The SIMULATION TEE: a software platform key, no hardware protection.
    Sim,
}

/// The app's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkChoice {
    /// Its own network namespace with only a loopback interface: its ports are reachable
    /// through the mesh's ingress only, and it reaches out through the mesh's egress only.
    Isolated,
    /// The agent's (host's) network: its plain ports are open to every local process.
    Host,
}

/// `confidant run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    coordinator: CoordinatorArg,
    /// The workload's name in the manifest.
    #[arg(long)]
    workload: String,
    /// The image, with skopeo's transport syntax (`oci:DIR[:TAG]`, `docker://…`,
    /// `docker-archive:FILE`).
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
    /// Publish a mesh ingress port on another host port: `HOST:CONTAINER`, where CONTAINER is
    /// one of the manifest's `mesh.ingress[].port`.
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONTAINER")]
    publish: Vec<String>,
    /// Where an egress peer workload is reached: `WORKLOAD=HOST:PORT` (default 127.0.0.1 and the
    /// manifest's port).
    #[arg(long, value_name = "WORKLOAD=HOST:PORT")]
    peer: Vec<String>,
    /// The TEE that signs the workload's evidence.
    #[arg(long, value_enum, default_value_t = TeeChoice::Auto)]
    tee: TeeChoice,
    /// The app's network: `isolated` (its own namespace, reachable only through the mesh) or
    /// `host` (the agent's network; for apps that need other network access).
    #[arg(long, value_enum, default_value_t = NetworkChoice::Isolated)]
    network: NetworkChoice,
    /// Size of the memory-backed file system holding the decrypted image and rendered files.
    #[arg(long, default_value = "2GiB", value_name = "SIZE")]
    memory: String,
    /// Where the per-run tmpfs is mounted (a new directory under it).
    #[arg(long, default_value = "/run/confidant", value_name = "DIR")]
    run_dir: PathBuf,
    /// Registry: use plain HTTP (loopback registries only).
    #[arg(long)]
    plain_http: bool,
    /// The backing directory of a protected volume the activation grants: `NAME=HOSTDIR`
    /// (default: VOLUME_ROOT/WORKLOAD/NAME). The host sees only ciphertext there.
    #[arg(long = "volume", value_name = "NAME=HOSTDIR")]
    volumes: Vec<String>,
    /// Where protected volumes' backing directories are kept by default.
    #[arg(long, default_value = "/var/lib/confidant/volumes", value_name = "DIR")]
    volume_root: PathBuf,
}

fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            anyhow!("--memory: expected bytes or a number with KiB, MiB, GiB or TiB, got {s:?}")
        })
}

fn say(format: Format, line: &str) {
    if format == Format::Human {
        eprintln!("confidant run: {line}");
    }
}

/// Runs `confidant run`; the app's exit code becomes ours.
pub fn run(args: RunArgs, home: &Path, format: Format) -> Result<Outcome> {
    match agent(args, home, format) {
        Ok(code) => Ok(Outcome::Exit(code)),
        Err(e) => Err(e.context(AgentFailed)),
    }
}

/// Marks an error of the agent (exit 125).
#[derive(Debug)]
pub struct AgentFailed;

impl std::fmt::Display for AgentFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the app was not started")
    }
}

/// How long the app has to stop after a forwarded SIGTERM/SIGINT/SIGHUP before it is killed
/// (as `docker stop`'s default).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Fails if a stop signal arrived: the agent stops between steps and cleans up.
fn check_stop(step: &str) -> Result<()> {
    match received_signal() {
        Some(sig) => bail!("stopped by signal {sig} {step}; nothing was started"),
        None => Ok(()),
    }
}

fn agent(args: RunArgs, home: &Path, format: Format) -> Result<u8> {
    // From here on SIGTERM/SIGINT/SIGHUP stop the agent at its next step (with cleanup), or are
    // forwarded to the app once it runs.
    hold_signals()?;
    let memory = parse_size(&args.memory)?;
    // What runs killed earlier left (their agent gone) goes before this run mounts anything.
    crate::cleanup::before_run(&args.run_dir, &args.runtime, format);
    // The simulation TEE's launch measurement: the agent binary, hashed while the image and the
    // coordinator are asked (on hardware the TEE measures at launch).
    let measuring = (args.tee == TeeChoice::Sim).then(|| {
        let platform_dir = SimPlatform::dir(home);
        std::thread::spawn(move || {
            SimAttester::measure_file_cached(Path::new("/proc/self/exe"), &platform_dir)
        })
    });
    let (client, saved) = client::pinned_client(home, &args.coordinator, None)?;
    let volume_dirs = volume_dirs(&args)?;
    // 1. The image's manifest: its digest is what the package may decrypt.
    let name = ImageName::parse(&args.image)?;
    let topts = TransportOptions {
        plain_http: args.plain_http,
        ..TransportOptions::default()
    };
    let mut src = open_source(&name, &topts)?;
    let platform = Platform::default();
    let manifest_bytes = resolve_manifest_bytes(src.as_mut(), &platform)?;
    let image_digest = format!("sha256:{}", hex::encode(ring_sha256(&manifest_bytes)));
    // 2. Evidence: a fresh key, a nonce from the coordinator, both bound.
    let key = WorkloadKey::generate(&args.workload)?;
    let attester: Box<dyn Attester> = match args.tee {
        TeeChoice::Sim => {
            let platform = SimPlatform::load(&SimPlatform::dir(home))
                .context("the SIMULATION TEE needs a platform key (`confidant attest sim init`)")?;
            let measurement = measuring
                .ok_or_else(|| anyhow!("the agent binary was not measured"))?
                .join()
                .map_err(|_| anyhow!("measuring the agent binary failed"))?
                .context("measuring the agent binary")?;
            say(
                format,
                "SIMULATION TEE: evidence is signed by a software key; the isolation here is a container on the host kernel",
            );
            Box::new(
                SimAttester::new(platform, measurement)
                    .with_config_id(config_id(&image_digest, &args.workload)),
            )
        }
        TeeChoice::Auto => confidant_attest::attester::detect::detect(&Default::default())
            .context("no TEE found (give --tee sim for the SIMULATION TEE)")?,
    };
    let nonce = client.post(&format!("{API}/nonce"), &json!({}))?.body;
    let nonce_hex = nonce["nonce"]
        .as_str()
        .ok_or_else(|| anyhow!("the coordinator's nonce answer has no nonce"))?
        .to_string();
    let nonce = hex::decode(&nonce_hex).context("the coordinator's nonce")?;
    let evidence = attester
        .attest(&key.report_data(&nonce))
        .context("producing evidence")?;
    let request = json!({
        "workload": args.workload,
        "nonce": nonce_hex,
        "csr": key.csr_pem(),
        "evidence": evidence,
        "image_manifest": STANDARD.encode(&manifest_bytes),
    });
    let answer = client
        .post(&format!("{API}/activate"), &request)
        .context("activation")?
        .body;
    let activation = answer["activation"].as_str().unwrap_or("?").to_string();
    say(
        format,
        &format!("activated as {activation} (image {image_digest})"),
    );
    // 3. The image: decrypted with the released layer keys, verified, unpacked into memory.
    check_stop("after activation")?;
    let keys = released_keys(&manifest_bytes, &answer["layer_keys"])?;
    let id = container_id(&args.workload);
    // The app's network namespace is made while the image is unpacked (two `ip` runs).
    let making_netns = (args.network == NetworkChoice::Isolated).then(|| {
        let id = id.clone();
        std::thread::spawn(move || NetNs::create(&id))
    });
    let memfs = MemFs::mount(&args.run_dir.join(&id), memory)?;
    // First in the tmpfs: who owns this run, so that `confidant cleanup` (and the next run)
    // undo it if this process is killed; rewritten before anything it must name is made.
    let mut record = RunRecord::for_this_process()?;
    record.write(memfs.path())?;
    let result = (|| -> Result<(u8, Vec<Value>)> {
        let rootfs = memfs.path().join("rootfs");
        unpack_image(
            src.as_mut(),
            &platform,
            &keys,
            &rootfs,
            &UnpackOptions::default(),
            &confidant_image::copy::NoProgress,
        )
        .context("unpacking the image")?;
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&manifest_bytes).context("the image manifest")?;
        let config = image_config(src.as_mut(), &manifest)?;
        // 4. Parameters: rendered files (read-only binds from the tmpfs), env and args.
        let params = &answer["parameters"];
        let files = write_files(memfs.path(), &params["files"])?;
        let env: BTreeMap<String, String> =
            serde_json::from_value(params["env"].clone()).context("the activation's env")?;
        let argv: Vec<String> =
            serde_json::from_value(params["args"].clone()).context("the activation's args")?;
        let process = app_process(&config, &rootfs, &argv, &env)?;
        // The image's StopSignal: what a stop request (SIGTERM to the agent) reaches the app as.
        let stop_signal = config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().as_deref())
            .map(|s| parse_signal(s).map_err(|e| anyhow!("the image config's StopSignal: {e}")))
            .transpose()?;
        // 5. Protected volumes: opened (or created) as their policy says, checked against the
        // coordinator's version and root, mounted in the tmpfs and bound into the container.
        // Dropping them (any error below) unmounts, which commits.
        check_stop("before the volumes were mounted")?;
        let mut volumes = Vec::new();
        for grant in crate::volume::Grant::parse_all(&answer["volumes"])? {
            let name = grant.volume.clone();
            let dir = volume_dirs
                .get(&name)
                .cloned()
                .unwrap_or_else(|| args.volume_root.join(&args.workload).join(&name));
            let client = if grant.policy == "ephemeral" {
                None
            } else {
                let identity = client::ClientIdentity::from_pem(
                    answer["chain"].as_str().unwrap_or_default(),
                    &key.private_key_pem(),
                )
                .context("the activation's certificate chain")?;
                Some(client::Client::new(
                    &args.coordinator.address()?,
                    &saved.trust(),
                    Some(identity),
                )?)
            };
            let inside = rootfs.join(grant.path.trim_start_matches('/'));
            let new_root_owner = std::fs::symlink_metadata(&inside)
                .ok()
                .filter(std::fs::Metadata::is_dir)
                .map_or((0o755, process.uid, process.gid), |m| {
                    use std::os::unix::fs::MetadataExt as _;
                    (m.mode(), m.uid(), m.gid())
                });
            let ephemeral_dir = if grant.policy == "ephemeral" {
                let parent = dir
                    .parent()
                    .map_or_else(|| args.volume_root.clone(), Path::to_path_buf);
                let eph = crate::volume::ephemeral_dir(&parent, &name)?;
                record.ephemeral_dirs.push(eph.clone());
                record.write(memfs.path())?;
                Some(eph)
            } else {
                None
            };
            let sayer = |l: &str| say(format, l);
            let v = crate::volume::mount_grant(
                grant,
                crate::volume::AgentVolumeConfig {
                    ephemeral_dir,
                    dir,
                    mountpoint: memfs.path().join("volumes").join(&name),
                    new_root_owner,
                    client,
                    say: &sayer,
                },
            )?;
            say(
                format,
                &format!(
                    "volume {name}: mounted version {} at {} ({}, {})",
                    v.mounted_version,
                    v.grant.path,
                    v.grant.policy,
                    if v.grant.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    }
                ),
            );
            volumes.push(v);
        }
        // 6. The app's network namespace, and the mesh proxy with the workload's identity.
        let netns = match making_netns {
            Some(making) => {
                let n = making
                    .join()
                    .map_err(|_| anyhow!("making the app's network namespace panicked"))??;
                say(
                    format,
                    "network: the app's own namespace (its ports are reachable only through the mesh)",
                );
                Some(n)
            }
            None => {
                say(
                    format,
                    "network: the host's (the app's plain ports are open to local processes)",
                );
                None
            }
        };
        let mesh = start_mesh(
            &args,
            &key,
            &answer,
            netns.as_ref().map(NetNs::path),
            format,
        )?;
        // 7. The OCI bundle, run in the foreground.
        let mut spec = BundleSpec::new(&rootfs, process.args.clone());
        spec.env = process.env.clone();
        spec.cwd = PathBuf::from(&process.cwd);
        spec.user = User {
            uid: process.uid,
            gid: process.gid,
            additional_gids: process.additional_gids.clone(),
        };
        spec.hostname = Some(args.workload.clone());
        if let Some(n) = &netns {
            spec.network = Network::Join(n.path().to_path_buf());
        }
        spec.mounts = files;
        spec.mounts
            .extend(volumes.iter().filter_map(crate::volume::AgentVolume::bind));
        let bundle = spec.write_temp(memfs.path())?;
        let runtime = Runtime::with_state_in(&args.runtime, memfs.path())?;
        record.runtime = Some(if args.runtime.components().count() > 1 {
            std::path::absolute(&args.runtime)?
        } else {
            args.runtime.clone()
        });
        record.runtime_root = runtime
            .state_root()
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string);
        record.write(memfs.path())?;
        check_stop("before the app started")?;
        say(
            format,
            &format!(
                "starting {:?} with {}",
                process.args,
                args.runtime.display()
            ),
        );
        let done = Arc::new(AtomicBool::new(false));
        let watchdog = stop_watchdog(
            Runtime::new(runtime.binary(), runtime.state_root()),
            id.clone(),
            done.clone(),
        );
        let mut run_options = RunOptions::new();
        if let Some(signal) = stop_signal {
            run_options = run_options.stop_signal(signal);
        }
        let exit = runtime.run_bundle(bundle, &id, run_options);
        done.store(true, Ordering::SeqCst);
        let _ = watchdog.join();
        if let Some(m) = mesh {
            m.shutdown();
        }
        if let Some(n) = netns
            && let Err(e) = n.remove()
        {
            tracing::error!("{e}");
        }
        let exit = exit?;
        say(format, &format!("the app exited with {}", exit.code()));
        // Unmount the volumes: each commits its last state to the coordinator.
        let mut report = Vec::new();
        for mut v in volumes {
            let name = v.grant.volume.clone();
            let committed = match v.unmount() {
                Ok(s) => s,
                Err(e) => {
                    say(format, &format!("ERROR: volume {name}: {e:#}"));
                    tracing::error!(volume = %name, "unmount: {e:#}");
                    None
                }
            };
            if let Some(s) = committed {
                say(
                    format,
                    &format!("volume {name}: unmounted, committed version {}", s.version),
                );
            }
            report.push(json!({
                "volume": name,
                "path": v.grant.path,
                "policy": v.grant.policy,
                "read_only": v.grant.read_only,
                "mounted_version": v.mounted_version,
                "committed_version": committed.map(|s| s.version),
            }));
        }
        Ok((
            u8::try_from(exit.code()).unwrap_or(EXIT_AGENT_FAILED),
            report,
        ))
    })();
    let released = memfs.release();
    let (code, volumes) = result?;
    released?;
    if format == Format::Json {
        crate::outln!(
            "{}",
            json!({"activation": activation, "image": image_digest, "exit_code": code, "volumes": volumes})
        );
    }
    std::io::stdout().flush().ok();
    Ok(code)
}

/// The `--volume NAME=HOSTDIR` overrides.
fn volume_dirs(args: &RunArgs) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for v in &args.volumes {
        let (name, dir) = v
            .split_once('=')
            .filter(|(n, d)| !n.is_empty() && !d.is_empty())
            .ok_or_else(|| anyhow!("--volume {v:?}: expected NAME=HOSTDIR"))?;
        client::check_name("--volume name", name)?;
        out.insert(name.to_string(), PathBuf::from(dir));
    }
    Ok(out)
}

/// Kills the app if it is still running [`STOP_GRACE`] after a stop signal was forwarded to
/// it (an app that is PID 1 without a handler ignores SIGTERM).
fn stop_watchdog(
    runtime: Runtime,
    id: String,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut since: Option<Instant> = None;
        while !done.load(Ordering::SeqCst) {
            if since.is_none() && received_signal().is_some() {
                since = Some(Instant::now());
            }
            if since.is_some_and(|t| t.elapsed() >= STOP_GRACE) {
                eprintln!(
                    "confidant run: the app did not stop within {} s of the signal; killing it",
                    STOP_GRACE.as_secs()
                );
                let _ = runtime.kill(&id, 9);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn ring_sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

fn container_id(workload: &str) -> String {
    let mut r = [0u8; 4];
    let _ = getrandom_fill(&mut r);
    let clean: String = workload
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("confidant-{clean}-{}", hex::encode(r))
}

fn getrandom_fill(buf: &mut [u8]) -> Result<()> {
    let bytes = client::random_bytes::<4>()?;
    let n = buf.len().min(4);
    buf[..n].copy_from_slice(&bytes[..n]);
    Ok(())
}

/// The coordinator's released layer options, keyed by the `provider.confidant` annotation of
/// the layer they belong to.
fn released_keys(manifest_bytes: &[u8], layer_keys: &Value) -> Result<DecryptionKeys> {
    let mut keys = DecryptionKeys::default();
    let by_digest = layer_keys.as_object().cloned().unwrap_or_default();
    for (_, digest, wrapped) in confidant_image::crypt::provider::wrapped_layer_keys(manifest_bytes)
        .map_err(|e| anyhow!("{e}"))?
    {
        let Some(opts) = by_digest.get(&digest) else {
            bail!("the coordinator released no key for layer {digest}");
        };
        let json = Zeroizing::new(serde_json::to_vec(opts)?);
        let private = PrivateLayerBlockCipherOptions::from_json(&json)?;
        keys.released.insert(wrapped, private);
    }
    Ok(keys)
}

/// Writes the rendered files into the tmpfs and returns their read-only bind mounts.
fn write_files(mem: &Path, files: &Value) -> Result<Vec<BindMount>> {
    let dir = mem.join("files");
    std::fs::create_dir(&dir).context("creating the rendered files' directory")?;
    let mut mounts = Vec::new();
    for (i, (path, content)) in files.as_object().into_iter().flatten().enumerate() {
        let content = content
            .as_str()
            .ok_or_else(|| anyhow!("rendered file {path}: expected text"))?;
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            bail!("rendered file {path:?}: expected an absolute path without `..`");
        }
        let source = dir.join(format!("{i}"));
        std::fs::write(&source, content).with_context(|| format!("writing {path}"))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o444))?;
        }
        mounts.push(BindMount::new(source, path, true));
    }
    Ok(mounts)
}

fn start_mesh(
    args: &RunArgs,
    key: &WorkloadKey,
    answer: &Value,
    app_netns: Option<&Path>,
    format: Format,
) -> Result<Option<confidant_mesh::Mesh>> {
    let mesh = &answer["mesh"];
    let ingress_ports = mesh["ingress"].as_array().cloned().unwrap_or_default();
    let egress_peers = mesh["egress"].as_array().cloned().unwrap_or_default();
    if ingress_ports.is_empty() && egress_peers.is_empty() {
        return Ok(None);
    }
    let mut publish = BTreeMap::new();
    for p in &args.publish {
        let (h, c) = p
            .split_once(':')
            .ok_or_else(|| anyhow!("--publish {p:?}: expected HOST:CONTAINER"))?;
        let (h, c): (u16, u16) = (h.parse()?, c.parse()?);
        publish.insert(c, h);
    }
    let mut peers = BTreeMap::new();
    for p in &args.peer {
        let (w, a) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--peer {p:?}: expected WORKLOAD=HOST:PORT"))?;
        peers.insert(w.to_string(), a.to_string());
    }
    let port = |v: &Value, f: &str| -> Result<u16> {
        v[f].as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| anyhow!("mesh: expected a port in `{f}`, got {}", v[f]))
    };
    let mut ingress = Vec::new();
    for i in &ingress_ports {
        let p = port(i, "port")?;
        let listen: SocketAddr =
            format!("0.0.0.0:{}", publish.get(&p).copied().unwrap_or(p)).parse()?;
        ingress.push(confidant_mesh::IngressConfig {
            name: i["name"].as_str().unwrap_or("ingress").to_string(),
            listen,
            target: format!("127.0.0.1:{}", port(i, "target_port")?).parse()?,
            require_client_cert: true,
            allowed_peers: None,
        });
    }
    let mut egress = Vec::new();
    for e in &egress_peers {
        let workload = e["workload"].as_str().unwrap_or_default().to_string();
        let peer = peers
            .get(&workload)
            .cloned()
            .unwrap_or(format!("127.0.0.1:{}", port(e, "port")?));
        egress.push(confidant_mesh::EgressConfig {
            listen: format!("127.0.0.1:{}", port(e, "local_port")?).parse()?,
            peer,
            peer_workload: workload,
        });
    }
    let identity = confidant_mesh::Identity {
        chain_pem: answer["chain"].as_str().unwrap_or_default().to_string(),
        key_pem: key.private_key_pem(),
        root_pem: answer["root_ca"].as_str().unwrap_or_default().to_string(),
    };
    let options = match app_netns {
        Some(path) => confidant_mesh::MeshOptions::app_netns(path),
        None => confidant_mesh::MeshOptions::default(),
    };
    let m = confidant_mesh::Mesh::start_with(identity, ingress, egress, &options)?;
    for a in m.ingress_addrs() {
        say(format, &format!("mesh ingress (mutual TLS) on {a}"));
    }
    for a in m.egress_addrs() {
        say(format, &format!("mesh egress (plain, local) on {a}"));
    }
    Ok(Some(m))
}
