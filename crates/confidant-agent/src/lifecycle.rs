//! A whole run, composed from the agent's steps: activate ([`crate::activation::activate`]) →
//! decrypt, verify and unpack the image into memory ([`crate::image::Image`]) → write the
//! rendered files ([`crate::files`]) → mount the protected volumes ([`crate::volumes`]) → start
//! the mesh ([`crate::mesh`]) → run the app under the OCI runtime → tear down.
//!
//! Teardown is guaranteed on every path: each resource is a value whose `Drop` undoes it (the
//! mesh stops, volumes unmount and commit, the network namespace and the tmpfs go), released in
//! the reverse order of their making; a stop signal (SIGTERM, SIGINT, SIGHUP) between steps
//! ends the run at the next step with [`RunError::Stopped`]. Once the app's container exists,
//! signals go to the app's process through the OCI runtime (`runc kill`): SIGTERM as the
//! image's `StopSignal`, SIGINT and SIGHUP as they are; SIGTERM and SIGINT are stop requests,
//! after which the app has [`RunConfig::stop_timeout`] to exit before it is killed (SIGKILL).
//! A signal that arrives just before the container starts is delivered once it runs, as a stop
//! request.
//!
//! On a machine without TEE hardware the isolation is a container on the host's kernel plus
//! the SIMULATION TEE: the host's root can read the agent's memory and the tmpfs. On a
//! Kata/CoCo pod VM with TDX or SNP the same agent runs inside the guest and the hardware keeps
//! the host out.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use confidant_client::{Address, Client, Trust};
use confidant_image::transport::TransportOptions;
use confidant_manifest::VolumePolicy;
use serde::Serialize;

use crate::activation::{self, ActivateError, LaunchMeasurement, TeeSource};
use crate::error::AgentError;
use crate::files::{self, FilesError};
use crate::image::{self, Image, ImageError};
use crate::memfs::MemFs;
use crate::mesh::{self, MeshSettings, MeshStartError};
use crate::netns::NetNs;
use crate::process::app_process;
use crate::run_record::RunRecord;
use crate::runtime::{
    self, BundleSpec, Network, RunOptions, Runtime, User, parse_signal, received_signal,
};
use crate::volumes::{self, MountConfig, MountedVolume, VolumeError};

/// The app's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own network namespace with only a loopback interface: its ports are reachable
    /// through the mesh's ingress only, and it reaches out through the mesh's egress only.
    Isolated,
    /// The agent's (host's) network: its plain ports are open to every local process.
    Host,
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The coordinator's address.
    pub coordinator: Address,
    /// How its TLS certificate is trusted (pinned to the root CA `confidant verify` saved).
    pub trust: Trust,
    /// The workload's name in the manifest.
    pub workload: String,
    /// The image, in skopeo's transport syntax.
    pub image: String,
    /// How the image's transport is reached (plain HTTP to a loopback registry, …).
    pub transport: TransportOptions,
    /// The TEE that signs the evidence.
    pub tee: TeeSource,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// The app's network.
    pub network: NetworkMode,
    /// Where the mesh listens and connects beyond the manifest.
    pub mesh: MeshSettings,
    /// Size of the memory-backed file system holding the image and rendered files (bytes).
    pub memory: u64,
    /// Where the run's tmpfs is mounted (a new directory under it).
    pub run_dir: PathBuf,
    /// Protected volumes' backing directories by volume name.
    pub volume_dirs: BTreeMap<String, PathBuf>,
    /// The default place of backing directories: `VOLUME_ROOT/WORKLOAD/NAME`.
    pub volume_root: PathBuf,
    /// How long the app has to exit after a stop request (SIGTERM or SIGINT to the agent)
    /// before it is killed with SIGKILL; `docker stop`'s default is
    /// [`runtime::DEFAULT_STOP_TIMEOUT`] (10 s).
    pub stop_timeout: Duration,
}

/// What a run says while it runs, for the person watching (the CLI prints it).
pub trait Observer: Sync {
    /// One line of progress.
    fn say(&self, line: &str);
}

/// An observer that says nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn say(&self, _line: &str) {}
}

/// A volume's outcome in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeReport {
    /// The volume's name.
    pub volume: String,
    /// Where the app saw it.
    pub path: String,
    /// Its policy.
    pub policy: VolumePolicy,
    /// Mounted read-only.
    pub read_only: bool,
    /// The version mounted.
    pub mounted_version: u64,
    /// The version committed at unmount (None: the unmount failed, or nothing to commit).
    pub committed_version: Option<u64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// The activation, `<workload>/<n>`.
    pub activation: String,
    /// The image manifest's digest.
    pub image: String,
    /// The app's exit code (125 when it could not be told).
    pub exit_code: u8,
    /// The volumes.
    pub volumes: Vec<VolumeReport>,
}

/// The exit code of a run whose app was not started (like `docker run`'s 125, so it cannot be
/// mistaken for the app's own).
pub const EXIT_NOT_STARTED: u8 = 125;

/// Why a run did not start its app, or failed around it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A stop signal arrived before the app started.
    #[error("stopped by signal {signal} {step}; nothing was started")]
    Stopped {
        /// The signal.
        signal: i32,
        /// Where the run was.
        step: &'static str,
    },
    /// The coordinator client could not be made.
    #[error("the coordinator client: {0}")]
    Client(#[from] confidant_client::ClientError),
    /// Activation failed.
    #[error(transparent)]
    Activate(#[from] ActivateError),
    /// The image could not be read, decrypted or unpacked.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The rendered files could not be written.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// A protected volume could not be mounted.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The mesh did not start.
    #[error(transparent)]
    Mesh(#[from] MeshStartError),
    /// The OCI runtime failed.
    #[error(transparent)]
    Runtime(#[from] runtime::RunError),
    /// A local step (tmpfs, network namespace, run record, app process) failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The image's configuration cannot run as asked.
    #[error("{0}")]
    Config(String),
}

/// Fails if a stop signal arrived: the run stops between steps and cleans up.
fn check_stop(step: &'static str) -> Result<(), RunError> {
    match received_signal() {
        Some(signal) => Err(RunError::Stopped { signal, step }),
        None => Ok(()),
    }
}

/// A run's container id: `confidant-<workload>-<8 hex>`.
fn container_id(workload: &str) -> Result<String, RunError> {
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
    let r = confidant_client::random_bytes::<4>()?;
    Ok(format!("confidant-{clean}-{}", hex::encode(r)))
}

/// Runs the workload end to end (see the module documentation) and returns when the app has
/// exited and everything is torn down. Call [`runtime::hold_signals`] first so that stop
/// signals reach the run rather than ending the process.
pub fn run(config: &RunConfig, observer: &dyn Observer) -> Result<RunReport, RunError> {
    // The simulation TEE's launch measurement is taken while the image and coordinator answer.
    let measuring = match &config.tee {
        TeeSource::Simulation { platform_dir } => Some(LaunchMeasurement::start(platform_dir)),
        TeeSource::Detect => None,
    };
    let client = Client::new(&config.coordinator, &config.trust, None)?;
    // 1. The image's manifest: its digest is what the package may decrypt.
    let mut image = Image::open(&config.image, &config.transport)?;
    // 2. Evidence from a fresh key and the coordinator's nonce; the coordinator's answer.
    let attester = activation::attester(&config.tee, measuring, image.digest(), &config.workload)?;
    if attester.tee().is_simulation() {
        observer.say(
            "SIMULATION TEE: evidence is signed by a software key; the isolation here is a container on the host kernel",
        );
    }
    let activated = activation::activate(
        &client,
        &config.workload,
        attester.as_ref(),
        Some(image.manifest()),
    )?;
    observer.say(&format!(
        "activated as {} (image {})",
        activated.name(),
        image.digest()
    ));
    for w in &activated.answer.warnings {
        observer.say(&format!("warning from the coordinator's appraisal: {w}"));
    }
    check_stop("after activation")?;
    let keys = image::released_keys(image.manifest(), &activated.answer.layer_keys)?;
    let id = container_id(&config.workload)?;
    // The app's network namespace is made while the image is unpacked (two `ip` runs).
    let making_netns = (config.network == NetworkMode::Isolated).then(|| {
        let id = id.clone();
        std::thread::spawn(move || NetNs::create(&id))
    });
    let memfs = MemFs::mount(&config.run_dir.join(&id), config.memory)?;
    // First in the tmpfs: who owns this run, so that a cleanup (and the next run) undo it if
    // this process is killed; rewritten before anything it must name is made.
    let mut record = RunRecord::for_this_process()?;
    record.write(memfs.path())?;
    let result = run_in(
        config,
        observer,
        &mut image,
        &keys,
        &activated,
        &id,
        making_netns,
        &memfs,
        &mut record,
    );
    let released = memfs.release();
    let (exit_code, volumes) = result?;
    released?;
    Ok(RunReport {
        activation: activated.answer.activation.clone(),
        image: image.digest().to_string(),
        exit_code,
        volumes,
    })
}

type Making = std::thread::JoinHandle<crate::error::Result<NetNs>>;

/// The steps inside the run's tmpfs; whatever they made is undone when they return.
#[allow(clippy::too_many_arguments)]
fn run_in(
    config: &RunConfig,
    observer: &dyn Observer,
    image: &mut Image,
    keys: &confidant_image::crypt::DecryptionKeys,
    activated: &activation::Activated,
    id: &str,
    making_netns: Option<Making>,
    memfs: &MemFs,
    record: &mut RunRecord,
) -> Result<(u8, Vec<VolumeReport>), RunError> {
    // 3. The image, decrypted with the released layer keys, verified, unpacked into memory,
    // while the app's network namespace is made; the namespace is joined whatever the unpack
    // did, so that it is removed on every path.
    let rootfs = memfs.path().join("rootfs");
    // The unpack budget is what the tmpfs holds: a larger image is refused while unpacking,
    // not when the tmpfs runs full.
    let unpacked = image.unpack(keys, &rootfs, config.memory);
    let netns = match making_netns {
        Some(making) => Some(making.join().map_err(|_| {
            RunError::Config("making the app's network namespace panicked".into())
        })??),
        None => None,
    };
    let image_config = unpacked?;
    // 4. Parameters: rendered files (read-only binds from the tmpfs), env and args.
    let params = &activated.answer.parameters;
    let file_binds = files::bind_rendered_files(memfs.path(), &params.files)?;
    let env: BTreeMap<String, String> = params
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_string()))
        .collect();
    let argv: Vec<String> = params.args.iter().map(|a| a.expose().to_string()).collect();
    let process = app_process(&image_config, &rootfs, &argv, &env)?;
    // The image's StopSignal: what a stop request reaches the app as.
    let stop_signal = image_config
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().as_deref())
        .map(|s| {
            parse_signal(s)
                .map_err(|e| RunError::Config(format!("the image config's StopSignal: {e}")))
        })
        .transpose()?;
    // 5. Protected volumes, opened (or created) as their policy says and checked against the
    // coordinator's version and root; dropping them (any error below) unmounts, which commits.
    check_stop("before the volumes were mounted")?;
    let mut mounted = Vec::new();
    for grant in &activated.answer.volumes {
        let name = grant.volume.clone();
        let dir = config
            .volume_dirs
            .get(&name)
            .cloned()
            .unwrap_or_else(|| config.volume_root.join(&config.workload).join(&name));
        let client = match grant.policy {
            VolumePolicy::Ephemeral => None,
            _ => Some(Client::new(
                &config.coordinator,
                &config.trust,
                Some(activated.client_identity()?),
            )?),
        };
        let inside = rootfs.join(grant.path.trim_start_matches('/'));
        let new_root_owner = std::fs::symlink_metadata(&inside)
            .ok()
            .filter(std::fs::Metadata::is_dir)
            .map_or((0o755, process.uid, process.gid), |m| {
                (m.mode(), m.uid(), m.gid())
            });
        let ephemeral_dir = if grant.policy == VolumePolicy::Ephemeral {
            let parent = dir
                .parent()
                .map_or_else(|| config.volume_root.clone(), Path::to_path_buf);
            let eph = volumes::ephemeral_dir(&parent, &name)?;
            record.ephemeral_dirs.push(eph.clone());
            record.write(memfs.path())?;
            Some(eph)
        } else {
            None
        };
        let say = |l: &str| observer.say(l);
        let v = volumes::mount_grant(
            grant,
            MountConfig {
                ephemeral_dir,
                dir,
                mountpoint: memfs.path().join("volumes").join(&name),
                new_root_owner,
                client,
                say: &say,
            },
        )?;
        observer.say(&format!(
            "volume {name}: mounted version {} at {} ({}, {})",
            v.mounted_version,
            v.path,
            v.policy.as_str(),
            if v.read_only {
                "read-only"
            } else {
                "read-write"
            }
        ));
        mounted.push(v);
    }
    // 6. The mesh, with the workload's identity.
    observer.say(match &netns {
        Some(_) => {
            "network: the app's own namespace (its ports are reachable only through the mesh)"
        }
        None => "network: the host's (the app's plain ports are open to local processes)",
    });
    let settings = MeshSettings {
        app_netns: netns.as_ref().map(|n| n.path().to_path_buf()),
        ..config.mesh.clone()
    };
    let mesh = mesh::start_mesh(activated, &settings)?;
    if let Some(m) = &mesh {
        for a in m.ingress_addrs() {
            observer.say(&format!("mesh ingress (mutual TLS) on {a}"));
        }
        for a in m.egress_addrs() {
            observer.say(&format!("mesh egress (plain, local) on {a}"));
        }
    }
    // 7. The OCI bundle, run in the foreground.
    let mut spec = BundleSpec::new(&rootfs, process.args.clone());
    spec.env = process.env.clone();
    spec.cwd = PathBuf::from(&process.cwd);
    spec.user = User {
        uid: process.uid,
        gid: process.gid,
        additional_gids: process.additional_gids.clone(),
    };
    spec.hostname = Some(config.workload.clone());
    if let Some(n) = &netns {
        spec.network = Network::Join(n.path().to_path_buf());
    }
    spec.mounts = file_binds;
    spec.mounts
        .extend(mounted.iter().filter_map(MountedVolume::bind));
    let bundle = spec
        .write_temp(memfs.path())
        .map_err(|e| RunError::Config(e.to_string()))?;
    let runtime = Runtime::with_state_in(&config.runtime, memfs.path())?;
    record.runtime = Some(if config.runtime.components().count() > 1 {
        std::path::absolute(&config.runtime)
            .map_err(|e| AgentError::io(format!("resolving {}", config.runtime.display()), e))?
    } else {
        config.runtime.clone()
    });
    record.runtime_root = runtime
        .state_root()
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string);
    record.write(memfs.path())?;
    check_stop("before the app started")?;
    observer.say(&format!(
        "starting {:?} with {}",
        process.args,
        config.runtime.display()
    ));
    let mut run_options = RunOptions::new().stop_timeout(config.stop_timeout);
    if let Some(signal) = stop_signal {
        run_options = run_options.stop_signal(signal);
    }
    let exit = runtime.run_bundle(bundle, id, run_options);
    drop(mesh);
    if let Some(n) = netns
        && let Err(e) = n.remove()
    {
        tracing::error!("{e}");
    }
    let exit = exit?;
    observer.say(&format!("the app exited with {}", exit.code()));
    // Unmount the volumes: each commits its last state to the coordinator.
    let mut report = Vec::new();
    for mut v in mounted {
        let committed = match v.unmount() {
            Ok(s) => s,
            Err(e) => {
                observer.say(&format!("ERROR: {e}"));
                tracing::error!(volume = %v.volume, "unmount: {e}");
                None
            }
        };
        if let Some(s) = &committed {
            observer.say(&format!(
                "volume {}: unmounted, committed version {}",
                v.volume, s.version
            ));
        }
        report.push(VolumeReport {
            volume: v.volume.clone(),
            path: v.path.clone(),
            policy: v.policy,
            read_only: v.read_only,
            mounted_version: v.mounted_version,
            committed_version: committed.map(|s| s.version),
        });
    }
    Ok((
        u8::try_from(exit.code()).unwrap_or(EXIT_NOT_STARTED),
        report,
    ))
}
