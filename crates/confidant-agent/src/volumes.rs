//! Protected volumes in a run: the coordinator as the volumes' root store, and the mounts of an
//! activation's `volumes[]` grants, opened or created as each volume's policy says.
//!
//! A volume reset (`reinitializable`) or a volume sealed again over an older one is created
//! with [`Volume::create_at`] from the coordinator's version + 1, so local and coordinator
//! versions are the same; [`CoordinatorRootStore::reset_from`] marks the first commit of a reset
//! with `reinitialize: true`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_api::{ErrorCode, VolumeCommit, VolumeGrant};
use confidant_client::{Client, ClientError};
use confidant_manifest::VolumePolicy;
use confidant_shield::roots::{RootStore, RootStoreError, VolumeState};
use confidant_shield::{
    MemoryRootStore, MountHandle, MountOptions, ROOT_INO, SetAttributes, Volume, VolumeKey,
};
use zeroize::Zeroizing;

use crate::runtime::BindMount;

/// Why a volume was not mounted, or not cleanly unmounted.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The volume's state and its backing directory do not fit its policy: mounting it would
    /// hand the app lost, foreign or rolled-back data.
    #[error("volume {volume}: refusing to mount: {reason}")]
    Refused {
        /// The volume's name.
        volume: String,
        /// What was expected and what was found.
        reason: String,
    },
    /// The grant itself is unusable (name, key).
    #[error("volume {volume}: {reason}")]
    Grant {
        /// The volume's name.
        volume: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The coordinator could not be asked, or refused.
    #[error("volume {volume}: {what}: {source}")]
    Coordinator {
        /// The volume's name.
        volume: String,
        /// What was being done.
        what: &'static str,
        /// The client's error.
        source: ClientError,
    },
    /// The protected volume itself failed (open, create, mount, commit).
    #[error("volume {volume}: {what}: {source}")]
    Shield {
        /// The volume's name.
        volume: String,
        /// What was being done.
        what: String,
        /// The volume's error.
        source: confidant_shield::Error,
    },
    /// A directory could not be made, read or removed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let what = what.into();
    move |source| VolumeError::Io { what, source }
}

/// The coordinator's state of a volume: `GET /api/v1/volumes/NAME/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorState {
    /// The committed version (0: none yet).
    pub version: u64,
    /// The committed root (None before the first commit).
    pub root: Option<[u8; 32]>,
}

/// A [`RootStore`] on the coordinator: `GET`/`POST /api/v1/volumes/NAME/state`, as the
/// workload (the certificate of its activation) or as a user whose role allows `write` on the
/// volume (`confidant volume seal --coordinator`).
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

    /// Runs `f` with the store's client (to set the volume's key secret as the same user).
    pub fn with_client<T>(&self, f: impl FnOnce(&Client) -> T) -> T {
        f(&self.client.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The coordinator's state of the volume, as it says.
    pub fn fetch(&self) -> Result<CoordinatorState, VolumeError> {
        let answer = self
            .with_client(|c| c.volume_state(&self.volume))
            .map_err(|source| VolumeError::Coordinator {
                volume: self.volume.clone(),
                what: "reading its state",
                source,
            })?;
        let root = match answer.root {
            None => None,
            Some(s) => {
                let mut r = [0u8; 32];
                hex::decode_to_slice(&s, &mut r).map_err(|e| VolumeError::Grant {
                    volume: self.volume.clone(),
                    reason: format!("the coordinator's root {s:?} is not 32 bytes of hex: {e}"),
                })?;
                Some(r)
            }
        };
        Ok(CoordinatorState {
            version: answer.version,
            root,
        })
    }

    /// The next commit from `version` (the coordinator's) is a reset of a `reinitializable`
    /// volume to a new, empty one (created with `Volume::create_at(.., version + 1)`).
    pub fn reset_from(&self, version: u64) {
        *self.reset_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
    }
}

impl RootStore for CoordinatorRootStore {
    fn load(&self) -> Result<Option<VolumeState>, RootStoreError> {
        let s = self
            .fetch()
            .map_err(|e| RootStoreError::Unavailable(e.to_string()))?;
        match (s.version, s.root) {
            (0, _) | (_, None) => Ok(None),
            (version, Some(root)) => Ok(Some(VolumeState { version, root })),
        }
    }

    fn commit(&self, expected_version: u64, new: VolumeState) -> Result<(), RootStoreError> {
        let mut reset = self.reset_from.lock().unwrap_or_else(|e| e.into_inner());
        let commit = VolumeCommit {
            expected_version,
            version: new.version,
            root: hex::encode(new.root),
            reinitialize: *reset == Some(expected_version),
        };
        let e = match self.with_client(|c| c.commit_volume(&self.volume, &commit)) {
            Ok(_) => {
                *reset = None;
                return Ok(());
            }
            Err(e) => e,
        };
        let Some(api) = e.api() else {
            return Err(RootStoreError::Unavailable(e.to_string()));
        };
        if api.code == ErrorCode::VolumeVersionConflict {
            let d = api.details.clone().unwrap_or_default();
            let current = d.current_version.unwrap_or(0);
            if current == new.version && d.current_root.as_deref() == Some(&commit.root) {
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

/// A volume the agent mounted for the app; unmounting (or dropping) commits.
pub struct MountedVolume {
    /// The grant, without its key.
    pub volume: String,
    /// Where the app sees it.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Its policy.
    pub policy: VolumePolicy,
    /// The mount (None once unmounted).
    handle: Option<MountHandle>,
    /// The version mounted.
    pub mounted_version: u64,
    /// An ephemeral volume's backing directory, removed at the end.
    ephemeral_dir: Option<PathBuf>,
}

impl std::fmt::Debug for MountedVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountedVolume")
            .field("volume", &self.volume)
            .field("path", &self.path)
            .field("mounted_version", &self.mounted_version)
            .finish_non_exhaustive()
    }
}

impl MountedVolume {
    /// The bind mount for the bundle (None once unmounted).
    pub fn bind(&self) -> Option<BindMount> {
        self.handle
            .as_ref()
            .map(|h| BindMount::new(h.mountpoint(), &self.path, self.read_only))
    }

    /// Unmounts (which commits) and removes an ephemeral backing directory; returns the
    /// committed state (None if it was unmounted before).
    pub fn unmount(&mut self) -> Result<Option<VolumeState>, VolumeError> {
        let state = match self.handle.take() {
            Some(h) => {
                let mp = h.mountpoint().to_path_buf();
                let s = h.unmount().map_err(|source| VolumeError::Shield {
                    volume: self.volume.clone(),
                    what: "unmounting".into(),
                    source,
                })?;
                let _ = std::fs::remove_dir(&mp);
                Some(s)
            }
            None => None,
        };
        if let Some(d) = self.ephemeral_dir.take() {
            std::fs::remove_dir_all(&d)
                .map_err(io(format!("removing the ephemeral volume {}", d.display())))?;
        }
        Ok(state)
    }
}

impl Drop for MountedVolume {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            tracing::error!("{e}");
        }
    }
}

/// Whether `dir` is empty or missing (a backing directory with no volume in it).
pub fn is_empty_dir(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut d) => Ok(d.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// Where and how a grant's volume is set up.
pub struct MountConfig<'a> {
    /// The backing directory.
    pub dir: PathBuf,
    /// An ephemeral volume's backing directory ([`ephemeral_dir`]): it must not exist yet, and
    /// the caller has recorded it for a cleanup after a crash ([`crate::run_record`]). None for
    /// other policies.
    pub ephemeral_dir: Option<PathBuf>,
    /// The mountpoint (inside the agent's run dir).
    pub mountpoint: PathBuf,
    /// A new volume's root directory: (mode, uid, gid).
    pub new_root_owner: (u32, u32, u32),
    /// A client presenting the workload certificate (for non-ephemeral volumes).
    pub client: Option<Client>,
    /// Progress lines for people (a reset is announced).
    pub say: &'a dyn Fn(&str),
}

/// A fresh backing directory for ephemeral volume `name` under `parent`, as an absolute path:
/// `PARENT/.ephemeral-NAME-<8 hex>` (the name [`crate::stale`] removes after a crash).
pub fn ephemeral_dir(parent: &Path, name: &str) -> Result<PathBuf, VolumeError> {
    let suffix = confidant_client::random_bytes::<4>().map_err(|e| VolumeError::Grant {
        volume: name.to_string(),
        reason: e.to_string(),
    })?;
    let dir = parent.join(format!(
        "{}{name}-{}",
        crate::stale::EPHEMERAL_PREFIX,
        hex::encode(suffix)
    ));
    std::path::absolute(&dir).map_err(io(format!("resolving {}", dir.display())))
}

/// The grant's key, checked to be 256 bits.
fn grant_key(grant: &VolumeGrant) -> Result<VolumeKey, VolumeError> {
    let bad = |reason: String| VolumeError::Grant {
        volume: grant.volume.clone(),
        reason,
    };
    let bytes = Zeroizing::new(
        STANDARD
            .decode(grant.key.expose())
            .map_err(|e| bad(format!("the key is not base64: {e}")))?,
    );
    VolumeKey::from_slice(&bytes)
        .ok_or_else(|| bad(format!("expected a 256-bit key, got {} bytes", bytes.len())))
}

/// Opens or creates a grant's volume as its policy says, and mounts it.
pub fn mount_grant(
    grant: &VolumeGrant,
    cfg: MountConfig<'_>,
) -> Result<MountedVolume, VolumeError> {
    confidant_client::check_name("volume name", &grant.volume).map_err(|e| VolumeError::Grant {
        volume: grant.volume.clone(),
        reason: e.to_string(),
    })?;
    let key = grant_key(grant)?;
    let name = grant.volume.clone();
    let refuse = |reason: String| VolumeError::Refused {
        volume: name.clone(),
        reason,
    };
    let shield = |what: String| {
        let volume = name.clone();
        move |source| VolumeError::Shield {
            volume,
            what,
            source,
        }
    };
    let mut ephemeral_dir = None;
    let volume = match grant.policy {
        VolumePolicy::Ephemeral => {
            let dir = cfg
                .ephemeral_dir
                .clone()
                .ok_or_else(|| VolumeError::Grant {
                    volume: name.clone(),
                    reason: "ephemeral: expected a backing directory for it, got none".into(),
                })?;
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            ephemeral_dir = Some(dir.clone());
            let created = Volume::create(&dir, key, Arc::new(MemoryRootStore::new()))
                .map_err(shield("creating the ephemeral volume".into()))
                .and_then(|v| init_root(&name, &v, cfg.new_root_owner).map(|()| v));
            match created {
                Ok(v) => v,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        policy @ (VolumePolicy::RollbackProtected | VolumePolicy::Reinitializable) => {
            let client = cfg.client.ok_or_else(|| VolumeError::Grant {
                volume: name.clone(),
                reason: "no coordinator client to keep its state".into(),
            })?;
            let store = Arc::new(CoordinatorRootStore::new(client, &name));
            let state = store.fetch()?;
            let empty =
                is_empty_dir(&cfg.dir).map_err(io(format!("reading {}", cfg.dir.display())))?;
            let dir = cfg.dir.display();
            if empty {
                if grant.read_only {
                    return Err(refuse(format!(
                        "the backing directory {dir} is empty or missing and the mount is read-only (the coordinator holds version {})",
                        state.version
                    )));
                }
                if state.version > 0 {
                    if policy == VolumePolicy::RollbackProtected {
                        return Err(refuse(format!(
                            "it is rollback_protected and the backing directory {dir} is empty or missing, but the coordinator holds version {} — the host lost or withheld the volume; restore the latest backing directory",
                            state.version
                        )));
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
                    .map_err(shield(format!("creating it in {dir}")))?;
                init_root(&name, &v, cfg.new_root_owner)?;
                (cfg.say)(&format!("volume {name}: created a new volume in {dir}"));
                v
            } else {
                if state.version == 0 {
                    return Err(refuse(format!(
                        "the backing directory {dir} is not empty, but the coordinator holds no state for this volume (left from a start that failed before its first commit, or not this volume); move it away to start over"
                    )));
                }
                Volume::open(&cfg.dir, key, store, grant.read_only).map_err(|e| {
                    let hint = match &e {
                        confidant_shield::Error::RolledBack { .. } => {
                            " — the backing directory is an older state than the coordinator's (rolled back)"
                        }
                        _ => "",
                    };
                    refuse(format!(
                        "{dir} (the coordinator holds version {}){hint}: {e}",
                        state.version
                    ))
                })?
            }
        }
    };
    let mounted_version = volume.state().version;
    let mounted = std::fs::create_dir_all(&cfg.mountpoint)
        .map_err(io(format!("creating {}", cfg.mountpoint.display())))
        .and_then(|()| {
            confidant_shield::mount(Arc::new(volume), &cfg.mountpoint, &MountOptions::default())
                .map_err(shield("mounting".into()))
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
    Ok(MountedVolume {
        volume: grant.volume.clone(),
        path: grant.path.clone(),
        read_only: grant.read_only,
        policy: grant.policy,
        handle: Some(handle),
        mounted_version,
        ephemeral_dir,
    })
}

/// Gives a new volume's root directory the mode and owner the app expects, and commits.
fn init_root(name: &str, v: &Volume, (mode, uid, gid): (u32, u32, u32)) -> Result<(), VolumeError> {
    let shield = |what: &str| {
        let (volume, what) = (name.to_string(), what.to_string());
        move |source| VolumeError::Shield {
            volume,
            what,
            source,
        }
    };
    v.setattr(
        ROOT_INO,
        &SetAttributes {
            mode: Some(mode & 0o7777),
            uid: Some(uid),
            gid: Some(gid),
            ..SetAttributes::default()
        },
    )
    .map_err(shield("setting the new volume's root owner"))?;
    v.commit().map_err(shield("committing the new volume"))?;
    Ok(())
}
