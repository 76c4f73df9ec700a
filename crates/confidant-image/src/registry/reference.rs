//! Image references as docker writes them: `[HOST[:PORT]/]REPO[:TAG][@sha256:HEX]`.
//!
//! Normalised like docker's `distribution/reference`: a first path component is a registry host
//! only if it contains `.` or `:`, is `localhost`, or is a bracketed IPv6 address; otherwise the
//! registry is `docker.io` and one-component repositories get `library/`. No tag and no digest
//! means the tag `latest`; with both, the digest is what is pulled.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::{Error, Result};

/// Docker Hub's name in references, credentials and `Display`.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's distribution API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The longest repository name docker accepts.
const MAX_NAME_LEN: usize = 255;
/// The longest tag the distribution spec accepts.
const MAX_TAG_LEN: usize = 128;

/// What in a repository is addressed: a mutable tag or an immutable content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag such as `latest` or `v1.2`.
    Tag(String),
    /// A content digest, `sha256:` and 64 lowercase hex digits.
    Digest(String),
}

impl Reference {
    /// The reference as it appears in a manifest URL (`/v2/<name>/manifests/<reference>`).
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) | Reference::Digest(t) => t,
        }
    }
}

/// A parsed image reference: registry, repository, and tag or digest.
///
/// The fields are private so that every `ImageRef` is valid: the repository and reference are safe
/// to put in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    reference: Reference,
}

impl ImageRef {
    /// Builds a reference from its parts, validating each (no docker.io normalisation).
    pub fn new(registry: &str, repository: &str, reference: Reference) -> Result<Self> {
        let whole = format!("{registry}/{repository}");
        validate_registry(registry).map_err(|r| malformed(&whole, r))?;
        validate_repository(repository).map_err(|r| malformed(&whole, r))?;
        match &reference {
            Reference::Tag(t) => validate_tag(t).map_err(|r| malformed(&whole, r))?,
            Reference::Digest(d) => validate_digest(d).map_err(|r| malformed(&whole, r))?,
        }
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference,
        })
    }

    /// The registry as written (`docker.io` for Docker Hub), with its port if one was given.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, such as `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag or digest.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The `host[:port]` that serves the registry's API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The registry's host name or IP address, without port or IPv6 brackets.
    pub fn host(&self) -> &str {
        split_host_port(&self.registry).0
    }

    /// Whether the registry host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(self.host())
    }

    /// The same repository at another digest (to pull a platform's manifest or a blob).
    pub fn with_digest(&self, digest: &str) -> Result<Self> {
        validate_digest(digest).map_err(|r| malformed(digest, r))?;
        Ok(ImageRef {
            reference: Reference::Digest(digest.to_owned()),
            ..self.clone()
        })
    }

    /// The same repository at another tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        validate_tag(tag).map_err(|r| malformed(tag, r))?;
        Ok(ImageRef {
            reference: Reference::Tag(tag.to_owned()),
            ..self.clone()
        })
    }

    /// Parses `[HOST[:PORT]/]REPO[:TAG][@sha256:HEX]` the way docker does.
    pub fn parse(s: &str) -> Result<Self> {
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                validate_digest(d).map_err(|r| malformed(s, r))?;
                (n, Some(d))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/' (so `host:5000/repo` has none).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| malformed(s, r))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_registry(&registry).map_err(|r| malformed(s, r))?;
        validate_repository(&repository).map_err(|r| malformed(s, r))?;
        let reference = match (digest, tag) {
            (Some(d), _) => Reference::Digest(d.to_owned()),
            (None, Some(t)) => Reference::Tag(t.to_owned()),
            (None, None) => Reference::Tag("latest".to_owned()),
        };
        Ok(ImageRef {
            registry,
            repository,
            reference,
        })
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match &self.reference {
            Reference::Tag(t) => write!(f, ":{t}"),
            Reference::Digest(d) => write!(f, "@{d}"),
        }
    }
}

fn malformed(input: &str, reason: String) -> Error {
    Error::malformed(format!("image reference {input:?}"), reason)
}

/// docker's rule: a first component is a host if it has a '.' or ':', is `localhost`, is a
/// bracketed IPv6 address, or has upper-case letters (which repositories cannot have).
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.starts_with('[')
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// Splits `host[:port]` or `[v6]:port` into the bare host and the port text.
pub(crate) fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':'));
        }
        return (registry, None);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    }
}

/// Whether a bare host (no port, no brackets) is loopback: `localhost`, `127.0.0.0/8` or `::1`
/// (also as `::ffff:127.x.y.z`). Names are not resolved: only `localhost` is a loopback name, and
/// the client pins its resolution to the loopback addresses.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => false,
    }
}

fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, port) = split_host_port(registry);
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("registry port {p:?} is not a port number"));
    }
    if registry.starts_with('[') {
        return match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("registry host [{host}] is not an IPv6 address")),
        };
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "registry host {host:?} is not a DNS name or IP address"
        ))
    }
}

/// Repository components: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn validate_repository(repository: &str) -> Result<(), String> {
    if repository.len() > MAX_NAME_LEN {
        return Err(format!(
            "repository is {} characters, at most {MAX_NAME_LEN} allowed",
            repository.len()
        ));
    }
    for component in repository.split('/') {
        if !valid_path_component(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let ok = tag.len() <= MAX_TAG_LEN
        && chars.next().is_some_and(word)
        && chars.all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LEN} of letters, digits, '_', '.', '-', not starting with '.' or '-'"
        ))
    }
}

/// Digests: only `sha256:` with 64 lowercase hex digits is accepted.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!(
            "digest {digest:?}: expected sha256:<64 hex digits> (other algorithms are not supported)"
        ));
    };
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "digest {digest:?}: expected sha256:<64 lowercase hex digits>"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(s: &str) -> (String, String, Reference) {
        let r = ImageRef::parse(s).unwrap();
        (
            r.registry.clone(),
            r.repository.clone(),
            r.reference.clone(),
        )
    }

    #[test]
    fn short_names_are_docker_hub_library_images_at_latest() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.reference(), &Reference::Tag("latest".into()));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    }

    #[test]
    fn docker_hub_user_repositories_keep_their_namespace() {
        assert_eq!(
            parts("confidant/app:v1"),
            (
                "docker.io".into(),
                "confidant/app".into(),
                Reference::Tag("v1".into())
            )
        );
        assert_eq!(parts("index.docker.io/busybox").1, "library/busybox");
    }

    #[test]
    fn first_component_with_dot_colon_or_localhost_is_the_registry() {
        assert_eq!(
            parts("localhost:5000/a/b:t"),
            (
                "localhost:5000".into(),
                "a/b".into(),
                Reference::Tag("t".into())
            )
        );
        assert_eq!(parts("localhost/app").0, "localhost");
        assert_eq!(parts("ghcr.io/org/app").0, "ghcr.io");
        assert_eq!(parts("127.0.0.1:5000/app").0, "127.0.0.1:5000");
        assert_eq!(parts("[::1]:5000/app").0, "[::1]:5000");
        assert_eq!(ImageRef::parse("[::1]:5000/app").unwrap().host(), "::1");
    }

    #[test]
    fn port_colon_is_not_a_tag() {
        let r = ImageRef::parse("registry.example:5000/app").unwrap();
        assert_eq!(r.registry(), "registry.example:5000");
        assert_eq!(r.reference(), &Reference::Tag("latest".into()));
    }

    #[test]
    fn digest_wins_over_tag_and_displays_with_at() {
        let r = ImageRef::parse(&format!("quay.io/a/b:v1@{D}")).unwrap();
        assert_eq!(r.reference(), &Reference::Digest(D.into()));
        assert_eq!(r.to_string(), format!("quay.io/a/b@{D}"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "localhost:5000/a/b:t",
            "docker.io/library/x:latest",
            "[::1]:5000/z@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(ImageRef::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_invalid_references_saying_why() {
        for (s, why) in [
            ("Docker.io", "repository component"),
            ("a/B", "repository component"),
            ("a//b", "repository component"),
            ("a:", "tag"),
            ("a:-x", "tag"),
            ("a@sha256:abc", "64"),
            ("a@md5:0123", "other algorithms"),
            ("host:0/a", "port"),
            ("host:99999/a", "port"),
            ("a/b_-c", "repository component"),
        ] {
            let e = ImageRef::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0/b-c.d__e"] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in ["a..b", "a___b", "-a", "a-", "a_.b", ""] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts_are_localhost_127_8_and_v6_loopback_only() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.invalid",
            "localhost.example",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
