//! The run record: a small JSON file (`run.json`) at the top of a run's directory saying which
//! agent process owns the run and what a cleanup must undo that the directory's layout does not
//! show: the OCI runtime and its state directory, and ephemeral volumes' backing directories
//! outside the run directory.
//!
//! The agent writes it first thing after mounting the run's tmpfs and rewrites it (atomically:
//! a temporary file renamed over it) before it makes anything the record must name. The owner
//! is a pid together with that process's start time (`/proc/PID/stat` field 22, clock ticks
//! since boot), so that a recycled pid is not mistaken for the owner.
//!
//! ```json
//! {"owner": {"pid": 4242, "start_time": 1234567},
//!  "runtime": "runc", "runtime_root": "oci-state-Xb3k9a",
//!  "ephemeral_dirs": ["/var/lib/confidant/volumes/redis/.ephemeral-scratch-0a1b2c3d"]}
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// The record's file name in the run directory.
pub const RECORD_FILE: &str = "run.json";

/// The agent process that owns a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its start time: `/proc/PID/stat` field 22, clock ticks after boot.
    pub start_time: u64,
}

/// Whether a run's owner still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerStatus {
    /// The process runs (or cannot be examined: then it is assumed to run).
    Alive,
    /// No such process, or it is a zombie: it has ended.
    Exited,
    /// A process with that pid runs, but started at another time: the owner has ended.
    PidReused,
}

/// The fields of `/proc/PID/stat` an owner check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, …
    pub state: char,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), field 22 is the 19th.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

impl Owner {
    /// This process.
    pub fn current() -> Result<Owner> {
        let text = std::fs::read_to_string("/proc/self/stat")
            .map_err(|e| AgentError::io("reading /proc/self/stat", e))?;
        let stat = parse_stat(&text).ok_or_else(|| {
            AgentError::Config(format!(
                "/proc/self/stat: expected a state and a start time, found {text:?}"
            ))
        })?;
        Ok(Owner {
            pid: std::process::id(),
            start_time: stat.start_time,
        })
    }

    /// Whether this owner still runs (in this pid namespace).
    pub fn status(&self) -> OwnerStatus {
        let text = match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return OwnerStatus::Exited,
            // ESRCH while the process is being reaped.
            Err(e) if e.raw_os_error() == Some(3) => return OwnerStatus::Exited,
            Err(_) => return OwnerStatus::Alive,
        };
        match parse_stat(&text) {
            Some(s) if s.start_time != self.start_time => OwnerStatus::PidReused,
            Some(s) if matches!(s.state, 'Z' | 'X' | 'x') => OwnerStatus::Exited,
            Some(_) => OwnerStatus::Alive,
            None => OwnerStatus::Alive,
        }
    }
}

/// Why a run directory's record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// There is no record (a run being set up, or one that ended before writing it).
    #[error("no {RECORD_FILE}")]
    Missing,
    /// The record could not be read.
    #[error("reading {RECORD_FILE}: {0}")]
    Unreadable(std::io::Error),
    /// The record is not what an agent writes.
    #[error("{RECORD_FILE}: expected an agent's run record, found {0}")]
    Malformed(String),
}

/// A run's record (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The agent process that owns the run.
    pub owner: Owner,
    /// The OCI runtime binary, once the container is about to be created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<PathBuf>,
    /// The runtime's state directory (`--root`): a directory name inside the run directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_root: Option<String>,
    /// Ephemeral volumes' backing directories (absolute), recorded before each is made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ephemeral_dirs: Vec<PathBuf>,
}

impl RunRecord {
    /// A record owned by this process, naming nothing yet.
    pub fn for_this_process() -> Result<RunRecord> {
        Ok(RunRecord {
            owner: Owner::current()?,
            runtime: None,
            runtime_root: None,
            ephemeral_dirs: Vec::new(),
        })
    }

    /// Writes the record into `run_dir`, replacing the previous one atomically.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_vec(self)
            .map_err(|e| AgentError::Config(format!("serializing the run record: {e}")))?;
        let tmp = run_dir.join(format!(".{RECORD_FILE}.tmp"));
        let path = run_dir.join(RECORD_FILE);
        std::fs::write(&tmp, json)
            .map_err(|e| AgentError::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| AgentError::io(format!("replacing {}", path.display()), e))
    }

    /// Reads the record of `run_dir`.
    pub fn read(run_dir: &Path) -> std::result::Result<RunRecord, RecordError> {
        match std::fs::read(run_dir.join(RECORD_FILE)) {
            Ok(bytes) => RunRecord::parse(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RecordError::Missing),
            Err(e) => Err(RecordError::Unreadable(e)),
        }
    }

    /// Parses a record; anything but an agent's record is [`RecordError::Malformed`].
    pub fn parse(bytes: &[u8]) -> std::result::Result<RunRecord, RecordError> {
        let record: RunRecord =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if record.owner.pid == 0 {
            return Err(RecordError::Malformed("owner pid 0".into()));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_start_time_after_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 \
                    12345 678 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(stat),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
    }

    #[test]
    fn a_truncated_stat_line_is_none() {
        assert_eq!(parse_stat("4242 (agent) S 1 2 3"), None);
        assert_eq!(parse_stat("no parentheses at all"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_is_alive_and_another_start_time_is_not_the_owner() {
        let me = Owner::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.status(), OwnerStatus::Alive);
        let other = Owner {
            start_time: me.start_time + 1,
            ..me
        };
        assert_eq!(other.status(), OwnerStatus::PidReused);
    }

    #[test]
    fn a_reaped_child_is_exited() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let start_time = parse_stat(&stat).map_or(0, |s| s.start_time);
        child.wait().unwrap();
        let gone = Owner { pid, start_time };
        assert_ne!(gone.status(), OwnerStatus::Alive);
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RunRecord::for_this_process().unwrap();
        r.write(dir.path()).unwrap();
        assert_eq!(RunRecord::read(dir.path()).unwrap(), r);
        r.runtime = Some("runc".into());
        r.runtime_root = Some("oci-state-abc".into());
        r.ephemeral_dirs.push("/v/.ephemeral-x-00".into());
        r.write(dir.path()).unwrap();
        assert_eq!(RunRecord::read(dir.path()).unwrap(), r);
        assert!(!dir.path().join(".run.json.tmp").exists());
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"{\"owner\": {\"pid\": 12}}",
            b"{\"owner\": {\"pid\": -1, \"start_time\": 5}}",
            b"{\"owner\": {\"pid\": 0, \"start_time\": 5}}",
            b"{\"owner\": {\"pid\": \"12\", \"start_time\": 5}}",
            b"{\"owner\": {\"pid\": 12, \"start_time\": 5}, \"ephemeral_dirs\": 7}",
            b"\xff\xfe garbage",
        ] {
            assert!(
                matches!(RunRecord::parse(bad), Err(RecordError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            RunRecord::read(dir.path()),
            Err(RecordError::Missing)
        ));
    }

    #[test]
    fn unknown_fields_of_a_later_agent_are_ignored() {
        let r =
            RunRecord::parse(br#"{"owner": {"pid": 12, "start_time": 5}, "later": true}"#).unwrap();
        assert_eq!(
            r.owner,
            Owner {
                pid: 12,
                start_time: 5
            }
        );
        assert!(r.runtime.is_none() && r.ephemeral_dirs.is_empty());
    }
}
