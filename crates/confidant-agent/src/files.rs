//! The activation's rendered files and the workload's identity, written where the app reads
//! them: into the run's tmpfs and bound read-only into the container ([`bind_rendered_files`]),
//! or into a directory tree such as a pod's memory volume ([`write_rendered_files`],
//! [`write_identity`]) for an init container.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use confidant_api::SecretString;

use crate::activation::Activated;
use crate::runtime::BindMount;

/// Why a file was not written.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The manifest's path is not an absolute path without `..`.
    #[error("rendered file {0:?}: expected an absolute path without `..`")]
    BadPath(String),
    /// Writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FilesError {
    let what = what.into();
    move |source| FilesError::Io { what, source }
}

/// Checks a rendered file's path as written in the manifest: absolute, and every segment a
/// name (no empty segment, no `.` or `..`).
fn check_path(path: &str) -> Result<(), FilesError> {
    let ok = path.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
    });
    if ok {
        Ok(())
    } else {
        Err(FilesError::BadPath(path.to_string()))
    }
}

/// Writes `content` to a new file `path` with `mode` (the mode is set at creation: the
/// content is never readable by others, not even for an instant).
pub(crate) fn write_new(path: &Path, content: &[u8], mode: u32) -> Result<(), FilesError> {
    let what = format!("writing {}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(what.clone()))?;
    f.write_all(content).map_err(io(what.clone()))?;
    // The umask may have taken bits away; the mode is what was asked.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(what))
}

/// Writes the rendered files into `dir/files` (in the run's tmpfs) and returns their read-only
/// bind mounts at the paths the manifest names.
pub fn bind_rendered_files(
    dir: &Path,
    files: &BTreeMap<String, SecretString>,
) -> Result<Vec<BindMount>, FilesError> {
    let files_dir = dir.join("files");
    std::fs::create_dir(&files_dir).map_err(io("creating the rendered files' directory"))?;
    let mut mounts = Vec::new();
    for (i, (path, content)) in files.iter().enumerate() {
        check_path(path)?;
        let source = files_dir.join(i.to_string());
        write_new(&source, content.expose().as_bytes(), 0o444)?;
        mounts.push(BindMount::new(source, path, true));
    }
    Ok(mounts)
}

/// Writes the rendered files under `root` at the paths the manifest names (`/etc/app/key` →
/// `ROOT/etc/app/key`), read-only (0444), creating parent directories; returns the paths
/// written. For an init container whose `root` is the memory volume the app mounts.
pub fn write_rendered_files(
    root: &Path,
    files: &BTreeMap<String, SecretString>,
) -> Result<Vec<PathBuf>, FilesError> {
    let mut written = Vec::new();
    for (path, content) in files {
        check_path(path)?;
        let target = root.join(path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        write_new(&target, content.expose().as_bytes(), 0o444)?;
        written.push(target);
    }
    Ok(written)
}

/// The files [`write_identity`] writes.
pub const IDENTITY_FILES: [&str; 4] = ["cert.pem", "chain.pem", "key.pem", "root-ca.pem"];

/// Writes the workload's identity into `dir` (which must exist): its certificate
/// (`cert.pem`), the certificate and intermediate CA (`chain.pem`), its private key (`key.pem`,
/// 0400) and the coordinator's root CA (`root-ca.pem`): what a mesh sidecar or an app that
/// speaks TLS itself needs.
pub fn write_identity(dir: &Path, activated: &Activated) -> Result<(), FilesError> {
    let a = &activated.answer;
    write_new(&dir.join("cert.pem"), a.certificate.as_bytes(), 0o444)?;
    write_new(&dir.join("chain.pem"), a.chain.as_bytes(), 0o444)?;
    write_new(
        &dir.join("key.pem"),
        activated.key.private_key_pem().as_bytes(),
        0o400,
    )?;
    write_new(&dir.join("root-ca.pem"), a.root_ca.as_bytes(), 0o444)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::from(*v)))
            .collect()
    }

    #[test]
    fn rendered_files_are_written_read_only_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        let written = write_rendered_files(
            d.path(),
            &files(&[("/etc/app/config.toml", "a = 1\n"), ("/token", "s3cret")]),
        )
        .unwrap();
        assert_eq!(written.len(), 2);
        let config = d.path().join("etc/app/config.toml");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "a = 1\n");
        assert_eq!(std::fs::metadata(&config).unwrap().mode() & 0o777, 0o444);
        assert_eq!(
            std::fs::read_to_string(d.path().join("token")).unwrap(),
            "s3cret"
        );
    }

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["etc/x", "/etc/../../x", "/", "/a/./b", "/a//"] {
            let e = write_rendered_files(d.path(), &files(&[(bad, "x")])).unwrap_err();
            assert!(matches!(e, FilesError::BadPath(_)), "{bad}: {e}");
        }
        // Nothing was written outside, or at all.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn rendered_files_become_read_only_binds() {
        let d = tempfile::tempdir().unwrap();
        let binds = bind_rendered_files(d.path(), &files(&[("/etc/x", "1")])).unwrap();
        assert_eq!(binds.len(), 1);
        let written = d.path().join("files/0");
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "1");
        assert_eq!(std::fs::metadata(&written).unwrap().mode() & 0o777, 0o444);
    }
}
