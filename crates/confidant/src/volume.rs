//! `confidant volume create|mount|seal|verify|inspect`: protected volumes on a single machine
//! (a key file and a local state file, no coordinator); `volume seal --coordinator`, which seals
//! a directory into a coordinator's volume (the key into its `key_secret`, the state committed
//! as the user). The agent's side of protected volumes in `confidant run` is
//! [`confidant_agent::volumes`].
//!
//! Key files hold the volume's 256-bit key: 32 raw bytes, or 64 hex digits, or base64 of 32
//! bytes (surrounding whitespace ignored). `volume create` and `volume seal` generate a key file
//! (64 hex digits and a newline, mode 0600) when the given path does not exist yet.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use confidant_shield::{
    FileKind, HEADER_FILE, LocalRootStore, MountOptions, ROOT_INO, SetAttributes, Volume, VolumeKey,
};
use serde_json::{Value, json};

use confidant_agent::volumes::CoordinatorRootStore;

use crate::client::{CoordinatorArg, UserArgs};
use crate::{Format, Outcome};

/// `confidant volume` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum VolumeCommand {
    /// Create an empty protected volume in DIR (an empty or missing directory) and commit
    /// version 1 to the state file.
    Create(CreateArgs),
    /// Mount a volume in the foreground until SIGTERM/SIGINT/SIGHUP or `fusermount3 -u`; then
    /// commit and unmount (exit 0).
    Mount(MountArgs),
    /// Copy a plain directory tree (files, directories, symlinks, modes, owners, mtimes) into a
    /// new volume and commit it: code and data ship encrypted. With --coordinator, the state is
    /// committed to the coordinator's volume --volume as the user of --cert/--key, so that
    /// workloads mount it under `confidant run`.
    Seal(SealArgs),
    /// Check every chunk of every file against the committed state; exit 1 with the list of
    /// problems if any.
    Verify(VerifyArgs),
    /// Show a volume's header facts (no key needed); with the key, its version, root and counts.
    Inspect(InspectArgs),
}

/// The key and the trusted state of a volume.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The volume's 256-bit key: 32 raw bytes, 64 hex digits or base64 (`create` and `seal`
    /// generate it, mode 0600, if the file does not exist).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// The local state file (the trusted version and root hash; default: DIR.state.json next
    /// to DIR). It protects against rollback ONLY when kept where the host cannot roll it back
    /// (inside the TEE's protected storage, or on another machine): kept on the same disk as
    /// DIR, the host can restore both together and mount an older state unnoticed.
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
}

/// Arguments of `volume create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The backing directory (created if missing; must be empty).
    dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

/// Arguments of `volume mount`.
#[derive(Debug, Args)]
pub(crate) struct MountArgs {
    /// The backing directory.
    dir: PathBuf,
    /// Where to mount it (created if missing).
    mountpoint: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    /// Mount read-only (never commits).
    #[arg(long)]
    read_only: bool,
    /// Let the kernel cache writes and send them in large batches (faster small writes; data
    /// not yet fsync'd stays in the page cache).
    #[arg(long)]
    writeback_cache: bool,
    /// Threads serving FUSE requests.
    #[arg(long, default_value_t = MountOptions::default().threads)]
    threads: usize,
}

/// Arguments of `volume seal`.
#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    /// The plain directory to copy.
    src: PathBuf,
    /// The new volume's backing directory (created if missing; must be empty).
    dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    to: SealCoordinatorArgs,
}

/// `volume seal --coordinator ADDR --volume NAME --cert C --key K`: the coordinator holds the
/// sealed volume's state instead of a local state file.
#[derive(Debug, Args)]
pub(crate) struct SealCoordinatorArgs {
    /// Commit the sealed state to this coordinator (`HOST:PORT`, verified before with
    /// `confidant verify`) instead of a local state file, as the user of --cert/--key, whose role
    /// must allow `write` on the volume. If the manifest names the volume's `key_secret`, the
    /// key is set there too (role: `write` on that secret) unless --no-set-key-secret. The
    /// versions continue the coordinator's: sealing again replaces the volume's contents.
    #[arg(
        long,
        value_name = "HOST:PORT",
        requires_all = ["volume", "cert"],
        conflicts_with = "state_file"
    )]
    coordinator: Option<String>,
    /// The volume's name in the coordinator's manifest (with --coordinator).
    #[arg(long, value_name = "NAME", requires = "coordinator")]
    volume: Option<String>,
    /// Do not set the volume's `key_secret` to the key (someone else set it already).
    #[arg(long, requires = "coordinator")]
    no_set_key_secret: bool,
    #[command(flatten)]
    user: UserArgs,
}

/// Arguments of `volume verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The backing directory.
    dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

/// Arguments of `volume inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The backing directory.
    dir: PathBuf,
    /// The volume's key file: adds the committed version, root and file counts.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The local state file (default: DIR.state.json); used only with --key-file. It protects
    /// against rollback only when kept where the host cannot roll it back.
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
}

/// Runs a `volume` subcommand.
pub(crate) fn run(cmd: VolumeCommand, home: &Path, format: Format) -> Result<Outcome> {
    match cmd {
        VolumeCommand::Create(a) => create(a, format),
        VolumeCommand::Mount(a) => mount(a, format),
        VolumeCommand::Seal(a) => seal(a, home, format),
        VolumeCommand::Verify(a) => verify(a, format),
        VolumeCommand::Inspect(a) => inspect(a, format),
    }
}

/// The default state file of a backing directory: `DIR.state.json` next to it.
fn default_state_file(dir: &Path) -> PathBuf {
    let mut s = dir.components().as_path().to_path_buf().into_os_string();
    s.push(".state.json");
    PathBuf::from(s)
}

fn state_store(dir: &Path, state: Option<&PathBuf>) -> Arc<LocalRootStore> {
    let path = state.cloned().unwrap_or_else(|| default_state_file(dir));
    Arc::new(LocalRootStore::new(path))
}

/// Parses a key: 32 raw bytes, 64 hex digits or base64 of 32 bytes.
pub(crate) fn parse_key(bytes: &[u8]) -> Option<VolumeKey> {
    if bytes.len() == 32 {
        return VolumeKey::from_slice(bytes);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.len() == 64
        && let Ok(b) = hex::decode(text)
    {
        return VolumeKey::from_slice(&b);
    }
    let b = zeroize::Zeroizing::new(STANDARD.decode(text).ok()?);
    VolumeKey::from_slice(&b)
}

/// Reads a key file.
pub(crate) fn read_key(path: &Path) -> Result<VolumeKey> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading the key file {}", path.display()))?;
    parse_key(&bytes).ok_or_else(|| {
        anyhow!(
            "{}: expected a 256-bit key: 32 raw bytes, 64 hex digits or base64",
            path.display()
        )
    })
}

/// Reads the key file, or creates it (64 hex digits, mode 0600) if it does not exist.
fn read_or_generate_key(path: &Path, format: Format) -> Result<VolumeKey> {
    if path.exists() {
        return read_key(path);
    }
    let key = VolumeKey::generate().context("generating the volume key")?;
    let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(key.as_bytes())));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing the key file {}", path.display()))?;
    if format == Format::Human {
        eprintln!(
            "generated a new volume key in {} (mode 0600): keep it secret",
            path.display()
        );
    }
    Ok(key)
}

fn print(format: Format, doc: &Value) {
    match format {
        Format::Human => crate::output::print_fields(doc, 0),
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(doc).unwrap_or_default()),
    }
}

fn create(a: CreateArgs, format: Format) -> Result<Outcome> {
    let key = read_or_generate_key(&a.key.key_file, format)?;
    let store = state_store(&a.dir, a.key.state_file.as_ref());
    let path = store.path().to_path_buf();
    let v = Volume::create(&a.dir, key, store)
        .with_context(|| format!("creating a volume in {}", a.dir.display()))?;
    let s = v.state();
    print(
        format,
        &json!({
            "volume": hex::encode(v.id()),
            "dir": a.dir.display().to_string(),
            "state_file": path.display().to_string(),
            "version": s.version,
            "root": hex::encode(s.root),
        }),
    );
    Ok(Outcome::Ok)
}

fn mount(a: MountArgs, format: Format) -> Result<Outcome> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Signals are taken over before anything is mounted: from here on they end the mount
    // cleanly (commit, unmount) instead of killing the process.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    let key = read_key(&a.key.key_file)?;
    let store = state_store(&a.dir, a.key.state_file.as_ref());
    let volume = Volume::open(&a.dir, key, store, a.read_only)
        .with_context(|| format!("refusing to mount {}", a.dir.display()))?;
    let opened = volume.state();
    std::fs::create_dir_all(&a.mountpoint)
        .with_context(|| format!("creating {}", a.mountpoint.display()))?;
    let mountpoint = std::fs::canonicalize(&a.mountpoint)
        .with_context(|| format!("resolving {}", a.mountpoint.display()))?;
    let options = MountOptions {
        writeback_cache: a.writeback_cache,
        threads: a.threads.max(1),
        ..MountOptions::default()
    };
    let id = hex::encode(volume.id());
    let handle = confidant_shield::mount(Arc::new(volume), &mountpoint, &options)
        .with_context(|| format!("mounting at {}", mountpoint.display()))?;
    if format == Format::Human {
        eprintln!(
            "mounted volume {id} (version {}, {}) at {}; SIGTERM or SIGINT commits and unmounts",
            opened.version,
            if a.read_only {
                "read-only"
            } else {
                "read-write"
            },
            mountpoint.display()
        );
    }
    let mut signal = None;
    while signal.is_none() {
        signal = signals.pending().next();
        if signal.is_none() {
            if !confidant_shield::mountinfo::is_mounted(&mountpoint) {
                break; // unmounted from outside (fusermount3 -u)
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let committed = handle
        .unmount()
        .with_context(|| format!("committing volume {id} at unmount"))?;
    let doc = json!({
        "volume": id,
        "mountpoint": mountpoint.display().to_string(),
        "mounted_version": opened.version,
        "version": committed.version,
        "root": hex::encode(committed.root),
        "signal": signal,
    });
    match format {
        Format::Human => eprintln!(
            "unmounted {}; committed version {} (root {})",
            mountpoint.display(),
            committed.version,
            hex::encode(committed.root)
        ),
        Format::Json => print(format, &doc),
    }
    Ok(Outcome::Ok)
}

/// What `seal` copied.
#[derive(Debug, Default)]
struct Copied {
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
}

fn mtime_of(m: &std::fs::Metadata) -> Option<std::time::SystemTime> {
    m.modified().ok()
}

/// Copies the directory `src` into directory `ino` of `volume`, recursively.
fn copy_tree(volume: &Volume, ino: u64, src: &Path, copied: &mut Copied) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let at = |r: confidant_shield::Result<confidant_shield::Attributes>| {
            r.with_context(|| format!("copying {} into the volume", path.display()))
        };
        let ft = meta.file_type();
        let set = SetAttributes {
            mode: Some(meta.mode() & 0o7777),
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
            mtime: mtime_of(&meta),
            ..SetAttributes::default()
        };
        if ft.is_dir() {
            let a = at(volume.mkdir(ino, &name, meta.mode() & 0o7777, meta.uid(), meta.gid()))?;
            copied.dirs += 1;
            copy_tree(volume, a.ino, &path, copied)?;
            at(volume.setattr(a.ino, &set))?;
        } else if ft.is_file() {
            let a =
                at(volume.create_file(ino, &name, meta.mode() & 0o7777, meta.uid(), meta.gid()))?;
            volume
                .open_file(a.ino)
                .with_context(|| format!("opening {} in the volume", path.display()))?;
            let written = copy_file(volume, a.ino, &path);
            volume.release_file(a.ino);
            copied.bytes += written?;
            at(volume.setattr(a.ino, &set))?;
            copied.files += 1;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .with_context(|| format!("reading the link {}", path.display()))?;
            let a = at(volume.symlink(ino, &name, &target, meta.uid(), meta.gid()))?;
            let set = SetAttributes {
                mtime: mtime_of(&meta),
                ..SetAttributes::default()
            };
            at(volume.setattr(a.ino, &set))?;
            copied.symlinks += 1;
        } else {
            bail!(
                "{}: only regular files, directories and symlinks can be sealed",
                path.display()
            );
        }
    }
    Ok(())
}

fn copy_file(volume: &Volume, ino: u64, path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(offset);
        }
        volume
            .write(ino, offset, &buf[..n])
            .with_context(|| format!("writing {} into the volume", path.display()))?;
        offset += n as u64;
    }
}

/// Copies `src` into the new volume `volume` (its root takes `src`'s mode, owner and mtime).
fn seal_into(volume: &Volume, src: &Path) -> Result<Copied> {
    let meta = std::fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if !meta.is_dir() {
        bail!("{}: expected a directory", src.display());
    }
    let mut copied = Copied::default();
    copy_tree(volume, ROOT_INO, src, &mut copied)?;
    volume
        .setattr(
            ROOT_INO,
            &SetAttributes {
                mode: Some(meta.mode() & 0o7777),
                uid: Some(meta.uid()),
                gid: Some(meta.gid()),
                mtime: mtime_of(&meta),
                ..SetAttributes::default()
            },
        )
        .context("setting the volume root's attributes")?;
    Ok(copied)
}

fn seal(a: SealArgs, home: &Path, format: Format) -> Result<Outcome> {
    if !a.src.is_dir() {
        bail!("{}: expected a directory to seal", a.src.display());
    }
    let empty = confidant_agent::volumes::is_empty_dir(&a.dir)
        .with_context(|| format!("reading {}", a.dir.display()))?;
    if !empty {
        bail!(
            "{}: not empty: a volume is sealed into an empty or missing directory",
            a.dir.display()
        );
    }
    let key = read_or_generate_key(&a.key.key_file, format)?;
    let (volume, mut doc) = match (&a.to.coordinator, &a.to.volume) {
        (Some(address), Some(name)) => seal_to_coordinator(&a, home, address, name, key)?,
        _ => {
            let store = state_store(&a.dir, a.key.state_file.as_ref());
            let path = store.path().to_path_buf();
            let volume = Volume::create(&a.dir, key, store)
                .with_context(|| format!("creating a volume in {}", a.dir.display()))?;
            (volume, json!({"state_file": path.display().to_string()}))
        }
    };
    let copied = seal_into(&volume, &a.src)?;
    let s = volume.commit().context("committing the sealed volume")?;
    if let Some(m) = doc.as_object_mut() {
        for (k, v) in [
            ("volume", json!(hex::encode(volume.id()))),
            ("dir", json!(a.dir.display().to_string())),
            ("version", json!(s.version)),
            ("root", json!(hex::encode(s.root))),
            ("files", json!(copied.files)),
            ("dirs", json!(copied.dirs)),
            ("symlinks", json!(copied.symlinks)),
            ("bytes", json!(copied.bytes)),
        ] {
            m.insert(k.into(), v);
        }
    }
    print(format, &doc);
    Ok(Outcome::Ok)
}

/// `seal --coordinator`: sets the volume's `key_secret` (unless told not to), then creates the
/// volume after the version the coordinator holds, committing through the API as the user.
fn seal_to_coordinator(
    a: &SealArgs,
    home: &Path,
    address: &str,
    name: &str,
    key: VolumeKey,
) -> Result<(Volume, Value)> {
    crate::client::check_name("volume name", name)?;
    let coordinator = CoordinatorArg {
        coordinator: address.to_string(),
    };
    let (client, _) = crate::client::pinned_client(home, &coordinator, Some(&a.to.user))?;
    let record = client
        .manifest(None)
        .context("reading the coordinator's manifest")?;
    let manifest = confidant_manifest::Manifest::from_json(&record.manifest.to_string())
        .map_err(|e| anyhow!("the coordinator's manifest does not parse: {e}"))?;
    let Some(spec) = manifest.volumes.get(name) else {
        bail!("the coordinator's manifest has no volume {name:?}");
    };
    if spec.policy == confidant_manifest::VolumePolicy::Ephemeral {
        bail!(
            "volume {name} is ephemeral: it starts empty at every activation, it cannot be sealed"
        );
    }
    let key_secret = spec.key_secret.clone();
    // Read the state first: a user who may not see the volume changes nothing.
    let store = Arc::new(CoordinatorRootStore::new(client, name));
    let held = store.fetch()?;
    match &key_secret {
        None => tracing::warn!(
            volume = %name,
            "the manifest names no key_secret for this volume: workloads get the coordinator's own key for it, not this one, and will not open it"
        ),
        Some(secret) if !a.to.no_set_key_secret => {
            crate::client::check_name("secret name", secret)?;
            store
                .with_client(|c| c.put_secret(secret, key.as_bytes()))
                .with_context(|| {
                    format!("setting secret {secret}, the key of volume {name} (or give --no-set-key-secret if it is set already)")
                })?;
        }
        Some(_) => {}
    }
    let volume = Volume::create_at(&a.dir, key, store, held.version + 1).with_context(|| {
        format!(
            "creating volume {name} in {} after version {} at the coordinator",
            a.dir.display(),
            held.version
        )
    })?;
    Ok((
        volume,
        json!({
            "coordinator": address,
            "volume_name": name,
            "key_secret": key_secret,
            "replaced_version": held.version,
        }),
    ))
}

fn verify(a: VerifyArgs, format: Format) -> Result<Outcome> {
    let key = read_key(&a.key.key_file)?;
    let store = state_store(&a.dir, a.key.state_file.as_ref());
    let volume = match Volume::open(&a.dir, key, store, true) {
        Ok(v) => v,
        Err(
            e @ (confidant_shield::Error::Tampered { .. }
            | confidant_shield::Error::RolledBack { .. }
            | confidant_shield::Error::Format { .. }),
        ) => {
            let doc = json!({"ok": false, "problems": [{"object": a.dir.display().to_string(), "detail": e.to_string()}]});
            match format {
                Format::Human => eprintln!("{}: FAILED: {e}", a.dir.display()),
                Format::Json => print(format, &doc),
            }
            return Ok(Outcome::Rejected);
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", a.dir.display())),
    };
    let report = volume
        .verify()
        .with_context(|| format!("verifying {}", a.dir.display()))?;
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| json!({"object": p.object, "chunk": p.chunk, "detail": p.detail}))
        .collect();
    let doc = json!({
        "ok": report.is_clean(),
        "volume": hex::encode(volume.id()),
        "version": report.version,
        "files": report.files,
        "chunks": report.chunks,
        "problems": problems,
    });
    match format {
        Format::Human => {
            for p in &report.problems {
                match p.chunk {
                    Some(c) => eprintln!("{}: chunk {c}: {}", p.object, p.detail),
                    None => eprintln!("{}: {}", p.object, p.detail),
                }
            }
            if report.is_clean() {
                crate::outln!(
                    "ok: version {}, {} files, {} chunks checked",
                    report.version,
                    report.files,
                    report.chunks
                );
            } else {
                eprintln!(
                    "FAILED: {} problems in version {} ({} files, {} chunks checked)",
                    report.problems.len(),
                    report.version,
                    report.files,
                    report.chunks
                );
            }
        }
        Format::Json => print(format, &doc),
    }
    Ok(if report.is_clean() {
        Outcome::Ok
    } else {
        Outcome::Rejected
    })
}

/// Files (objects) and bytes under `dir`, and the index versions present.
fn objects(dir: &Path) -> Result<(u64, u64, Vec<u64>)> {
    let (mut count, mut bytes, mut indexes) = (0, 0, Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let m = std::fs::symlink_metadata(e.path())?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                count += 1;
                bytes += m.len();
                if d == dir
                    && let Some(v) = e
                        .file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("index-"))
                        .and_then(|v| v.parse().ok())
                {
                    indexes.push(v);
                }
            }
        }
    }
    indexes.sort_unstable();
    Ok((count, bytes, indexes))
}

/// Files, directories, symlinks and file bytes in a volume.
fn count_tree(volume: &Volume) -> Result<Copied> {
    let mut c = Copied::default();
    let mut stack = vec![ROOT_INO];
    while let Some(ino) = stack.pop() {
        for e in volume.readdir(ino)? {
            match e.kind {
                FileKind::Dir => {
                    c.dirs += 1;
                    stack.push(e.ino);
                }
                FileKind::File => {
                    c.files += 1;
                    c.bytes += volume.getattr(e.ino)?.size;
                }
                FileKind::Symlink => c.symlinks += 1,
            }
        }
    }
    Ok(c)
}

fn inspect(a: InspectArgs, format: Format) -> Result<Outcome> {
    let hpath = a.dir.join(HEADER_FILE);
    let hbytes = std::fs::read(&hpath).with_context(|| format!("reading {}", hpath.display()))?;
    let header = confidant_shield::format::Header::parse(&hbytes)
        .map_err(|e| anyhow!("{}: {e}", hpath.display()))?;
    let (count, bytes, indexes) = objects(&a.dir)?;
    let created = i64::try_from(header.created)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut doc = json!({
        "volume": hex::encode(header.volume_id),
        "format_version": header.format_version,
        "created": created,
        "objects": count,
        "bytes": bytes,
        "index_versions": indexes,
    });
    if let Some(kf) = &a.key_file {
        let key = read_key(kf)?;
        let store = state_store(&a.dir, a.state_file.as_ref());
        let volume = Volume::open(&a.dir, key, store, true)
            .with_context(|| format!("opening {}", a.dir.display()))?;
        let s = volume.state();
        let c = count_tree(&volume)?;
        doc["version"] = s.version.into();
        doc["root"] = hex::encode(s.root).into();
        doc["files"] = c.files.into();
        doc["dirs"] = c.dirs.into();
        doc["symlinks"] = c.symlinks.into();
        doc["file_bytes"] = c.bytes.into();
    }
    print(format, &doc);
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_raw_hex_and_base64() {
        let raw = [7u8; 32];
        assert!(parse_key(&raw).is_some());
        let hexed = format!("{}\n", hex::encode(raw));
        assert_eq!(parse_key(hexed.as_bytes()).unwrap().as_bytes(), &raw, "hex");
        let b64 = STANDARD.encode(raw);
        assert_eq!(parse_key(b64.as_bytes()).unwrap().as_bytes(), &raw);
        assert!(parse_key(b"short").is_none());
        assert!(parse_key(format!("{}\n", hex::encode([1u8; 16])).as_bytes()).is_none());
    }

    #[test]
    fn the_default_state_file_is_next_to_the_directory() {
        assert_eq!(
            default_state_file(Path::new("/a/vol/")),
            PathBuf::from("/a/vol.state.json")
        );
    }
}
