//! Confidant's wrapping of a layer key for the coordinator, in the annotation
//! `org.opencontainers.image.enc.keys.provider.confidant`.
//!
//! The value is, like every ocicrypt key-wrapper annotation, standard base64 of the wrapper's
//! bytes (several values may be joined with `,`). The bytes are the JSON object
//!
//! ```json
//! {"version":1,"kid":"sha256:<hex>","jwe":{"protected":"…","encrypted_key":"…","iv":"…","ciphertext":"…","tag":"…"}}
//! ```
//!
//! - `kid` is `sha256:` and the hex SHA-256 of the DER `SubjectPublicKeyInfo` of the
//!   coordinator's image key (EC P-256 or P-384); it lets a coordinator with several keys pick
//!   the right one without trying each.
//! - `jwe` is a flattened JWE JSON object (RFC 7516 §7.2.2) whose plaintext is the layer's
//!   private options JSON, exactly the bytes the `jwe` wrapper encrypts. Its protected header
//!   holds `alg` `ECDH-ES+A256KW`, `enc` `A256GCM`, `epk`, and also `kid` (equal to the outer
//!   one) and `typ` `confidant-layer-key+jwe`, so both are authenticated by the GCM tag: a JWE
//!   made for another purpose with the same key cannot pass as a layer key, and the key id
//!   cannot be swapped. Key derivation is the standard one (no `apu`/`apv`), so any JOSE library
//!   can produce or open it.
//!
//! Because the framing follows ocicrypt's key-provider protocol (the annotation carries opaque
//! wrapper bytes, base64-encoded), an ocicrypt `provider:confidant` key provider could later
//! unwrap these annotations inside skopeo or containerd.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use super::jose::{self, ALG_ECDH_ES_A256KW, Jwe};
use super::keys::{Curve, KeyKind, PrivateKey, PublicKey};
use super::opts::PrivateLayerBlockCipherOptions;
use crate::{Error, Result};

/// The annotation holding the coordinator-wrapped private options.
pub const ANNOTATION: &str = "org.opencontainers.image.enc.keys.provider.confidant";
/// The format version written and the only one read.
pub const VERSION: u64 = 1;
/// The JWE `typ` header of a wrapped layer key.
pub const TYP: &str = "confidant-layer-key+jwe";
/// Most `,`-separated entries examined.
pub const MAX_ENTRIES: usize = 64;

#[derive(Deserialize)]
struct Wrapped {
    version: u64,
    kid: String,
    jwe: Value,
}

fn check_coordinator_kind(kind: KeyKind) -> Result<()> {
    match kind {
        KeyKind::Ec(Curve::P256 | Curve::P384) => Ok(()),
        other => Err(Error::Unsupported(format!(
            "coordinator image key of type {other}: expected EC P-256 or P-384"
        ))),
    }
}

/// Wraps `options` so only the holder of the coordinator's image key can unwrap them; returns
/// the annotation value.
pub fn wrap_for_coordinator(
    coordinator: &PublicKey,
    options: &PrivateLayerBlockCipherOptions,
) -> Result<String> {
    check_coordinator_kind(coordinator.kind())?;
    let kid = coordinator.key_id();
    let mut extra = BTreeMap::new();
    extra.insert("kid".to_string(), Value::String(kid.clone()).to_string());
    extra.insert(
        "typ".to_string(),
        Value::String(TYP.to_string()).to_string(),
    );
    let jwe_json = jose::encrypt_json(&options.to_json(), &[coordinator], &extra)?;
    let value = format!(
        "{{\"version\":{VERSION},\"kid\":{},\"jwe\":{jwe_json}}}",
        Value::String(kid)
    );
    Ok(STANDARD.encode(value))
}

fn parse_entry(i: usize, entry: &str) -> Result<Wrapped> {
    let what = || format!("annotation {ANNOTATION} entry {i}");
    let bytes = STANDARD
        .decode(entry.trim())
        .map_err(|e| Error::malformed(what(), format!("expected standard base64: {e}")))?;
    if bytes.len() > jose::MAX_JWE_LEN {
        return Err(Error::malformed(
            what(),
            format!(
                "expected at most {} bytes, found {}",
                jose::MAX_JWE_LEN,
                bytes.len()
            ),
        ));
    }
    let wrapped: Wrapped = serde_json::from_slice(&bytes)
        .map_err(|e| Error::malformed(what(), format!("invalid JSON: {e}")))?;
    if wrapped.version != VERSION {
        return Err(Error::Unsupported(format!(
            "{}: version {}: expected {VERSION}",
            what(),
            wrapped.version
        )));
    }
    Ok(wrapped)
}

fn entries(value: &str) -> Result<Vec<&str>> {
    let list: Vec<&str> = value.split(',').collect();
    if list.len() > MAX_ENTRIES {
        return Err(Error::Limit(format!(
            "annotation {ANNOTATION}: {} entries, at most {MAX_ENTRIES} are examined",
            list.len()
        )));
    }
    Ok(list)
}

/// The key ids the annotation value wraps for, in order.
pub fn key_ids(value: &str) -> Result<Vec<String>> {
    entries(value)?
        .into_iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e).map(|w| w.kid))
        .collect()
}

/// Unwraps the layer's private options with the coordinator's image key. [`Error::Key`] if no
/// entry is for this key or the entry for it does not decrypt; [`Error::Malformed`] or
/// [`Error::Unsupported`] for an entry that is not a valid version-1 wrapping.
pub fn unwrap_as_coordinator(
    coordinator: &PrivateKey,
    value: &str,
) -> Result<PrivateLayerBlockCipherOptions> {
    check_coordinator_kind(coordinator.kind())?;
    let my_kid = coordinator.public_key().key_id();
    let mut seen = Vec::new();
    for (i, entry) in entries(value)?.into_iter().enumerate() {
        let wrapped = parse_entry(i, entry)?;
        if wrapped.kid != my_kid {
            seen.push(wrapped.kid);
            continue;
        }
        let what = format!("annotation {ANNOTATION} entry {i}");
        let jwe = Jwe::parse(wrapped.jwe.to_string().as_bytes())?;
        if jwe.recipient_count() != 1 {
            return Err(Error::malformed(
                &what,
                format!(
                    "expected a JWE with 1 recipient, found {}",
                    jwe.recipient_count()
                ),
            ));
        }
        for (name, expected) in [
            ("alg", ALG_ECDH_ES_A256KW),
            ("typ", TYP),
            ("kid", my_kid.as_str()),
        ] {
            let found = jwe.protected_header(name).and_then(Value::as_str);
            if found != Some(expected) {
                return Err(Error::malformed(
                    &what,
                    format!("protected header {name:?}: expected {expected:?}, found {found:?}"),
                ));
            }
        }
        let json = jwe.decrypt(coordinator)?;
        return PrivateLayerBlockCipherOptions::from_json(&json);
    }
    Err(Error::Key(format!(
        "{ANNOTATION}: no entry is for the coordinator key {my_kid}; the {} entr{} are for [{}]",
        seen.len(),
        if seen.len() == 1 { "y" } else { "ies" },
        seen.join(", ")
    )))
}

/// Why an image manifest's `provider.confidant` wrapped layer keys could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum WrappedLayerKeysError {
    /// The bytes are not JSON.
    #[error("expected an OCI image manifest (JSON): {0}")]
    NotJson(serde_json::Error),
    /// The manifest has no `layers` array.
    #[error("expected a `layers` array, found {found}")]
    Layers {
        /// What is there instead ("no `layers` field", "an object", …).
        found: &'static str,
    },
    /// A layer with a wrapped key has no digest string.
    #[error("layers[{index}].digest: expected a digest string, found {found}")]
    Digest {
        /// The layer's index in `layers`.
        index: usize,
        /// What is there instead ("no `digest` field", "a number", …).
        found: &'static str,
    },
}

/// The `provider.confidant` wrapped keys of an OCI image manifest's layers (untrusted bytes):
/// `(layer index, layer digest, annotation value)` for each layer that has one, in order.
/// Layers without the annotation are skipped; the values are not parsed here (see
/// [`unwrap_as_coordinator`]).
pub fn wrapped_layer_keys(
    manifest: &[u8],
) -> std::result::Result<Vec<(usize, String, String)>, WrappedLayerKeysError> {
    let parsed: Value = serde_json::from_slice(manifest).map_err(WrappedLayerKeysError::NotJson)?;
    let layers = match parsed.get("layers") {
        Some(Value::Array(layers)) => layers,
        other => {
            return Err(WrappedLayerKeysError::Layers {
                found: json_kind(other, "no `layers` field"),
            });
        }
    };
    let mut out = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        let Some(wrapped) = layer
            .get("annotations")
            .and_then(|a| a.get(ANNOTATION))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let digest = match layer.get("digest") {
            Some(Value::String(d)) => d,
            other => {
                return Err(WrappedLayerKeysError::Digest {
                    index,
                    found: json_kind(other, "no `digest` field"),
                });
            }
        };
        out.push((index, digest.clone(), wrapped.to_string()));
    }
    Ok(out)
}

/// What kind of JSON value `v` is, for "found …" in messages; `missing` when there is none.
fn json_kind(v: Option<&Value>, missing: &'static str) -> &'static str {
    match v {
        None => missing,
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::cipher::LayerKey;

    fn options() -> PrivateLayerBlockCipherOptions {
        PrivateLayerBlockCipherOptions {
            key: LayerKey::generate().unwrap(),
            digest: format!("sha256:{}", "0f".repeat(32)),
        }
    }

    #[test]
    fn round_trips_for_p256_and_p384() {
        for curve in [Curve::P256, Curve::P384] {
            let coordinator = PrivateKey::generate_ec(curve).unwrap();
            let opts = options();
            let value = wrap_for_coordinator(coordinator.public_key(), &opts).unwrap();
            assert_eq!(
                key_ids(&value).unwrap(),
                vec![coordinator.public_key().key_id()]
            );
            let back = unwrap_as_coordinator(&coordinator, &value).unwrap();
            assert_eq!(back.key.symmetric_key(), opts.key.symmetric_key());
            assert_eq!(back.digest, opts.digest);
        }
    }

    #[test]
    fn refuses_rsa_and_p521_coordinator_keys() {
        let rsa = PrivateKey::generate_rsa(2048).unwrap();
        assert!(matches!(
            wrap_for_coordinator(rsa.public_key(), &options()),
            Err(Error::Unsupported(_))
        ));
        let p521 = PrivateKey::generate_ec(Curve::P521).unwrap();
        assert!(matches!(
            wrap_for_coordinator(p521.public_key(), &options()),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn another_coordinator_gets_a_key_error_naming_the_kids() {
        let ours = PrivateKey::generate_ec(Curve::P256).unwrap();
        let theirs = PrivateKey::generate_ec(Curve::P256).unwrap();
        let value = wrap_for_coordinator(ours.public_key(), &options()).unwrap();
        let err = unwrap_as_coordinator(&theirs, &value).unwrap_err();
        assert!(matches!(err, Error::Key(_)));
        assert!(
            err.to_string().contains(&ours.public_key().key_id()),
            "{err}"
        );
    }

    #[test]
    fn a_swapped_kid_is_detected() {
        let ours = PrivateKey::generate_ec(Curve::P256).unwrap();
        let theirs = PrivateKey::generate_ec(Curve::P256).unwrap();
        let value = wrap_for_coordinator(theirs.public_key(), &options()).unwrap();
        // Relabel the wrapping for "ours": the protected kid still names "theirs".
        let mut json: Value = serde_json::from_slice(&STANDARD.decode(&value).unwrap()).unwrap();
        json["kid"] = Value::String(ours.public_key().key_id());
        let relabelled = STANDARD.encode(json.to_string());
        assert!(unwrap_as_coordinator(&ours, &relabelled).is_err());
    }

    #[test]
    fn refuses_other_versions() {
        let coordinator = PrivateKey::generate_ec(Curve::P256).unwrap();
        let value = wrap_for_coordinator(coordinator.public_key(), &options()).unwrap();
        let mut json: Value = serde_json::from_slice(&STANDARD.decode(&value).unwrap()).unwrap();
        json["version"] = Value::from(2);
        let v2 = STANDARD.encode(json.to_string());
        assert!(matches!(
            unwrap_as_coordinator(&coordinator, &v2),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn lists_wrapped_layer_keys_with_index_and_digest_skipping_plain_layers() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "layers": [
                {"digest": "sha256:aa", "annotations": {ANNOTATION: "w0"}},
                {"digest": "sha256:bb"},
                {"digest": "sha256:cc", "annotations": {"other": "x"}},
                {"digest": "sha256:dd", "annotations": {ANNOTATION: "w3"}},
            ],
        });
        let keys = wrapped_layer_keys(&serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert_eq!(
            keys,
            vec![
                (0, "sha256:aa".to_string(), "w0".to_string()),
                (3, "sha256:dd".to_string(), "w3".to_string()),
            ]
        );
        let none = wrapped_layer_keys(br#"{"layers": []}"#).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn wrapped_layer_keys_errors_say_what_was_expected_and_found() {
        let e = wrapped_layer_keys(b"not json").unwrap_err();
        assert!(matches!(e, WrappedLayerKeysError::NotJson(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("expected an OCI image manifest (JSON): "),
            "{e}"
        );
        let e = wrapped_layer_keys(b"{}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected a `layers` array, found no `layers` field"
        );
        let e = wrapped_layer_keys(br#"{"layers": {}}"#).unwrap_err();
        assert_eq!(e.to_string(), "expected a `layers` array, found an object");
        let e = wrapped_layer_keys(br#"[1]"#).unwrap_err();
        assert!(matches!(e, WrappedLayerKeysError::Layers { .. }), "{e:?}");
        // A layer without a wrapped key needs no digest; one with a key does.
        let manifest = format!(
            r#"{{"layers": [{{}}, {{"digest": 7, "annotations": {{"{ANNOTATION}": "w"}}}}]}}"#
        );
        let e = wrapped_layer_keys(manifest.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e,
                WrappedLayerKeysError::Digest {
                    index: 1,
                    found: "a number"
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "layers[1].digest: expected a digest string, found a number"
        );
        let manifest = format!(r#"{{"layers": [{{"annotations": {{"{ANNOTATION}": "w"}}}}]}}"#);
        let e = wrapped_layer_keys(manifest.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layers[0].digest: expected a digest string, found no `digest` field"
        );
    }
}
