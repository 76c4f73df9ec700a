//! Errors of the mesh proxy: starting it ([`MeshError`]) and checking a peer's workload identity
//! ([`PeerIdentityError`]).

use std::net::SocketAddr;

/// Why [`crate::Mesh::start`] failed. Every variant says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// A PEM input of the [`crate::Identity`] is not what it should be.
    #[error("identity {item}: expected {expected}, found {found}")]
    Pem {
        /// Which input: `chain_pem`, `key_pem` or `root_pem`.
        item: &'static str,
        /// What the input should hold.
        expected: &'static str,
        /// What it holds instead (or the parser's complaint).
        found: String,
    },
    /// A listener's configuration is not valid.
    #[error("{listener}: {field}: expected {expected}, found {found:?}")]
    Config {
        /// The listener (`ingress <name>` or `egress <peer_workload>`).
        listener: String,
        /// The offending field.
        field: &'static str,
        /// What the field should hold.
        expected: &'static str,
        /// What it holds.
        found: String,
    },
    /// rustls refused the identity or the TLS settings (e.g. the key does not match the leaf).
    #[error("{context}: {source}")]
    Tls {
        /// What was being built.
        context: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the root (e.g. no usable root).
    #[error("{context}: expected a client-certificate verifier over the root CA, found: {source}")]
    Verifier {
        /// The listener.
        context: String,
        /// rustls' reason.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The app's network namespace could not be joined (no such namespace, not root).
    #[error("expected to join the app's network namespace {}, found: {source}", path.display())]
    AppNetwork {
        /// The namespace asked for.
        path: std::path::PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A listening address could not be bound (in use, not local, no permission).
    #[error("{listener}: expected to listen on {addr}, found: {source}")]
    Bind {
        /// The listener (`ingress <name>` or `egress <peer_workload>`).
        listener: String,
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The proxy's tokio runtime could not be created.
    #[error("expected to start the mesh proxy's runtime, found: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Why a peer certificate does not carry the expected Confidant workload identity (a URI SAN
/// `confidant://workload/<workload>/<activation>`). Carried inside the rustls error of a refused
/// handshake, so it appears in the proxy's logs and in [`crate::ListenerStats::last_refusal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerIdentityError {
    /// The certificate could not be parsed.
    #[error("expected an X.509 certificate, found one x509-parser rejects: {0}")]
    Unparsable(String),
    /// No (or more than one) Confidant workload URI SAN.
    #[error(
        "expected exactly one URI SAN confidant://workload/<workload>/<activation>, found {}",
        describe_uris(.found)
    )]
    NoWorkloadUri {
        /// The certificate's URI SANs, whatever they are.
        found: Vec<String>,
    },
    /// The peer server is another workload than the egress expects.
    #[error(
        "expected the peer workload `{expected}` (URI SAN confidant://workload/{expected}/<activation>), found `{found}`"
    )]
    WrongWorkload {
        /// The workload the egress listener was configured for.
        expected: String,
        /// The URI SAN the peer presented.
        found: String,
    },
    /// The client workload is not among the ingress listener's allowed peers.
    #[error("expected a client workload among [{}], found `{found}`", .allowed.join(", "))]
    NotAllowed {
        /// The workloads the ingress listener accepts.
        allowed: Vec<String>,
        /// The URI SAN the client presented.
        found: String,
    },
}

fn describe_uris(found: &[String]) -> String {
    if found.is_empty() {
        "no URI SAN".to_owned()
    } else {
        format!("URI SANs [{}]", found.join(", "))
    }
}
