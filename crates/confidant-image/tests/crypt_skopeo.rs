//! Interoperability with the real ocicrypt, through `skopeo` (Debian's 1.9.3) and keys made by
//! `openssl genpkey`: skopeo encrypts an OCI layout and we decrypt its layer from the manifest's
//! annotations; we encrypt a layer, write the layout by hand, and skopeo decrypts it back to the
//! original bytes.
//!
//! Needs `/usr/bin/skopeo` and `openssl` (`make deps` installs them); fails naming what is
//! missing otherwise (tests/requirements.rs).

#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_image::crypt::opts::{PrivateLayerBlockCipherOptions, PublicLayerBlockCipherOptions};
use confidant_image::crypt::{
    self, DecryptionKeys, PrivateKey, PublicKey, Recipients, decrypt_layer, encrypt_layer, jwe,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SKOPEO: &str = "/usr/bin/skopeo";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Whether skopeo and openssl are there; fails the test if not (see [`requirements::require`]).
fn skopeo_available() -> bool {
    requirements::require(&[requirements::file(SKOPEO), requirements::program("openssl")])
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl genpkey` key pair in `dir`: (private PEM path, public PEM path).
fn openssl_keypair(dir: &Path, name: &str, genpkey_args: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .arg("genpkey")
        .args(genpkey_args)
        .arg("-out")
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (private, public)
}

fn rsa_keypair(dir: &Path) -> (PathBuf, PathBuf) {
    openssl_keypair(
        dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
}

fn ec_keypair(dir: &Path, curve: &str) -> (PathBuf, PathBuf) {
    openssl_keypair(
        dir,
        &format!("ec-{curve}"),
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
        ],
    )
}

/// A gzip layer with a couple of files: (uncompressed tar, gzip blob).
fn sample_layer() -> (Vec<u8>, Vec<u8>) {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, body) in [
        ("etc/confidant.conf", b"answer = 42\n".to_vec()),
        (
            "usr/share/doc/README",
            b"encrypted layer interop test\n".repeat(50),
        ),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        tar.append_data(&mut header, path, body.as_slice()).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (tar, gz.finish().unwrap())
}

/// A minimal OCI image layout, written by hand.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    fn put_blob(&self, bytes: &[u8]) -> (String, u64) {
        let hex = sha256_hex(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len() as u64)
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::read(self.dir.join("blobs/sha256").join(hex)).unwrap()
    }

    /// Writes config, manifest with the given layer descriptor, and index.json for `tag`.
    fn write_image(&self, tag: &str, diff_id: &str, layer: Value) {
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let (config_digest, config_size) = self.put_blob(config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [layer],
        });
        let (manifest_digest, manifest_size) = self.put_blob(manifest.to_string().as_bytes());
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST_TYPE,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }

    /// The single layer descriptor of the image tagged `tag`.
    fn layer(&self, tag: &str) -> Value {
        let index: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no {tag} in {index}"))
            .clone();
        let manifest: Value =
            serde_json::from_slice(&self.blob(entry["digest"].as_str().unwrap())).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{manifest}");
        layers[0].clone()
    }
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn skopeo_copy(args: &[String]) {
    run(Command::new(SKOPEO)
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(args));
}

/// The JSON text with every string value replaced by `*` and member names and order kept; the
/// `protected` value is decoded and shaped the same way. Two JWEs for the same recipients have
/// the same shape whatever their random keys: this compares our serialization with go-jose's.
fn shape(json: &str) -> String {
    let mut out = String::new();
    let mut rest = json;
    let mut last_name = String::new();
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('"').expect("closed string (no escapes in JWEs)");
        let literal = &after[..end];
        rest = &after[end + 1..];
        if rest.starts_with(':') {
            out.push_str(&format!("\"{literal}\""));
            last_name = literal.to_string();
        } else if last_name == "protected" {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(literal)
                .unwrap();
            out.push_str(&format!(
                "<{}>",
                shape(std::str::from_utf8(&decoded).unwrap())
            ));
        } else {
            out.push('*');
        }
    }
    out.push_str(rest);
    out
}

fn annotations_of(layer: &Value) -> BTreeMap<String, String> {
    layer["annotations"]
        .as_object()
        .expect("encrypted layer has annotations")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// skopeo encrypts for `public_keys`; we decrypt with each private key and check the bytes and
/// that re-serializing the options reproduces skopeo's JSON byte for byte.
fn skopeo_encrypts_we_decrypt(keys: &[(PathBuf, PathBuf)]) {
    let tmp = tempfile::tempdir().unwrap();
    let (tar, gz) = sample_layer();
    let src = Layout::new(tmp.path().join("src"));
    let (layer_digest, layer_size) = src.put_blob(&gz);
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    src.write_image(
        "v1",
        &diff_id,
        json!({"mediaType": GZIP_LAYER, "digest": layer_digest, "size": layer_size}),
    );

    let dst_dir = tmp.path().join("dst");
    let mut args = Vec::new();
    for (_, public) in keys {
        args.push("--encryption-key".to_string());
        args.push(format!("jwe:{}", public.display()));
    }
    args.push(oci(&src.dir, "v1"));
    args.push(oci(&dst_dir, "v1"));
    skopeo_copy(&args);

    let dst = Layout { dir: dst_dir };
    let layer = dst.layer("v1");
    assert_eq!(layer["mediaType"], crypt::MEDIA_TYPE_LAYER_GZIP_ENC);
    assert_eq!(
        crypt::decrypted_media_type(layer["mediaType"].as_str().unwrap()).unwrap(),
        GZIP_LAYER
    );
    let annotations = annotations_of(&layer);
    let ciphertext = dst.blob(layer["digest"].as_str().unwrap());
    assert_eq!(ciphertext.len() as u64, layer["size"].as_u64().unwrap());
    assert_eq!(
        ciphertext.len(),
        gz.len(),
        "CTR ciphertext is as long as the plaintext"
    );

    // The public options parse and re-serialize to skopeo's exact bytes.
    let pubopts = &annotations[crypt::ANNOTATION_PUBOPTS];
    let public = PublicLayerBlockCipherOptions::from_annotation(pubopts).unwrap();
    assert_eq!(&public.to_annotation(), pubopts);

    // The JWE: one value, as many recipients as keys, flattened for one.
    let jwe_value = &annotations[jwe::ANNOTATION];
    assert!(!jwe_value.contains(','));
    let jwe_json: Value = serde_json::from_slice(&STANDARD.decode(jwe_value).unwrap()).unwrap();
    let recipients = jwe_json["recipients"].as_array().map_or(1, Vec::len);
    assert_eq!(recipients, keys.len(), "{jwe_json}");

    // Our JWE for the same recipients is laid out exactly like go-jose's.
    let public_keys: Vec<PublicKey> = keys
        .iter()
        .map(|(_, public)| PublicKey::from_pem_or_der(&std::fs::read(public).unwrap()).unwrap())
        .collect();
    let ours = jwe::wrap_annotation(b"{}", &public_keys).unwrap();
    let ours = String::from_utf8(STANDARD.decode(ours).unwrap()).unwrap();
    let theirs = String::from_utf8(STANDARD.decode(jwe_value).unwrap()).unwrap();
    assert_eq!(
        shape(&ours),
        shape(&theirs),
        "ours: {ours}\ntheirs: {theirs}"
    );

    for (private, _) in keys {
        let key = PrivateKey::from_pem_or_der(&std::fs::read(private).unwrap()).unwrap();
        // The private options as skopeo wrote them re-serialize byte for byte.
        let json = jwe::unwrap_annotation(jwe_value, std::slice::from_ref(&key)).unwrap();
        let options = PrivateLayerBlockCipherOptions::from_json(&json).unwrap();
        assert_eq!(options.to_json().as_slice(), json.as_slice());
        assert_eq!(
            options.digest, layer_digest,
            "skopeo puts the plaintext blob digest in the private options"
        );

        let keys = DecryptionKeys {
            jwe: vec![key],
            coordinator: None,
            ..Default::default()
        };
        let mut plain = Vec::new();
        let decrypted =
            decrypt_layer(ciphertext.as_slice(), &mut plain, &annotations, &keys).unwrap();
        assert_eq!(plain, gz);
        assert_eq!(decrypted.digest, layer_digest);
        assert_eq!(decrypted.size, gz.len() as u64);
    }
}

/// We encrypt for `public_key`; skopeo decrypts with `private_key` and must reproduce the
/// original layer blob.
fn we_encrypt_skopeo_decrypts(private_key: &Path, public_key: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let (tar, gz) = sample_layer();
    let recipients = Recipients {
        jwe: vec![jwe::parse_recipient(&format!("jwe:{}", public_key.display())).unwrap()],
        coordinator: None,
    };
    let mut ciphertext = Vec::new();
    let encrypted = encrypt_layer(gz.as_slice(), &mut ciphertext, &recipients).unwrap();

    let dst = Layout::new(tmp.path().join("dst"));
    let (digest, size) = dst.put_blob(&ciphertext);
    assert_eq!(
        (digest.as_str(), size),
        (encrypted.digest.as_str(), encrypted.size)
    );
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    dst.write_image(
        "v1",
        &diff_id,
        json!({
            "mediaType": crypt::encrypted_media_type(GZIP_LAYER).unwrap(),
            "digest": digest,
            "size": size,
            "annotations": encrypted.annotations,
        }),
    );

    let plain_dir = tmp.path().join("plain");
    skopeo_copy(&[
        "--decryption-key".to_string(),
        private_key.display().to_string(),
        oci(&dst.dir, "v1"),
        oci(&plain_dir, "v1"),
    ]);
    let plain = Layout { dir: plain_dir };
    let layer = plain.layer("v1");
    assert_eq!(layer["mediaType"], GZIP_LAYER, "{layer}");
    assert!(
        layer.get("annotations").is_none_or(|a| a
            .as_object()
            .is_none_or(|a| a.keys().all(|k| !k.starts_with(crypt::ANNOTATION_PREFIX)))),
        "{layer}"
    );
    assert_eq!(plain.blob(layer["digest"].as_str().unwrap()), gz);
}

#[test]
fn skopeo_rsa_encrypted_layer_decrypts_here() {
    if !skopeo_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    skopeo_encrypts_we_decrypt(&[rsa_keypair(keys.path())]);
}

#[test]
fn skopeo_ec_p256_encrypted_layer_decrypts_here() {
    if !skopeo_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    skopeo_encrypts_we_decrypt(&[ec_keypair(keys.path(), "P-256")]);
}

#[test]
fn skopeo_layer_for_rsa_p384_and_p521_recipients_decrypts_with_each() {
    if !skopeo_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    skopeo_encrypts_we_decrypt(&[
        rsa_keypair(keys.path()),
        ec_keypair(keys.path(), "P-384"),
        ec_keypair(keys.path(), "P-521"),
    ]);
}

#[test]
fn layer_encrypted_here_for_rsa_decrypts_in_skopeo() {
    if !skopeo_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = rsa_keypair(keys.path());
    we_encrypt_skopeo_decrypts(&private, &public);
}

#[test]
fn layer_encrypted_here_for_ec_p256_decrypts_in_skopeo() {
    if !skopeo_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = ec_keypair(keys.path(), "P-256");
    we_encrypt_skopeo_decrypts(&private, &public);
}

#[test]
fn layer_encrypted_here_for_several_recipients_decrypts_in_skopeo_with_the_last() {
    if !skopeo_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (_, rsa_public) = rsa_keypair(keys.path());
    let (p521_private, p521_public) = ec_keypair(keys.path(), "P-521");
    // Two JWE recipients (general serialization) plus the coordinator's wrapping, which
    // skopeo has no provider for and must ignore.
    let tmp = tempfile::tempdir().unwrap();
    let (tar, gz) = sample_layer();
    let coordinator = PrivateKey::generate_ec(crypt::Curve::P384).unwrap();
    let recipients = Recipients {
        jwe: [rsa_public, p521_public]
            .iter()
            .map(|p| PublicKey::from_pem_or_der(&std::fs::read(p).unwrap()).unwrap())
            .collect(),
        coordinator: Some(coordinator.public_key().clone()),
    };
    let mut ciphertext = Vec::new();
    let encrypted = encrypt_layer(gz.as_slice(), &mut ciphertext, &recipients).unwrap();
    let dst = Layout::new(tmp.path().join("dst"));
    let (digest, size) = dst.put_blob(&ciphertext);
    dst.write_image(
        "v1",
        &format!("sha256:{}", sha256_hex(&tar)),
        json!({"mediaType": crypt::MEDIA_TYPE_LAYER_GZIP_ENC, "digest": digest, "size": size, "annotations": encrypted.annotations}),
    );
    let plain_dir = tmp.path().join("plain");
    skopeo_copy(&[
        "--decryption-key".to_string(),
        p521_private.display().to_string(),
        oci(&dst.dir, "v1"),
        oci(&plain_dir, "v1"),
    ]);
    let plain = Layout { dir: plain_dir };
    assert_eq!(
        plain.blob(plain.layer("v1")["digest"].as_str().unwrap()),
        gz
    );
}
