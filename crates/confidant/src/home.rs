//! Where Confidant keeps its state.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The state directory: `--home`, else `$CONFIDANT_HOME`, else `/var/lib/confidant` as root,
/// else `$XDG_DATA_HOME/confidant` (default `~/.local/share/confidant`).
pub(crate) fn resolve(flag: Option<PathBuf>) -> PathBuf {
    if let Some(p) = flag {
        return p;
    }
    if let Some(p) = std::env::var_os("CONFIDANT_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if is_root() {
        return PathBuf::from("/var/lib/confidant");
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p).join("confidant");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/confidant")
}

/// Whether we run with effective uid 0 (`/proc/self` is owned by the effective uid).
fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}
