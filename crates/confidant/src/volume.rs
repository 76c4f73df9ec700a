//! `confidant volume create|mount|seal|verify|inspect`: protected volumes on a single machine
//! (a key file and a local state file, no coordinator); `volume seal --coordinator`, which seals
//! a directory into a coordinator's volume (the key into its `key_secret`, the state committed
//! as the user); and the agent's side of protected volumes in `confidant run`: the
//! [`CoordinatorRootStore`] and the mounts of an activation's `volumes[]` grants.
//!
//! Key files hold the volume's 256-bit key: 32 raw bytes, or 64 hex digits, or base64 of 32
//! bytes (surrounding whitespace ignored). `volume create` and `volume seal` generate a key file
//! (64 hex digits and a newline, mode 0600) when the given path does not exist yet.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use confidant_shield::roots::{RootStore, RootStoreError, VolumeState};
use confidant_shield::{
    FileKind, HEADER_FILE, LocalRootStore, MemoryRootStore, MountHandle, MountOptions, ROOT_INO,
    SetAttributes, Volume, VolumeKey,
};
use serde_json::{Value, json};

use crate::client::{API, ApiError, Body, Client, CoordinatorArg, UserArgs};
use crate::{Format, Outcome};

/// `confidant volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
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
pub struct KeyArgs {
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
pub struct CreateArgs {
    /// The backing directory (created if missing; must be empty).
    dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

/// Arguments of `volume mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
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
pub struct SealArgs {
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
pub struct SealCoordinatorArgs {
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
pub struct VerifyArgs {
    /// The backing directory.
    dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

/// Arguments of `volume inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
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
pub fn run(cmd: VolumeCommand, home: &Path, format: Format) -> Result<Outcome> {
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
pub fn parse_key(bytes: &[u8]) -> Option<VolumeKey> {
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
pub fn read_key(path: &Path) -> Result<VolumeKey> {
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
    if !is_empty_dir(&a.dir)? {
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
    let manifest = client
        .get(&format!("{API}/manifest"))
        .context("reading the coordinator's manifest")?
        .body;
    let spec = &manifest["manifest"]["volumes"][name];
    if spec.is_null() {
        bail!("the coordinator's manifest has no volume {name:?}");
    }
    if spec["policy"].as_str() == Some("ephemeral") {
        bail!(
            "volume {name} is ephemeral: it starts empty at every activation, it cannot be sealed"
        );
    }
    let key_secret = spec["key_secret"].as_str().map(str::to_string);
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
            let body = json!({"value": STANDARD.encode(key.as_bytes())});
            store
                .client
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(
                    reqwest::Method::PUT,
                    &format!("{API}/secrets/{secret}"),
                    Some(Body::Json(&body)),
                )
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

// ---------------------------------------------------------------------------------------------
// The agent's side: the coordinator as root store, and the volumes of an activation.

/// The coordinator's state of a volume: `GET /api/v1/volumes/NAME/state`.
#[derive(Debug, Clone)]
pub struct CoordinatorState {
    /// The committed version (0: none yet).
    pub version: u64,
    /// The committed root (None before the first commit).
    pub root: Option<[u8; 32]>,
}

/// A [`RootStore`] on the coordinator: `GET`/`POST /api/v1/volumes/NAME/state`, as the
/// workload (the certificate of its activation) or as a user whose role allows `write` on the
/// volume (`volume seal --coordinator`).
///
/// A volume reset (`reinitializable`) or a volume sealed again over an older one is created
/// with [`Volume::create_at`] from the coordinator's version + 1, so local and coordinator
/// versions are the same; [`CoordinatorRootStore::reset_from`] marks the first commit of a reset
/// with `reinitialize: true`.
pub struct CoordinatorRootStore {
    client: Mutex<Client>,
    volume: String,
    /// A reset is pending: the commit from this version says `reinitialize: true`.
    reset_from: Mutex<Option<u64>>,
}

impl std::fmt::Debug for CoordinatorRootStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CoordinatorRootStore({})", self.volume)
    }
}

fn unavailable(e: anyhow::Error) -> RootStoreError {
    RootStoreError::Unavailable(format!("{e:#}"))
}

impl CoordinatorRootStore {
    /// A store for volume `volume`, asking the coordinator through `client` (which presents
    /// the workload certificate, or a user's).
    pub fn new(client: Client, volume: &str) -> Self {
        Self {
            client: Mutex::new(client),
            volume: volume.to_string(),
            reset_from: Mutex::new(None),
        }
    }

    fn path(&self) -> String {
        format!("{API}/volumes/{}/state", self.volume)
    }

    /// The coordinator's state of the volume, as it says.
    pub fn fetch(&self) -> Result<CoordinatorState> {
        let answer = self
            .client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.path())
            .with_context(|| format!("reading the state of volume {}", self.volume))?
            .body;
        let version = answer["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("volume state: no version in {answer}"))?;
        let root = match &answer["root"] {
            Value::Null => None,
            Value::String(s) => {
                let mut r = [0u8; 32];
                hex::decode_to_slice(s, &mut r)
                    .map_err(|e| anyhow!("volume state: root {s:?}: {e}"))?;
                Some(r)
            }
            other => bail!("volume state: unexpected root {other}"),
        };
        Ok(CoordinatorState { version, root })
    }

    /// The next commit from `version` (the coordinator's) is a reset of a `reinitializable`
    /// volume to a new, empty one (created with `Volume::create_at(.., version + 1)`).
    pub fn reset_from(&self, version: u64) {
        *self.reset_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
    }

    fn post(&self, body: &Value) -> Result<Value, anyhow::Error> {
        Ok(self
            .client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .post(&self.path(), body)?
            .body)
    }
}

impl RootStore for CoordinatorRootStore {
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError> {
        let s = self.fetch().map_err(unavailable)?;
        match (s.version, s.root) {
            (0, _) | (_, None) => Ok(None),
            (version, Some(root)) => Ok(Some(VolumeState { version, root })),
        }
    }

    fn commit(&self, expected_version: u64, new: VolumeState) -> Result<(), RootStoreError> {
        let mut reset = self.reset_from.lock().unwrap_or_else(|e| e.into_inner());
        let reinitialize = *reset == Some(expected_version);
        let body = json!({
            "expected_version": expected_version,
            "version": new.version,
            "root": hex::encode(new.root),
            "reinitialize": reinitialize,
        });
        match self.post(&body) {
            Ok(_) => {
                *reset = None;
                Ok(())
            }
            Err(e) => {
                let Some(api) = e.downcast_ref::<ApiError>() else {
                    return Err(unavailable(e));
                };
                if api.code == "volume_version_conflict" {
                    let d = api.details.clone().unwrap_or_default();
                    let current = d["current_version"].as_u64().unwrap_or(0);
                    let current_root = d["current_root"].as_str().unwrap_or_default();
                    if current == new.version && current_root == hex::encode(new.root) {
                        // A retry after a lost answer: the coordinator already holds it.
                        *reset = None;
                        return Ok(());
                    }
                    tracing::error!(
                        volume = %self.volume,
                        "commit refused: the coordinator holds version {current}, this mount expected {expected_version}"
                    );
                    return Err(RootStoreError::Conflict {
                        expected: expected_version,
                        found: current,
                    });
                }
                Err(RootStoreError::Unavailable(format!(
                    "the coordinator refused the commit of version {} of volume {}: {api}",
                    new.version, self.volume
                )))
            }
        }
    }
}

/// One `volumes[]` grant of an activation.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The volume's name in the manifest.
    pub volume: String,
    /// Where the app sees it.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// `rollback_protected`, `reinitializable` or `ephemeral`.
    pub policy: String,
    key: Vec<u8>,
}

impl Grant {
    /// Parses the activation's `volumes` array.
    pub fn parse_all(v: &Value) -> Result<Vec<Grant>> {
        let mut out = Vec::new();
        for g in v.as_array().into_iter().flatten() {
            let s = |f: &str| -> Result<String> {
                g[f].as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("activation: volume grant without `{f}`: {g}"))
            };
            let volume = s("volume")?;
            crate::client::check_name("volume name", &volume)?;
            let key = STANDARD
                .decode(s("key")?)
                .with_context(|| format!("volume {volume}: the key is not base64"))?;
            if key.len() != 32 {
                bail!(
                    "volume {volume}: expected a 256-bit key, got {} bytes",
                    key.len()
                );
            }
            out.push(Grant {
                path: s("path")?,
                read_only: g["read_only"].as_bool().unwrap_or(false),
                policy: s("policy")?,
                key,
                volume,
            });
        }
        Ok(out)
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.key.zeroize();
    }
}

/// A volume the agent mounted for the app; unmounting commits.
pub struct AgentVolume {
    /// The grant.
    pub grant: Grant,
    /// The mount (None once unmounted).
    handle: Option<MountHandle>,
    /// The version mounted.
    pub mounted_version: u64,
    /// An ephemeral volume's backing directory, removed at the end.
    ephemeral_dir: Option<PathBuf>,
}

impl AgentVolume {
    /// The bind mount for the bundle.
    pub fn bind(&self) -> Option<confidant_agent::runtime::BindMount> {
        self.handle.as_ref().map(|h| {
            confidant_agent::runtime::BindMount::new(
                h.mountpoint(),
                &self.grant.path,
                self.grant.read_only,
            )
        })
    }

    /// Unmounts (which commits) and removes an ephemeral backing directory; returns the
    /// committed state.
    pub fn unmount(&mut self) -> Result<Option<VolumeState>> {
        let state = match self.handle.take() {
            Some(h) => {
                let mp = h.mountpoint().to_path_buf();
                let s = h
                    .unmount()
                    .with_context(|| format!("unmounting volume {}", self.grant.volume))?;
                let _ = std::fs::remove_dir(&mp);
                Some(s)
            }
            None => None,
        };
        if let Some(d) = self.ephemeral_dir.take() {
            std::fs::remove_dir_all(&d)
                .with_context(|| format!("removing the ephemeral volume {}", d.display()))?;
        }
        Ok(state)
    }
}

impl Drop for AgentVolume {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            tracing::error!("{e:#}");
        }
    }
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut d) => Ok(d.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// How the agent sets up a grant's volume.
pub struct AgentVolumeConfig<'a> {
    /// The backing directory.
    pub dir: PathBuf,
    /// An ephemeral volume's backing directory ([`ephemeral_dir`]): it must not exist yet, and
    /// the caller has recorded it for a cleanup after a crash
    /// ([`confidant_agent::run_record`]). None for other policies.
    pub ephemeral_dir: Option<PathBuf>,
    /// The mountpoint (inside the agent's run dir).
    pub mountpoint: PathBuf,
    /// A new volume's root directory: (mode, uid, gid).
    pub new_root_owner: (u32, u32, u32),
    /// A client presenting the workload certificate (for non-ephemeral volumes).
    pub client: Option<Client>,
    /// Progress lines.
    pub say: &'a dyn Fn(&str),
}

/// A fresh backing directory for ephemeral volume `name` under `parent`, as an absolute path:
/// `PARENT/.ephemeral-NAME-<8 hex>` (the name [`confidant_agent::stale`] removes after a crash).
pub fn ephemeral_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let suffix = hex::encode(crate::client::random_bytes::<4>()?);
    let dir = parent.join(format!(
        "{}{name}-{suffix}",
        confidant_agent::stale::EPHEMERAL_PREFIX
    ));
    std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))
}

/// Opens or creates a grant's volume as its policy says, and mounts it.
pub fn mount_grant(grant: Grant, cfg: AgentVolumeConfig<'_>) -> Result<AgentVolume> {
    let key = VolumeKey::from_slice(&grant.key)
        .ok_or_else(|| anyhow!("volume {}: expected a 256-bit key", grant.volume))?;
    let name = grant.volume.clone();
    let mut ephemeral_dir = None;
    let volume = match grant.policy.as_str() {
        "ephemeral" => {
            let dir = cfg.ephemeral_dir.clone().ok_or_else(|| {
                anyhow!("volume {name} is ephemeral: expected a backing directory for it, got none")
            })?;
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            ephemeral_dir = Some(dir.clone());
            let created = Volume::create(&dir, key, Arc::new(MemoryRootStore::new()));
            match created {
                Ok(v) => {
                    init_root(&v, cfg.new_root_owner)?;
                    v
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e).with_context(|| format!("creating ephemeral volume {name}"));
                }
            }
        }
        policy @ ("rollback_protected" | "reinitializable") => {
            let client = cfg
                .client
                .ok_or_else(|| anyhow!("volume {name}: no coordinator client"))?;
            let store = Arc::new(CoordinatorRootStore::new(client, &name));
            let state = store.fetch()?;
            let empty = is_empty_dir(&cfg.dir)?;
            let dir = cfg.dir.display();
            if empty {
                if grant.read_only {
                    bail!(
                        "volume {name}: refusing to mount: the backing directory {dir} is empty or missing and the mount is read-only (the coordinator holds version {})",
                        state.version
                    );
                }
                if state.version > 0 {
                    if policy == "rollback_protected" {
                        bail!(
                            "volume {name} is rollback_protected: refusing to mount: the backing directory {dir} is empty or missing, but the coordinator holds version {} — the host lost or withheld the volume; restore the latest backing directory",
                            state.version
                        );
                    }
                    (cfg.say)(&format!(
                        "WARNING: volume {name} (reinitializable): the backing directory {dir} is empty or missing while the coordinator holds version {}: STARTING OVER WITH AN EMPTY VOLUME (a reset the coordinator counts and audits)",
                        state.version
                    ));
                    tracing::warn!(volume = %name, coordinator_version = state.version, "reinitializing the volume: its data is gone");
                    store.reset_from(state.version);
                }
                // Versions continue the coordinator's (a reset never goes back).
                let v = Volume::create_at(&cfg.dir, key, store, state.version + 1)
                    .with_context(|| format!("creating volume {name} in {dir}"))?;
                init_root(&v, cfg.new_root_owner)?;
                (cfg.say)(&format!("volume {name}: created a new volume in {dir}"));
                v
            } else {
                if state.version == 0 {
                    bail!(
                        "volume {name}: refusing to mount: the backing directory {dir} is not empty, but the coordinator holds no state for this volume (left from a start that failed before its first commit, or not this volume); move it away to start over"
                    );
                }
                Volume::open(&cfg.dir, key, store, grant.read_only).map_err(|e| {
                    let hint = match &e {
                        confidant_shield::Error::RolledBack { .. } => {
                            " — the backing directory is an older state than the coordinator's (rolled back)"
                        }
                        _ => "",
                    };
                    anyhow!(e).context(format!(
                        "volume {name}: refusing to mount {dir} (the coordinator holds version {}){hint}",
                        state.version
                    ))
                })?
            }
        }
        other => bail!("volume {name}: unknown policy {other:?}"),
    };
    let mounted_version = volume.state().version;
    let mounted = std::fs::create_dir_all(&cfg.mountpoint)
        .with_context(|| format!("creating {}", cfg.mountpoint.display()))
        .and_then(|()| {
            confidant_shield::mount(Arc::new(volume), &cfg.mountpoint, &MountOptions::default())
                .with_context(|| format!("mounting volume {name}"))
        });
    let handle = match mounted {
        Ok(h) => h,
        Err(e) => {
            if let Some(d) = &ephemeral_dir {
                let _ = std::fs::remove_dir_all(d);
            }
            return Err(e);
        }
    };
    Ok(AgentVolume {
        grant,
        handle: Some(handle),
        mounted_version,
        ephemeral_dir,
    })
}

/// Gives a new volume's root directory the mode and owner the app expects, and commits.
fn init_root(v: &Volume, (mode, uid, gid): (u32, u32, u32)) -> Result<()> {
    v.setattr(
        ROOT_INO,
        &SetAttributes {
            mode: Some(mode & 0o7777),
            uid: Some(uid),
            gid: Some(gid),
            ..SetAttributes::default()
        },
    )
    .context("setting the new volume's root owner")?;
    v.commit().context("committing the new volume")?;
    Ok(())
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
