//! Pushing and pulling against a real registry (Debian's docker-registry, distribution 2.8) over
//! plain HTTP on loopback: manifests and blobs by tag and digest, multi-arch indexes, skipped and
//! mounted blobs, and tampered content caught by its digest.

mod registry_support;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use confidant_image::Error;
use confidant_image::registry::{
    BlobPush, BlockingRegistryClient, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, ImageRef, OCI_INDEX,
    OCI_MANIFEST, Platform, RegistryClient, RegistryOptions, resolve_platform,
};
use registry_support::{Blob, Config, Image, Registry, docker_image, index, oci_image};

fn plain_http_client() -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        plain_http: true,
        ..Default::default()
    })
    .unwrap()
}

async fn push_image(client: &RegistryClient, target: &ImageRef, image: &Image) -> String {
    for blob in [&image.config, &image.layer] {
        client
            .put_blob(
                target,
                &blob.digest,
                blob.size(),
                std::io::Cursor::new(blob.bytes.clone()),
            )
            .await
            .unwrap();
    }
    client
        .put_manifest(target, &image.manifest.bytes, image.media_type)
        .await
        .unwrap()
}

#[tokio::test]
async fn pushes_by_tag_and_pulls_by_tag_and_digest_byte_identical() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let image = oci_image("linux", "amd64", b"layer bytes of the round trip");
    let target = registry.image("confidant/app:v1");

    let digest = push_image(&client, &target, &image).await;
    assert_eq!(digest, image.manifest.digest);

    let by_tag = client.get_manifest(&target).await.unwrap();
    assert_eq!(by_tag.bytes, image.manifest.bytes);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    assert_eq!(by_tag.digest, image.manifest.digest);
    assert!(!by_tag.is_index());

    let by_digest = client
        .get_manifest(&target.with_digest(&digest).unwrap())
        .await
        .unwrap();
    assert_eq!(by_digest, by_tag);

    for blob in [&image.config, &image.layer] {
        let mut out = Vec::new();
        let size = client
            .get_blob(&target, &blob.digest, Some(blob.size()), &mut out)
            .await
            .unwrap();
        assert_eq!(size, blob.size());
        assert_eq!(out, blob.bytes);
    }
}

#[tokio::test]
async fn docker_schema2_manifests_and_lists_round_trip_with_their_media_types() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let amd = docker_image("linux", "amd64", b"docker amd64 layer");
    let target = registry.image("confidant/docker:v2");
    push_image(&client, &target, &amd).await;
    let got = client.get_manifest(&target).await.unwrap();
    assert_eq!(
        (got.media_type.as_str(), got.bytes.as_slice()),
        (DOCKER_MANIFEST, amd.manifest.bytes.as_slice())
    );

    let list = index(&[(&amd, "linux", "amd64", None)], DOCKER_MANIFEST_LIST);
    let list_ref = registry.image("confidant/docker:list");
    client
        .put_manifest(&list_ref, &list.bytes, DOCKER_MANIFEST_LIST)
        .await
        .unwrap();
    let got = client.get_manifest(&list_ref).await.unwrap();
    assert_eq!(got.media_type, DOCKER_MANIFEST_LIST);
    assert!(got.is_index());
    let for_amd = client
        .get_manifest_for_platform(&list_ref, &"linux/amd64".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(for_amd.digest, amd.manifest.digest);
}

#[tokio::test]
async fn picks_each_platform_of_a_multi_arch_index() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let amd = oci_image("linux", "amd64", b"amd64 layer");
    let arm = oci_image("linux", "arm64", b"arm64 layer");
    let repo = registry.image("confidant/multi:latest");
    for img in [&amd, &arm] {
        push_image(
            &client,
            &repo.with_digest(&img.manifest.digest).unwrap(),
            img,
        )
        .await;
    }
    let idx = index(
        &[
            (&amd, "linux", "amd64", None),
            (&arm, "linux", "arm64", Some("v8")),
        ],
        OCI_INDEX,
    );
    client
        .put_manifest(&repo, &idx.bytes, OCI_INDEX)
        .await
        .unwrap();

    let top = client.get_manifest(&repo).await.unwrap();
    assert!(top.is_index());
    assert_eq!(top.bytes, idx.bytes);
    for (platform, img) in [
        ("linux/amd64", &amd),
        ("linux/arm64", &arm),
        ("linux/arm64/v8", &arm),
    ] {
        let platform: Platform = platform.parse().unwrap();
        let entry = resolve_platform(&top.bytes, &platform).unwrap();
        assert_eq!(entry.digest, img.manifest.digest, "{platform}");
        let m = client
            .get_manifest_for_platform(&repo, &platform)
            .await
            .unwrap();
        assert_eq!(m.bytes, img.manifest.bytes, "{platform}");
        assert_eq!(m.media_type, OCI_MANIFEST);
    }
    let e = client
        .get_manifest_for_platform(&repo, &"linux/s390x".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no manifest for platform linux/s390x")
            && e.contains("linux/amd64, linux/arm64/v8"),
        "{e}"
    );
}

/// A reader that records whether it was ever read, and gives the bytes if it is.
struct WatchedReader {
    inner: std::io::Cursor<Vec<u8>>,
    read: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for WatchedReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.read.store(true, Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[tokio::test]
async fn put_blob_skips_blobs_the_repository_already_has() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let blob = Blob::new(b"a blob pushed twice".to_vec());
    let repo = registry.image("confidant/skip:latest");
    assert!(!client.blob_exists(&repo, &blob.digest).await.unwrap());

    let first = Arc::new(AtomicBool::new(false));
    let reader = WatchedReader {
        inner: std::io::Cursor::new(blob.bytes.clone()),
        read: first.clone(),
    };
    let pushed = client
        .put_blob(&repo, &blob.digest, blob.size(), reader)
        .await
        .unwrap();
    assert_eq!(pushed, BlobPush::Uploaded);
    assert!(first.load(Ordering::SeqCst));
    assert!(client.blob_exists(&repo, &blob.digest).await.unwrap());

    let second = Arc::new(AtomicBool::new(false));
    let reader = WatchedReader {
        inner: std::io::Cursor::new(blob.bytes.clone()),
        read: second.clone(),
    };
    let pushed = client
        .put_blob(&repo, &blob.digest, blob.size(), reader)
        .await
        .unwrap();
    assert_eq!(pushed, BlobPush::AlreadyExists);
    assert!(
        !second.load(Ordering::SeqCst),
        "an existing blob must not be read again"
    );
}

#[tokio::test]
async fn mounts_a_blob_from_another_repository_of_the_same_registry() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let blob = Blob::new(b"shared base layer".to_vec());
    let source = registry.image("confidant/base:latest");
    let target = registry.image("confidant/derived:latest");
    client
        .put_blob(
            &source,
            &blob.digest,
            blob.size(),
            std::io::Cursor::new(blob.bytes.clone()),
        )
        .await
        .unwrap();
    assert!(!client.blob_exists(&target, &blob.digest).await.unwrap());
    assert!(
        client
            .mount_blob(&target, &blob.digest, "confidant/base")
            .await
            .unwrap()
    );
    assert!(client.blob_exists(&target, &blob.digest).await.unwrap());

    let absent = Blob::new(b"not in the source".to_vec());
    assert!(
        !client
            .mount_blob(&target, &absent.digest, "confidant/base")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn rejects_a_blob_the_registry_serves_with_altered_bytes() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let blob = Blob::new(b"the genuine layer content, 40 bytes long".to_vec());
    let repo = registry.image("confidant/tamper:latest");
    client
        .put_blob(
            &repo,
            &blob.digest,
            blob.size(),
            std::io::Cursor::new(blob.bytes.clone()),
        )
        .await
        .unwrap();

    // Flip one byte of the stored blob: same length, so only the digest can tell.
    let path = registry.blob_data_path(&blob.digest);
    let mut stored = std::fs::read(&path).unwrap();
    assert_eq!(stored, blob.bytes);
    stored[4] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();

    let mut out = Vec::new();
    let e = client
        .get_blob(&repo, &blob.digest, Some(blob.size()), &mut out)
        .await
        .unwrap_err();
    match &e {
        Error::Integrity { expected, got, .. } => {
            assert_eq!(expected, &blob.digest);
            assert_eq!(got, &confidant_image::registry::sha256_digest(&stored));
        }
        other => panic!("expected an integrity error, got {other}"),
    }
}

#[tokio::test]
async fn get_blob_refuses_a_blob_of_another_size_than_expected() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let blob = Blob::new(vec![7u8; 1000]);
    let repo = registry.image("confidant/size:latest");
    client
        .put_blob(
            &repo,
            &blob.digest,
            blob.size(),
            std::io::Cursor::new(blob.bytes.clone()),
        )
        .await
        .unwrap();
    for wrong in [999, 1001] {
        let e = client
            .get_blob(&repo, &blob.digest, Some(wrong), &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{wrong}: {e}");
        assert!(e.to_string().contains("size"), "{e}");
    }
}

#[tokio::test]
async fn rejects_a_manifest_the_registry_serves_with_altered_bytes() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let image = oci_image("linux", "amd64", b"layer");
    let repo = registry.image("confidant/tampered-manifest:v1");
    let digest = push_image(&client, &repo, &image).await;

    let path = registry.blob_data_path(&digest);
    let altered = String::from_utf8(std::fs::read(&path).unwrap())
        .unwrap()
        .replace("\"schemaVersion\": 2", "\"schemaVersion\":  2");
    assert_ne!(altered.as_bytes(), image.manifest.bytes.as_slice());
    std::fs::write(&path, altered.as_bytes()).unwrap();

    // By digest: the bytes do not hash to the digest asked for.
    let e = client
        .get_manifest(&repo.with_digest(&digest).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Integrity { expected, .. } if *expected == digest),
        "{e}"
    );
    // By tag: they do not hash to the digest the registry says it serves.
    let e = client.get_manifest(&repo).await.unwrap_err();
    assert!(
        matches!(&e, Error::Integrity { expected, .. } if *expected == digest),
        "{e}"
    );
}

#[tokio::test]
async fn put_blob_refuses_bytes_that_do_not_match_the_digest_and_the_registry_keeps_nothing() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let claimed = Blob::new(b"what the digest says".to_vec());
    let actual = b"what the reader says".to_vec();
    assert_eq!(claimed.bytes.len(), actual.len());
    let repo = registry.image("confidant/badpush:latest");

    let e = client
        .put_blob(
            &repo,
            &claimed.digest,
            claimed.size(),
            std::io::Cursor::new(actual),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Integrity { expected, .. } if *expected == claimed.digest),
        "{e}"
    );
    assert!(!client.blob_exists(&repo, &claimed.digest).await.unwrap());

    let e = client
        .put_blob(
            &repo,
            &claimed.digest,
            claimed.size() + 5,
            std::io::Cursor::new(claimed.bytes.clone()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Integrity { .. }) && e.to_string().contains("size"),
        "{e}"
    );
    assert!(!client.blob_exists(&repo, &claimed.digest).await.unwrap());
}

#[tokio::test]
async fn put_manifest_by_digest_refuses_bytes_of_another_digest() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let image = oci_image("linux", "amd64", b"layer");
    let other = Blob::new(b"{}".to_vec());
    let target = registry
        .image("confidant/x:latest")
        .with_digest(&other.digest)
        .unwrap();
    let e = client
        .put_manifest(&target, &image.manifest.bytes, OCI_MANIFEST)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
}

#[tokio::test]
async fn missing_manifest_and_blob_errors_say_404_and_the_registrys_code() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = plain_http_client();
    let image = oci_image("linux", "amd64", b"layer");
    let repo = registry.image("confidant/present:v1");
    push_image(&client, &repo, &image).await;

    let e = client
        .get_manifest(&repo.with_tag("v2").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("404") && e.contains("MANIFEST_UNKNOWN") && e.contains(&registry.host()),
        "{e}"
    );
    let absent = Blob::new(b"absent".to_vec());
    let e = client
        .get_blob(&repo, &absent.digest, None, &mut Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("404") && e.contains("/v2/confidant/present/blobs/"),
        "{e}"
    );
    let e = client
        .put_manifest(
            &registry.image("confidant/other:v1"),
            &oci_image("linux", "arm64", b"nope").manifest.bytes,
            OCI_MANIFEST,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("400") && e.contains("MANIFEST_BLOB_UNKNOWN"),
        "{e}"
    );
}

#[test]
fn blocking_client_pushes_from_a_file_and_pulls_into_a_writer() {
    if !registry_support::available() {
        return;
    }
    let registry = Registry::start(Config::default());
    let client = BlockingRegistryClient::new(RegistryOptions {
        plain_http: true,
        ..Default::default()
    })
    .unwrap();
    let image = oci_image("linux", "amd64", &vec![42u8; 300_000]);
    let repo = registry.image("confidant/blocking:v1");
    let dir = tempfile::tempdir().unwrap();
    for blob in [&image.config, &image.layer] {
        let path = dir.path().join("blob");
        std::fs::write(&path, &blob.bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(
            client
                .put_blob(&repo, &blob.digest, blob.size(), file)
                .unwrap(),
            BlobPush::Uploaded
        );
    }
    let digest = client
        .put_manifest(&repo, &image.manifest.bytes, OCI_MANIFEST)
        .unwrap();
    assert_eq!(client.get_manifest(&repo).unwrap().digest, digest);
    let mut out = Vec::new();
    client
        .get_blob(
            &repo,
            &image.layer.digest,
            Some(image.layer.size()),
            &mut out,
        )
        .unwrap();
    assert_eq!(out, image.layer.bytes);
}
