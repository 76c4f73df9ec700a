//! The Confidant coordinator client: HTTPS to the coordinator's `/api/v1`
//! (`docs/formats/coordinator-api.md`) with the server's certificate pinned to the root CA of a
//! coordinator the client verified, a user's or workload's client certificate, answers read into
//! the typed messages of [`confidant_api`] and errors mapped to [`ClientError`].
//!
//! Used by the CLI, the agent, the tests and the benchmarks alike:
//!
//! ```no_run
//! use confidant_client::{Address, Client, Saved};
//!
//! let home = std::path::Path::new("/var/lib/confidant");
//! let address = Address::parse("127.0.0.1:4433")?;
//! let saved = Saved::load(home, &address)?; // written by `confidant verify`
//! let client = Client::new(&address, &saved.trust(), None)?;
//! let status = client.status()?;
//! println!("{} ({})", status.state.as_str(), status.tee);
//! # Ok::<(), confidant_client::ClientError>(())
//! ```
//!
//! Requests are never retried behind the caller's back except where that is safe: a request
//! that never reached the coordinator (the connection was refused or timed out) is retried under
//! [`Retry`]; an answer, even an error, never is.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
mod error;
mod saved;
mod trust;
pub mod verify;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_api as api;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use address::Address;
pub use error::{ApiError, ClientError, Result};
pub use saved::{INFO_FILE, INTERMEDIATE_FILE, ROOT_FILE, Saved, SavedInfo, saved_dir};
pub use trust::{
    ClientIdentity, PeerChain, Trust, certificates_from_pem, check_chain, one_certificate,
    provider, read_certificates, spki_der, spki_sha256, to_pem,
};

use trust::{FirstContactVerifier, pinned_verifier};

/// Time allowed to open a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole request and its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest answer read (the API's bodies are at most 4 MiB; answers carry a little more).
pub const MAX_ANSWER: usize = 16 << 20;

/// Whether an error answer's code is `overloaded` (the coordinator's body budget was full).
fn is_overloaded(body: &[u8]) -> bool {
    serde_json::from_slice::<api::ErrorBody>(body)
        .is_ok_and(|b| b.error.code == api::ErrorCode::Overloaded)
}

/// How often a request that never reached the coordinator (or that it refused as
/// `overloaded`, before reading it) is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// The wait before the second attempt; doubled for each one after (at most 5 s).
    pub first_delay: Duration,
}

impl Retry {
    /// No retry: one attempt (the CLI's default: a person is waiting).
    pub const NEVER: Retry = Retry {
        attempts: 1,
        first_delay: Duration::ZERO,
    };

    /// For an agent that starts together with its coordinator (a pod's init container): up
    /// to about a minute of attempts.
    pub const STARTUP: Retry = Retry {
        attempts: 15,
        first_delay: Duration::from_millis(250),
    };
}

impl Default for Retry {
    fn default() -> Retry {
        Retry::NEVER
    }
}

/// A successful answer and the server certificate of the connection that carried it.
#[derive(Debug)]
pub struct Answer<T> {
    /// The answer.
    pub body: T,
    /// The server's certificate on this connection (DER).
    pub peer_leaf: Option<CertificateDer<'static>>,
}

/// What a request sends.
#[derive(Debug)]
enum Body {
    Json(Vec<u8>),
    /// A manifest's text: JSON when it starts with `{`, else YAML.
    Manifest(Vec<u8>),
}

/// An HTTPS client for one coordinator, with its own current-thread runtime.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    address: Address,
    seen: Arc<Mutex<PeerChain>>,
    retry: Retry,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Client({})", self.address.authority)
    }
}

/// A path segment naming a secret, a package or a volume: `[A-Za-z0-9._-]+`, so that it needs
/// no escaping in a URL.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(ClientError::Config(format!(
            "{what} {name:?}: expected letters, digits, `.`, `_` or `-`"
        )));
    }
    Ok(())
}

/// `N` random bytes from the TLS provider's CSRPNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    provider()
        .secure_random
        .fill(&mut out)
        .map_err(|_| ClientError::Config("the system's random number generator failed".into()))?;
    Ok(out)
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
                signatures: confidant_tls::HandshakeSignatures::new(&provider()),
                seen: Arc::clone(&seen),
            }),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("TLS configuration: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let tls = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| {
                    ClientError::Config(format!(
                        "the client certificate and key do not fit together: {e}"
                    ))
                })?,
            None => builder.with_no_client_auth(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Config(format!("starting the client's runtime: {e}")))?;
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
        let http =
            http.map_err(|e| ClientError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Client {
            runtime,
            http,
            address: address.clone(),
            seen,
            retry: Retry::NEVER,
        })
    }

    /// The same client, retrying requests that never reached the coordinator as `retry` says.
    pub fn with_retry(mut self, retry: Retry) -> Client {
        self.retry = retry;
        self
    }

    /// The coordinator's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The chain recorded on first contact (empty in pinned mode).
    pub fn peer_chain(&self) -> PeerChain {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `GET status`.
    pub fn status(&self) -> Result<api::Status> {
        self.get("/api/v1/status").map(|a| a.body)
    }

    /// `GET attestation?nonce=…`, with the server certificate of the connection.
    pub fn attestation(&self, nonce: &[u8]) -> Result<Answer<api::Attestation>> {
        self.get(&format!("/api/v1/attestation?nonce={}", hex::encode(nonce)))
    }

    /// `GET image-key`.
    pub fn image_key(&self) -> Result<api::ImageKey> {
        self.get("/api/v1/image-key").map(|a| a.body)
    }

    /// `GET manifest[?version=N]`.
    pub fn manifest(&self, version: Option<u64>) -> Result<api::ManifestRecord> {
        let path = match version {
            Some(v) => format!("/api/v1/manifest?version={v}"),
            None => "/api/v1/manifest".to_string(),
        };
        self.get(&path).map(|a| a.body)
    }

    /// `POST manifest` with the manifest's text (YAML or JSON).
    pub fn set_manifest(&self, text: &str) -> Result<api::ManifestSet> {
        self.send(
            reqwest::Method::POST,
            "/api/v1/manifest",
            Some(Body::Manifest(text.as_bytes().to_vec())),
        )
        .map(|a| a.body)
    }

    /// `POST packages/{name}/svn`.
    pub fn update_svn(&self, package: &str, min_svn: u32) -> Result<api::ManifestSet> {
        check_name("package", package)?;
        self.post(
            &format!("/api/v1/packages/{package}/svn"),
            &api::SvnUpdate { min_svn },
        )
    }

    /// `POST nonce`: a one-time nonce for an activation (safe to retry: an unused nonce
    /// expires).
    pub fn nonce(&self) -> Result<api::Nonce> {
        self.post("/api/v1/nonce", &serde_json::Map::new())
    }

    /// `POST activate`. Never retried: the nonce is spent by the first attempt that arrives.
    pub fn activate(&self, request: &api::ActivateRequest) -> Result<api::Activation> {
        self.post("/api/v1/activate", request)
    }

    /// `GET secrets/{name}`.
    pub fn secret(&self, name: &str) -> Result<api::SecretView> {
        check_name("secret", name)?;
        self.get(&format!("/api/v1/secrets/{name}")).map(|a| a.body)
    }

    /// `PUT secrets/{name}` with the secret's bytes.
    pub fn put_secret(&self, name: &str, value: &[u8]) -> Result<api::SecretSet> {
        check_name("secret", name)?;
        let body = api::SecretPut {
            value: STANDARD.encode(value).into(),
        };
        self.send(
            reqwest::Method::PUT,
            &format!("/api/v1/secrets/{name}"),
            Some(json_body(&body)?),
        )
        .map(|a| a.body)
    }

    /// `GET volumes/{name}/state`.
    pub fn volume_state(&self, name: &str) -> Result<api::VolumeState> {
        check_name("volume", name)?;
        self.get(&format!("/api/v1/volumes/{name}/state"))
            .map(|a| a.body)
    }

    /// `POST volumes/{name}/state`: a compare-and-swap of the volume's version and root.
    pub fn commit_volume(
        &self,
        name: &str,
        commit: &api::VolumeCommit,
    ) -> Result<api::VolumeState> {
        check_name("volume", name)?;
        self.post(&format!("/api/v1/volumes/{name}/state"), commit)
    }

    /// `GET audit?after=…&limit=…`.
    pub fn audit(&self, after: u64, limit: usize) -> Result<api::AuditPage> {
        self.get(&format!("/api/v1/audit?after={after}&limit={limit}"))
            .map(|a| a.body)
    }

    /// `GET recovery`.
    pub fn recovery_shares(&self) -> Result<api::RecoveryShares> {
        self.get("/api/v1/recovery").map(|a| a.body)
    }

    /// `POST recover` with one decrypted share.
    pub fn recover(&self, share: &[u8]) -> Result<api::RecoverProgress> {
        self.post(
            "/api/v1/recover",
            &api::RecoverRequest {
                share: STANDARD.encode(share).into(),
            },
        )
    }

    /// `GET openapi.json`.
    pub fn openapi(&self) -> Result<serde_json::Value> {
        self.get("/api/v1/openapi.json").map(|a| a.body)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>> {
        self.send(reqwest::Method::GET, path, None)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(reqwest::Method::POST, path, Some(json_body(body)?))
            .map(|a| a.body)
    }

    /// Sends a request; a non-2xx answer is an [`ApiError`], a failure to get one a transport
    /// error, a 2xx answer that is not a `T` an [`ClientError::Answer`] naming the field.
    fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Answer<T>> {
        let url = self.address.url(path);
        // Errors name the endpoint without its query (a nonce says nothing to the reader).
        let endpoint = path.split_once('?').map_or(path, |(p, _)| p);
        let what = format!("{method} {}", self.address.url(endpoint));
        // A request that may have reached the coordinator is retried only if it cannot have
        // taken effect twice: all but `activate`. A 503 `overloaded` answer is retried for
        // every endpoint: the coordinator refused the request before reading its body.
        let retry_unsent = if endpoint.ends_with("/activate") {
            Retry::NEVER
        } else {
            self.retry
        };
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        let (status, bytes, peer_leaf) = loop {
            let wait = match self.attempt(&method, &url, &what, body.as_ref()) {
                Err(Attempt::NotSent(_)) if attempt < retry_unsent.attempts => delay,
                Err(Attempt::NotSent(e) | Attempt::Failed(e)) => return Err(e),
                // The answer's Retry-After is 1 s.
                Ok((503, bytes, _)) if attempt < self.retry.attempts && is_overloaded(&bytes) => {
                    delay.max(Duration::from_secs(1))
                }
                Ok(answer) => break answer,
            };
            std::thread::sleep(wait);
            delay = (delay * 2).min(Duration::from_secs(5));
            attempt += 1;
        };
        if !(200..300).contains(&status) {
            return Err(ApiError::from_answer(status, &bytes).into());
        }
        let body = decode_answer(&what, status, &bytes)?;
        Ok(Answer { body, peer_leaf })
    }

    fn attempt(
        &self,
        method: &reqwest::Method,
        url: &str,
        what: &str,
        body: Option<&Body>,
    ) -> std::result::Result<(u16, Vec<u8>, Option<CertificateDer<'static>>), Attempt> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        match body {
            Some(Body::Json(bytes)) => {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            Some(Body::Manifest(bytes)) => {
                let json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
                let content_type = if json {
                    "application/json"
                } else {
                    "application/yaml"
                };
                req = req
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(bytes.clone());
            }
            None => {}
        }
        self.runtime.block_on(async {
            let mut resp = req.send().await.map_err(|e| {
                // A TLS handshake the client refused (the server's certificate does not chain
                // to the pinned root) is an answer of sorts: trying again cannot change it.
                let connect = e.is_connect() && !refused_by_tls(&e);
                let t =
                    ClientError::Transport(format!("{what}: {}", error_chain(&e.without_url())));
                if connect {
                    Attempt::NotSent(t)
                } else {
                    Attempt::Failed(t)
                }
            })?;
            let status = resp.status().as_u16();
            let leaf = resp
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|t| t.peer_certificate())
                .map(|der| CertificateDer::from(der.to_vec()));
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                Attempt::Failed(ClientError::Transport(format!(
                    "{what}: reading the answer: {}",
                    error_chain(&e.without_url())
                )))
            })? {
                if bytes.len() + chunk.len() > MAX_ANSWER {
                    return Err(Attempt::Failed(ClientError::Transport(format!(
                        "{what}: the answer is larger than {MAX_ANSWER} bytes"
                    ))));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok((status, bytes, leaf))
        })
    }
}

/// Reads a 2xx answer `bytes` to `what` (a request, for the message) as a `T`: an empty body is
/// JSON `null`; a missing or mistyped field is a [`ClientError::Answer`] that names it.
pub fn decode_answer<T: DeserializeOwned>(what: &str, status: u16, bytes: &[u8]) -> Result<T> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ClientError::Answer {
            what: what.to_string(),
            problem: if path == "." {
                format!("({status}) {}", e.inner())
            } else {
                format!("({status}) {path}: {}", e.inner())
            },
        }
    })
}

/// One attempt's failure: whether the request may have reached the coordinator.
enum Attempt {
    /// The connection was never made: safe to try again.
    NotSent(ClientError),
    /// It may have arrived: not retried.
    Failed(ClientError),
}

fn json_body(body: &impl Serialize) -> Result<Body> {
    serde_json::to_vec(body)
        .map(Body::Json)
        .map_err(|e| ClientError::Config(format!("encoding the request: {e}")))
}

/// A reqwest error with its causes (reqwest's own message hides the TLS reason).
/// Whether the client's TLS refused the server's certificate (rustls's `invalid peer
/// certificate`, which reaches us only as text through hyper's connector error), as opposed to
/// a connection that never opened.
fn refused_by_tls(e: &dyn std::error::Error) -> bool {
    error_chain(e).contains("invalid peer certificate")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_missing_a_field_name_it() {
        let e = decode_answer::<api::ImageKey>("GET x", 200, br#"{"public_key": "k"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_id"), "{e}");
        // Deep inside an activation: the path of the field.
        let e = decode_answer::<api::Activation>(
            "POST activate",
            200,
            br#"{"activation":"w/1","certificate":"c","chain":"c","root_ca":"r",
                "parameters":{"files":{},"env":{},"args":[]},"simulation":true,
                "volumes":[{"volume":"v","path":"/v","read_only":false,"policy":"bogus","key":"k"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("volumes[0].policy"), "{e}");
        let e = decode_answer::<api::Activation>("POST activate", 200, b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("null"), "{e}");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("secret", "api_token-1.x").is_ok());
        for bad in ["", "..", "a/b", "a b", "é"] {
            assert!(check_name("secret", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_connection_is_retried_then_reported() {
        // A loopback port nobody listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = Address::parse(&format!("127.0.0.1:{port}")).unwrap();
        let client = retrying(&address);
        let e = client.status().unwrap_err();
        assert!(matches!(e, ClientError::Transport(_)), "{e:?}");
        assert!(e.to_string().contains("/api/v1/status"), "{e}");
    }

    /// A one-connection-per-answer HTTPS server on loopback that answers each request with the
    /// next of `answers` (status, body) and counts the requests.
    fn answering(answers: Vec<(u16, &'static str)>) -> (Address, std::thread::JoinHandle<usize>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let config = std::sync::Arc::new(
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
        );
        let server = std::thread::spawn(move || {
            let mut served = 0;
            for (status, body) in answers {
                let (tcp, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tls.read(&mut buf).unwrap();
                    assert!(n > 0, "the client closed before its request");
                    got.extend_from_slice(&buf[..n]);
                }
                served += 1;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                tls.write_all(answer.as_bytes()).unwrap();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
            served
        });
        (
            Address::parse(&format!("127.0.0.1:{port}")).unwrap(),
            server,
        )
    }

    fn retrying(address: &Address) -> Client {
        Client::new(address, &Trust::FirstContact, None)
            .unwrap()
            .with_retry(Retry {
                attempts: 3,
                first_delay: Duration::from_millis(10),
            })
    }

    const OVERLOADED: &str = r#"{"error":{"code":"overloaded","message":"busy"}}"#;

    #[test]
    fn an_overloaded_answer_is_retried_and_a_final_error_is_not() {
        let status = r#"{"state":"running","tee":"sim","simulation":true,"version":"0"}"#;
        let (address, server) = answering(vec![(503, OVERLOADED), (200, status)]);
        let client = retrying(&address);
        let started = std::time::Instant::now();
        let answer = client.status();
        assert_eq!(server.join().unwrap(), 2);
        answer.unwrap();
        // The answer's Retry-After (1 s) was honoured.
        assert!(started.elapsed() >= Duration::from_secs(1));

        // Another 503 (not `overloaded`) is an answer: not retried.
        let other = r#"{"error":{"code":"internal","message":"down"}}"#;
        let (address, server) = answering(vec![(503, other)]);
        let client = retrying(&address);
        let e = client.status().unwrap_err();
        assert_eq!(server.join().unwrap(), 1);
        assert!(matches!(e, ClientError::Api(_)), "{e:?}");

        // Without retries (the CLI's default) the overloaded answer is the error.
        let (address, server) = answering(vec![(503, OVERLOADED)]);
        let client = Client::new(&address, &Trust::FirstContact, None).unwrap();
        let e = client.status().unwrap_err();
        assert_eq!(server.join().unwrap(), 1);
        assert!(e.to_string().contains("overloaded"), "{e}");
    }
}
