//! JWE key wrapping as ocicrypt's `jwe` key wrapper does it (through go-jose).
//!
//! The layer's private options JSON is the JWE plaintext, encrypted once with A256GCM under a
//! random content key (CEK) that is wrapped for each recipient:
//! - RSA public key → `RSA-OAEP` (OAEP with SHA-1 and MGF1-SHA-1, empty label), what ocicrypt
//!   picks for RSA keys; `RSA-OAEP-256` is accepted when unwrapping.
//! - EC public key (P-256, P-384, P-521) → `ECDH-ES+A256KW`: an ephemeral key on the recipient's
//!   curve (`epk`), Concat KDF (RFC 7518 §4.6) with SHA-256 over the ECDH x-coordinate, with
//!   AlgorithmID `"ECDH-ES+A256KW"`, empty PartyUInfo and PartyVInfo (no `apu`/`apv`) and
//!   SuppPubInfo 256, then AES key wrap (RFC 3394) of the CEK.
//!
//! Serialization is go-jose's `FullSerialize`: with one recipient the flattened JSON form with
//! `alg`/`epk` moved into the protected header; with several the general form, per-recipient
//! `header`s, and (a go-jose quirk reproduced here) a top-level `encrypted_key` equal to the
//! first recipient's. The annotation `org.opencontainers.image.enc.keys.jwe` is standard base64
//! of that JSON; ocicrypt joins several such values with `,` when recipients are added later.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::jose::encrypt_json;
pub use super::jose::{
    ALG_ECDH_ES_A256KW, ALG_RSA_OAEP, ALG_RSA_OAEP_256, ENC_A256GCM, Jwe, MAX_JWE_LEN,
    MAX_RECIPIENTS,
};
use super::keys::{PrivateKey, PublicKey};
use crate::{Error, Result};

/// The annotation holding the JWE-wrapped private options.
pub const ANNOTATION: &str = "org.opencontainers.image.enc.keys.jwe";

/// The `org.opencontainers.image.enc.keys.jwe` annotation value wrapping `private_options_json`
/// for `recipients`: standard base64 of one JWE with all of them.
pub fn wrap_annotation(private_options_json: &[u8], recipients: &[PublicKey]) -> Result<String> {
    let refs: Vec<&PublicKey> = recipients.iter().collect();
    let json = encrypt_json(private_options_json, &refs, &Default::default())?;
    Ok(STANDARD.encode(json))
}

/// Unwraps the private options JSON from an `org.opencontainers.image.enc.keys.jwe` annotation
/// value (comma-separated base64 JWEs), trying every key on every recipient. [`Error::Key`]
/// naming what was tried if none fits; entries that do not parse are skipped as ocicrypt does,
/// and [`Error::Malformed`] is returned if none parses.
pub fn unwrap_annotation(value: &str, keys: &[PrivateKey]) -> Result<Zeroizing<Vec<u8>>> {
    let mut recipients = Vec::new();
    let mut problems = Vec::new();
    let mut parsed = 0usize;
    let entries: Vec<&str> = value.split(',').collect();
    for (i, entry) in entries.iter().enumerate() {
        let jwe = STANDARD
            .decode(entry.trim())
            .map_err(|e| {
                Error::malformed(
                    format!("annotation {ANNOTATION} entry {i}"),
                    format!("expected standard base64: {e}"),
                )
            })
            .and_then(|bytes| Jwe::parse(&bytes));
        let jwe = match jwe {
            Ok(jwe) => jwe,
            Err(e) => {
                problems.push(format!("entry {i}: {e}"));
                continue;
            }
        };
        parsed += 1;
        if recipients.len() + jwe.recipient_count() > MAX_RECIPIENTS {
            return Err(Error::Limit(format!(
                "annotation {ANNOTATION}: more than {MAX_RECIPIENTS} JWE recipients"
            )));
        }
        for key in keys {
            if let Ok(plaintext) = jwe.decrypt(key) {
                return Ok(plaintext);
            }
        }
        recipients.extend(jwe.recipient_algorithms());
    }
    if parsed == 0 {
        return Err(Error::malformed(
            format!("annotation {ANNOTATION}"),
            problems.join("; "),
        ));
    }
    let kinds: Vec<String> = keys.iter().map(|k| k.kind().to_string()).collect();
    let mut message = format!(
        "{ANNOTATION}: none of the {} private key(s) [{}] unwraps any of the {} JWE recipient(s) [{}]",
        keys.len(),
        kinds.join(", "),
        recipients.len(),
        recipients.join(", ")
    );
    if !problems.is_empty() {
        message.push_str(&format!("; skipped {}", problems.join("; ")));
    }
    Err(Error::Key(message))
}

fn read_key_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(Path::new(path)).map_err(|e| Error::io("reading key file", path, e))
}

/// Parses a recipient as given to `skopeo copy --encryption-key`: `jwe:PATH` to a PEM or DER
/// public key or certificate. Other schemes (`pgp:`, `pkcs7:`, `pkcs11:`, `provider:`) are
/// refused as unsupported.
pub fn parse_recipient(spec: &str) -> Result<PublicKey> {
    let Some((scheme, path)) = spec.split_once(':') else {
        return Err(Error::malformed(
            "recipient",
            format!("expected jwe:PATH, found {spec:?}"),
        ));
    };
    match scheme {
        "jwe" => PublicKey::from_pem_or_der(&read_key_file(path)?),
        "pgp" | "pkcs7" | "pkcs11" | "provider" => Err(Error::Unsupported(format!(
            "recipient scheme {scheme:?}: expected jwe:PATH"
        ))),
        _ => Err(Error::malformed(
            "recipient",
            format!("unknown scheme {scheme:?}: expected jwe:PATH"),
        )),
    }
}

/// Parses a decryption key as given to `skopeo copy --decryption-key`: `jwe:PATH` or a bare
/// `PATH` to an unencrypted PEM or DER private key (`PATH:password` is not supported).
pub fn parse_decryption_key(spec: &str) -> Result<PrivateKey> {
    let path = spec.strip_prefix("jwe:").unwrap_or(spec);
    if let Some((scheme @ ("pgp" | "pkcs7" | "pkcs11" | "provider"), _)) = path.split_once(':') {
        return Err(Error::Unsupported(format!(
            "decryption key scheme {scheme:?}: expected jwe:PATH or PATH"
        )));
    }
    PrivateKey::from_pem_or_der(&read_key_file(path)?)
}
