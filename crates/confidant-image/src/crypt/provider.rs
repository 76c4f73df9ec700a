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
}
