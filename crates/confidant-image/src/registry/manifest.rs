//! Manifests as fetched from a registry, and picking a platform out of a multi-arch index.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::reference::ImageRef;
use crate::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform), schema 2.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media types this client asks for and accepts, image manifests first.
pub const ACCEPTED_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
];

/// The largest manifest accepted (containerd's limit): manifests are read whole into memory.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// A manifest's exact bytes, its media type and the sha256 digest of the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The bytes as served: the digest covers these, so they must not be re-serialised.
    pub bytes: Vec<u8>,
    /// One of [`ACCEPTED_MEDIA_TYPES`].
    pub media_type: String,
    /// `sha256:` and the hex digest of `bytes`.
    pub digest: String,
}

impl Manifest {
    /// Whether this is a multi-platform index (OCI index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        is_index_media_type(&self.media_type)
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Whether a media type is one of the two index types.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// An operating system, architecture and optional variant, written `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `s390x`, … (Go's GOARCH names).
    pub architecture: String,
    /// `v8` for arm64, `v7` or `v6` for arm, …
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts; `x86_64` and `aarch64` are taken as `amd64` and `arm64`.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.to_owned(),
            architecture: normalize_arch(architecture).to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry's platform serves a request for `self`. Without a requested
    /// variant any variant matches; `arm64` with no variant and `arm64/v8` are the same.
    fn accepts(&self, entry: &Platform) -> bool {
        if self.os != entry.os || self.architecture != normalize_arch(&entry.architecture) {
            return false;
        }
        match (&self.variant, &entry.variant) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform::new(os, arch, Some(v)))
            }
            _ => Err(Error::malformed(
                format!("platform {s:?}"),
                "expected os/architecture[/variant], such as linux/amd64 or linux/arm64/v8",
            )),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An index entry: what to fetch for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type of the manifest it points to.
    pub media_type: String,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's size in bytes.
    pub size: u64,
    /// The platform the entry declares, if any.
    pub platform: Option<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<Vec<DescriptorJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: Option<String>,
    digest: String,
    size: u64,
    platform: Option<PlatformJson>,
}

#[derive(Deserialize)]
struct PlatformJson {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// Picks the manifest for `platform` out of an OCI index or Docker manifest list.
///
/// Entries are taken in index order, an entry whose variant equals the requested one (or that has
/// no variant when none is requested) before one that merely matches. With no match, the error
/// lists the platforms the index has.
pub fn resolve_platform(index: &[u8], platform: &Platform) -> Result<Descriptor> {
    let parsed: IndexJson = serde_json::from_slice(index)
        .map_err(|e| Error::malformed("image index", e.to_string()))?;
    if parsed.schema_version != Some(2) {
        return Err(Error::malformed(
            "image index",
            format!("schemaVersion: expected 2, got {:?}", parsed.schema_version),
        ));
    }
    if let Some(mt) = &parsed.media_type
        && !is_index_media_type(mt)
    {
        return Err(Error::malformed(
            "image index",
            format!("mediaType: expected {OCI_INDEX} or {DOCKER_MANIFEST_LIST}, got {mt}"),
        ));
    }
    let Some(entries) = parsed.manifests else {
        return Err(Error::malformed(
            "image index",
            "no `manifests` array: this is an image manifest, not an index",
        ));
    };
    let entries: Vec<Descriptor> = entries
        .into_iter()
        .map(|e| Descriptor {
            media_type: e.media_type.unwrap_or_default(),
            digest: e.digest,
            size: e.size,
            platform: e
                .platform
                .map(|p| Platform::new(&p.os, &p.architecture, p.variant.as_deref())),
        })
        .collect();
    let matches = |d: &&Descriptor| d.platform.as_ref().is_some_and(|p| platform.accepts(p));
    let exact = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.variant == platform.variant)
    };
    let chosen = entries
        .iter()
        .filter(matches)
        .find(exact)
        .or_else(|| entries.iter().find(matches));
    match chosen {
        Some(d) => {
            super::reference::validate_digest(&d.digest)
                .map_err(|r| Error::malformed(format!("image index entry for {platform}"), r))?;
            Ok(d.clone())
        }
        None => {
            let present: Vec<String> = entries
                .iter()
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map_or("(no platform)".to_owned(), Platform::to_string)
                })
                .collect();
            Err(Error::Unsupported(format!(
                "image index has no manifest for platform {platform}; it has: {}",
                if present.is_empty() {
                    "nothing (empty index)".to_owned()
                } else {
                    present.join(", ")
                }
            )))
        }
    }
}

/// The manifest's media type: its own `mediaType` field (covered by the digest) if it has one,
/// else the Content-Type header; one of the accepted types, and `schemaVersion` 2.
pub(crate) fn manifest_media_type(
    image: &ImageRef,
    bytes: &[u8],
    content_type: Option<String>,
) -> Result<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: Option<u32>,
        media_type: Option<String>,
    }
    let head: Head = serde_json::from_slice(bytes)
        .map_err(|e| Error::malformed(format!("manifest {image}"), e.to_string()))?;
    if head.schema_version != Some(2) {
        return Err(Error::Unsupported(format!(
            "manifest {image}: schemaVersion {:?}; only schema 2 (OCI and Docker v2) is supported",
            head.schema_version
        )));
    }
    let media_type = head.media_type.or(content_type).ok_or_else(|| {
        Error::malformed(
            format!("manifest {image}"),
            "no mediaType and no Content-Type",
        )
    })?;
    if !ACCEPTED_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(Error::Unsupported(format!(
            "manifest {image} has media type {media_type}; expected one of {}",
            ACCEPTED_MEDIA_TYPES.join(", ")
        )));
    }
    Ok(media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, v))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = v {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest(i as u8), "size": 100 + i, "platform": p})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).unwrap()
    }

    #[test]
    fn picks_each_platform_of_a_two_platform_index() {
        let idx = index(&[("linux", "amd64", None), ("linux", "arm64", Some("v8"))]);
        let amd = resolve_platform(&idx, &"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!((amd.digest, amd.size), (digest(0), 100));
        let arm = resolve_platform(&idx, &"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm.digest, digest(1));
        let arm_v8 = resolve_platform(&idx, &"linux/arm64/v8".parse().unwrap()).unwrap();
        assert_eq!(arm_v8.digest, digest(1));
    }

    #[test]
    fn arm64_without_variant_is_v8_and_aliases_are_normalised() {
        let idx = index(&[("linux", "aarch64", None)]);
        assert_eq!(
            resolve_platform(&idx, &"linux/arm64/v8".parse().unwrap())
                .unwrap()
                .digest,
            digest(0)
        );
        let idx = index(&[("linux", "amd64", None)]);
        assert_eq!(
            resolve_platform(&idx, &Platform::new("linux", "x86_64", None))
                .unwrap()
                .digest,
            digest(0)
        );
    }

    #[test]
    fn prefers_the_exact_variant() {
        let idx = index(&[("linux", "arm", Some("v6")), ("linux", "arm", Some("v7"))]);
        assert_eq!(
            resolve_platform(&idx, &"linux/arm/v7".parse().unwrap())
                .unwrap()
                .digest,
            digest(1)
        );
        assert_eq!(
            resolve_platform(&idx, &"linux/arm".parse().unwrap())
                .unwrap()
                .digest,
            digest(0)
        );
    }

    #[test]
    fn no_match_lists_the_platforms_present() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("unknown", "unknown", None),
        ]);
        let e = resolve_platform(&idx, &"linux/riscv64".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no manifest for platform linux/riscv64"), "{e}");
        assert!(
            e.contains("linux/amd64, linux/arm64/v8, unknown/unknown"),
            "{e}"
        );
    }

    #[test]
    fn refuses_a_manifest_given_as_an_index() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let e = resolve_platform(m, &"linux/amd64".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mediaType: expected"), "{e}");
        let m = br#"{"schemaVersion":2,"layers":[]}"#;
        let e = resolve_platform(m, &"linux/amd64".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an index"), "{e}");
    }

    #[test]
    fn platform_strings_parse_and_display() {
        assert_eq!(
            "linux/arm64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v8".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn manifest_media_type_prefers_the_body_and_refuses_schema1() {
        let img = ImageRef::parse("localhost/a").unwrap();
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(
            manifest_media_type(&img, m, Some("application/json".into())).unwrap(),
            super::super::manifest::OCI_INDEX
        );
        let m = br#"{"schemaVersion":2,"layers":[]}"#;
        assert_eq!(
            manifest_media_type(&img, m, Some(super::super::manifest::OCI_MANIFEST.into()))
                .unwrap(),
            super::super::manifest::OCI_MANIFEST
        );
        let m = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(
            manifest_media_type(&img, m, None)
                .unwrap_err()
                .to_string()
                .contains("schemaVersion")
        );
        let m =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#;
        assert!(
            manifest_media_type(&img, m, None)
                .unwrap_err()
                .to_string()
                .contains("expected one of")
        );
    }
}
