//! The image → root filesystem pipeline: limits apply to decompression before anything is
//! committed, and a refused image leaves no target and no staging directory.

use std::io::Write;

use confidant_image::Error;
use confidant_image::copy::{NoProgress, Platform};
use confidant_image::crypt::DecryptionKeys;
use confidant_image::digest::Digest;
use confidant_image::layout::OciLayout;
use confidant_image::rootfs::unpack_image;
use confidant_image::source::OciSource;
use confidant_image::unpack::UnpackOptions;
use oci_spec::image::{Descriptor, MediaType};

/// A tar with one file of `size` zero bytes, gzip-compressed, and its DiffID.
fn zero_layer(size: u64) -> (Vec<u8>, Digest) {
    let mut tar = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar);
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "zeros", std::io::repeat(0).take_bytes(size))
            .unwrap();
        b.finish().unwrap();
    }
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: u64) -> std::io::Take<Self> {
        std::io::Read::take(self, n)
    }
}
impl<R: std::io::Read> TakeBytes for R {}

fn descriptor(mt: &str, bytes: &[u8], d: &Digest) -> Descriptor {
    Descriptor::new(
        MediaType::from(mt),
        bytes.len() as u64,
        oci_spec::image::Digest::try_from(d.as_str()).unwrap(),
    )
}

fn image_with_layer(dir: &std::path::Path, layer: &[u8], diff_id: &Digest) {
    let layout = OciLayout::create(dir).unwrap();
    let ld = layout.put_blob_bytes(layer).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
        "config": {}
    });
    let cbytes = serde_json::to_vec(&config).unwrap();
    let cd = layout.put_blob_bytes(&cbytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &cbytes, &cd),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer, &ld)],
    });
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = layout.put_blob_bytes(&mbytes).unwrap();
    layout
        .set_ref(
            Some("v1"),
            descriptor("application/vnd.oci.image.manifest.v1+json", &mbytes, &md),
        )
        .unwrap();
}

fn no_staging_left(parent: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".confidant-unpack-")
        })
        .collect();
    assert!(left.is_empty(), "staging directories left behind: {left:?}");
}

#[test]
fn decompression_bomb_stops_at_the_byte_limit_before_anything_is_committed() {
    let t = tempfile::tempdir().unwrap();
    let (layer, diff_id) = zero_layer(200 << 20);
    assert!(
        layer.len() < 1 << 20,
        "the bomb should be small compressed: {}",
        layer.len()
    );
    image_with_layer(&t.path().join("img"), &layer, &diff_id);
    let target = t.path().join("rootfs");
    let opts = UnpackOptions {
        max_total_bytes: 8 << 20,
        ..Default::default()
    };
    let mut src = OciSource::open(&t.path().join("img"), Some("v1".into())).unwrap();
    let err = unpack_image(
        &mut src,
        &Platform::default(),
        &DecryptionKeys::default(),
        &target,
        &opts,
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    assert!(!target.exists());
    no_staging_left(t.path());
}

#[test]
fn a_layer_within_the_limit_unpacks_and_a_wrong_diff_id_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (layer, diff_id) = zero_layer(1 << 20);
    image_with_layer(&t.path().join("img"), &layer, &diff_id);
    let target = t.path().join("rootfs");
    let mut src = OciSource::open(&t.path().join("img"), Some("v1".into())).unwrap();
    let report = unpack_image(
        &mut src,
        &Platform::default(),
        &DecryptionKeys::default(),
        &target,
        &Default::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.layers, 1);
    assert_eq!(
        std::fs::metadata(target.join("zeros")).unwrap().len(),
        1 << 20
    );

    let wrong = Digest::of(b"not this layer");
    image_with_layer(&t.path().join("img2"), &layer, &wrong);
    let target2 = t.path().join("rootfs2");
    let mut src = OciSource::open(&t.path().join("img2"), Some("v1".into())).unwrap();
    let err = unpack_image(
        &mut src,
        &Platform::default(),
        &DecryptionKeys::default(),
        &target2,
        &Default::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(err.to_string().contains("diff_id"), "{err}");
    assert!(!target2.exists());
    no_staging_left(t.path());
}

#[test]
fn unpacking_over_an_existing_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (layer, diff_id) = zero_layer(10);
    image_with_layer(&t.path().join("img"), &layer, &diff_id);
    let mut src = OciSource::open(&t.path().join("img"), Some("v1".into())).unwrap();
    let err = unpack_image(
        &mut src,
        &Platform::default(),
        &DecryptionKeys::default(),
        t.path(),
        &Default::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}
