//! Cleaning up after runs whose agent was killed (SIGKILL, the OOM killer) before it could tear
//! its run down: such a run leaves its directory `RUN_DIR/<container id>` with the tmpfs (the
//! decrypted rootfs, in memory), dead FUSE mounts of its protected volumes (`ENOTCONN`), perhaps
//! a container of the OCI runtime (running or stopped), and ephemeral volumes' backing
//! directories outside the run directory.
//!
//! [`sweep`] looks at each `confidant-*` directory in the run directory and its
//! [run record](crate::run_record). A run whose owner still runs is never touched. A run whose
//! owner has ended, or that has no usable record and is older than
//! [`SweepOptions::unowned_grace`] (so that a run being set up is not raced), is cleaned:
//! 1. its container is deleted (`RUNTIME --root STATE delete --force ID`; the state directory
//!    is in the run's tmpfs, so this comes first);
//! 2. the mounts under its directory, as `/proc/self/mountinfo` lists them, are detached deepest
//!    first: FUSE mounts with `fusermount3 -uz`, the rest (the tmpfs) with `umount2(MNT_DETACH)`
//!    (what `umount -l` does);
//! 3. its ephemeral volumes' backing directories are removed;
//! 4. its directory is removed, once no mount is left under it.
//!
//! Sweeps of one run directory take turns (an exclusive `flock` on the directory). Nothing here
//! prints: the outcome is a [`Sweep`] for the caller to report.

use std::fmt;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::mountinfo;
use crate::run_record::{Owner, OwnerStatus, RunRecord, parse_stat};
use crate::runtime::{Runtime, STATE_DIR_PREFIX};

/// The prefix of a run directory's name (`confidant-<workload>-<8 hex>`, the container id).
pub const RUN_PREFIX: &str = "confidant-";

/// The prefix of an ephemeral volume's backing directory's name.
pub const EPHEMERAL_PREFIX: &str = ".ephemeral-";

/// How long a run directory without a usable record is left alone (it may be being set up).
pub const UNOWNED_GRACE: Duration = Duration::from_secs(60);

/// How a sweep decides and acts.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The OCI runtime for runs whose record names none.
    pub runtime: PathBuf,
    /// A run directory without a usable record is cleaned once it is this old.
    pub unowned_grace: Duration,
    /// The time to judge ages against.
    pub now: SystemTime,
}

impl SweepOptions {
    /// `runtime` for runs whose record names none, [`UNOWNED_GRACE`], the current time.
    pub fn new(runtime: impl Into<PathBuf>) -> SweepOptions {
        SweepOptions {
            runtime: runtime.into(),
            unowned_grace: UNOWNED_GRACE,
            now: SystemTime::now(),
        }
    }
}

/// Why a run was judged stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Staleness {
    /// Its owner has ended.
    OwnerGone {
        /// The owner's pid.
        pid: u32,
    },
    /// Its owner's pid now belongs to another process.
    OwnerPidReused {
        /// The owner's pid.
        pid: u32,
    },
    /// It has no usable record and is older than the grace period.
    NoOwnerRecord {
        /// What is wrong with the record.
        problem: String,
        /// The directory's age in seconds.
        age_secs: u64,
    },
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::OwnerGone { pid } => write!(f, "owner pid {pid} gone"),
            Staleness::OwnerPidReused { pid } => {
                write!(f, "owner pid {pid} gone, the pid now another process's")
            }
            Staleness::NoOwnerRecord { problem, age_secs } => {
                write!(f, "{problem}, {age_secs} s old")
            }
        }
    }
}

/// What was done for one stale run.
#[derive(Debug, Clone, Serialize)]
pub struct CleanedRun {
    /// The run's container id (its directory's name).
    pub id: String,
    /// Its directory.
    pub path: PathBuf,
    /// Why it was judged stale.
    pub reason: Staleness,
    /// Whether a container of that id existed and was deleted.
    pub container_deleted: bool,
    /// FUSE mounts (protected volumes) detached.
    pub volumes_unmounted: usize,
    /// Other mounts (the tmpfs, …) detached.
    pub other_unmounted: usize,
    /// Ephemeral volumes' backing directories removed.
    pub ephemeral_removed: Vec<PathBuf>,
    /// Whether the app's network namespace (named like the run) was deleted.
    pub netns_deleted: bool,
    /// Whether the directory is gone.
    pub removed: bool,
    /// What failed.
    pub errors: Vec<String>,
}

impl fmt::Display for CleanedRun {
    /// `<id> (<reason>): deleted container <id>, unmounted 2 volumes and 1 other mount, …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut done = Vec::new();
        if self.container_deleted {
            done.push(format!("deleted container {}", self.id));
        }
        if self.volumes_unmounted > 0 || self.other_unmounted > 0 {
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            let mut what = Vec::new();
            if self.volumes_unmounted > 0 {
                what.push(plural(self.volumes_unmounted, "volume", "volumes"));
            }
            if self.other_unmounted > 0 {
                what.push(plural(self.other_unmounted, "other mount", "other mounts"));
            }
            done.push(format!("unmounted {}", what.join(" and ")));
        }
        if self.netns_deleted {
            done.push(format!("deleted network namespace {}", self.id));
        }
        if !self.ephemeral_removed.is_empty() {
            let dirs: Vec<String> = self
                .ephemeral_removed
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            done.push(format!("removed ephemeral volume {}", dirs.join(", ")));
        }
        if self.removed {
            done.push(format!("removed {}", self.path.display()));
        }
        if done.is_empty() {
            done.push("nothing to undo".into());
        }
        write!(f, "{} ({}): {}", self.id, self.reason, done.join(", "))?;
        if !self.errors.is_empty() {
            write!(f, "; FAILED: {}", self.errors.join("; "))?;
        }
        Ok(())
    }
}

/// A run left alone.
#[derive(Debug, Clone, Serialize)]
pub struct KeptRun {
    /// The run's container id.
    pub id: String,
    /// Its owner's pid, when known.
    pub owner_pid: Option<u32>,
    /// Why it was left alone.
    pub reason: String,
}

/// The outcome of a [`sweep`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sweep {
    /// The stale runs, and what was done for each.
    pub cleaned: Vec<CleanedRun>,
    /// The runs left alone.
    pub kept: Vec<KeptRun>,
    /// Failures that are not about one run (the run directory could not be read or locked).
    pub errors: Vec<String>,
}

impl Sweep {
    /// Whether everything found stale was cleaned up completely.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty() && self.cleaned.iter().all(|c| c.errors.is_empty())
    }
}

/// Cleans up the stale runs in `run_dir` (see the module documentation). A missing `run_dir`
/// has nothing to clean. Failures are collected in the outcome, never returned early.
pub fn sweep(run_dir: &Path, options: &SweepOptions) -> Sweep {
    let mut out = Sweep::default();
    let run_dir = match std::fs::canonicalize(run_dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.errors.push(format!(
                "resolving the run directory {}: {e}",
                run_dir.display()
            ));
            return out;
        }
    };
    // Held until the sweep ends: concurrent sweeps would undo the same run twice.
    let _lock = match lock(&run_dir) {
        Ok(l) => l,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let entries = match std::fs::read_dir(&run_dir) {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(format!(
                "reading the run directory {}: {e}",
                run_dir.display()
            ));
            return out;
        }
    };
    let mut runs: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with(RUN_PREFIX).then(|| (name, e.path()))
        })
        .collect();
    runs.sort();
    for (id, path) in runs {
        let record = RunRecord::read(&path);
        let reason = match &record {
            Ok(r) => match r.owner.status() {
                OwnerStatus::Alive => {
                    out.kept.push(KeptRun {
                        id,
                        owner_pid: Some(r.owner.pid),
                        reason: format!("its owner, pid {}, runs", r.owner.pid),
                    });
                    continue;
                }
                OwnerStatus::Exited => Staleness::OwnerGone { pid: r.owner.pid },
                OwnerStatus::PidReused => Staleness::OwnerPidReused { pid: r.owner.pid },
            },
            Err(problem) => {
                let age = std::fs::symlink_metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| options.now.duration_since(t).ok())
                    .unwrap_or_default();
                if age < options.unowned_grace {
                    out.kept.push(KeptRun {
                        id,
                        owner_pid: None,
                        reason: format!(
                            "{problem}, but only {} s old (it may be being set up)",
                            age.as_secs()
                        ),
                    });
                    continue;
                }
                Staleness::NoOwnerRecord {
                    problem: problem.to_string(),
                    age_secs: age.as_secs(),
                }
            }
        };
        out.cleaned
            .push(clean(&id, &path, record.ok().as_ref(), reason, options));
    }
    out
}

/// An exclusive `flock` on the run directory itself (no lock file is left in it).
fn lock(run_dir: &Path) -> Result<File, String> {
    let dir = File::open(run_dir)
        .map_err(|e| format!("opening the run directory {}: {e}", run_dir.display()))?;
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| format!("locking the run directory {}: {e}", run_dir.display()))?;
    Ok(dir)
}

fn clean(
    id: &str,
    path: &Path,
    record: Option<&RunRecord>,
    reason: Staleness,
    options: &SweepOptions,
) -> CleanedRun {
    let mut c = CleanedRun {
        id: id.to_string(),
        path: path.to_path_buf(),
        reason,
        container_deleted: false,
        volumes_unmounted: 0,
        other_unmounted: 0,
        ephemeral_removed: Vec::new(),
        netns_deleted: false,
        removed: false,
        errors: Vec::new(),
    };
    // 1. The container: its state is in the tmpfs, so before any unmount.
    let binary = record
        .and_then(|r| r.runtime.clone())
        .unwrap_or_else(|| options.runtime.clone());
    for root in runtime_roots(path, record, &mut c.errors) {
        if std::fs::symlink_metadata(root.join(id)).is_err() {
            continue;
        }
        let runtime = Runtime::new(&binary, &root);
        // The killed agent's `runtime run` outlives it, waiting for the container; once that
        // ends it tears down in the state directory (and may make it again): wait for it.
        let run_process = runtime
            .state(id)
            .ok()
            .and_then(|s| *s.pid())
            .and_then(|pid| u32::try_from(pid).ok())
            .and_then(parent_of);
        match runtime.delete(id) {
            Ok(()) => c.container_deleted = true,
            Err(e) => c.errors.push(format!("deleting container {id}: {e}")),
        }
        if let Some(p) = run_process
            && !wait_for_exit(p, RUN_PROCESS_GRACE)
        {
            c.errors.push(format!(
                "the runtime process of container {id} (pid {}) still runs {} s after the container was deleted",
                p.pid,
                RUN_PROCESS_GRACE.as_secs()
            ));
        }
    }
    // 2. The mounts under the directory, deepest first.
    match mountinfo::read() {
        Ok(mounts) => {
            for m in mountinfo::under(&mounts, path) {
                match detach(m) {
                    Ok(()) if m.is_fuse() => c.volumes_unmounted += 1,
                    Ok(()) => c.other_unmounted += 1,
                    Err(e) => c.errors.push(e),
                }
            }
        }
        Err(e) => c.errors.push(e.to_string()),
    }
    // 3. The app's network namespace, named like the run (`crate::netns`), once its container
    // is gone.
    if Path::new(crate::netns::NETNS_DIR).join(id).exists() {
        match crate::netns::delete(id) {
            Ok(()) => c.netns_deleted = true,
            Err(e) => c.errors.push(e.to_string()),
        }
    }
    // 4. Ephemeral volumes' backing directories (ciphertext under a key that is gone).
    for dir in record.map(|r| r.ephemeral_dirs.as_slice()).unwrap_or(&[]) {
        if !is_ephemeral_dir(dir) {
            c.errors.push(format!(
                "the record names {} as an ephemeral volume directory: expected an absolute path ending in {EPHEMERAL_PREFIX}…; left alone",
                dir.display()
            ));
            continue;
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => c.ephemeral_removed.push(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => c.errors.push(format!(
                "removing ephemeral volume directory {}: {e}",
                dir.display()
            )),
        }
    }
    // 5. The directory, once nothing is mounted under it (never into a mount).
    match mountinfo::read() {
        Ok(mounts) if mountinfo::under(&mounts, path).is_empty() => {
            match std::fs::remove_dir_all(path) {
                Ok(()) => c.removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => c.removed = true,
                Err(e) => c.errors.push(format!("removing {}: {e}", path.display())),
            }
        }
        Ok(_) => c.errors.push(format!(
            "{} still has mounts under it; left in place",
            path.display()
        )),
        Err(e) => c.errors.push(e.to_string()),
    }
    c
}

/// How long the runtime process of a deleted container has to end.
const RUN_PROCESS_GRACE: Duration = Duration::from_secs(10);

/// The parent of `pid` (the `runtime run` of a container's init), unless that is pid 1 or this
/// process.
fn parent_of(pid: u32) -> Option<Owner> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 4, the second after the command name.
    let ppid: u32 = stat
        .rsplit_once(')')?
        .1
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    if ppid <= 1 || ppid == std::process::id() {
        return None;
    }
    let start_time =
        parse_stat(&std::fs::read_to_string(format!("/proc/{ppid}/stat")).ok()?)?.start_time;
    Some(Owner {
        pid: ppid,
        start_time,
    })
}

/// Whether `process` ended (or became a zombie) within `grace`.
fn wait_for_exit(process: Owner, grace: Duration) -> bool {
    let start = Instant::now();
    while process.status() == OwnerStatus::Alive {
        if start.elapsed() >= grace {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The runtime state directories of a run: the recorded one, else those the layout shows.
fn runtime_roots(
    path: &Path,
    record: Option<&RunRecord>,
    errors: &mut Vec<String>,
) -> Vec<PathBuf> {
    if let Some(name) = record.and_then(|r| r.runtime_root.as_deref()) {
        let mut parts = Path::new(name).components();
        return match (parts.next(), parts.next()) {
            (Some(Component::Normal(_)), None) => vec![path.join(name)],
            _ => {
                errors.push(format!(
                    "the record's runtime_root: expected a directory name, found {name:?}"
                ));
                Vec::new()
            }
        };
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(STATE_DIR_PREFIX))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn is_ephemeral_dir(dir: &Path) -> bool {
    dir.is_absolute()
        && !dir.components().any(|c| c == Component::ParentDir)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(EPHEMERAL_PREFIX))
}

/// Detaches one mount: `fusermount3 -uz` for FUSE (falling back to `umount2(MNT_DETACH)`),
/// `umount2(MNT_DETACH)` for the rest.
fn detach(m: &mountinfo::Mount) -> Result<(), String> {
    let mp = &m.mount_point;
    let mut fusermount_error = None;
    if m.is_fuse() {
        match Command::new("fusermount3").arg("-uz").arg(mp).output() {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => fusermount_error = Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => fusermount_error = Some(format!("cannot run fusermount3: {e}")),
        }
    }
    rustix::mount::unmount(mp, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
        let fuse = fusermount_error.map_or(String::new(), |f| format!(" (fusermount3 -uz: {f})"));
        format!(
            "detaching the {} mount at {}: {e}{fuse}",
            m.fs_type,
            mp.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(now: SystemTime) -> SweepOptions {
        SweepOptions {
            runtime: "runc".into(),
            unowned_grace: UNOWNED_GRACE,
            now,
        }
    }

    /// An owner that has ended: a child started and reaped.
    fn gone_owner() -> Owner {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        Owner { pid, start_time: 1 }
    }

    fn run_dir_with(record: Option<&RunRecord>, name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join(name);
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("leftover"), b"x").unwrap();
        if let Some(r) = record {
            r.write(&run).unwrap();
        }
        (dir, run)
    }

    #[test]
    fn a_run_whose_owner_runs_is_left_alone() {
        let me = RunRecord::for_this_process().unwrap();
        let (dir, run) = run_dir_with(Some(&me), "confidant-app-00000001");
        let s = sweep(dir.path(), &options(SystemTime::now()));
        assert!(s.cleaned.is_empty(), "{s:?}");
        assert_eq!(s.kept.len(), 1, "{s:?}");
        assert_eq!(s.kept[0].owner_pid, Some(std::process::id()));
        assert!(run.join("leftover").exists());
    }

    #[test]
    fn a_run_whose_owner_is_gone_is_removed_with_its_ephemeral_directory() {
        let volumes = tempfile::tempdir().unwrap();
        let eph = volumes.path().join(".ephemeral-scratch-0a1b2c3d");
        std::fs::create_dir_all(eph.join("d")).unwrap();
        let not_ours = volumes.path().join("data");
        std::fs::create_dir(&not_ours).unwrap();
        let record = RunRecord {
            owner: gone_owner(),
            runtime: None,
            runtime_root: None,
            ephemeral_dirs: vec![eph.clone(), not_ours.clone()],
        };
        let (dir, run) = run_dir_with(Some(&record), "confidant-app-00000002");
        let s = sweep(dir.path(), &options(SystemTime::now()));
        assert_eq!(s.cleaned.len(), 1, "{s:?}");
        let c = &s.cleaned[0];
        assert_eq!(
            c.reason,
            Staleness::OwnerGone {
                pid: record.owner.pid
            }
        );
        assert!(c.removed && !run.exists(), "{c}");
        assert_eq!(c.ephemeral_removed, vec![eph.clone()]);
        assert!(!eph.exists());
        // A recorded directory not named as ephemeral ones are is refused, and said so.
        assert!(not_ours.exists());
        assert_eq!(c.errors.len(), 1, "{c}");
        assert!(c.errors[0].contains("left alone"), "{c}");
        assert!(!s.is_complete());
        let line = c.to_string();
        assert!(line.contains("owner pid"), "{line}");
        assert!(line.contains("gone"), "{line}");
    }

    #[test]
    fn a_run_without_a_record_is_cleaned_only_after_the_grace_period() {
        let (dir, run) = run_dir_with(None, "confidant-app-00000003");
        std::fs::write(run.join("run.json"), b"{not json").unwrap();
        let s = sweep(dir.path(), &options(SystemTime::now()));
        assert!(s.cleaned.is_empty(), "{s:?}");
        assert!(s.kept[0].reason.contains("being set up"), "{s:?}");
        assert!(run.exists());
        let later = SystemTime::now() + UNOWNED_GRACE + Duration::from_secs(1);
        let s = sweep(dir.path(), &options(later));
        assert_eq!(s.cleaned.len(), 1, "{s:?}");
        assert!(
            matches!(&s.cleaned[0].reason, Staleness::NoOwnerRecord { problem, .. } if problem.contains("expected an agent's run record")),
            "{s:?}"
        );
        assert!(!run.exists());
        assert!(s.is_complete(), "{s:?}");
    }

    #[test]
    fn other_entries_and_a_missing_run_directory_are_not_touched() {
        let record = RunRecord {
            owner: gone_owner(),
            runtime: None,
            runtime_root: None,
            ephemeral_dirs: Vec::new(),
        };
        let (dir, run) = run_dir_with(Some(&record), "not-a-run");
        let s = sweep(dir.path(), &options(SystemTime::now()));
        assert!(s.cleaned.is_empty() && s.kept.is_empty(), "{s:?}");
        assert!(run.exists());
        let s = sweep(&dir.path().join("missing"), &options(SystemTime::now()));
        assert!(s.is_complete() && s.cleaned.is_empty(), "{s:?}");
    }

    #[test]
    fn ephemeral_directories_must_be_absolute_and_named_so() {
        assert!(is_ephemeral_dir(Path::new("/v/w/.ephemeral-x-01")));
        assert!(!is_ephemeral_dir(Path::new("v/.ephemeral-x-01")));
        assert!(!is_ephemeral_dir(Path::new("/v/data")));
        assert!(!is_ephemeral_dir(Path::new("/v/.ephemeral-x/..")));
        assert!(!is_ephemeral_dir(Path::new("/")));
    }
}
