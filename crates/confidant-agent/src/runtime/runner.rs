//! Running a bundle with runc (or another OCI runtime with runc's command line: crun, youki).
//!
//! [`Runtime::run`] runs `runtime run` in the foreground, in a process group of its own, and
//! waits for it. Signals the agent receives go to the container's init, never to the runtime's
//! process: SIGTERM and SIGINT are stop requests (SIGTERM arrives as the image's stop signal,
//! [`RunOptions::stop_signal`]) and the container is killed with SIGKILL when it still runs
//! [`RunOptions::stop_timeout`] later; SIGHUP is passed on. See the `signals` and `stop`
//! modules for the details. Whatever happened, the container is deleted afterwards.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use oci_spec::runtime::State;
use tempfile::TempDir;
use thiserror::Error;

use super::bundle::Bundle;
use super::signals::Forwarding;
use super::stop::{self, RuntimeContainer};

/// The name prefix of the state directories [`Runtime::with_state_in`] makes.
pub const STATE_DIR_PREFIX: &str = "oci-state-";

/// The longest container id accepted (runc has no limit; this keeps state paths short).
pub const MAX_ID_LEN: usize = 128;

/// How long a container has to exit after a stop request before it is killed, unless
/// [`RunOptions::stop_timeout`] says otherwise: `docker stop`'s default.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a container could not be run, killed or cleaned up.
#[derive(Debug, Error)]
pub enum RunError {
    /// The container id has characters the runtime refuses or is too long.
    #[error(
        "container id: expected 1 to {MAX_ID_LEN} characters of [A-Za-z0-9_+.-], not \".\" or \"..\", found {found:?}"
    )]
    InvalidId {
        /// The id given.
        found: String,
    },
    /// The container id is taken: by a run of this [`Runtime`] or by a container already in the
    /// state directory (left behind by an earlier agent, or another runtime sharing the state).
    #[error("container id {id:?}: expected an unused id, found {found}")]
    IdInUse {
        /// The container id.
        id: String,
        /// Who holds it.
        found: &'static str,
    },
    /// The bundle directory has no `config.json`.
    #[error("bundle {bundle:?}: expected a config.json, found none")]
    NoConfig {
        /// The bundle directory given.
        bundle: PathBuf,
    },
    /// The runtime binary could not be started.
    #[error("starting OCI runtime {runtime:?}: {source}")]
    Spawn {
        /// The runtime binary.
        runtime: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for the runtime failed.
    #[error("waiting for OCI runtime {runtime:?}: {source}")]
    Wait {
        /// The runtime binary.
        runtime: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Signal forwarding could not be set up.
    #[error("forwarding signals to the OCI runtime: {0}")]
    Signals(String),
    /// The runtime failed before or while starting the container (its own error, not the
    /// container's exit code).
    #[error("OCI runtime {runtime:?} failed to run container {id:?} (exit code {code}): {message}")]
    Runtime {
        /// The runtime binary.
        runtime: PathBuf,
        /// The container id.
        id: String,
        /// The runtime's exit code.
        code: i32,
        /// The runtime's error messages.
        message: String,
    },
    /// The container does not exist (for [`Runtime::kill`] and [`Runtime::state`]).
    #[error("container {id:?}: expected a running container, found none")]
    NotFound {
        /// The container id.
        id: String,
    },
    /// The container exists but its process has exited (for [`Runtime::kill`]).
    #[error("container {id:?}: expected a running container, found it stopped")]
    NotRunning {
        /// The container id.
        id: String,
    },
    /// A runtime subcommand (`kill`, `delete`, `list`) failed.
    #[error("`{runtime:?} {command}` failed with exit status {status}: {stderr}")]
    Command {
        /// The runtime binary.
        runtime: PathBuf,
        /// The subcommand.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to standard error.
        stderr: String,
    },
    /// A file-system operation on the state directory or the bundle failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How a container ended, as the runtime reports it: its exit code, or 128 + N when it (or the
/// runtime itself) was killed by signal N, as shells do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerExit {
    code: i32,
}

impl ContainerExit {
    /// The exit code (0–255).
    pub fn code(self) -> i32 {
        self.code
    }

    /// Whether the container exited with 0.
    pub fn success(self) -> bool {
        self.code == 0
    }

    /// The signal N when the code is 128 + N (1 ≤ N ≤ 64). A container that calls `exit(130)`
    /// itself cannot be told apart: runc reports both the same way.
    pub fn signal(self) -> Option<i32> {
        (129..=192).contains(&self.code).then(|| self.code - 128)
    }

    fn from_status(status: ExitStatus) -> Self {
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        };
        Self { code }
    }
}

/// Standard streams and options of one [`Runtime::run`].
#[derive(Debug)]
pub struct RunOptions {
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    forward_signals: bool,
    stop_signal: Option<i32>,
    stop_timeout: Duration,
    no_pivot: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            stdin: None,
            stdout: None,
            stderr: None,
            forward_signals: true,
            stop_signal: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            no_pivot: false,
        }
    }
}

impl RunOptions {
    /// Standard input `/dev/null`, standard output and error inherited from the agent, signals
    /// forwarded with a stop timeout of [`DEFAULT_STOP_TIMEOUT`], `pivot_root` used.
    pub fn new() -> Self {
        Self::default()
    }

    /// The container's standard input (default: `/dev/null`).
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Self {
        self.stdin = Some(stdin.into());
        self
    }

    /// The container's standard output: a file, a pipe's write end (`std::io::pipe`) or
    /// [`Stdio::null`] (default: the agent's).
    pub fn stdout(mut self, stdout: impl Into<Stdio>) -> Self {
        self.stdout = Some(stdout.into());
        self
    }

    /// The container's standard error (default: the agent's). The runtime's own error messages
    /// go there too.
    pub fn stderr(mut self, stderr: impl Into<Stdio>) -> Self {
        self.stderr = Some(stderr.into());
        self
    }

    /// Whether SIGINT, SIGTERM and SIGHUP received by the agent reach the container (default:
    /// yes): each is sent to the container's init with `runtime kill`, once the container runs;
    /// SIGTERM and SIGINT are stop requests (see [`RunOptions::stop_signal`] and
    /// [`RunOptions::stop_timeout`]). This installs process-wide handlers for the three signals
    /// on first use; while no container runs they keep their default action (terminate the
    /// agent), unless [`crate::runtime::hold_signals`] was called. An agent that handles these
    /// signals itself should turn this off and call [`Runtime::kill`].
    pub fn forward_signals(mut self, forward: bool) -> Self {
        self.forward_signals = forward;
        self
    }

    /// The signal a stop request (SIGTERM to the agent) reaches the container's init as: the
    /// image's `StopSignal` (e.g. SIGQUIT for nginx's graceful stop), as `docker stop` does
    /// ([`crate::runtime::parse_signal`]). Default: SIGTERM itself. SIGINT and SIGHUP are
    /// delivered as received. A signal that stops rather than ends a process (SIGSTOP, SIGTSTP)
    /// is sent all the same; the [`RunOptions::stop_timeout`] then ends the app.
    pub fn stop_signal(mut self, signal: i32) -> Self {
        self.stop_signal = Some(signal);
        self
    }

    /// How long the container has to exit after the first stop request (SIGTERM or SIGINT to
    /// the agent) before it is killed with SIGKILL (`runtime kill ID KILL`), which ends it
    /// whatever its state (`docker stop --time`). Default: [`DEFAULT_STOP_TIMEOUT`]. Without
    /// [`RunOptions::forward_signals`] there are no stop requests and this has no effect.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Pass `--no-pivot` (`MS_MOVE` + `chroot` instead of `pivot_root`): needed only where the
    /// rootfs is on an initramfs (`rootfs`), never on a tmpfs. Default: off.
    pub fn no_pivot(mut self, no_pivot: bool) -> Self {
        self.no_pivot = no_pivot;
        self
    }
}

/// An OCI runtime binary and its state directory (`--root`).
#[derive(Debug)]
pub struct Runtime {
    binary: PathBuf,
    state_root: PathBuf,
    _owned_state: Option<TempDir>,
    /// Ids of the runs in progress (so a second run of the same id cannot delete the first).
    active: Mutex<HashSet<String>>,
}

impl Runtime {
    /// The runtime at `binary` (e.g. `/usr/sbin/runc`) keeping its state in `state_root`
    /// (created by the runtime if missing). Runtimes sharing a state root see each other's
    /// containers.
    pub fn new(binary: impl Into<PathBuf>, state_root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            state_root: state_root.into(),
            _owned_state: None,
            active: Mutex::default(),
        }
    }

    /// The runtime at `binary` with a fresh state directory under `parent` (the agent's own
    /// temporary directory), removed when this value is dropped.
    pub fn with_state_in(binary: impl Into<PathBuf>, parent: &Path) -> Result<Self, RunError> {
        let dir = tempfile::Builder::new()
            .prefix(STATE_DIR_PREFIX)
            .tempdir_in(parent)
            .map_err(|source| RunError::Io {
                action: "creating runtime state directory in",
                path: parent.to_owned(),
                source,
            })?;
        Ok(Self {
            binary: binary.into(),
            state_root: dir.path().to_owned(),
            _owned_state: Some(dir),
            active: Mutex::default(),
        })
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The state directory passed as `--root`.
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    /// Runs the bundle in `bundle_dir` as container `id` in the foreground (`runtime run
    /// --bundle DIR ID`) until it exits, and returns its exit code. Signals reach the container
    /// as [`RunOptions::forward_signals`] says; a stop request ends it within the
    /// [`RunOptions::stop_timeout`] (the app is then killed: exit code 137). The container is
    /// always deleted afterwards (`delete --force`), also when running failed; the bundle
    /// directory is left alone.
    ///
    /// An id in use (a run of this value in progress, or a container already in the state
    /// directory) is refused with [`RunError::IdInUse`] and nothing is deleted.
    pub fn run(
        &self,
        bundle_dir: &Path,
        id: &str,
        options: RunOptions,
    ) -> Result<ContainerExit, RunError> {
        validate_id(id)?;
        if !bundle_dir.join("config.json").is_file() {
            return Err(RunError::NoConfig {
                bundle: bundle_dir.to_owned(),
            });
        }
        if !self.active_ids().insert(id.to_owned()) {
            return Err(RunError::IdInUse {
                id: id.to_owned(),
                found: "a run of this Runtime in progress",
            });
        }
        // runc, crun and youki keep a container's state in `<root>/<id>/`: its presence means
        // the id is taken. Looking is ~25 ms cheaper than asking `runtime state ID` (a process
        // start), which matters on the cold-start path.
        if fs::symlink_metadata(self.state_root.join(id)).is_ok() {
            self.active_ids().remove(id);
            return Err(RunError::IdInUse {
                id: id.to_owned(),
                found: "a container in the state directory",
            });
        }
        let log = self.state_root.join(format!(".{id}.log.json"));
        let cleanup = Cleanup {
            runtime: self,
            id,
            log: &log,
        };
        let result = self.run_foreground(bundle_dir, id, &log, options);
        let cleaned = cleanup.finish();
        let exit = result?;
        cleaned?;
        Ok(exit)
    }

    /// [`Runtime::run`] on a bundle this value owns, then removes the bundle directory (also when
    /// running failed).
    pub fn run_bundle(
        &self,
        bundle: Bundle,
        id: &str,
        options: RunOptions,
    ) -> Result<ContainerExit, RunError> {
        let path = bundle.path().to_owned();
        let result = self.run(&path, id, options);
        let removed = bundle.remove().map_err(|source| RunError::Io {
            action: "removing bundle",
            path,
            source,
        });
        let exit = result?;
        removed?;
        Ok(exit)
    }

    /// Sends `signal` (a signal number, e.g. 15) to the container's init process (`runtime kill
    /// ID SIGNAL`). A container that does not exist is [`RunError::NotFound`]; one whose process
    /// has exited, [`RunError::NotRunning`].
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), RunError> {
        validate_id(id)?;
        let sig = signal.to_string();
        let output = self
            .command(["kill", id, &sig])
            .output()
            .map_err(|source| RunError::Spawn {
                runtime: self.binary.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.contains("does not exist") {
            return Err(RunError::NotFound { id: id.to_owned() });
        }
        // runc: "container not running"; crun: "container `ID` is not running".
        if stderr.contains("not running") {
            return Err(RunError::NotRunning { id: id.to_owned() });
        }
        Err(RunError::Command {
            runtime: self.binary.clone(),
            command: format!("kill {id} {sig}"),
            status: output.status,
            stderr,
        })
    }

    /// Deletes the container, killing it first if it runs (`runtime delete --force ID`); a
    /// container that does not exist is not an error.
    pub fn delete(&self, id: &str) -> Result<(), RunError> {
        validate_id(id)?;
        let output = self
            .command(["delete", "--force", id])
            .output()
            .map_err(|source| RunError::Spawn {
                runtime: self.binary.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if output.status.success() || stderr.contains("does not exist") {
            return Ok(());
        }
        Err(RunError::Command {
            runtime: self.binary.clone(),
            command: format!("delete --force {id}"),
            status: output.status,
            stderr,
        })
    }

    /// The container's state (`runtime state ID`): status (`creating`, `created`, `running`,
    /// `stopped`), init pid, bundle.
    pub fn state(&self, id: &str) -> Result<State, RunError> {
        validate_id(id)?;
        let output = self
            .command(["state", id])
            .output()
            .map_err(|source| RunError::Spawn {
                runtime: self.binary.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !output.status.success() {
            if stderr.contains("does not exist") {
                return Err(RunError::NotFound { id: id.to_owned() });
            }
            return Err(RunError::Command {
                runtime: self.binary.clone(),
                command: format!("state {id}"),
                status: output.status,
                stderr,
            });
        }
        serde_json::from_slice(&output.stdout).map_err(|e| RunError::Command {
            runtime: self.binary.clone(),
            command: format!("state {id}"),
            status: output.status,
            stderr: format!(
                "expected the OCI state JSON on standard output, found invalid JSON: {e}"
            ),
        })
    }

    /// The ids of the containers in this state directory (`runtime list --quiet`).
    pub fn list(&self) -> Result<Vec<String>, RunError> {
        let output = self
            .command(["list", "--quiet"])
            .output()
            .map_err(|source| RunError::Spawn {
                runtime: self.binary.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(RunError::Command {
                runtime: self.binary.clone(),
                command: "list --quiet".into(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn active_ids(&self) -> MutexGuard<'_, HashSet<String>> {
        // Single inserts and removes: a poisoned set is still consistent.
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(&self.binary);
        command
            .arg("--root")
            .arg(&self.state_root)
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn run_foreground(
        &self,
        bundle_dir: &Path,
        id: &str,
        log: &Path,
        options: RunOptions,
    ) -> Result<ContainerExit, RunError> {
        fs::create_dir_all(&self.state_root).map_err(|source| RunError::Io {
            action: "creating runtime state directory",
            path: self.state_root.clone(),
            source,
        })?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--root")
            .arg(&self.state_root)
            .arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--bundle")
            .arg(bundle_dir);
        if options.no_pivot {
            command.arg("--no-pivot");
        }
        command
            .arg(id)
            .stdin(options.stdin.unwrap_or_else(Stdio::null))
            .stdout(options.stdout.unwrap_or_else(Stdio::inherit))
            .stderr(options.stderr.unwrap_or_else(Stdio::inherit))
            // Its own process group: a terminal's Ctrl-C reaches the agent only (which passes
            // it on to the container's init), not the runtime process.
            .process_group(0);

        // Registered before the runtime starts: a signal from here on is delivered once the
        // container runs.
        let forwarding = if options.forward_signals {
            let stop_signal = options.stop_signal.unwrap_or(signal_hook::consts::SIGTERM);
            Some(Forwarding::register(stop_signal).map_err(RunError::Signals)?)
        } else {
            None
        };
        let container = RuntimeContainer { runtime: self, id };
        let status = std::thread::scope(|scope| {
            if let Some(forwarding) = &forwarding {
                let inbox = forwarding.inbox();
                let container = &container;
                std::thread::Builder::new()
                    .name("confidant-stopper".into())
                    .spawn_scoped(scope, move || {
                        stop::serve(&inbox, container, options.stop_timeout)
                    })
                    .map_err(|e| RunError::Signals(format!("starting the stopper thread: {e}")))?;
            }
            let status = self.spawn_and_wait(command);
            // Unregistering ends the stopper; the scope waits for it.
            drop(forwarding);
            status
        })?;
        let exit = ContainerExit::from_status(status);
        if !exit.success()
            && let Some(message) = runtime_errors(log)
        {
            return Err(RunError::Runtime {
                runtime: self.binary.clone(),
                id: id.to_owned(),
                code: exit.code(),
                message,
            });
        }
        Ok(exit)
    }

    /// Starts the runtime process and waits for it.
    fn spawn_and_wait(&self, mut command: Command) -> Result<ExitStatus, RunError> {
        let mut child = command.spawn().map_err(|source| RunError::Spawn {
            runtime: self.binary.clone(),
            source,
        })?;
        child.wait().map_err(|source| {
            let _ = child.kill();
            let _ = child.wait();
            RunError::Wait {
                runtime: self.binary.clone(),
                source,
            }
        })
    }
}

/// Deletes the container and the runtime log and releases the id, whatever happened.
struct Cleanup<'a> {
    runtime: &'a Runtime,
    id: &'a str,
    log: &'a Path,
}

impl Cleanup<'_> {
    fn finish(self) -> Result<(), RunError> {
        let result = self.runtime.delete(self.id);
        let _ = fs::remove_file(self.log);
        self.runtime.active_ids().remove(self.id);
        std::mem::forget(self);
        result
    }
}

impl Drop for Cleanup<'_> {
    /// Only on unwinding (a panic between start and `finish`).
    fn drop(&mut self) {
        let _ = self.runtime.delete(self.id);
        let _ = fs::remove_file(self.log);
        self.runtime.active_ids().remove(self.id);
    }
}

/// The `error`/`fatal` messages of a runc-style JSON log, joined; `None` if there are none.
fn runtime_errors(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    let messages: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| matches!(entry["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|entry| entry["msg"].as_str().map(str::to_owned))
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

fn validate_id(id: &str) -> Result<(), RunError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(RunError::InvalidId {
            found: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "a.b_c+d", "X9"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "é",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(
                matches!(validate_id(bad), Err(RunError::InvalidId { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn exit_codes() {
        let exited = ContainerExit::from_status(ExitStatus::from_raw(7 << 8));
        assert_eq!(exited.code(), 7);
        assert_eq!(exited.signal(), None);
        let killed = ContainerExit::from_status(ExitStatus::from_raw(15));
        assert_eq!(killed.code(), 143);
        assert_eq!(killed.signal(), Some(15));
        assert!(ContainerExit::from_status(ExitStatus::from_raw(0)).success());
    }

    #[test]
    fn runtime_log_errors() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"w\"}\nnot json\n{\"level\":\"error\",\"msg\":\"boom\"}\n",
        )
        .unwrap();
        assert_eq!(runtime_errors(&log).as_deref(), Some("boom"));
        fs::write(&log, "{\"level\":\"info\",\"msg\":\"fine\"}\n").unwrap();
        assert_eq!(runtime_errors(&log), None);
        assert_eq!(runtime_errors(&dir.path().join("missing")), None);
    }

    #[test]
    fn missing_config_and_bad_id_are_refused_before_running() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new("/nonexistent/runc", dir.path().join("state"));
        assert!(matches!(
            runtime.run(dir.path(), "x", RunOptions::new()),
            Err(RunError::NoConfig { .. })
        ));
        assert!(matches!(
            runtime.run(dir.path(), "../x", RunOptions::new()),
            Err(RunError::InvalidId { .. })
        ));
    }
}
