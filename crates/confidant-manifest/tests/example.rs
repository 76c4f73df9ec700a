//! The shipped example manifest (`examples/manifest.yaml`, also in docs/formats/manifest.md).

use confidant_manifest::Manifest;

const EXAMPLE: &str = include_str!("../../../examples/manifest.yaml");

#[test]
fn example_manifest_validates() {
    let m = Manifest::from_yaml(EXAMPLE).expect("parses");
    if let Err(errors) = m.check() {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!("example manifest is invalid:\n{}", lines.join("\n"));
    }
}

#[test]
fn format_document_shows_the_example_verbatim() {
    let doc = include_str!("../../../docs/formats/manifest.md");
    let start = doc
        .find("```yaml\n# A Confidant manifest")
        .expect("example block")
        + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("end of block");
    assert_eq!(&doc[start..end], EXAMPLE);
}

#[test]
fn example_covers_every_tee_and_secret_kind() {
    let m = Manifest::from_yaml(EXAMPLE).unwrap();
    let mut tees: Vec<&str> = m.packages.values().map(|p| p.tee.as_str()).collect();
    tees.sort();
    assert_eq!(tees, ["sgx", "sim", "snp", "tdx"]);
    let mut kinds: Vec<&str> = m.secrets.values().map(|s| s.type_name()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "cert-ecdsa",
            "cert-ed25519",
            "cert-rsa",
            "plain",
            "symmetric-key"
        ]
    );
}
