//! The app's own network namespace: only its loopback interface, so the app's plain ports are
//! reachable by the mesh proxy and by nothing else on the machine.
//!
//! The namespace is made with iproute2 (`ip netns add`, which unshares a network namespace and
//! keeps it alive with a bind mount at `/run/netns/<name>`), its loopback interface is brought
//! up, and the container joins it by path (the bundle's [`crate::runtime::Network::Join`]). The
//! mesh proxy, which runs in the agent, opens its sockets towards the app (ingress targets,
//! egress listeners) inside it, and its sockets towards the network outside.
//!
//! What it does NOT protect: root on the machine can enter any namespace (`nsenter`, `setns`);
//! on real hardware the pod VM is the boundary and its host cannot reach the guest's namespaces
//! at all. The app has no route out except through the mesh's egress listeners: an app that
//! needs other network access must run with the host's network (`confidant run --network host`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{AgentError, Result};

/// Where iproute2 keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace with its loopback interface up; deleted on drop (or by
/// [`NetNs::remove`]).
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
    removed: bool,
}

fn ip(args: &[&str], what: &str) -> Result<()> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        AgentError::Config(format!(
            "{what}: expected iproute2's `ip` to run (apt-get install iproute2), found: {e}"
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(AgentError::Config(format!(
            "{what}: `ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl NetNs {
    /// Makes the namespace `name` (it must not exist) and brings its loopback interface up.
    pub fn create(name: &str) -> Result<NetNs> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AgentError::Config(format!(
                "expected a network namespace name of 1 to 64 letters, digits, '-' or '_', found {name:?}"
            )));
        }
        ip(
            &["netns", "add", name],
            &format!("making the app's network namespace {name}"),
        )?;
        let ns = NetNs {
            name: name.to_string(),
            path: Path::new(NETNS_DIR).join(name),
            removed: false,
        };
        // On failure `ns` is dropped, which deletes the namespace again.
        ip(
            &["-n", name, "link", "set", "lo", "up"],
            &format!("bringing up the loopback interface of network namespace {name}"),
        )?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that keeps it alive (what the container and the mesh join).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the namespace (its sockets close as their owners let go of them).
    pub fn remove(mut self) -> Result<()> {
        self.delete()
    }

    fn delete(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        delete(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Errors here have no one to go to; `remove` reports them.
        let _ = self.delete();
    }
}

/// Deletes the named network namespace (`ip netns delete`), e.g. one a killed run left behind.
pub fn delete(name: &str) -> Result<()> {
    ip(
        &["netns", "delete", name],
        &format!("deleting network namespace {name}"),
    )
}

#[cfg(test)]
mod tests {
    use super::NetNs;

    #[test]
    fn names_are_checked_before_anything_runs() {
        for bad in ["", "a/b", "../x", "a b", &"n".repeat(65)] {
            let e = NetNs::create(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected a network namespace name"),
                "{bad:?}: {e}"
            );
        }
    }
}
