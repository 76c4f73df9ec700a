//! The rustls certificate-verifier plumbing that Confidant's TLS endpoints share.
//!
//! Its one concern is checking what a TLS peer presents, below the policy of each endpoint:
//!
//! - [`HandshakeSignatures`]: the handshake signature checks (TLS 1.2 and 1.3) with a given
//!   [`CryptoProvider`](rustls::crypto::CryptoProvider)'s algorithms, which every custom
//!   `ServerCertVerifier` and `ClientCertVerifier` needs and which prove that the peer holds the
//!   key of the certificate it presented.
//! - [`PinnedServerVerifier`] and [`PinnedClientVerifier`]: webpki's chain validation against
//!   exactly one root CA, with an optional pinned intermediate CA that the peer may omit.
//!
//! What an endpoint accepts on top (a manifest user, a workload identity, the certificate seen on
//! first contact) stays with that endpoint: the coordinator's API, the mesh proxy and the CLI's
//! coordinator client. The crate never picks a crypto provider; callers pass theirs.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod pinned;
mod signatures;

#[cfg(test)]
mod testing;

pub use pinned::{PinError, PinnedClientVerifier, PinnedServerVerifier};
pub use signatures::HandshakeSignatures;
