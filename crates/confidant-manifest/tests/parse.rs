//! Parsing (YAML and JSON), unknown fields, the canonical hash and the JSON Schema.

use confidant_manifest::{Manifest, schema};

const EXAMPLE: &str = include_str!("../../../examples/manifest.yaml");

fn parse_error(yaml: &str) -> String {
    Manifest::from_yaml(yaml).unwrap_err().to_string()
}

#[test]
fn refuses_unknown_top_level_field_with_its_path() {
    let e = parse_error("apiVersion: confidant/v1\nworkload: {}\n");
    assert!(
        e.starts_with("workload: unknown field `workload`, expected one of `apiVersion`"),
        "{e}"
    );
    assert!(e.ends_with("at line 2 column 1"), "{e}");
}

#[test]
fn refuses_unknown_nested_fields_with_their_path() {
    let e = parse_error("apiVersion: confidant/v1\nworkloads:\n  web: {package: p, replicas: 3}\n");
    assert!(
        e.starts_with("workloads.web.replicas: unknown field `replicas`"),
        "{e}"
    );
    let e = parse_error(
        "apiVersion: confidant/v1\npackages:\n  web: {tee: tdx, reference_values: {tdx: {rtmr_9: '00'}}}\n",
    );
    assert!(
        e.starts_with("packages.web.reference_values.tdx.rtmr_9: unknown field `rtmr_9`"),
        "{e}"
    );
    let e =
        parse_error("apiVersion: confidant/v1\nconfig: {allow_simulation: true, debug: true}\n");
    assert!(e.starts_with("config.debug: unknown field `debug`"), "{e}");
}

#[test]
fn refuses_unknown_secret_fields_and_types() {
    let e = parse_error(
        "apiVersion: confidant/v1\nsecrets:\n  k: {type: symmetric-key, size: 256, bits: 3}\n",
    );
    assert!(e.contains("unknown field `bits`"), "{e}");
    assert!(e.starts_with("secrets.k"), "{e}");
    let e = parse_error("apiVersion: confidant/v1\nsecrets:\n  k: {type: password}\n");
    assert!(e.starts_with("secrets.k"), "{e}");
    assert!(e.contains("unknown variant `password`"), "{e}");
    let e = parse_error("apiVersion: confidant/v1\nsecrets:\n  k: {type: plain, value: hunter2}\n");
    assert!(e.contains("unknown field `value`"), "{e}");
}

#[test]
fn refuses_unknown_tee_with_its_path() {
    let e = parse_error("apiVersion: confidant/v1\npackages:\n  web: {tee: sev}\n");
    assert!(
        e.starts_with("packages.web.tee: unknown variant `sev`"),
        "{e}"
    );
}

#[test]
fn json_unknown_field_has_its_path_too() {
    let e = Manifest::from_json(
        r#"{"apiVersion":"confidant/v1","users":{"a":{"certificate":"x","role":"y"}}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("users.a.role: unknown field `role`"), "{e}");
}

#[test]
fn yaml_and_json_of_the_same_manifest_have_the_same_canonical_hash() {
    let from_yaml = Manifest::from_yaml(EXAMPLE).unwrap();
    let as_json = serde_json::to_string_pretty(&serde_json::to_value(&from_yaml).unwrap()).unwrap();
    let from_json = Manifest::from_json(&as_json).unwrap();
    assert_eq!(from_yaml, from_json);
    assert_eq!(from_yaml.canonical_hash(), from_json.canonical_hash());
    assert_eq!(Manifest::parse(&as_json).unwrap(), from_yaml);
}

#[test]
fn hand_written_yaml_and_json_in_different_key_order_hash_the_same() {
    let yaml = "apiVersion: confidant/v1\nworkloads:\n  w: {package: p, env: {B: b, A: a}}\npackages:\n  p: {tee: tdx}\n";
    let json = r#"{"packages":{"p":{"image_digests":[],"tee":"tdx"}},"workloads":{"w":{"env":{"A":"a","B":"b"},"package":"p"}},"apiVersion":"confidant/v1","config":{}}"#;
    let a = Manifest::from_yaml(yaml).unwrap();
    let b = Manifest::from_json(json).unwrap();
    assert_eq!(a.canonical_hash(), b.canonical_hash());
}

#[test]
fn canonical_hash_changes_with_content() {
    let a = Manifest::from_yaml("apiVersion: confidant/v1\npackages:\n  p: {tee: tdx}\n").unwrap();
    let b = Manifest::from_yaml("apiVersion: confidant/v1\npackages:\n  p: {tee: snp}\n").unwrap();
    assert_ne!(a.canonical_hash(), b.canonical_hash());
}

#[test]
fn canonical_json_sorts_keys_without_whitespace() {
    let m = Manifest::from_yaml("apiVersion: confidant/v1\npackages:\n  p: {tee: tdx}\n").unwrap();
    assert_eq!(
        m.canonical_json(),
        r#"{"apiVersion":"confidant/v1","config":{"allow_simulation":false,"update_policy":{"approvals":1,"manifest":"roles"}},"packages":{"p":{"image_digests":[],"reference_values":{"allow_debug":false,"tcb":{}},"tee":"tdx"}},"roles":{},"secrets":{},"users":{},"volumes":{},"workloads":{}}"#
    );
}

#[test]
fn schema_is_json_and_names_every_top_level_field() {
    let text = serde_json::to_string(&schema()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let props = value["properties"].as_object().expect("properties");
    for field in [
        "apiVersion",
        "packages",
        "workloads",
        "secrets",
        "users",
        "roles",
        "recovery",
        "volumes",
        "config",
    ] {
        assert!(props.contains_key(field), "schema lacks {field}");
    }
    assert_eq!(
        value["additionalProperties"],
        serde_json::Value::Bool(false)
    );
    for needle in [
        "symmetric-key",
        "cert-ecdsa",
        "cert-ed25519",
        "cert-rsa",
        "plain",
        "sgx",
        "tdx",
        "snp",
        "sim",
    ] {
        assert!(
            text.contains(&format!("\"{needle}\"")),
            "schema lacks {needle}"
        );
    }
}

#[test]
fn schema_pins_api_version_and_secret_types() {
    let v = schema();
    assert_eq!(v["properties"]["apiVersion"]["const"], "confidant/v1");
    assert_eq!(
        v["$defs"]["Secret"]["oneOf"].as_array().map(Vec::len),
        Some(5)
    );
}
