//! Rollback protection of protected volumes: the coordinator keeps each volume's latest
//! version and root (a Merkle root over the volume, opaque here), and workloads that mount the
//! volume read-write move it forward, one version at a time, with a compare-and-swap.
//!
//! What a mount accepts follows the manifest's `policy` of the volume:
//! - `rollback_protected`: exactly the state kept here; once a version exists, an empty volume
//!   is refused (by the agent, which reads the state here before mounting).
//! - `reinitializable`: the same, but the agent may start over with an empty volume; it says
//!   so with `reinitialize: true`, which is counted and audited. Versions still only go up, so
//!   an older non-empty state stays refused.
//! - `ephemeral`: no state here at all (a fresh key per activation).

use std::time::SystemTime;

use confidant_manifest::{Manifest, VolumePolicy};
use serde::{Deserialize, Serialize};

use super::error::{CoreError, CoreResult, ErrorCode, ErrorDetails};
use super::tables::VOLUME_STATES;
use super::{Coordinator, Principal, audit, auth};
use crate::store::{Store, Transaction};

/// A volume's state as the coordinator keeps and serves it.
pub use confidant_api::VolumeState;

/// A commit of a volume's new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitVolume {
    /// The version the workload's state descends from: must be the coordinator's current one.
    pub expected_version: u64,
    /// The new version: exactly `expected_version + 1`.
    pub version: u64,
    /// The new root.
    pub root: [u8; 32],
    /// The workload started over with an empty volume (only for `reinitializable` volumes).
    pub reinitialize: bool,
}

/// The stored form, in table [`VOLUME_STATES`] under the volume's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u64,
    root: Option<String>,
    reinitialized: u64,
    updated: Option<String>,
}

fn read(bytes: Option<Vec<u8>>, name: &str) -> CoreResult<Stored> {
    match bytes {
        None => Ok(Stored::default()),
        Some(b) => serde_json::from_slice(&b)
            .map_err(|e| CoreError::internal(format!("stored state of volume '{name}': {e}"))),
    }
}

fn view(name: &str, policy: VolumePolicy, s: Stored) -> VolumeState {
    VolumeState {
        volume: name.to_string(),
        policy,
        version: s.version,
        root: s.root,
        reinitialized: s.reinitialized,
        updated: s.updated,
    }
}

/// Who may touch a volume's state, once authenticated.
enum Caller {
    /// A workload activation, with whether one of its mounts of the volume is read-write.
    Workload { actor: String, writable: bool },
    /// A manifest user, with whether a role lets them `write` (commit) the volume's state.
    User { name: String, writable: bool },
}

/// Authenticates `who` for `name` and finds the volume's policy. Order: who asks (401), then
/// whether the volume exists (404), then whether the caller may see it (403), then the policy
/// (409 for ephemeral volumes, which have no state).
fn authorize(
    m: &Manifest,
    users: &std::collections::HashMap<[u8; 32], String>,
    who: &Principal,
    name: &str,
    action: &str,
) -> CoreResult<(VolumePolicy, Caller)> {
    let caller = match who {
        Principal::Workload {
            workload,
            activation,
            ..
        } => Some((workload, activation)),
        _ => None,
    };
    let user = match caller {
        Some(_) => None,
        None => Some(auth::user_of(users, who, action)?.to_string()),
    };
    let volume = m.volumes.get(name).ok_or_else(|| {
        CoreError::not_found("name", format!("no volume '{name}' in the manifest"))
    })?;
    let caller = match (caller, user) {
        (Some((workload, activation)), _) => {
            let w = m.workloads.get(workload).ok_or_else(|| {
                CoreError::forbidden(format!(
                    "workload '{workload}' is not in the current manifest"
                ))
            })?;
            let mounts: Vec<_> = w.volumes.iter().filter(|v| v.volume == name).collect();
            if mounts.is_empty() {
                return Err(CoreError::forbidden(format!(
                    "workload '{workload}' does not mount volume '{name}' in the current manifest"
                )));
            }
            Caller::Workload {
                actor: format!("workload:{workload}/{activation}"),
                writable: mounts.iter().any(|v| !v.read_only),
            }
        }
        (None, Some(user)) => {
            let writable = auth::allowed(m, &user, "volumes", Some(name), "write");
            if !writable && !auth::allowed(m, &user, "volumes", Some(name), "read") {
                return Err(CoreError::forbidden(format!(
                    "user '{user}' holds no role allowing 'read' or 'write' on volumes '{name}'"
                )));
            }
            Caller::User {
                name: user,
                writable,
            }
        }
        (None, None) => return Err(CoreError::unauthenticated(action)),
    };
    if volume.policy == VolumePolicy::Ephemeral {
        return Err(CoreError::new(
            ErrorCode::EphemeralVolume,
            Some("name"),
            format!(
                "volume '{name}' is ephemeral: it gets a fresh key at every activation and the coordinator keeps no state of it"
            ),
        ));
    }
    Ok((volume.policy, caller))
}

impl<S: Store> Coordinator<S> {
    /// `GET volumes/{name}/state`: the volume's latest committed state. Workloads that mount
    /// the volume (read-only or not) and users with `read` or `write` on `volumes` may read it.
    pub fn volume_state(&self, who: &Principal, name: &str) -> CoreResult<VolumeState> {
        let current = self.running()?;
        let (policy, _) = authorize(
            &current.manifest,
            &current.users,
            who,
            name,
            "reading a volume's state",
        )?;
        let stored = read(self.store.get(VOLUME_STATES, name)?, name)?;
        Ok(view(name, policy, stored))
    }

    /// `POST volumes/{name}/state`: moves the volume from `expected_version` to `version`
    /// (`expected_version + 1`) with `root`, if `expected_version` is still the latest; in one
    /// transaction with its audit entry. Workloads with a read-write mount of the volume, and
    /// users whose role allows `write` on it (an owner registering a volume sealed outside,
    /// `confidant volume seal --coordinator`), audited with the user as actor.
    pub fn commit_volume_state(
        &self,
        who: &Principal,
        name: &str,
        commit: &CommitVolume,
        now: SystemTime,
    ) -> CoreResult<VolumeState> {
        let current = self.running()?;
        let (policy, caller) = authorize(
            &current.manifest,
            &current.users,
            who,
            name,
            "committing a volume's state",
        )?;
        let actor = match caller {
            Caller::Workload {
                actor,
                writable: true,
            } => actor,
            Caller::Workload {
                writable: false, ..
            } => {
                return Err(CoreError::forbidden(format!(
                    "volume '{name}' is mounted read-only by this workload: only a read-write mount commits"
                )));
            }
            Caller::User {
                name,
                writable: true,
            } => name,
            Caller::User { name: user, .. } => {
                return Err(CoreError::forbidden(format!(
                    "user '{user}' holds no role allowing 'write' on volumes '{name}': only workloads that mount it read-write, and users allowed to write it, commit its state"
                )));
            }
        };
        if commit.expected_version.checked_add(1) != Some(commit.version) {
            return Err(CoreError::new(
                ErrorCode::InvalidVolumeVersion,
                Some("version"),
                format!(
                    "expected version {} (expected_version + 1), got {}: versions move one at a time",
                    commit
                        .expected_version
                        .checked_add(1)
                        .map_or_else(|| "beyond the largest".to_string(), |v| v.to_string()),
                    commit.version
                ),
            ));
        }
        if commit.reinitialize && policy != VolumePolicy::Reinitializable {
            return Err(CoreError::new(
                ErrorCode::ReinitializeRefused,
                Some("reinitialize"),
                format!(
                    "volume '{name}' is {policy}: only reinitializable volumes may start over empty"
                ),
            ));
        }
        let time = super::rfc3339(now);
        let root = hex::encode(commit.root);
        let (action, what) = if commit.reinitialize {
            ("volume.reinitialize", "reinitialized, ")
        } else {
            ("volume.commit", "")
        };
        let target = format!("{name} {what}version {} root {root}", commit.version);
        let stored = self.store.transaction(|tx: &mut dyn Transaction| {
            let old = read(tx.get(VOLUME_STATES, name)?, name)?;
            if old.version != commit.expected_version {
                return Err(CoreError::new(
 ErrorCode::VolumeVersionConflict,
                    Some("expected_version"),
                    format!(
                        "volume '{name}' is at version {}, not {}: another commit came first, or this state is stale",
                        old.version, commit.expected_version
                    ),
                )
                .with_details(ErrorDetails {
                    current_version: Some(old.version),
                    current_root: old.root.clone(),
                    ..ErrorDetails::default()
                }));
            }
            let new = Stored {
                version: commit.version,
                root: Some(root.clone()),
                reinitialized: old.reinitialized + u64::from(commit.reinitialize),
                updated: Some(time.clone()),
            };
            let bytes = serde_json::to_vec(&new)
                .map_err(|e| CoreError::internal(format!("volume state: {e}")))?;
            tx.put(VOLUME_STATES, name, &bytes)?;
            audit::append(tx, &time, &actor, action, &target)?;
            Ok(new)
        })?;
        Ok(view(name, policy, stored))
    }
}
