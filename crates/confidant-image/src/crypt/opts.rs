//! ocicrypt's layer block cipher options, byte for byte as ocicrypt (Go's `encoding/json`)
//! writes them.
//!
//! - Private options, wrapped for each recipient (JWE, provider):
//!   `{"symkey":"<b64 key>","digest":"sha256:<hex>","cipheroptions":{"nonce":"<b64 nonce>"}}`
//! - Public options, in the clear in the `org.opencontainers.image.enc.pubopts` annotation as
//!   standard base64 of
//!   `{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"<b64 hmac>","cipheroptions":{}}`
//!
//! Byte strings are standard base64 with padding (Go encodes `[]byte` that way); fields are in
//! Go's struct order, with no whitespace.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::cipher::{CIPHER_NAME, HMAC_LEN, KEY_LEN, LayerHmac, LayerKey, NONCE_LEN};
use crate::{Error, Result};

/// Largest options JSON (or annotation) accepted; real ones are under 200 bytes.
pub const MAX_OPTIONS_LEN: usize = 64 * 1024;

/// The secret half of a layer's options: what a recipient unwraps.
#[derive(Clone, Debug)]
pub struct PrivateLayerBlockCipherOptions {
    /// The AES-256 key and the CTR nonce (`symkey` and `cipheroptions.nonce`).
    pub key: LayerKey,
    /// Digest of the layer plaintext (the blob as it was before encryption), `sha256:<hex>`.
    pub digest: String,
}

/// The public half of a layer's options, in the clear in the `pubopts` annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicLayerBlockCipherOptions {
    /// HMAC-SHA256 of the layer ciphertext.
    pub hmac: LayerHmac,
}

#[derive(Deserialize)]
struct RawPrivate {
    symkey: Option<String>,
    digest: Option<String>,
    cipheroptions: Option<BTreeMap<String, Option<String>>>,
}

#[derive(Deserialize)]
struct RawPublic {
    cipher: Option<String>,
    hmac: Option<String>,
    cipheroptions: Option<BTreeMap<String, Option<String>>>,
}

/// Decodes one base64 (standard, padded) byte field, saying which on error.
fn b64_field(what: &str, field: &str, value: Option<&str>) -> Result<Vec<u8>> {
    let value = value
        .ok_or_else(|| Error::malformed(what, format!("expected field {field:?}, found none")))?;
    STANDARD.decode(value).map_err(|e| {
        Error::malformed(
            what,
            format!("{field}: expected standard base64, found {e}"),
        )
    })
}

/// Checks a digest is `sha256:` followed by 64 lowercase hex digits.
pub fn check_sha256_digest(what: &str, digest: &str) -> Result<()> {
    let Some(hex_part) = digest.strip_prefix("sha256:") else {
        return Err(match digest.split_once(':') {
            Some((alg, _)) if !alg.is_empty() => {
                Error::Unsupported(format!("{what}: digest algorithm {alg:?}: expected sha256"))
            }
            _ => Error::malformed(
                what,
                format!("digest: expected sha256:<64 hex digits>, found {digest:?}"),
            ),
        });
    };
    if hex_part.len() != 64
        || !hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::malformed(
            what,
            format!("digest: expected sha256:<64 lowercase hex digits>, found {digest:?}"),
        ));
    }
    Ok(())
}

impl PrivateLayerBlockCipherOptions {
    /// The JSON ocicrypt wraps (secret: wiped on drop).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let key = Zeroizing::new(STANDARD.encode(self.key.symmetric_key()));
        let nonce = STANDARD.encode(self.key.nonce());
        // `digest` is checked to be sha256:<hex> (no characters JSON would escape) when parsed,
        // and produced by this crate as such; escape anyway.
        let digest = serde_json::Value::String(self.digest.clone()).to_string();
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"{\"symkey\":\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\",\"digest\":");
        out.extend_from_slice(digest.as_bytes());
        out.extend_from_slice(b",\"cipheroptions\":{\"nonce\":\"");
        out.extend_from_slice(nonce.as_bytes());
        out.extend_from_slice(b"\"}}");
        Zeroizing::new(out)
    }

    /// Parses unwrapped private options: `symkey` must be 32 bytes, `cipheroptions.nonce` 16
    /// bytes, `digest` `sha256:<hex>`. Unknown fields are ignored, as ocicrypt does.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        const WHAT: &str = "private layer options";
        let raw: RawPrivate = parse_bounded_json(WHAT, json)?;
        let symkey = Zeroizing::new(b64_field(WHAT, "symkey", raw.symkey.as_deref())?);
        if symkey.len() != KEY_LEN {
            return Err(Error::malformed(
                WHAT,
                format!("symkey: expected {KEY_LEN} bytes, found {}", symkey.len()),
            ));
        }
        let options = raw.cipheroptions.unwrap_or_default();
        let nonce = b64_field(
            WHAT,
            "cipheroptions.nonce",
            options.get("nonce").and_then(|v| v.as_deref()),
        )?;
        if nonce.len() != NONCE_LEN {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "cipheroptions.nonce: expected {NONCE_LEN} bytes, found {}",
                    nonce.len()
                ),
            ));
        }
        let digest = raw.digest.unwrap_or_default();
        check_sha256_digest(WHAT, &digest)?;
        Ok(PrivateLayerBlockCipherOptions {
            key: LayerKey::from_parts(&symkey, &nonce)?,
            digest,
        })
    }
}

impl PublicLayerBlockCipherOptions {
    /// The JSON ocicrypt writes.
    pub fn to_json(&self) -> Vec<u8> {
        format!(
            "{{\"cipher\":\"{CIPHER_NAME}\",\"hmac\":\"{}\",\"cipheroptions\":{{}}}}",
            STANDARD.encode(self.hmac)
        )
        .into_bytes()
    }

    /// Parses public options: `cipher` must be `AES_256_CTR_HMAC_SHA256` and `hmac` 32 bytes.
    /// A `nonce` in the public `cipheroptions` is refused: ocicrypt would let it override the
    /// private one, and it never writes one.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        const WHAT: &str = "public layer options";
        let raw: RawPublic = parse_bounded_json(WHAT, json)?;
        match raw.cipher.as_deref() {
            Some(CIPHER_NAME) => {}
            None | Some("") => {
                return Err(Error::malformed(
                    WHAT,
                    format!("cipher: expected {CIPHER_NAME:?}, found none"),
                ));
            }
            Some(other) => {
                return Err(Error::Unsupported(format!(
                    "{WHAT}: cipher {other:?}: expected {CIPHER_NAME:?}"
                )));
            }
        }
        if raw
            .cipheroptions
            .as_ref()
            .is_some_and(|o| o.contains_key("nonce"))
        {
            return Err(Error::malformed(
                WHAT,
                "cipheroptions: expected no nonce (it belongs in the private options), found one",
            ));
        }
        let hmac = b64_field(WHAT, "hmac", raw.hmac.as_deref())?;
        let hmac: LayerHmac = hmac.as_slice().try_into().map_err(|_| {
            Error::malformed(
                WHAT,
                format!("hmac: expected {HMAC_LEN} bytes, found {}", hmac.len()),
            )
        })?;
        Ok(PublicLayerBlockCipherOptions { hmac })
    }

    /// The `org.opencontainers.image.enc.pubopts` annotation value: standard base64 of the JSON.
    pub fn to_annotation(&self) -> String {
        STANDARD.encode(self.to_json())
    }

    /// Parses the `org.opencontainers.image.enc.pubopts` annotation value.
    pub fn from_annotation(value: &str) -> Result<Self> {
        const WHAT: &str = "annotation org.opencontainers.image.enc.pubopts";
        if value.len() > MAX_OPTIONS_LEN {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "expected at most {MAX_OPTIONS_LEN} bytes, found {}",
                    value.len()
                ),
            ));
        }
        let json = STANDARD
            .decode(value.trim())
            .map_err(|e| Error::malformed(WHAT, format!("expected standard base64: {e}")))?;
        PublicLayerBlockCipherOptions::from_json(&json)
    }
}

/// Parses options JSON of at most [`MAX_OPTIONS_LEN`] bytes, naming `what` in errors.
fn parse_bounded_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    json: &[u8],
) -> Result<T> {
    if json.len() > MAX_OPTIONS_LEN {
        return Err(Error::malformed(
            what,
            format!(
                "expected at most {MAX_OPTIONS_LEN} bytes, found {}",
                json.len()
            ),
        ));
    }
    serde_json::from_slice(json).map_err(|e| Error::malformed(what, format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_private() -> PrivateLayerBlockCipherOptions {
        PrivateLayerBlockCipherOptions {
            key: LayerKey::from_parts(&[7u8; 32], &[9u8; 16]).unwrap(),
            digest: format!("sha256:{}", "ab".repeat(32)),
        }
    }

    #[test]
    fn private_options_are_written_as_go_writes_them() {
        let json = sample_private().to_json();
        let expected = format!(
            "{{\"symkey\":\"{}\",\"digest\":\"sha256:{}\",\"cipheroptions\":{{\"nonce\":\"{}\"}}}}",
            STANDARD.encode([7u8; 32]),
            "ab".repeat(32),
            STANDARD.encode([9u8; 16])
        );
        assert_eq!(std::str::from_utf8(&json).unwrap(), expected);
        let back = PrivateLayerBlockCipherOptions::from_json(&json).unwrap();
        assert_eq!(back.key.symmetric_key(), &[7u8; 32]);
        assert_eq!(back.key.nonce(), &[9u8; 16]);
        assert_eq!(back.digest, sample_private().digest);
    }

    #[test]
    fn public_options_round_trip_through_the_annotation() {
        let opts = PublicLayerBlockCipherOptions { hmac: [3u8; 32] };
        assert_eq!(
            String::from_utf8(opts.to_json()).unwrap(),
            format!(
                "{{\"cipher\":\"AES_256_CTR_HMAC_SHA256\",\"hmac\":\"{}\",\"cipheroptions\":{{}}}}",
                STANDARD.encode([3u8; 32])
            )
        );
        assert_eq!(
            PublicLayerBlockCipherOptions::from_annotation(&opts.to_annotation()).unwrap(),
            opts
        );
    }

    #[test]
    fn refuses_wrong_lengths_with_expected_and_found() {
        let short_key = format!(
            "{{\"symkey\":\"{}\",\"digest\":\"sha256:{}\",\"cipheroptions\":{{\"nonce\":\"{}\"}}}}",
            STANDARD.encode([1u8; 16]),
            "00".repeat(32),
            STANDARD.encode([0u8; 16])
        );
        let err = PrivateLayerBlockCipherOptions::from_json(short_key.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 32 bytes, found 16"), "{err}");
        let short_nonce = format!(
            "{{\"symkey\":\"{}\",\"digest\":\"sha256:{}\",\"cipheroptions\":{{\"nonce\":\"{}\"}}}}",
            STANDARD.encode([1u8; 32]),
            "00".repeat(32),
            STANDARD.encode([0u8; 12])
        );
        let err = PrivateLayerBlockCipherOptions::from_json(short_nonce.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 16 bytes, found 12"), "{err}");
        let no_nonce = format!(
            "{{\"symkey\":\"{}\",\"digest\":\"sha256:{}\",\"cipheroptions\":{{}}}}",
            STANDARD.encode([1u8; 32]),
            "00".repeat(32)
        );
        assert!(PrivateLayerBlockCipherOptions::from_json(no_nonce.as_bytes()).is_err());
        let short_hmac = format!(
            "{{\"cipher\":\"AES_256_CTR_HMAC_SHA256\",\"hmac\":\"{}\",\"cipheroptions\":{{}}}}",
            STANDARD.encode([1u8; 20])
        );
        let err = PublicLayerBlockCipherOptions::from_json(short_hmac.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 32 bytes, found 20"), "{err}");
    }

    #[test]
    fn refuses_unknown_ciphers_and_public_nonces() {
        let other = format!(
            "{{\"cipher\":\"AES_256_GCM\",\"hmac\":\"{}\",\"cipheroptions\":{{}}}}",
            STANDARD.encode([1u8; 32])
        );
        let err = PublicLayerBlockCipherOptions::from_json(other.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("AES_256_CTR_HMAC_SHA256"));
        let empty = format!(
            "{{\"cipher\":\"\",\"hmac\":\"{}\"}}",
            STANDARD.encode([1u8; 32])
        );
        assert!(PublicLayerBlockCipherOptions::from_json(empty.as_bytes()).is_err());
        let nonce = format!(
            "{{\"cipher\":\"AES_256_CTR_HMAC_SHA256\",\"hmac\":\"{}\",\"cipheroptions\":{{\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}}}}",
            STANDARD.encode([1u8; 32])
        );
        assert!(PublicLayerBlockCipherOptions::from_json(nonce.as_bytes()).is_err());
    }

    #[test]
    fn refuses_bad_digests() {
        for bad in [
            "",
            "sha256:",
            "sha256:ABCD",
            &format!("sha256:{}", "AB".repeat(32)),
            "md5:00",
        ] {
            assert!(check_sha256_digest("x", bad).is_err(), "{bad}");
        }
        assert!(matches!(
            check_sha256_digest("x", &format!("sha512:{}", "00".repeat(64))),
            Err(Error::Unsupported(_))
        ));
    }
}
