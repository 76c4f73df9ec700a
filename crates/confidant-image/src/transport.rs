//! Image names in skopeo's transport syntax: `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]`,
//! `docker://HOST/REPO[:TAG|@DIGEST]`.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where an image is read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageName {
    /// An OCI image layout directory, optionally a tag inside it.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the image.
        tag: Option<String>,
    },
    /// A `docker save` tarball, optionally a `repo:tag` inside it.
    DockerArchive {
        /// The tar file.
        file: PathBuf,
        /// The `RepoTags` entry naming the image (reading), or the tag to record (writing).
        reference: Option<String>,
    },
    /// An image in a registry (distribution v2).
    Docker(String),
}

impl ImageName {
    /// Parses a transport-prefixed name as skopeo writes it.
    pub fn parse(s: &str) -> Result<ImageName> {
        if let Some(rest) = s.strip_prefix("docker://") {
            if rest.is_empty() {
                return Err(Error::malformed(
                    "image name",
                    "docker:// needs HOST/REPO[:TAG|@DIGEST]",
                ));
            }
            return Ok(ImageName::Docker(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_path_and_tag(rest);
            if dir.is_empty() {
                return Err(Error::malformed("image name", "oci: needs a directory"));
            }
            return Ok(ImageName::Oci {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (file, reference) = split_archive_ref(rest);
            if file.is_empty() {
                return Err(Error::malformed(
                    "image name",
                    "docker-archive: needs a file",
                ));
            }
            return Ok(ImageName::DockerArchive {
                file: PathBuf::from(file),
                reference,
            });
        }
        Err(Error::malformed(
            "image name",
            format!(
                "expected oci:DIR[:TAG], docker-archive:FILE[:REF] or docker://HOST/REPO[:TAG], got {s:?}"
            ),
        ))
    }
}

/// `DIR:TAG` → (DIR, TAG); a colon followed by something containing `/` belongs to the path.
fn split_path_and_tag(s: &str) -> (&str, Option<String>) {
    match s.rfind(':') {
        Some(i) if !s[i + 1..].contains('/') && i + 1 < s.len() => {
            (&s[..i], Some(s[i + 1..].to_string()))
        }
        Some(i) if i + 1 == s.len() => (&s[..i], None),
        _ => (s, None),
    }
}

/// `FILE:REPO:TAG` → (FILE, REPO:TAG): the reference starts after the first colon.
fn split_archive_ref(s: &str) -> (&str, Option<String>) {
    match s.find(':') {
        Some(i) if i + 1 < s.len() => (&s[..i], Some(s[i + 1..].to_string())),
        Some(i) => (&s[..i], None),
        None => (s, None),
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageName::Oci { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            ImageName::Oci { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            ImageName::DockerArchive {
                file,
                reference: Some(r),
            } => write!(f, "docker-archive:{}:{r}", file.display()),
            ImageName::DockerArchive {
                file,
                reference: None,
            } => write!(f, "docker-archive:{}", file.display()),
            ImageName::Docker(r) => write!(f, "docker://{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skopeo_names() {
        assert_eq!(
            ImageName::parse("oci:/tmp/x:v1").unwrap(),
            ImageName::Oci {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageName::parse("oci:/tmp/x").unwrap(),
            ImageName::Oci {
                dir: "/tmp/x".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageName::parse("docker-archive:/a/b.tar:redis:7").unwrap(),
            ImageName::DockerArchive {
                file: "/a/b.tar".into(),
                reference: Some("redis:7".into())
            }
        );
        assert_eq!(
            ImageName::parse("docker://127.0.0.1:5000/app:1").unwrap(),
            ImageName::Docker("127.0.0.1:5000/app:1".into())
        );
        assert!(ImageName::parse("/tmp/x").is_err());
        assert!(ImageName::parse("oci:").is_err());
        assert_eq!(
            ImageName::parse("oci:/tmp/x:v1").unwrap().to_string(),
            "oci:/tmp/x:v1"
        );
    }
}

/// Options for reaching images: registry credentials and TLS.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// `USER:PASSWORD` for registries (else the usual auth files are consulted).
    pub credentials: Option<(String, String)>,
    /// A PEM CA bundle trusted for registry TLS in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// The platform to pick from multi-arch indexes.
    pub platform: crate::copy::Platform,
    /// Talk plain HTTP to registries; refused for any host that is not loopback.
    pub plain_http: bool,
}

/// Opens `name` for reading.
pub fn open_source(
    name: &ImageName,
    opts: &TransportOptions,
) -> Result<Box<dyn crate::source::ImageSource>> {
    Ok(match name {
        ImageName::Oci { dir, tag } => Box::new(crate::source::OciSource::open(dir, tag.clone())?),
        ImageName::DockerArchive { file, reference } => Box::new(
            crate::archive::ArchiveSource::open(file, reference.as_deref())?,
        ),
        ImageName::Docker(r) => Box::new(crate::remote::RemoteSource::open(r, opts)?),
    })
}

/// Opens `name` for writing.
pub fn open_destination(
    name: &ImageName,
    opts: &TransportOptions,
) -> Result<Box<dyn crate::source::ImageDestination>> {
    Ok(match name {
        ImageName::Oci { dir, tag } => {
            Box::new(crate::source::OciDestination::create(dir, tag.clone())?)
        }
        ImageName::DockerArchive { file, reference } => Box::new(
            crate::archive::ArchiveDestination::create(file, reference.clone())?,
        ),
        ImageName::Docker(r) => Box::new(crate::remote::RemoteDestination::open(r, opts)?),
    })
}
