//! A real registry for the registry tests: Debian's `docker-registry` (distribution 2.8) on a free
//! loopback port, its storage in a temporary directory, killed when dropped. Plus the images,
//! certificates, htpasswd files and token server the tests need.
//!
//! Every wait is bounded; only loopback addresses are used.

#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confidant_image::registry::{ImageRef, OCI_MANIFEST, sha256_digest};

pub(crate) const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to configure the registry beyond plain HTTP and no auth.
#[derive(Default)]
pub(crate) struct Config {
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require Basic auth against this htpasswd file.
    pub htpasswd: Option<PathBuf>,
    /// Require Bearer tokens: (realm URL, service, issuer, PEM bundle of the signing cert).
    pub token: Option<(String, String, String, PathBuf)>,
}

/// A running registry; killed (and its storage removed) on drop.
pub(crate) struct Registry {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// Whether Debian's docker-registry is installed; fails the test if not (see
/// [`crate::requirements::require`]).
pub(crate) fn available() -> bool {
    crate::requirements::require(&[crate::requirements::file(REGISTRY_BIN)])
}

impl Registry {
    /// Starts a registry (after [`available`]) and waits (bounded) until it accepts connections.
    pub(crate) fn start(config: Config) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: `make deps` installs Debian's docker-registry"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut yaml = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: confidant-registry-test\n",
            dir.path().join("storage").display()
        );
        if let Some((cert, key)) = &config.tls {
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(path) = &config.htpasswd {
            yaml += &format!(
                "auth:\n  htpasswd:\n    realm: confidant-test\n    path: {}\n",
                path.display()
            );
        }
        if let Some((realm, service, issuer, bundle)) = &config.token {
            yaml += &format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                bundle.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry { child, addr, dir };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry not listening on {} after {START_TIMEOUT:?}:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the registry has logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:PORT/<repo>` parsed.
    pub(crate) fn image(&self, repo_and_ref: &str) -> ImageRef {
        ImageRef::parse(&format!("{}/{repo_and_ref}", self.host())).unwrap()
    }

    /// The file in the registry's storage that holds the blob (or manifest) `digest`.
    pub(crate) fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A blob: its bytes and digest.
pub(crate) struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub(crate) fn new(bytes: impl Into<Vec<u8>>) -> Blob {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        Blob { bytes, digest }
    }

    pub(crate) fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A small single-layer image for `os/arch`: config blob, layer blob, OCI manifest.
pub(crate) struct Image {
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Blob,
    pub media_type: &'static str,
}

pub(crate) fn oci_image(os: &str, arch: &str, layer_bytes: &[u8]) -> Image {
    image(
        os,
        arch,
        layer_bytes,
        OCI_MANIFEST,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar",
    )
}

pub(crate) fn docker_image(os: &str, arch: &str, layer_bytes: &[u8]) -> Image {
    image(
        os,
        arch,
        layer_bytes,
        confidant_image::registry::DOCKER_MANIFEST,
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    )
}

fn image(
    os: &str,
    arch: &str,
    layer_bytes: &[u8],
    media_type: &'static str,
    config_type: &str,
    layer_type: &str,
) -> Image {
    let layer = Blob::new(layer_bytes);
    let config = Blob::new(
        serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": os,
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            "config": {"Cmd": ["/bin/true"]},
        }))
        .unwrap(),
    );
    let manifest = Blob::new(
        serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "digest": config.digest, "size": config.size()},
            "layers": [{"mediaType": layer_type, "digest": layer.digest, "size": layer.size()}],
        }))
        .unwrap(),
    );
    Image {
        config,
        layer,
        manifest,
        media_type,
    }
}

/// An index over `(image, os, arch, variant)` entries, of `media_type` (OCI index or Docker list).
pub(crate) fn index(entries: &[(&Image, &str, &str, Option<&str>)], media_type: &str) -> Blob {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(img, os, arch, variant)| {
            let mut platform = serde_json::json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                platform["variant"] = (*v).into();
            }
            serde_json::json!({
                "mediaType": img.media_type,
                "digest": img.manifest.digest,
                "size": img.manifest.size(),
                "platform": platform,
            })
        })
        .collect();
    Blob::new(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        }))
        .unwrap(),
    )
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1, as PEM files in `dir`:
/// (ca.pem, server.pem, server-key.pem).
pub(crate) fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Confidant test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params
        .distinguished_name
        .push(DnType::CommonName, "registry");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// An htpasswd file (bcrypt, as distribution requires) with one user.
pub(crate) fn htpasswd_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let hash = bcrypt::hash(password, 4).unwrap();
    let path = dir.join("htpasswd");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{user}:{hash}").unwrap();
    path
}

/// Reads one HTTP/1.1 request head from a blocking stream (bounded size and time).
pub(crate) fn read_request_head(stream: &mut TcpStream) -> Option<Vec<String>> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = std::io::BufReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || lines.len() > 100 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

/// `%XX` and `+` decoding of a query component.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
pub(crate) fn peak_rss() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Resident set size of this process (`VmRSS`), in bytes.
pub(crate) fn current_rss() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0); false if the kernel refused.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}
