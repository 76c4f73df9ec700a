//! Test helpers: a CA (root → intermediate) made with rcgen, leaves under it, rustls
//! configurations and an in-memory handshake.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
};

/// Both protocol versions, each tested on its own.
pub(crate) const VERSIONS: [&SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

/// The server name every test leaf carries (with the IP address 127.0.0.1).
pub(crate) const HOST: &str = "localhost";

/// The provider the workspace's crates use.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a leaf's extended key usage allows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Usage {
    /// TLS server authentication only.
    Server,
    /// TLS client authentication only.
    Client,
}

/// A root CA and an intermediate CA under it.
pub(crate) struct Pki {
    pub(crate) root: CertificateDer<'static>,
    pub(crate) intermediate: CertificateDer<'static>,
    issuer: rcgen::Certificate,
    issuer_key: KeyPair,
}

fn ca(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

impl Pki {
    /// A new CA whose certificates are named after `tag` (two CAs with the same tag have the
    /// same names and different keys).
    pub(crate) fn new(tag: &str) -> Pki {
        let root_key = KeyPair::generate().unwrap();
        let root = ca(&format!("{tag} root")).self_signed(&root_key).unwrap();
        let issuer_key = KeyPair::generate().unwrap();
        let issuer = ca(&format!("{tag} intermediate"))
            .signed_by(&issuer_key, &root, &root_key)
            .unwrap();
        Pki {
            root: root.der().clone(),
            intermediate: issuer.der().clone(),
            issuer,
            issuer_key,
        }
    }

    /// A new leaf for `localhost` and 127.0.0.1 under the intermediate, and its key.
    pub(crate) fn leaf(&self, usage: Usage) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec![HOST.to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let cert = params
            .signed_by(&key, &self.issuer, &self.issuer_key)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// `leaf` with `key`, not checked to belong together (the tests pair them wrongly on purpose).
fn certified(
    leaf: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
) -> Arc<SingleCertAndKey> {
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .unwrap();
    Arc::new(SingleCertAndKey::from(CertifiedKey::new(
        vec![leaf.clone()],
        signing,
    )))
}

/// A client of `version` only, checking the server with `verifier`, presenting `identity`.
pub(crate) fn client_config(
    version: &'static SupportedProtocolVersion,
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<(&CertificateDer<'static>, &PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    Arc::new(match identity {
        Some((leaf, key)) => builder.with_client_cert_resolver(certified(leaf, key)),
        None => builder.with_no_client_auth(),
    })
}

/// A server of `version` only, presenting `leaf` and signing with `key`, checking clients with
/// `verifier` (none: no client authentication).
pub(crate) fn server_config(
    version: &'static SupportedProtocolVersion,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    leaf: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap();
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_cert_resolver(certified(leaf, key)))
}

/// Runs a handshake between `client` (connecting to [`HOST`]) and `server` in memory; the first
/// error either side raises.
pub(crate) fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(HOST).unwrap();
    let mut client = Connection::Client(ClientConnection::new(client, name)?);
    let mut server = Connection::Server(ServerConnection::new(server)?);
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        transfer(&mut client, &mut server)?;
        transfer(&mut server, &mut client)?;
    }
    panic!("the handshake did not finish in 10 flights each way");
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}
