//! The coordinator client: HTTPS to the coordinator's API (`docs/formats/coordinator-api.md`),
//! trust in its TLS certificate, client-certificate authentication, the coordinator a client
//! verified (saved under `$HOME/client/<address>/`) and the API's error answers.
//!
//! Two trust modes:
//!
//! - [`Trust::Pinned`]: the root CA saved by `confidant verify`; the server's chain must lead to
//!   it (webpki, as rustls checks any server) and name the host of the address.
//! - [`Trust::FirstContact`]: for `verify` and `recover`, before anything is pinned. Any chain is
//!   accepted (the TLS handshake signatures are still checked, so the peer holds the leaf's key)
//!   and recorded; the caller then checks that the coordinator's evidence binds it. Within one
//!   client, every connection must present the same leaf as the first.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use confidant_tls::{HandshakeSignatures, PinError, PinnedServerVerifier};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Format;

/// The API's path prefix.
pub const API: &str = "/api/v1";
/// The coordinator's default port.
pub const DEFAULT_PORT: u16 = 4433;
/// Time allowed to open a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole request and its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest answer read (the API's bodies are at most 4 MiB; answers carry a little more).
const MAX_ANSWER: usize = 16 << 20;

/// `--coordinator ADDR`: which coordinator to talk to.
#[derive(Debug, Clone, Args)]
pub struct CoordinatorArg {
    /// The coordinator's address, `HOST:PORT` (port default 4433; `https://` may be given).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,
}

impl CoordinatorArg {
    /// The parsed address.
    pub fn address(&self) -> Result<Address> {
        Address::parse(&self.coordinator)
    }
}

/// `--cert FILE --key FILE`: the user's client certificate and private key (PEM).
#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    /// The user's certificate (PEM; the manifest's `users.NAME.certificate`), with any chain.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl UserArgs {
    /// The identity to present, if --cert and --key were given.
    pub fn identity(&self) -> Result<Option<ClientIdentity>> {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Ok(Some(ClientIdentity::load(c, k)?)),
            _ => Ok(None),
        }
    }
}

/// A coordinator address: `host:port`, as given and as TLS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `host:port` (IPv6 hosts in brackets): the URL's authority.
    pub authority: String,
    /// The host alone (no brackets): the TLS server name.
    pub host: String,
}

impl Address {
    /// Parses `HOST[:PORT]`, `[V6][:PORT]` or the same after `https://`.
    pub fn parse(text: &str) -> Result<Address> {
        let t = text.trim();
        if t.starts_with("http://") {
            bail!("coordinator address {text:?}: the coordinator speaks HTTPS only");
        }
        let t = t.strip_prefix("https://").unwrap_or(t);
        let t = t.strip_suffix('/').unwrap_or(t);
        if t.is_empty() || t.contains(['/', '?', '#', '@']) || t.contains(char::is_whitespace) {
            bail!("coordinator address {text:?}: expected HOST:PORT");
        }
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| anyhow!("coordinator address {text:?}: no closing `]`"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    anyhow!("coordinator address {text:?}: expected `:PORT` after `]`")
                })?),
            };
            (h, port)
        } else if t.matches(':').count() > 1 {
            bail!("coordinator address {text:?}: write IPv6 addresses as [ADDR]:PORT");
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        if host.is_empty() {
            bail!("coordinator address {text:?}: no host");
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                anyhow!("coordinator address {text:?}: port must be 1 to 65535, got {p:?}")
            })?,
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Address {
            authority,
            host: host.to_string(),
        })
    }

    /// The address as a directory name: anything but `[A-Za-z0-9.-]` becomes `_`.
    pub fn dir_name(&self) -> String {
        self.authority
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The HTTPS URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority)
    }

    /// The TLS server name (a DNS name or an IP address).
    pub fn server_name(&self) -> Result<ServerName<'static>> {
        ServerName::try_from(self.host.clone())
            .map_err(|e| anyhow!("{} is not a DNS name or IP address: {e}", self.host))
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A user's client certificate chain and private key.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientIdentity({} certificates, <key>)",
            self.chain.len()
        )
    }
}

impl ClientIdentity {
    /// Loads a PEM certificate (chain) and its PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<ClientIdentity> {
        let chain = read_certificates(cert)?;
        let bytes = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
            anyhow!(
                "{}: expected a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                key.display()
            )
        })?;
        Ok(ClientIdentity { chain, key })
    }

    /// A certificate chain and private key from PEM text in memory (the workload certificate
    /// chain of an activation and the key behind its CSR).
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<ClientIdentity> {
        let chain = certificates_from_pem(chain_pem.as_bytes())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| anyhow!("expected a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))?;
        Ok(ClientIdentity { chain, key })
    }
}

/// Reads every PEM `CERTIFICATE` of a file; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = certificates_from_pem(&bytes).with_context(|| path.display().to_string())?;
    Ok(certs)
}

/// Every PEM `CERTIFICATE` block of `pem`; at least one.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("expected PEM certificates: {e}"))?;
    if certs.is_empty() {
        bail!("expected PEM certificates, found no CERTIFICATE block");
    }
    Ok(certs)
}

/// Exactly one PEM `CERTIFICATE` (the API's `root_ca`, `intermediate_ca`).
pub fn one_certificate(what: &str, pem: &str) -> Result<CertificateDer<'static>> {
    let mut certs = certificates_from_pem(pem.as_bytes()).with_context(|| what.to_string())?;
    if certs.len() != 1 {
        bail!("{what}: expected one certificate, got {}", certs.len());
    }
    certs.pop().ok_or_else(|| anyhow!("{what}: no certificate"))
}

/// A certificate's SubjectPublicKeyInfo, DER.
pub fn spki_der(cert: &CertificateDer<'_>) -> Result<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| anyhow!("parsing a certificate: {e}"))?;
    Ok(parsed.public_key().raw.to_vec())
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, lower-case hex.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String> {
    Ok(hex::encode(Sha256::digest(spki_der(cert)?)))
}

/// A certificate as PEM.
pub fn to_pem(cert: &CertificateDer<'_>) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", cert.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The TLS library's algorithms: rustls on `ring`, as in the rest of the workspace.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `n` random bytes from the provider's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    provider()
        .secure_random
        .fill(&mut out)
        .map_err(|_| anyhow!("the system's random number generator failed"))?;
    Ok(out)
}

/// Checks that `leaf` (with the `presented` intermediates and, if any, `intermediate`) chains to
/// `root` and is valid for `host` now, as rustls checks a server: webpki, server authentication.
pub fn check_chain(
    root: &CertificateDer<'static>,
    intermediate: Option<&CertificateDer<'static>>,
    leaf: &CertificateDer<'_>,
    presented: &[CertificateDer<'static>],
    address: &Address,
) -> Result<()> {
    let verifier = pinned_verifier(root.clone(), intermediate.cloned())?;
    verifier
        .verify_server_cert(
            leaf,
            presented,
            &address.server_name()?,
            &[],
            UnixTime::now(),
        )
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// How the client trusts the coordinator's TLS certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The saved root CA (and intermediate) of a verified coordinator.
    Pinned {
        /// The root CA.
        root: CertificateDer<'static>,
        /// The intermediate CA, added to what the server presents.
        intermediate: Option<CertificateDer<'static>>,
    },
    /// Nothing pinned yet: record the chain and let the caller check the evidence binds it.
    FirstContact,
}

/// The chain a server presented on the first connection of a [`Trust::FirstContact`] client.
#[derive(Debug, Clone, Default)]
pub struct PeerChain {
    /// The server's certificate.
    pub leaf: Option<CertificateDer<'static>>,
    /// The other certificates it sent.
    pub intermediates: Vec<CertificateDer<'static>>,
}

/// The pinned mode's verifier: webpki against the saved root, with the saved intermediate
/// added to the presented ones (a server may send its leaf alone).
fn pinned_verifier(
    root: CertificateDer<'static>,
    intermediate: Option<CertificateDer<'static>>,
) -> Result<PinnedServerVerifier> {
    PinnedServerVerifier::new(root, intermediate, provider()).map_err(|e| match e {
        PinError::TrustAnchor(e) => anyhow!("the saved root CA is not a usable trust anchor: {e}"),
        PinError::Verifier(e) => anyhow!("building the certificate verifier: {e}"),
    })
}

/// The first-contact verifier: records the chain, accepts it, and insists on the same leaf on
/// every later connection of the same client. Handshake signatures are verified as usual.
#[derive(Debug)]
struct FirstContactVerifier {
    signatures: HandshakeSignatures,
    seen: Arc<Mutex<PeerChain>>,
}

impl ServerCertVerifier for FirstContactVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| rustls::Error::General("certificate recorder poisoned".into()))?;
        match &seen.leaf {
            Some(first) if first.as_ref() != end_entity.as_ref() => {
                return Err(rustls::Error::General(
                    "the coordinator presented another certificate than on the first connection"
                        .into(),
                ));
            }
            Some(_) => {}
            None => {
                seen.leaf = Some(end_entity.clone().into_owned());
                seen.intermediates = intermediates
                    .iter()
                    .map(|c| c.clone().into_owned())
                    .collect();
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

/// A successful answer: its status, its JSON body, and the leaf certificate of the connection
/// that carried it.
#[derive(Debug)]
pub struct Answer {
    /// The JSON body (`null` when empty).
    pub body: Value,
    /// The server's certificate on this connection (DER).
    pub peer_leaf: Option<CertificateDer<'static>>,
}

/// What a request sends.
#[derive(Debug)]
pub enum Body<'a> {
    /// A JSON document.
    Json(&'a Value),
    /// Raw bytes with their content type.
    Raw(Vec<u8>, &'static str),
}

/// An HTTPS client for one coordinator, with its own current-thread runtime.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    address: Address,
    seen: Arc<Mutex<PeerChain>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Client({})", self.address.authority)
    }
}

impl Client {
    /// A client for `address` trusting as `trust` says, presenting `identity` if given.
    pub fn new(
        address: &Address,
        trust: &Trust,
        identity: Option<ClientIdentity>,
    ) -> Result<Client> {
        let seen = Arc::new(Mutex::new(PeerChain::default()));
        let verifier: Arc<dyn ServerCertVerifier> = match trust {
            Trust::Pinned { root, intermediate } => {
                Arc::new(pinned_verifier(root.clone(), intermediate.clone())?)
            }
            Trust::FirstContact => Arc::new(FirstContactVerifier {
                signatures: HandshakeSignatures::new(&provider()),
                seen: Arc::clone(&seen),
            }),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let tls = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| anyhow!("the client certificate and key do not fit together: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the client's tokio runtime")?;
        let direct = address.is_loopback();
        // reqwest's client must be built inside the runtime it will run on.
        let http = runtime.block_on(async move {
            let mut b = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .tls_info(true)
                .https_only(true)
                .user_agent(concat!("confidant/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none());
            if direct {
                b = b.no_proxy();
            }
            b.build()
        });
        let http = http.map_err(|e| anyhow!("HTTP client: {}", error_chain(&e)))?;
        Ok(Client {
            runtime,
            http,
            address: address.clone(),
            seen,
        })
    }

    /// The chain recorded on first contact (empty in pinned mode).
    pub fn peer_chain(&self) -> PeerChain {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Answer> {
        self.send(reqwest::Method::GET, path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        self.send(reqwest::Method::POST, path, Some(Body::Json(body)))
    }

    /// Sends a request; a non-2xx answer is an [`ApiError`], a failure to get one a transport
    /// error (both as [`anyhow::Error`]).
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body<'_>>,
    ) -> Result<Answer> {
        let url = self.address.url(path);
        // Errors name the endpoint without its query (a nonce says nothing to the reader).
        let endpoint = path.split_once('?').map_or(path, |(p, _)| p);
        let what = format!("{method} {}", self.address.url(endpoint));
        let mut req = self
            .http
            .request(method, &url)
            .header(reqwest::header::ACCEPT, "application/json");
        match body {
            Some(Body::Json(v)) => {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(serde_json::to_vec(v)?);
            }
            Some(Body::Raw(bytes, ctype)) => {
                req = req.header(reqwest::header::CONTENT_TYPE, ctype).body(bytes);
            }
            None => {}
        }
        let result: Result<(u16, Vec<u8>, Option<CertificateDer<'static>>)> =
            self.runtime.block_on(async {
                let mut resp = req.send().await.map_err(|e| {
                    TransportError(format!("{what}: {}", error_chain(&e.without_url())))
                })?;
                let status = resp.status().as_u16();
                let leaf = resp
                    .extensions()
                    .get::<reqwest::tls::TlsInfo>()
                    .and_then(|t| t.peer_certificate())
                    .map(|der| CertificateDer::from(der.to_vec()));
                let mut bytes = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| {
                    TransportError(format!(
                        "{what}: reading the answer: {}",
                        error_chain(&e.without_url())
                    ))
                })? {
                    if bytes.len() + chunk.len() > MAX_ANSWER {
                        bail!("{what}: the answer is larger than {MAX_ANSWER} bytes");
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok((status, bytes, leaf))
            });
        let (status, bytes, peer_leaf) = result?;
        if !(200..300).contains(&status) {
            return Err(ApiError::from_answer(status, &bytes).into());
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{what}: the answer ({status}) is not JSON"))?
        };
        Ok(Answer { body, peer_leaf })
    }
}

/// A reqwest error with its causes (reqwest's own message hides the TLS reason).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The coordinator refused or failed a request: `{"error": {code, message, field, details}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The error code (`forbidden`, `evidence_rejected`, …).
    pub code: String,
    /// What went wrong, in words.
    pub message: String,
    /// The request field (or manifest path) at fault.
    pub field: Option<String>,
    /// Structured details (`errors`, `mismatches`).
    pub details: Option<Value>,
}

impl ApiError {
    /// Parses an error answer; a body that is not the API's error form still gives an error.
    pub fn from_answer(status: u16, body: &[u8]) -> ApiError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let err = parsed.as_ref().and_then(|v| v.get("error"));
        match err {
            Some(e) => ApiError {
                status,
                code: e
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                field: e.get("field").and_then(Value::as_str).map(str::to_string),
                details: e.get("details").filter(|d| !d.is_null()).cloned(),
            },
            None => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(500).collect();
                ApiError {
                    status,
                    code: format!("http_{status}"),
                    message: if text.is_empty() {
                        "(no body)".into()
                    } else {
                        text
                    },
                    field: None,
                    details: None,
                }
            }
        }
    }

    /// A refusal (4xx: exit 1), as opposed to a server failure (exit 2).
    pub fn is_refusal(&self) -> bool {
        (400..500).contains(&self.status)
    }

    /// `details.errors` and `details.mismatches`, one line each.
    pub fn detail_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(d) = &self.details else {
            return out;
        };
        if let Some(errors) = d.get("errors").and_then(Value::as_array) {
            for e in errors {
                out.push(match e.as_str() {
                    Some(s) => s.to_string(),
                    None => e.to_string(),
                });
            }
        }
        if let Some(ms) = d.get("mismatches").and_then(Value::as_array) {
            for m in ms {
                let field = m.get("field").and_then(Value::as_str);
                let expected = m.get("expected").and_then(Value::as_str);
                let got = m.get("got").and_then(Value::as_str);
                out.push(match (field, expected, got) {
                    (Some(f), Some(e), Some(g)) => format!("{f}: expected {e}, got {g}"),
                    _ => m.to_string(),
                });
            }
        }
        out
    }

    /// Prints the error: `error: …` and its details on stderr, or the JSON error on stdout.
    pub fn print(&self, format: Format) {
        match format {
            Format::Human => {
                eprintln!("error: {self}");
                if let Some(f) = &self.field {
                    eprintln!("  field: {f}");
                }
                for line in self.detail_lines() {
                    eprintln!("  - {line}");
                }
            }
            Format::Json => {
                let doc = serde_json::json!({"error": {
                    "status": self.status,
                    "code": self.code,
                    "message": self.message,
                    "field": self.field,
                    "details": self.details,
                }});
                crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.is_refusal() {
            "the coordinator refused the request"
        } else {
            "the coordinator failed"
        };
        write!(f, "{who} ({} {}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The [`ApiError`] in an error's chain, if any.
pub fn find_api_error(err: &anyhow::Error) -> Option<&ApiError> {
    err.chain().find_map(|e| e.downcast_ref::<ApiError>())
}

/// No answer from the coordinator: connection, TLS or timeout (exit 2).
#[derive(Debug, Clone)]
pub struct TransportError(pub String);

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

/// Prints a coordinator error ([`ApiError`] or [`TransportError`]) if `err` holds one; false
/// when it does not (the caller prints it the usual way).
pub fn print_client_error(err: &anyhow::Error, format: Format) -> bool {
    if let Some(api) = find_api_error(err) {
        api.print(format);
        return true;
    }
    let Some(t) = err.chain().find_map(|e| e.downcast_ref::<TransportError>()) else {
        return false;
    };
    match format {
        Format::Human => {
            let top = err.to_string();
            if top != t.0 {
                eprintln!("error: {top}");
                eprintln!("  caused by: {t}");
            } else {
                eprintln!("error: {t}");
            }
            eprintln!(
                "  (the coordinator could not be reached or its TLS certificate was refused)"
            );
        }
        Format::Json => {
            let doc = serde_json::json!({"error": {"code": "transport", "message": err.to_string(),
                "causes": [t.0]}});
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }
    true
}

/// A coordinator the client verified: `$HOME/client/<address>/{root.pem, intermediate.pem,
/// coordinator.json}`.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The directory.
    pub dir: PathBuf,
    /// The root CA.
    pub root: CertificateDer<'static>,
    /// The intermediate CA, when the coordinator sent one.
    pub intermediate: Option<CertificateDer<'static>>,
    /// `coordinator.json` (`null` when absent).
    pub info: Value,
}

/// The name of the saved root CA file.
pub const ROOT_FILE: &str = "root.pem";
/// The name of the saved intermediate CA file.
pub const INTERMEDIATE_FILE: &str = "intermediate.pem";
/// The name of the saved verification record.
pub const INFO_FILE: &str = "coordinator.json";

/// Where a coordinator's verified state is kept.
pub fn saved_dir(home: &Path, address: &Address) -> PathBuf {
    home.join("client").join(address.dir_name())
}

impl Saved {
    /// The saved coordinator for `address`, or the advice to verify it first.
    pub fn load(home: &Path, address: &Address) -> Result<Saved> {
        let dir = saved_dir(home, address);
        let root_path = dir.join(ROOT_FILE);
        if !root_path.exists() {
            bail!(
                "no verified coordinator at {0} ({1} does not exist): run `confidant verify --coordinator {0}` first",
                address.authority,
                root_path.display()
            );
        }
        let root = read_certificates(&root_path)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{}: no certificate", root_path.display()))?;
        let inter_path = dir.join(INTERMEDIATE_FILE);
        let intermediate = if inter_path.exists() {
            read_certificates(&inter_path)?.into_iter().next()
        } else {
            None
        };
        let info_path = dir.join(INFO_FILE);
        let info = if info_path.exists() {
            let text = std::fs::read_to_string(&info_path)
                .with_context(|| format!("reading {}", info_path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", info_path.display()))?
        } else {
            Value::Null
        };
        Ok(Saved {
            dir,
            root,
            intermediate,
            info,
        })
    }

    /// The pinned trust of this coordinator.
    pub fn trust(&self) -> Trust {
        Trust::Pinned {
            root: self.root.clone(),
            intermediate: self.intermediate.clone(),
        }
    }

    /// Whether the coordinator said it runs on the simulation TEE when it was verified.
    pub fn simulation(&self) -> bool {
        self.info
            .get("simulation")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A client for a verified coordinator (pinned to its saved root CA), as `user` if given.
pub fn pinned_client(
    home: &Path,
    coordinator: &CoordinatorArg,
    user: Option<&UserArgs>,
) -> Result<(Client, Saved)> {
    let address = coordinator.address()?;
    let saved = Saved::load(home, &address)?;
    let identity = match user {
        Some(u) => u.identity()?,
        None => None,
    };
    let client = Client::new(&address, &saved.trust(), identity)?;
    Ok((client, saved))
}

/// Strips an optional `sha256:` from a digest and checks it is 32 bytes of hex.
pub fn digest_bytes(what: &str, text: &str) -> Result<[u8; 32]> {
    let hexpart = text.strip_prefix("sha256:").unwrap_or(text);
    let bytes = hex::decode(hexpart).with_context(|| format!("{what} is not hex: {text:?}"))?;
    bytes
        .try_into()
        .map_err(|v: Vec<u8>| anyhow!("{what}: expected 32 bytes, got {}", v.len()))
}

/// A path segment naming a secret or a package: `[A-Za-z0-9._-]+`, so that it needs no
/// escaping in a URL.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!("{what} {name:?}: expected letters, digits, `.`, `_` or `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let a = Address::parse("127.0.0.1:4433").unwrap();
        assert_eq!(a.authority, "127.0.0.1:4433");
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.dir_name(), "127.0.0.1_4433");
        let a = Address::parse("https://coord.example/").unwrap();
        assert_eq!(a.authority, "coord.example:4433");
        let a = Address::parse("[::1]:99").unwrap();
        assert_eq!(a.authority, "[::1]:99");
        assert_eq!(a.host, "::1");
        assert_eq!(a.dir_name(), "___1__99");
        for bad in ["", "http://x:1", "x:0", "x:y", "::1", "a/b:1", "[::1"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_errors_parse_with_details() {
        let body = br#"{"error":{"code":"invalid_manifest","message":"2 errors","field":null,
            "details":{"errors":["a: x","b: y"],"mismatches":[{"field":"m","expected":"1","got":"2"}]}}}"#;
        let e = ApiError::from_answer(422, body);
        assert!(e.is_refusal());
        assert_eq!(e.code, "invalid_manifest");
        assert_eq!(e.detail_lines(), ["a: x", "b: y", "m: expected 1, got 2"]);
        let e = ApiError::from_answer(502, b"bad gateway");
        assert!(!e.is_refusal());
        assert_eq!(e.code, "http_502");
        assert_eq!(e.message, "bad gateway");
    }

    /// A CA (root → intermediate) and a server certificate for `127.0.0.1` under it.
    fn pki(
        tag: &str,
    ) -> (
        CertificateDer<'static>,
        CertificateDer<'static>,
        CertificateDer<'static>,
    ) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_string());
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root = ca(&format!("{tag} root")).self_signed(&root_key).unwrap();
        let inter_key = KeyPair::generate().unwrap();
        let inter = ca(&format!("{tag} intermediate"))
            .signed_by(&inter_key, &root, &root_key)
            .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &inter, &inter_key)
            .unwrap();
        (root.der().clone(), inter.der().clone(), leaf.der().clone())
    }

    #[test]
    fn chains_are_checked_against_the_attested_root() {
        let (root, inter, leaf) = pki("ours");
        let here = Address::parse("127.0.0.1:4433").unwrap();
        // The intermediate may come from the server or from the attestation answer.
        check_chain(&root, Some(&inter), &leaf, &[], &here).unwrap();
        check_chain(&root, None, &leaf, std::slice::from_ref(&inter), &here).unwrap();
        // Without the intermediate, or under another root, or for another name: refused.
        assert!(check_chain(&root, None, &leaf, &[], &here).is_err());
        let (other_root, _, _) = pki("theirs");
        let e = check_chain(&other_root, Some(&inter), &leaf, &[], &here).unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        // A root with the same name but another key.
        let (impostor, _, _) = pki("ours");
        let e = check_chain(&impostor, Some(&inter), &leaf, &[], &here).unwrap_err();
        assert!(e.to_string().contains("BadSignature"), "{e}");
        let elsewhere = Address::parse("coordinator.example:4433").unwrap();
        assert!(check_chain(&root, Some(&inter), &leaf, &[], &elsewhere).is_err());
        // The leaf's key is what the report data binds in recovery.
        assert_eq!(spki_sha256(&leaf).unwrap().len(), 64);
        assert_ne!(spki_der(&leaf).unwrap(), spki_der(&root).unwrap());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("secret", "api_token-1.x").is_ok());
        for bad in ["", "..", "a/b", "a b", "é"] {
            assert!(check_name("secret", bad).is_err(), "{bad}");
        }
    }
}
