//! The workload's mesh: the mutual-TLS proxy in front of the app's plain ports (ingress) and to
//! its peer workloads (egress), with the identity its activation issued, started from the
//! manifest's `mesh` section as the activation carries it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use confidant_mesh::{EgressConfig, Identity, IngressConfig, Mesh, MeshError, MeshOptions};

use crate::activation::Activated;

/// Where the mesh listens and connects, beyond what the manifest says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshSettings {
    /// An ingress port published on another host port: manifest port → host port.
    pub publish: BTreeMap<u16, u16>,
    /// Where an egress peer workload is reached (`HOST:PORT`; default `127.0.0.1` and the
    /// manifest's port).
    pub peers: BTreeMap<String, String>,
    /// The app's own network namespace (the plain side of the proxy is made inside it).
    pub app_netns: Option<PathBuf>,
}

/// Why the mesh did not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshStartError {
    /// The manifest's mesh section, or a setting, is not usable.
    #[error("mesh: {0}")]
    Config(String),
    /// The proxy did not start.
    #[error("mesh: {0}")]
    Proxy(#[from] MeshError),
}

fn port(what: &str, value: u32) -> Result<u16, MeshStartError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| MeshStartError::Config(format!("{what}: expected a port, got {value}")))
}

/// Starts the mesh for `activated`, or returns `None` when its manifest names no ingress and
/// no egress. Dropping the mesh stops it.
pub fn start_mesh(
    activated: &Activated,
    settings: &MeshSettings,
) -> Result<Option<Mesh>, MeshStartError> {
    let Some(mesh) = &activated.answer.mesh else {
        return Ok(None);
    };
    if mesh.ingress.is_empty() && mesh.egress.is_empty() {
        return Ok(None);
    }
    let mut ingress = Vec::new();
    for i in &mesh.ingress {
        let p = port(&format!("mesh.ingress {}: port", i.name), i.port)?;
        let listen = settings.publish.get(&p).copied().unwrap_or(p);
        ingress.push(IngressConfig {
            name: i.name.clone(),
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, listen)),
            target: SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                port(
                    &format!("mesh.ingress {}: target_port", i.name),
                    i.target_port,
                )?,
            )),
            require_client_cert: true,
            allowed_peers: None,
        });
    }
    let mut egress = Vec::new();
    for e in &mesh.egress {
        let peer = match settings.peers.get(&e.workload) {
            Some(a) => a.clone(),
            None => format!(
                "127.0.0.1:{}",
                port(&format!("mesh.egress {}: port", e.workload), e.port)?
            ),
        };
        egress.push(EgressConfig {
            listen: SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                port(
                    &format!("mesh.egress {}: local_port", e.workload),
                    e.local_port,
                )?,
            )),
            peer,
            peer_workload: e.workload.clone(),
        });
    }
    let identity = Identity {
        chain_pem: activated.answer.chain.clone(),
        key_pem: activated.key.private_key_pem(),
        root_pem: activated.answer.root_ca.clone(),
    };
    let options = match &settings.app_netns {
        Some(path) => MeshOptions::app_netns(path),
        None => MeshOptions::default(),
    };
    Ok(Some(Mesh::start_with(identity, ingress, egress, &options)?))
}
