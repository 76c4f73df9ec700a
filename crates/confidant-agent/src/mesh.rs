//! The workload's mesh: the mutual-TLS proxy in front of the app's plain ports (ingress) and to
//! its peer workloads (egress), with the identity its activation issued, started from the
//! manifest's `mesh` section as the activation carries it ([`start_mesh`]) or as a pod's init
//! container wrote it down for the mesh sidecar ([`start_mesh_with`],
//! [`crate::credentials`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use confidant_manifest::Mesh as MeshSection;
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
    let Some(section) = &activated.answer.mesh else {
        return Ok(None);
    };
    start_mesh_with(section, identity(activated), settings)
}

/// The mesh identity an activation issued: its certificate chain, the key behind its CSR and
/// the coordinator's root CA.
pub fn identity(activated: &Activated) -> Identity {
    Identity {
        chain_pem: activated.answer.chain.clone(),
        key_pem: activated.key.private_key_pem(),
        root_pem: activated.answer.root_ca.clone(),
    }
}

/// Starts the mesh a workload's manifest `section` describes with `identity` (an activation's,
/// or one read back from a pod's credentials), or returns `None` when the section names no
/// ingress and no egress. Ingress listens on every address at the manifest's port (or the one
/// `settings.publish` gives) and forwards to `127.0.0.1:target_port`; egress listens on
/// `127.0.0.1:local_port` and connects to the peer `settings.peers` names (default
/// `127.0.0.1:port`). Dropping the mesh stops it.
pub fn start_mesh_with(
    section: &MeshSection,
    identity: Identity,
    settings: &MeshSettings,
) -> Result<Option<Mesh>, MeshStartError> {
    let (ingress, egress) = configs(section, settings)?;
    if ingress.is_empty() && egress.is_empty() {
        return Ok(None);
    }
    let options = match &settings.app_netns {
        Some(path) => MeshOptions::app_netns(path),
        None => MeshOptions::default(),
    };
    Ok(Some(Mesh::start_with(identity, ingress, egress, &options)?))
}

/// The proxy's listeners for a manifest's mesh `section` and the `settings`.
fn configs(
    mesh: &MeshSection,
    settings: &MeshSettings,
) -> Result<(Vec<IngressConfig>, Vec<EgressConfig>), MeshStartError> {
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
    Ok((ingress, egress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confidant_manifest::{EgressPeer, IngressPort};

    #[test]
    fn listeners_follow_the_manifest_and_the_settings() {
        let section = MeshSection {
            sans: vec![],
            ingress: vec![IngressPort {
                name: "redis".into(),
                port: 6380,
                target_port: 6379,
            }],
            egress: vec![EgressPeer {
                workload: "db".into(),
                port: 5432,
                local_port: 15432,
            }],
        };
        let (i, e) = configs(&section, &MeshSettings::default()).unwrap();
        assert_eq!(i[0].listen, "0.0.0.0:6380".parse().unwrap());
        assert_eq!(i[0].target, "127.0.0.1:6379".parse().unwrap());
        assert!(i[0].require_client_cert);
        assert_eq!(e[0].listen, "127.0.0.1:15432".parse().unwrap());
        assert_eq!(e[0].peer, "127.0.0.1:5432");
        let settings = MeshSettings {
            publish: [(6380, 16380)].into(),
            peers: [("db".to_string(), "db.ns.svc:5432".to_string())].into(),
            app_netns: None,
        };
        let (i, e) = configs(&section, &settings).unwrap();
        assert_eq!(i[0].listen, "0.0.0.0:16380".parse().unwrap());
        assert_eq!(e[0].peer, "db.ns.svc:5432");
        let mut bad = section.clone();
        bad.ingress[0].target_port = 70000;
        let err = configs(&bad, &MeshSettings::default()).unwrap_err();
        assert!(err.to_string().contains("target_port"), "{err}");
    }
}
