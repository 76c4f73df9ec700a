//! The HTTP side: TLS roots, the plain-HTTP-only-on-loopback rule, redirects, and turning HTTP
//! failures into [`Error::Registry`] messages that say what the registry said.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::reference::is_loopback_host;
use crate::{Error, Result};

/// Time allowed to open a connection (TCP and TLS).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading a response: a stalled transfer fails instead of hanging.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// At most this much of an error response body is read.
const MAX_ERROR_BODY: usize = 64 << 10;
const MAX_REDIRECTS: usize = 10;

/// The rustls configuration: the system's roots plus the PEM certificates of `ca_file`, on the
/// `ring` provider.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a custom CA alone must still work.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read CA file", path, e))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::malformed(format!("CA file {}", path.display()), e.to_string()))?;
        if certs.is_empty() {
            return Err(Error::malformed(
                format!("CA file {}", path.display()),
                "expected PEM CERTIFICATE blocks, found none",
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                Error::malformed(format!("CA file {}", path.display()), e.to_string())
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Unsupported(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Builds the HTTP client. Loopback traffic is never sent through a proxy (`no_proxy`), and
/// `localhost` always resolves to 127.0.0.1 and ::1 whatever the resolver says.
pub(crate) fn http_client(tls: rustls::ClientConfig, direct: bool) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("confidant/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(redirect_policy())
        .resolve_to_addrs(
            "localhost",
            &[
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
            ],
        );
    if direct {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| Error::Unsupported(format!("HTTP client: {}", error_chain(&e))))
}

/// Follows redirects (blob downloads are often sent to a CDN) but never to plain HTTP off
/// loopback, and never from HTTPS down to HTTP.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let next = attempt.url();
        if next.scheme() == "http" {
            let from_https = attempt.previous().iter().any(|u| u.scheme() == "https");
            let loopback = next
                .host_str()
                .is_some_and(|h| is_loopback_host(strip_brackets(h)));
            if from_https || !loopback {
                let msg = format!("refused redirect to plain HTTP {}", without_query(next));
                return attempt.error(msg);
            }
        }
        attempt.follow()
    })
}

fn strip_brackets(h: &str) -> &str {
    h.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h)
}

/// A URL without its query, for messages: upload URLs carry the registry's state in the query.
pub(crate) fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// An error and its sources, joined by `: `, without repeating a message that the previous one
/// already contains (io::Error displays its inner error).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The rustls error somewhere in an error's chain, if any. `io::Error` hides its inner error from
/// `source()` (it returns the inner error's source), so those are opened too.
fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// A failure to talk to the registry at all (connection, TLS, timeout), with a hint when the
/// cause is a common one.
pub(crate) fn transport_error(registry: &str, what: &str, e: &reqwest::Error) -> Error {
    let mut reason = format!("{what}: {}", error_chain(e));
    match find_tls_error(e) {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            reason.push_str(
                " (the registry's TLS certificate is not trusted: give the CA that signed it with \
                 ca_file, or add it to the system store)",
            )
        }
        Some(rustls::Error::InvalidMessage(_)) => reason.push_str(
            " (the TLS handshake got something else: does the registry serve plain HTTP on this \
             port? plain_http is allowed for loopback registries)",
        ),
        _ if e.is_timeout() => reason.push_str(" (timed out)"),
        _ => {}
    }
    Error::Registry {
        registry: registry.to_owned(),
        reason,
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
    detail: Option<serde_json::Value>,
}

/// What a status means to a user, for the ones that need telling apart.
fn status_meaning(status: StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        401 => "authentication required or credentials rejected",
        403 => "authenticated, but not allowed to do this",
        404 => "not found",
        405 => "method not allowed: the registry may be read-only or a mirror",
        413 => "too large for the registry",
        429 => "rate limited",
        _ => return None,
    })
}

/// Turns a non-success response into [`Error::Registry`]: method, URL path, status with its
/// meaning, and the registry's `errors[].code/message` if the body has them. `credentials` says
/// where credentials came from, for 401s.
pub(crate) async fn status_error(
    registry: &str,
    what: &str,
    response: Response,
    credentials: Option<&str>,
) -> Error {
    let status = response.status();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    let mut reason = format!("{what}: HTTP {status}");
    if let Some(m) = status_meaning(status) {
        reason.push_str(&format!(" ({m})"));
    }
    if let Ok(env) = serde_json::from_slice::<ErrorEnvelope>(&body) {
        let details: Vec<String> = env
            .errors
            .iter()
            .map(|e| {
                let mut s = e.code.clone().unwrap_or_else(|| "UNKNOWN".into());
                if let Some(m) = e.message.as_deref().filter(|m| !m.is_empty()) {
                    s.push_str(": ");
                    s.push_str(m);
                }
                if let Some(d) = e.detail.as_ref().filter(|d| !d.is_null()) {
                    let d = d.to_string();
                    if d.len() <= 300 {
                        s.push_str(&format!(" ({d})"));
                    }
                }
                s
            })
            .collect();
        if !details.is_empty() {
            reason.push_str(&format!(": {}", details.join("; ")));
        }
    } else if !body.is_empty() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.trim().chars().take(200).collect();
        if !text.is_empty() && !text.contains('<') {
            reason.push_str(&format!(": {text}"));
        }
    }
    if status == StatusCode::UNAUTHORIZED
        && let Some(c) = credentials
    {
        reason.push_str(&format!("; credentials: {c}"));
    }
    Error::Registry {
        registry: registry.to_owned(),
        reason,
    }
}

/// Reads at most `limit` bytes of a body; errors reading it give what was read.
async fn read_capped(mut response: Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

pub(crate) enum ReadLimit {
    Transport(reqwest::Error),
    TooLarge,
}

/// Reads a whole body, refusing more than `limit` bytes (checked against Content-Length first).
pub(crate) async fn read_limited(
    mut response: Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, ReadLimit> {
    if response.content_length().is_some_and(|l| l > limit as u64) {
        return Err(ReadLimit::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadLimit::Transport)? {
        if out.len() + chunk.len() > limit {
            return Err(ReadLimit::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Whether a URL's host is loopback (`localhost`, `127.0.0.0/8`, `::1`).
pub(crate) fn url_is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|h| {
        let h = h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h);
        is_loopback_host(h)
    })
}

pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = tls_config(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("found none"), "{e}");
        let e = tls_config(Some(&d.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("read CA file"), "{e}");
    }

    #[test]
    fn system_roots_load() {
        tls_config(None).unwrap();
    }
}
