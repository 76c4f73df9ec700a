//! Registry credentials, where to find them, and the `WWW-Authenticate` challenges that ask for
//! them.
//!
//! Credentials come from the client's options first, then from the auth files the container tools
//! write, in skopeo's order: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json` (or `~/.config/…`), `$DOCKER_CONFIG/config.json` (or
//! `~/.docker/config.json`). Entries are matched most specific first
//! (`host/namespace/repo`, …, `host`); docker's URL-style keys (`https://index.docker.io/v1/`)
//! are understood. Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::reference::DOCKER_HUB;
use crate::{Error, Result};

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or access token used as a password). Sent as HTTP Basic to a
    /// registry that asks for Basic, or to the token service of one that asks for Bearer.
    Basic {
        /// The user name.
        username: String,
        /// The password or personal access token.
        password: String,
    },
    /// A registry token, sent as `Authorization: Bearer` as is.
    Bearer(String),
}

impl Credentials {
    /// Shorthand for [`Credentials::Basic`].
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
        }
    }
}

/// The auth files to consult, in skopeo's order, from the environment. Missing files are skipped
/// when looking up, so every candidate is listed.
pub fn default_auth_files() -> Vec<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let mut files = Vec::new();
    if let Some(f) = var("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    match (var("XDG_CONFIG_HOME"), &home) {
        (Some(d), _) => files.push(d.join("containers/auth.json")),
        (None, Some(h)) => files.push(h.join(".config/containers/auth.json")),
        (None, None) => {}
    }
    match (var("DOCKER_CONFIG"), &home) {
        (Some(d), _) => files.push(d.join("config.json")),
        (None, Some(h)) => files.push(h.join(".docker/config.json")),
        (None, None) => {}
    }
    files
}

/// Where a registry's credentials came from, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub credentials: Option<Credentials>,
    /// "from the client options", "from /root/.docker/config.json", "none in …".
    pub origin: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
    identitytoken: Option<String>,
}

/// Finds credentials for `registry/repository` in `files` (first file with a match wins).
pub(crate) fn lookup_auth_files(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Found> {
    let mut notes = Vec::new();
    for path in files {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read registry auth file", path, e)),
        };
        let file: AuthFile = serde_json::from_slice(&text).map_err(|e| {
            Error::malformed(
                format!("registry auth file {}", path.display()),
                e.to_string(),
            )
        })?;
        if let Some(found) = lookup_in(&file, path, registry, repository)? {
            return Ok(found);
        }
        let helper = file
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_key(k) == registry)
            .map(|(_, v)| v.clone())
            .or(file.creds_store.clone());
        if let Some(h) = helper {
            notes.push(format!(
                "{} names credential helper {h:?}, which this client does not run",
                path.display()
            ));
        }
    }
    let mut origin = format!(
        "no credentials for {registry} in {}",
        if files.is_empty() {
            "(no auth files configured)".to_owned()
        } else {
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if !notes.is_empty() {
        origin = format!("{origin}; {}", notes.join("; "));
    }
    Ok(Found {
        credentials: None,
        origin,
    })
}

fn lookup_in(
    file: &AuthFile,
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Found>> {
    // Most specific first: registry/a/b/c, registry/a/b, registry/a, registry.
    let mut candidates = vec![format!("{registry}/{repository}")];
    let mut rest = repository;
    while let Some((head, _)) = rest.rsplit_once('/') {
        candidates.push(format!("{registry}/{head}"));
        rest = head;
    }
    candidates.push(registry.to_owned());
    for want in &candidates {
        for (key, entry) in &file.auths {
            if &normalize_key(key) != want {
                continue;
            }
            let what = || format!("registry auth file {} entry {key:?}", path.display());
            let credentials = if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| Error::malformed(what(), format!("auth is not base64: {e}")))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| Error::malformed(what(), "auth is not UTF-8"))?;
                let Some((u, p)) = decoded.split_once(':') else {
                    return Err(Error::malformed(
                        what(),
                        "auth: expected base64 of user:password",
                    ));
                };
                Credentials::basic(u, p)
            } else if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                Credentials::basic(u.clone(), p.clone())
            } else if let Some(t) = &entry.registrytoken {
                Credentials::Bearer(t.clone())
            } else if entry.identitytoken.is_some() {
                return Err(Error::Unsupported(format!(
                    "{}: identity tokens (OAuth refresh tokens) are not supported; log in with a password or token",
                    what()
                )));
            } else {
                // An empty entry, as docker writes when a credential helper holds the secret.
                continue;
            };
            return Ok(Some(Found {
                credentials: Some(credentials),
                origin: format!("from {} ({key})", path.display()),
            }));
        }
    }
    Ok(None)
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`; `host/ns` as is.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    };
    match path {
        Some(p) => format!("{host}/{p}"),
        None => host.to_owned(),
    }
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`: get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses the challenges of all `WWW-Authenticate` values; a Bearer challenge comes first.
pub(crate) fn parse_challenges<'a>(values: impl Iterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for v in values {
        for (scheme, params) in split_challenges(v) {
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(pk, _)| pk.eq_ignore_ascii_case(k))
                    .map(|(_, pv)| pv.clone())
            };
            if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = get("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                out.push(Challenge::Basic);
            }
        }
    }
    out.sort_by_key(|c| matches!(c, Challenge::Basic));
    out
}

/// Splits a header value into `(scheme, [(param, value)])` challenges (RFC 7235 auth-params with
/// quoted strings; a token after a comma that is not followed by `=` starts a new challenge).
fn split_challenges(v: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=') {
            *i += 1;
        }
        v[s..*i].to_owned()
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let word = token(&mut i);
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // A parameter of the current challenge.
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut s = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = v[i..].chars().next().unwrap_or('\u{fffd}');
                    s.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                s
            } else {
                token(&mut i)
            };
            if let Some(last) = out.last_mut() {
                last.1.push((word, value));
            }
        } else {
            out.push((word, Vec::new()));
        }
    }
    out
}

/// A token service's answer (docker's token spec: `token`, or OAuth2's `access_token`).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenges(std::iter::once(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        ));
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
    }

    #[test]
    fn parses_basic_and_prefers_bearer_when_both_are_offered() {
        assert_eq!(
            parse_challenges(std::iter::once(r#"Basic realm="x""#)),
            vec![Challenge::Basic]
        );
        let c = parse_challenges(
            [r#"Basic realm="r", Bearer realm="https://t/token", error="insufficient_scope""#]
                .into_iter(),
        );
        assert_eq!(c.len(), 2);
        assert!(
            matches!(&c[0], Challenge::Bearer { realm, service: None, .. } if realm == "https://t/token")
        );
    }

    #[test]
    fn quoted_values_keep_commas_and_escapes() {
        let c = parse_challenges(std::iter::once(
            r#"bearer realm="https://t/tok",scope="repository:a/b:pull,push",service="s \"q\"""#,
        ));
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://t/tok".into(),
                service: Some("s \"q\"".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }]
        );
    }

    #[test]
    fn normalizes_docker_config_keys() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_key("http://localhost:5000"), "localhost:5000");
        assert_eq!(normalize_key("quay.io/org/repo"), "quay.io/org/repo");
    }

    fn write(dir: &Path, name: &str, json: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn finds_base64_auth_most_specific_entry_first_and_skips_missing_files() {
        let d = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let f = write(
            d.path(),
            "auth.json",
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "quay.io/org": {{"auth": "{}"}}, "https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
                b64("host:pw1"),
                b64("org:pw:with:colons"),
                b64("hub:pw3")
            ),
        );
        let files = vec![d.path().join("missing.json"), f];
        let got = lookup_auth_files(&files, "quay.io", "org/app").unwrap();
        assert_eq!(
            got.credentials,
            Some(Credentials::basic("org", "pw:with:colons"))
        );
        let got = lookup_auth_files(&files, "quay.io", "other/app").unwrap();
        assert_eq!(got.credentials, Some(Credentials::basic("host", "pw1")));
        let got = lookup_auth_files(&files, "docker.io", "library/busybox").unwrap();
        assert_eq!(got.credentials, Some(Credentials::basic("hub", "pw3")));
        let got = lookup_auth_files(&files, "ghcr.io", "x/y").unwrap();
        assert_eq!(got.credentials, None);
        assert!(
            got.origin.contains("no credentials for ghcr.io"),
            "{}",
            got.origin
        );
    }

    #[test]
    fn first_file_with_a_match_wins() {
        let d = tempfile::tempdir().unwrap();
        let a = write(
            d.path(),
            "a.json",
            r#"{"auths": {"r.example": {"username": "a", "password": "1"}}}"#,
        );
        let b = write(
            d.path(),
            "b.json",
            r#"{"auths": {"r.example": {"username": "b", "password": "2"}}}"#,
        );
        let got = lookup_auth_files(&[a.clone(), b], "r.example", "x").unwrap();
        assert_eq!(got.credentials, Some(Credentials::basic("a", "1")));
        assert!(got.origin.contains(&a.display().to_string()));
    }

    #[test]
    fn reports_credential_helpers_it_does_not_run() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "config.json",
            r#"{"auths": {"r.example": {}}, "credsStore": "desktop"}"#,
        );
        let got = lookup_auth_files(&[f], "r.example", "x").unwrap();
        assert_eq!(got.credentials, None);
        assert!(
            got.origin.contains("credential helper \"desktop\""),
            "{}",
            got.origin
        );
    }

    #[test]
    fn rejects_malformed_auth_saying_where() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "auth.json",
            r#"{"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}}"#,
        );
        let e = lookup_auth_files(&[f], "r.example", "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.json") && e.contains("user:password"),
            "{e}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = format!(
            "{:?} {:?}",
            Credentials::basic("u", "hunter2"),
            Credentials::Bearer("tok".into())
        );
        assert!(!s.contains("hunter2") && !s.contains("tok\""), "{s}");
    }
}
