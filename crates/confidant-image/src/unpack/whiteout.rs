//! Whiteouts: how a layer deletes what lower layers put in the target.
//!
//! OCI image-spec `layer.md`: `DIR/.wh.NAME` removes `NAME` of the lower layers; `DIR/.wh..wh..opq`
//! hides everything the lower layers put in `DIR`; neither is ever materialized, and both apply
//! to lower layers only: an entry of the same layer survives whichever order the two come in.
//! That needs a record of what this layer made, [`UpperPaths`]: every entry unpacked and all
//! its ancestors, by their resolved path (symlinks expanded), the same bookkeeping as umoci's.
//! A whiteout then removes a path unless it is in the record, and for a recorded directory
//! removes, recursively, just the children that are not.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;

use super::resolve::{Missing, open_dir_nofollow, resolve_dir};
use crate::error::{Error, Result};

/// The paths (below the target, symlinks expanded) this layer created or descended through.
#[derive(Debug, Default)]
pub(crate) struct UpperPaths {
    paths: HashSet<PathBuf>,
}

impl UpperPaths {
    /// Records `path` and all its ancestors.
    pub(crate) fn insert(&mut self, path: &Path) {
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() || !self.paths.insert(ancestor.to_path_buf()) {
                // Already there, and so are its ancestors.
                break;
            }
        }
    }

    /// Whether `path` was created by this layer or is an ancestor of something that was.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        self.paths.contains(path)
    }
}

/// Applies `PARENT/.wh.NAME`: removes `NAME` of lower layers from `PARENT`. Nothing to do when
/// `PARENT` or `NAME` does not exist. Returns whether anything was removed.
pub(crate) fn remove(
    root: &Dir,
    parent: &[std::ffi::OsString],
    name: &OsStr,
    upper: &UpperPaths,
    entry: &str,
) -> Result<bool> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::unsafe_entry(
            entry,
            format!("whiteout of {name:?}, which is not a name in its directory"),
        ));
    }
    let Some(parent) = resolve_dir(root, parent, Missing::Stop, entry)? else {
        return Ok(false);
    };
    remove_lower(&parent.dir, name, &parent.path.join(name), upper)
}

/// Applies `DIR/.wh..wh..opq`: removes from `DIR` everything this layer did not create. `DIR`
/// is created when missing, since the marker says it exists in this layer; it is recorded in
/// `upper` for the same reason.
pub(crate) fn opaque(
    root: &Dir,
    dir: &[std::ffi::OsString],
    upper: &mut UpperPaths,
    entry: &str,
) -> Result<()> {
    let resolved =
        resolve_dir(root, dir, Missing::Create, entry)?.expect("Missing::Create always resolves");
    upper.insert(&resolved.path);
    prune_children(&resolved.dir, &resolved.path, upper)
}

/// Removes `name` (at `path`) from `dir` unless this layer made it; of a directory this layer
/// made or descended through, removes the children it did not make.
fn remove_lower(dir: &Dir, name: &OsStr, path: &Path, upper: &UpperPaths) -> Result<bool> {
    let meta = match dir.symlink_metadata(name) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("inspect whiteout target", path, e)),
    };
    let is_dir = meta.file_type().is_dir();
    if upper.contains(path) {
        if is_dir {
            let child =
                open_dir_nofollow(dir, name).map_err(|e| Error::io("open directory", path, e))?;
            prune_children(&child, path, upper)?;
        }
        return Ok(false);
    }
    if is_dir {
        // cap-std removes recursively without following symlinks inside.
        dir.remove_dir_all(name)
            .map_err(|e| Error::io("remove whited-out directory", path, e))?;
    } else {
        dir.remove_file(name)
            .map_err(|e| Error::io("remove whited-out file", path, e))?;
    }
    Ok(true)
}

/// Removes from `dir` (at `path`) every child that this layer did not make.
fn prune_children(dir: &Dir, path: &Path, upper: &UpperPaths) -> Result<()> {
    let names = dir
        .entries()
        .and_then(|entries| {
            entries
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(|e| Error::io("list directory", path, e))?;
    for name in names {
        remove_lower(dir, &name, &path.join(&name), upper)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_paths_record_ancestors() {
        let mut upper = UpperPaths::default();
        upper.insert(Path::new("a/b/c"));
        assert!(upper.contains(Path::new("a/b/c")));
        assert!(upper.contains(Path::new("a/b")));
        assert!(upper.contains(Path::new("a")));
        assert!(!upper.contains(Path::new("a/b/d")));
        assert!(!upper.contains(Path::new("")));
        upper.insert(Path::new("a/e"));
        assert!(upper.contains(Path::new("a/e")));
    }
}
