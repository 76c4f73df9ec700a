//! Pod credentials: what a Kubernetes init container (`confidant init`) writes for the pod's
//! other containers after it activated, and how the mesh sidecar (`confidant mesh`) reads it
//! back without activating again. The layout is `docs/formats/pod-credentials.md`.
//!
//! Everything is written into a staging directory inside the target first, moved into place,
//! and then the marker ([`MARKER`]) is written last, atomically (a temporary file renamed): a
//! reader that sees the marker sees a complete set of one activation, never a mix of two.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use confidant_api::{SecretString, VolumeGrant};
use confidant_manifest::Mesh;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::activation::Activated;
use crate::files::{self, FilesError, IDENTITY_FILES, write_new};

/// The marker, written last: its presence means the set is complete.
pub const MARKER: &str = "activation.json";
/// The format named in the marker.
pub const FORMAT: &str = "confidant/pod-credentials/v1";
/// The rendered files, under their manifest paths.
pub const FILES_DIR: &str = "files";
/// The activation's environment variables (a JSON object of strings).
pub const ENV_FILE: &str = "env.json";
/// The activation's arguments (a JSON array of strings).
pub const ARGS_FILE: &str = "args.json";
/// The activation's protected volumes with their keys (a JSON array), when it has any.
pub const VOLUMES_FILE: &str = "volumes.json";
/// The workload's mesh section (JSON), when the manifest gives it one.
pub const MESH_FILE: &str = "mesh.json";
/// Where a writer stages the set before moving it into place.
const STAGING_DIR: &str = ".staging";

/// Every name a writer owns in the directory, besides the marker: what it removes before it
/// moves a new set in (nothing else in the directory is touched).
fn owned_names() -> impl Iterator<Item = &'static str> {
    IDENTITY_FILES
        .into_iter()
        .chain([FILES_DIR, ENV_FILE, ARGS_FILE, VOLUMES_FILE, MESH_FILE])
}

/// The marker's content: what the set holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// Always [`FORMAT`].
    pub format: String,
    /// The activation, `<workload>/<n>`.
    pub activation: String,
    /// Whether the evidence came from the SIMULATION TEE (no hardware protection).
    pub simulation: bool,
    /// The rendered files' paths as the manifest names them (each under [`FILES_DIR`]).
    pub files: Vec<String>,
    /// The protected volumes in [`VOLUMES_FILE`], by name (empty: no such file).
    pub volumes: Vec<String>,
    /// Whether [`MESH_FILE`] is there.
    pub mesh: bool,
    /// The coordinator's warnings about the activation.
    pub warnings: Vec<String>,
}

/// Why the credentials could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Writing an identity or rendered file failed.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what the format says.
    #[error("{path}: {problem}")]
    Malformed {
        /// The file.
        path: String,
        /// What was expected and what was found.
        problem: String,
    },
    /// The marker did not appear in time.
    #[error(
        "no complete credentials in {dir} after {waited:?}: the init container (`confidant init`) \
         writes {MARKER} there last, once it activated"
    )]
    NotReady {
        /// The directory.
        dir: String,
        /// How long the reader waited.
        waited: Duration,
    },
    /// The wait was cancelled (a stop signal).
    #[error("stopped while waiting for the credentials in {0}")]
    Cancelled(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CredentialsError {
    let what = what.into();
    move |source| CredentialsError::Io { what, source }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>, CredentialsError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| CredentialsError::Malformed {
        path: "(serializing)".into(),
        problem: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(Zeroizing::new(bytes))
}

fn remove(path: &Path) -> Result<(), CredentialsError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io(format!("removing {}", path.display())))
}

/// Writes `activated`'s credentials into `dir` (created 0755 if missing: in a pod it is the
/// shared `emptyDir`): the identity (certificate, chain, key 0400, root CA), the rendered files
/// under `files/` (0444), the env and args (0400), the volume grants with their keys (0400)
/// when there are any, the mesh section when there is one, and last the marker. A set an
/// earlier run left (the init container ran again in the same pod) is replaced: its marker goes
/// first, so no reader takes the old and the new for one set. Returns the marker written.
pub fn write(dir: &Path, activated: &Activated) -> Result<Marker, CredentialsError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("setting the mode of {}", dir.display())))?;
    }
    let a = &activated.answer;
    // 1. The whole set into a private staging directory next to its place.
    let staging = dir.join(STAGING_DIR);
    remove(&staging)?;
    std::fs::create_dir(&staging).map_err(io(format!("creating {}", staging.display())))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("setting the mode of {}", staging.display())))?;
    files::write_identity(&staging, activated)?;
    let files_dir = staging.join(FILES_DIR);
    std::fs::create_dir(&files_dir).map_err(io(format!("creating {}", files_dir.display())))?;
    std::fs::set_permissions(&files_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io(format!("setting the mode of {}", files_dir.display())))?;
    files::write_rendered_files(&files_dir, &a.parameters.files)?;
    write_new(&staging.join(ENV_FILE), &json(&a.parameters.env)?, 0o400)?;
    write_new(&staging.join(ARGS_FILE), &json(&a.parameters.args)?, 0o400)?;
    if !a.volumes.is_empty() {
        write_new(&staging.join(VOLUMES_FILE), &json(&a.volumes)?, 0o400)?;
    }
    if let Some(mesh) = &a.mesh {
        write_new(&staging.join(MESH_FILE), &json(mesh)?, 0o444)?;
    }
    // 2. An earlier set stops being complete, then goes.
    remove(&dir.join(MARKER))?;
    for name in owned_names() {
        remove(&dir.join(name))?;
    }
    // 3. The new set into place, and the staging directory away.
    for name in owned_names() {
        let from = staging.join(name);
        if from.exists() {
            let to = dir.join(name);
            std::fs::rename(&from, &to).map_err(io(format!(
                "moving {} to {}",
                from.display(),
                to.display()
            )))?;
        }
    }
    std::fs::remove_dir(&staging).map_err(io(format!("removing {}", staging.display())))?;
    // 4. The marker, last and atomically.
    let marker = Marker {
        format: FORMAT.to_string(),
        activation: a.activation.clone(),
        simulation: a.simulation,
        files: a.parameters.files.keys().cloned().collect(),
        volumes: a.volumes.iter().map(|v| v.volume.clone()).collect(),
        mesh: a.mesh.is_some(),
        warnings: a.warnings.clone(),
    };
    let tmp = dir.join(format!(".{MARKER}.tmp"));
    remove(&tmp)?;
    write_new(&tmp, &json(&marker)?, 0o444)?;
    let path = dir.join(MARKER);
    std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))?;
    Ok(marker)
}

/// Credentials read back from a complete set.
pub struct PodCredentials {
    /// The directory they were read from.
    pub dir: PathBuf,
    /// The marker.
    pub marker: Marker,
    /// The workload's identity, for the mesh proxy.
    pub identity: confidant_mesh::Identity,
    /// The workload's mesh section, if the manifest gives it one.
    pub mesh: Option<Mesh>,
}

impl std::fmt::Debug for PodCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCredentials")
            .field("dir", &self.dir)
            .field("marker", &self.marker)
            .field("mesh", &self.mesh)
            .finish_non_exhaustive()
    }
}

fn read_text(path: &Path) -> Result<Zeroizing<String>, CredentialsError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(io(format!("reading {}", path.display())))
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CredentialsError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| CredentialsError::Malformed {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

/// Reads a complete set from `dir` (its marker must be there).
pub fn read(dir: &Path) -> Result<PodCredentials, CredentialsError> {
    let marker_path = dir.join(MARKER);
    let marker: Marker = parse(&marker_path)?;
    if marker.format != FORMAT {
        return Err(CredentialsError::Malformed {
            path: marker_path.display().to_string(),
            problem: format!("format: expected {FORMAT:?}, got {:?}", marker.format),
        });
    }
    let identity = confidant_mesh::Identity {
        chain_pem: read_text(&dir.join("chain.pem"))?.to_string(),
        key_pem: read_text(&dir.join("key.pem"))?,
        root_pem: read_text(&dir.join("root-ca.pem"))?.to_string(),
    };
    let mesh = if marker.mesh {
        Some(parse(&dir.join(MESH_FILE))?)
    } else {
        None
    };
    Ok(PodCredentials {
        dir: dir.to_path_buf(),
        marker,
        identity,
        mesh,
    })
}

/// Waits up to `timeout` for the marker in `dir` (checking every `poll`, and `cancelled`
/// between checks), then reads the set.
pub fn wait(
    dir: &Path,
    timeout: Duration,
    poll: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<PodCredentials, CredentialsError> {
    let started = Instant::now();
    while !dir.join(MARKER).exists() {
        if cancelled() {
            return Err(CredentialsError::Cancelled(dir.display().to_string()));
        }
        if started.elapsed() >= timeout {
            return Err(CredentialsError::NotReady {
                dir: dir.display().to_string(),
                waited: timeout,
            });
        }
        std::thread::sleep(poll);
    }
    read(dir)
}

/// The volume grants of a set (with their keys), empty when it has none.
pub fn read_volumes(dir: &Path) -> Result<Vec<VolumeGrant>, CredentialsError> {
    let path = dir.join(VOLUMES_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    parse(&path)
}

/// The env of a set.
pub fn read_env(
    dir: &Path,
) -> Result<std::collections::BTreeMap<String, SecretString>, CredentialsError> {
    parse(&dir.join(ENV_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt as _;

    use crate::activation::WorkloadKey;

    fn activated(n: u32, mesh: bool) -> Activated {
        let key = WorkloadKey::generate("web").unwrap();
        let mut files = BTreeMap::new();
        files.insert(
            "/etc/web/app.conf".to_string(),
            SecretString::from("a = 1\n"),
        );
        let mut env = BTreeMap::new();
        env.insert("TOKEN".to_string(), SecretString::from("s3cret"));
        Activated {
            key,
            answer: confidant_api::Activation {
                activation: format!("web/{n}"),
                certificate: "CERT\n".into(),
                chain: "CERT\nINTERMEDIATE\n".into(),
                root_ca: "ROOT\n".into(),
                parameters: confidant_api::Parameters {
                    files,
                    env,
                    args: vec![SecretString::from("--port=1")],
                },
                layer_keys: BTreeMap::new(),
                volumes: Vec::new(),
                mesh: mesh.then(|| Mesh {
                    sans: vec![],
                    ingress: vec![confidant_manifest::IngressPort {
                        name: "web".into(),
                        port: 8443,
                        target_port: 8080,
                    }],
                    egress: vec![],
                }),
                simulation: true,
                warnings: vec![],
            },
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_set_is_written_with_its_modes_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("creds");
        let marker = write(&out, &activated(1, true)).unwrap();
        assert_eq!(marker.activation, "web/1");
        assert_eq!(marker.files, vec!["/etc/web/app.conf".to_string()]);
        assert_eq!(mode(&out.join("key.pem")), 0o400);
        assert_eq!(mode(&out.join(ENV_FILE)), 0o400);
        assert_eq!(mode(&out.join(ARGS_FILE)), 0o400);
        assert_eq!(mode(&out.join("cert.pem")), 0o444);
        assert_eq!(mode(&out.join("files/etc/web/app.conf")), 0o444);
        assert!(!out.join(VOLUMES_FILE).exists());
        assert!(!out.join(STAGING_DIR).exists());
        let back = read(&out).unwrap();
        assert_eq!(back.marker, marker);
        assert_eq!(back.identity.chain_pem, "CERT\nINTERMEDIATE\n");
        assert_eq!(back.mesh.unwrap().ingress[0].port, 8443);
        assert_eq!(read_env(&out).unwrap()["TOKEN"].expose(), "s3cret");
    }

    #[test]
    fn a_second_activation_replaces_the_first_and_leaves_other_files_alone() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &activated(1, true)).unwrap();
        std::fs::write(d.path().join("someone-elses"), "x").unwrap();
        // A staging directory a killed writer left behind.
        std::fs::create_dir(d.path().join(STAGING_DIR)).unwrap();
        write(d.path(), &activated(2, false)).unwrap();
        let back = read(d.path()).unwrap();
        assert_eq!(back.marker.activation, "web/2");
        assert!(back.mesh.is_none());
        assert!(!d.path().join(MESH_FILE).exists());
        assert!(d.path().join("someone-elses").exists());
    }

    #[test]
    fn a_reader_waits_for_the_marker_and_gives_up_with_a_reason() {
        let d = tempfile::tempdir().unwrap();
        let e = wait(
            d.path(),
            Duration::from_millis(50),
            Duration::from_millis(10),
            &|| false,
        )
        .unwrap_err();
        assert!(e.to_string().contains(MARKER), "{e}");
        let e = wait(
            d.path(),
            Duration::from_secs(5),
            Duration::from_millis(10),
            &|| true,
        )
        .unwrap_err();
        assert!(matches!(e, CredentialsError::Cancelled(_)), "{e}");
        let dir = d.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            write(&dir, &activated(3, true)).unwrap();
        });
        let got = wait(
            d.path(),
            Duration::from_secs(10),
            Duration::from_millis(10),
            &|| false,
        )
        .unwrap();
        writer.join().unwrap();
        assert_eq!(got.marker.activation, "web/3");
    }
}
