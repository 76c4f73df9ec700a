//! The JOSE pieces ocicrypt's JWE key wrapper relies on, as go-jose writes and reads them:
//! A256GCM content encryption, `RSA-OAEP`, `RSA-OAEP-256` and `ECDH-ES+A256KW` key management
//! (P-256, P-384, P-521), and the general, flattened and compact serializations. The format is
//! described in the [`jwe`](super::jwe) module, which re-exports the public items.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, UnparsedPublicKey};
use aws_lc_rs::key_wrap::{self, KeyEncryptionKey, KeyWrap as _};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::{digest, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::keys::{Curve, KeyKind, PrivateKey, PublicKey};
use crate::{Error, Result};

/// RSAES-OAEP with SHA-1 (RFC 7518 §4.3): what ocicrypt uses for RSA recipients.
pub const ALG_RSA_OAEP: &str = "RSA-OAEP";
/// RSAES-OAEP with SHA-256; unwrapped, never produced.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
/// ECDH-ES with Concat KDF and A256KW (RFC 7518 §4.6): what ocicrypt uses for EC recipients.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// AES-256-GCM content encryption.
pub const ENC_A256GCM: &str = "A256GCM";
/// Most recipients examined in one annotation (each costs an RSA or ECDH operation).
pub const MAX_RECIPIENTS: usize = 256;
/// Largest JWE accepted, in bytes.
pub const MAX_JWE_LEN: usize = 1024 * 1024;

const CEK_LEN: usize = 32;
const GCM_IV_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;

/// One recipient of a parsed JWE.
#[derive(Clone, Debug)]
struct Recipient {
    header: Option<Map<String, Value>>,
    encrypted_key: Vec<u8>,
}

/// A parsed JWE in any serialization: general JSON, flattened JSON or compact.
#[derive(Clone, Debug)]
pub struct Jwe {
    protected: Map<String, Value>,
    protected_raw: Vec<u8>,
    unprotected: Option<Map<String, Value>>,
    recipients: Vec<Recipient>,
    aad: Option<Vec<u8>>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

#[derive(Deserialize)]
struct RawJwe {
    protected: Option<String>,
    unprotected: Option<Map<String, Value>>,
    header: Option<Map<String, Value>>,
    recipients: Option<Vec<RawRecipient>>,
    aad: Option<String>,
    encrypted_key: Option<String>,
    iv: Option<String>,
    ciphertext: Option<String>,
    tag: Option<String>,
}

#[derive(Deserialize)]
struct RawRecipient {
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
}

const WHAT: &str = "JWE";

/// base64url as go-jose reads it: padding tolerated, not required.
fn b64url(field: &str, value: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|e| Error::malformed(WHAT, format!("{field}: expected base64url, found {e}")))
}

fn opt_b64url(field: &str, value: Option<&str>) -> Result<Vec<u8>> {
    value.map_or(Ok(Vec::new()), |v| b64url(field, v))
}

/// The merged header of one recipient; the three parts must not share names (RFC 7516 §7.2.1).
fn merge_headers(parts: [Option<&Map<String, Value>>; 3]) -> Result<BTreeMap<&str, &Value>> {
    let mut merged = BTreeMap::new();
    for part in parts.into_iter().flatten() {
        for (name, value) in part {
            if merged.insert(name.as_str(), value).is_some() {
                return Err(Error::malformed(
                    WHAT,
                    format!("header parameter {name:?} appears in more than one header"),
                ));
            }
        }
    }
    Ok(merged)
}

fn header_str<'a>(header: &BTreeMap<&str, &'a Value>, name: &str) -> Result<Option<&'a str>> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(Error::malformed(
            WHAT,
            format!("header {name:?}: expected a string, found {other}"),
        )),
    }
}

impl Jwe {
    /// Parses a JWE in general JSON, flattened JSON or compact serialization. Checks structure
    /// and sizes only; the cryptography happens in [`decrypt`](Self::decrypt).
    pub fn parse(input: &[u8]) -> Result<Jwe> {
        if input.len() > MAX_JWE_LEN {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "expected at most {MAX_JWE_LEN} bytes, found {}",
                    input.len()
                ),
            ));
        }
        let text = std::str::from_utf8(input)
            .map_err(|_| Error::malformed(WHAT, "expected UTF-8 text"))?;
        let text = text.trim();
        let jwe = if text.starts_with('{') {
            Jwe::parse_json(text)?
        } else {
            Jwe::parse_compact(text)?
        };
        jwe.check()?;
        Ok(jwe)
    }

    fn parse_compact(text: &str) -> Result<Jwe> {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 5 {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "compact serialization: expected 5 parts, found {}",
                    parts.len()
                ),
            ));
        }
        let protected_raw = b64url("protected", parts[0])?;
        Ok(Jwe {
            protected: parse_header_object(&protected_raw)?,
            protected_raw,
            unprotected: None,
            recipients: vec![Recipient {
                header: None,
                encrypted_key: b64url("encrypted_key", parts[1])?,
            }],
            aad: None,
            iv: b64url("iv", parts[2])?,
            ciphertext: b64url("ciphertext", parts[3])?,
            tag: b64url("tag", parts[4])?,
        })
    }

    fn parse_json(text: &str) -> Result<Jwe> {
        let raw: RawJwe = serde_json::from_str(text)
            .map_err(|e| Error::malformed(WHAT, format!("invalid JSON: {e}")))?;
        let protected_raw = opt_b64url("protected", raw.protected.as_deref())?;
        let protected = if protected_raw.is_empty() {
            Map::new()
        } else {
            parse_header_object(&protected_raw)?
        };
        let recipients = match raw.recipients {
            Some(list) if !list.is_empty() => {
                if raw.header.is_some() {
                    return Err(Error::malformed(
                        WHAT,
                        "expected either \"recipients\" or a top-level \"header\", found both",
                    ));
                }
                if list.len() > MAX_RECIPIENTS {
                    return Err(Error::Limit(format!(
                        "JWE with {} recipients: at most {MAX_RECIPIENTS} are examined",
                        list.len()
                    )));
                }
                // A top-level encrypted_key next to "recipients" is go-jose's copy of the
                // first recipient's; it is not used.
                list.into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        Ok(Recipient {
                            header: r.header,
                            encrypted_key: opt_b64url(
                                &format!("recipients[{i}].encrypted_key"),
                                r.encrypted_key.as_deref(),
                            )?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            _ => vec![Recipient {
                header: raw.header,
                encrypted_key: opt_b64url("encrypted_key", raw.encrypted_key.as_deref())?,
            }],
        };
        Ok(Jwe {
            protected,
            protected_raw,
            unprotected: raw.unprotected,
            recipients,
            aad: raw.aad.as_deref().map(|a| b64url("aad", a)).transpose()?,
            iv: opt_b64url("iv", raw.iv.as_deref())?,
            ciphertext: opt_b64url("ciphertext", raw.ciphertext.as_deref())?,
            tag: opt_b64url("tag", raw.tag.as_deref())?,
        })
    }

    fn check(&self) -> Result<()> {
        if self.iv.len() != GCM_IV_LEN {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "iv: expected {GCM_IV_LEN} bytes for A256GCM, found {}",
                    self.iv.len()
                ),
            ));
        }
        if self.tag.len() != GCM_TAG_LEN {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "tag: expected {GCM_TAG_LEN} bytes for A256GCM, found {}",
                    self.tag.len()
                ),
            ));
        }
        for (i, _) in self.recipients.iter().enumerate() {
            let header = self.header_of(i)?;
            if header.contains_key("crit") {
                return Err(Error::Unsupported(format!(
                    "JWE recipient {i}: critical header extensions (\"crit\")"
                )));
            }
            if header.contains_key("zip") {
                return Err(Error::Unsupported(format!(
                    "JWE recipient {i}: compressed plaintext (\"zip\")"
                )));
            }
            match header_str(&header, "enc")? {
                Some(ENC_A256GCM) => {}
                Some(other) => {
                    return Err(Error::Unsupported(format!(
                        "JWE content encryption {other:?}: expected {ENC_A256GCM:?}"
                    )));
                }
                None => {
                    return Err(Error::malformed(
                        WHAT,
                        format!("recipient {i}: expected header \"enc\", found none"),
                    ));
                }
            }
            if header_str(&header, "alg")?.is_none() {
                return Err(Error::malformed(
                    WHAT,
                    format!("recipient {i}: expected header \"alg\", found none"),
                ));
            }
        }
        Ok(())
    }

    fn header_of(&self, i: usize) -> Result<BTreeMap<&str, &Value>> {
        merge_headers([
            Some(&self.protected),
            self.unprotected.as_ref(),
            self.recipients[i].header.as_ref(),
        ])
    }

    /// Number of recipients.
    pub fn recipient_count(&self) -> usize {
        self.recipients.len()
    }

    /// A header value from the protected header (e.g. `kid`, `typ`).
    pub fn protected_header(&self, name: &str) -> Option<&Value> {
        self.protected.get(name)
    }

    /// Each recipient's key algorithm, with the curve for ECDH: `RSA-OAEP`,
    /// `ECDH-ES+A256KW P-256`.
    pub fn recipient_algorithms(&self) -> Vec<String> {
        (0..self.recipients.len())
            .map(|i| {
                let Ok(header) = self.header_of(i) else {
                    return "?".to_string();
                };
                let alg = header_str(&header, "alg").ok().flatten().unwrap_or("?");
                match header
                    .get("epk")
                    .and_then(|e| e.get("crv"))
                    .and_then(Value::as_str)
                {
                    Some(crv) => format!("{alg} {crv}"),
                    None => alg.to_string(),
                }
            })
            .collect()
    }

    /// Decrypts with `key`, trying each recipient whose algorithm fits the key; the plaintext is
    /// wiped on drop. [`Error::Key`] if no recipient unwraps.
    pub fn decrypt(&self, key: &PrivateKey) -> Result<Zeroizing<Vec<u8>>> {
        for i in 0..self.recipients.len() {
            let Ok(Some(cek)) = self.unwrap_cek(i, key) else {
                continue;
            };
            if let Ok(plaintext) = self.open(&cek) {
                return Ok(plaintext);
            }
        }
        Err(Error::Key(format!(
            "the {} key {} unwraps none of the {} JWE recipients ({})",
            key.kind(),
            key.public_key().key_id(),
            self.recipients.len(),
            self.recipient_algorithms().join(", ")
        )))
    }

    /// The CEK for recipient `i`, `None` if that recipient is not for this type of key.
    fn unwrap_cek(&self, i: usize, key: &PrivateKey) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let header = self.header_of(i)?;
        let encrypted_key = &self.recipients[i].encrypted_key;
        let alg = header_str(&header, "alg")?.unwrap_or_default();
        let cek = match alg {
            ALG_RSA_OAEP | ALG_RSA_OAEP_256 => {
                let Some(rsa) = key.rsa() else {
                    return Ok(None);
                };
                let oaep = if alg == ALG_RSA_OAEP {
                    &OAEP_SHA1_MGF1SHA1
                } else {
                    &OAEP_SHA256_MGF1SHA256
                };
                let mut out = Zeroizing::new(vec![0u8; rsa.min_output_size()]);
                let len = rsa
                    .decrypt(oaep, encrypted_key, &mut out, None)
                    .map_err(|_| Error::Key("RSA-OAEP decryption failed".into()))?
                    .len();
                out.truncate(len);
                out
            }
            ALG_ECDH_ES_A256KW => {
                let Some((curve, private)) = key.ec() else {
                    return Ok(None);
                };
                let epk = parse_epk(&header)?;
                if epk.0 != curve {
                    return Ok(None);
                }
                let apu = opt_b64url("apu", header_str(&header, "apu")?)?;
                let apv = opt_b64url("apv", header_str(&header, "apv")?)?;
                let kek = agreement::agree(
                    private,
                    UnparsedPublicKey::new(curve.agreement(), &epk.1),
                    Error::Key(format!("ECDH with the epk on {curve} failed")),
                    |z| Ok(concat_kdf(z, ALG_ECDH_ES_A256KW, &apu, &apv, 32)),
                )?;
                let kek = KeyEncryptionKey::new(&key_wrap::AES_256, &kek)
                    .map_err(|_| Error::Key("A256KW key rejected".into()))?;
                let mut out = Zeroizing::new(vec![0u8; encrypted_key.len()]);
                let len = kek
                    .unwrap(encrypted_key, &mut out)
                    .map_err(|_| Error::Key("A256KW unwrap failed: wrong key".into()))?
                    .len();
                out.truncate(len);
                out
            }
            _ => return Ok(None),
        };
        if cek.len() != CEK_LEN {
            return Err(Error::Key(format!(
                "unwrapped content key: expected {CEK_LEN} bytes, found {}",
                cek.len()
            )));
        }
        Ok(Some(cek))
    }

    /// The additional authenticated data, as go-jose computes it: base64url of the protected
    /// header, then `.` and base64url of `aad` if present.
    fn authenticated_data(&self) -> Vec<u8> {
        let mut out = URL_SAFE_NO_PAD.encode(&self.protected_raw).into_bytes();
        if let Some(aad) = &self.aad {
            out.push(b'.');
            out.extend(URL_SAFE_NO_PAD.encode(aad).into_bytes());
        }
        out
    }

    fn open(&self, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, cek)
                .map_err(|_| Error::Key("A256GCM key rejected".into()))?,
        );
        let nonce = Nonce::try_assume_unique_for_key(&self.iv)
            .map_err(|_| Error::malformed(WHAT, "iv length"))?;
        let mut buf = Zeroizing::new(self.ciphertext.clone());
        key.open_in_place_separate_tag(
            nonce,
            Aad::from(self.authenticated_data()),
            &self.tag,
            &mut buf,
        )
        .map_err(|_| Error::Key("A256GCM authentication failed".into()))?;
        Ok(buf)
    }
}

fn parse_header_object(raw: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::malformed(
            WHAT,
            format!("protected header: expected a JSON object, found {other}"),
        )),
        Err(e) => Err(Error::malformed(
            WHAT,
            format!("protected header: invalid JSON: {e}"),
        )),
    }
}

/// The `epk` header: curve and uncompressed point. Coordinates must be exactly the curve's size.
fn parse_epk(header: &BTreeMap<&str, &Value>) -> Result<(Curve, Vec<u8>)> {
    let epk = header
        .get("epk")
        .and_then(|v| v.as_object())
        .ok_or_else(|| {
            Error::malformed(
                WHAT,
                "ECDH-ES recipient: expected an \"epk\" object, found none",
            )
        })?;
    let field = |name: &str| epk.get(name).and_then(Value::as_str);
    if field("kty") != Some("EC") {
        return Err(Error::malformed(
            WHAT,
            format!("epk.kty: expected \"EC\", found {:?}", field("kty")),
        ));
    }
    let crv = field("crv").unwrap_or_default();
    let curve = Curve::from_jwk_name(crv).ok_or_else(|| {
        Error::Unsupported(format!("epk curve {crv:?}: expected P-256, P-384 or P-521"))
    })?;
    let mut point = vec![0x04];
    for name in ["x", "y"] {
        let coord = b64url(&format!("epk.{name}"), field(name).unwrap_or_default())?;
        if coord.len() != curve.coordinate_len() {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "epk.{name}: expected {} bytes for {curve}, found {}",
                    curve.coordinate_len(),
                    coord.len()
                ),
            ));
        }
        point.extend(coord);
    }
    Ok((curve, point))
}

/// Concat KDF (NIST SP 800-56A §5.8.1) with SHA-256 as JWA uses it (RFC 7518 §4.6.2):
/// `SHA-256(counter || Z || len(alg) || alg || len(apu) || apu || len(apv) || apv || bits)`.
pub(crate) fn concat_kdf(
    z: &[u8],
    alg: &str,
    apu: &[u8],
    apv: &[u8],
    out_len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut other_info = Vec::with_capacity(alg.len() + apu.len() + apv.len() + 16);
    for part in [alg.as_bytes(), apu, apv] {
        other_info.extend_from_slice(&(part.len() as u32).to_be_bytes());
        other_info.extend_from_slice(part);
    }
    other_info.extend_from_slice(&((out_len * 8) as u32).to_be_bytes());
    let mut out = Zeroizing::new(Vec::with_capacity(out_len + 32));
    let mut counter = 1u32;
    while out.len() < out_len {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        ctx.update(&other_info);
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(out_len);
    out
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A JSON object from already-encoded values, keys in sorted order (as Go writes maps).
fn json_object(entries: &BTreeMap<String, String>) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// Wraps the CEK for one recipient: the per-recipient header entries and the encrypted key.
fn wrap_cek(recipient: &PublicKey, cek: &[u8]) -> Result<(BTreeMap<String, String>, Vec<u8>)> {
    let mut header = BTreeMap::new();
    match recipient.kind() {
        KeyKind::Rsa { .. } => {
            let key = PublicEncryptingKey::from_der(recipient.spki_der())
                .map_err(|e| Error::Key(format!("RSA recipient key rejected: {e}")))?;
            let key = OaepPublicEncryptingKey::new(key)
                .map_err(|_| Error::Key("RSA recipient key unusable for OAEP".into()))?;
            let mut out = vec![0u8; key.ciphertext_size()];
            let len = key
                .encrypt(&OAEP_SHA1_MGF1SHA1, cek, &mut out, None)
                .map_err(|_| Error::Key("RSA-OAEP encryption failed".into()))?
                .len();
            out.truncate(len);
            header.insert("alg".into(), json_str(ALG_RSA_OAEP));
            Ok((header, out))
        }
        KeyKind::Ec(curve) => {
            let (_, point) = recipient
                .ec_point()
                .ok_or_else(|| Error::Key("EC recipient without a point".into()))?;
            let ephemeral = agreement::PrivateKey::generate(curve.agreement())
                .map_err(|_| Error::Key(format!("cannot generate an ephemeral {curve} key")))?;
            let epk_point = ephemeral
                .compute_public_key()
                .map_err(|_| Error::Key("cannot compute the ephemeral public key".into()))?;
            let kek = agreement::agree(
                &ephemeral,
                UnparsedPublicKey::new(curve.agreement(), point),
                Error::Key(format!("ECDH with the {curve} recipient key failed")),
                |z| Ok(concat_kdf(z, ALG_ECDH_ES_A256KW, &[], &[], 32)),
            )?;
            let kek = KeyEncryptionKey::new(&key_wrap::AES_256, &kek)
                .map_err(|_| Error::Key("A256KW key rejected".into()))?;
            let mut out = vec![0u8; cek.len() + 8];
            let len = kek
                .wrap(cek, &mut out)
                .map_err(|_| Error::Key("A256KW wrap failed".into()))?
                .len();
            out.truncate(len);
            let n = curve.coordinate_len();
            let epk = epk_point.as_ref();
            // Member order as go-jose writes a JWK: kty, crv, x, y.
            let epk_json = format!(
                "{{\"kty\":\"EC\",\"crv\":{},\"x\":{},\"y\":{}}}",
                json_str(curve.jwk_name()),
                json_str(&URL_SAFE_NO_PAD.encode(&epk[1..1 + n])),
                json_str(&URL_SAFE_NO_PAD.encode(&epk[1 + n..1 + 2 * n])),
            );
            header.insert("alg".into(), json_str(ALG_ECDH_ES_A256KW));
            header.insert("epk".into(), epk_json);
            Ok((header, out))
        }
    }
}

/// Encrypts `plaintext` for `recipients` (A256GCM) and serializes as go-jose's `FullSerialize`.
/// `extra_protected` maps header names to encoded JSON values added to the protected header.
pub(crate) fn encrypt_json(
    plaintext: &[u8],
    recipients: &[&PublicKey],
    extra_protected: &BTreeMap<String, String>,
) -> Result<String> {
    if recipients.is_empty() {
        return Err(Error::Key(
            "JWE: no recipients to wrap the layer key for".into(),
        ));
    }
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    let mut iv = [0u8; GCM_IV_LEN];
    rand::fill(cek.as_mut()).map_err(|_| Error::Key("the random generator failed".into()))?;
    rand::fill(&mut iv).map_err(|_| Error::Key("the random generator failed".into()))?;
    let mut wrapped = recipients
        .iter()
        .map(|r| wrap_cek(r, cek.as_ref()))
        .collect::<Result<Vec<_>>>()?;

    let mut protected = extra_protected.clone();
    protected.insert("enc".into(), json_str(ENC_A256GCM));
    if wrapped.len() == 1 {
        protected.append(&mut wrapped[0].0);
    }
    let protected_b64 = URL_SAFE_NO_PAD.encode(json_object(&protected));

    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, cek.as_ref())
            .map_err(|_| Error::Key("A256GCM key rejected".into()))?,
    );
    let mut ciphertext = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected_b64.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| Error::Key("A256GCM encryption failed".into()))?;

    // Members in go-jose's order: protected, recipients, encrypted_key, iv, ciphertext, tag.
    let mut fields = vec![format!("\"protected\":{}", json_str(&protected_b64))];
    if wrapped.len() > 1 {
        let list: Vec<String> = wrapped
            .iter()
            .map(|(header, key)| {
                format!(
                    "{{\"header\":{},\"encrypted_key\":{}}}",
                    json_object(header),
                    json_str(&URL_SAFE_NO_PAD.encode(key))
                )
            })
            .collect();
        fields.push(format!("\"recipients\":[{}]", list.join(",")));
    }
    fields.push(format!(
        "\"encrypted_key\":{}",
        json_str(&URL_SAFE_NO_PAD.encode(&wrapped[0].1))
    ));
    fields.push(format!("\"iv\":{}", json_str(&URL_SAFE_NO_PAD.encode(iv))));
    fields.push(format!(
        "\"ciphertext\":{}",
        json_str(&URL_SAFE_NO_PAD.encode(&ciphertext))
    ));
    fields.push(format!(
        "\"tag\":{}",
        json_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()))
    ));
    Ok(format!("{{{}}}", fields.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        // RFC 7518 Appendix C: ECDH-ES direct, A128GCM, apu "Alice", apv "Bob".
        let z = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let key = concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 16);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(key.as_slice()),
            "VqqN6vgjbSBcIijNcacQGg"
        );
    }

    #[test]
    fn single_recipient_is_flattened_with_everything_protected() {
        let key = PrivateKey::generate_ec(Curve::P256).unwrap();
        let json = encrypt_json(b"hello", &[key.public_key()], &BTreeMap::new()).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for name in ["protected", "encrypted_key", "iv", "ciphertext", "tag"] {
            assert!(names.contains(&name), "{json}");
        }
        assert!(v.get("recipients").is_none() && v.get("header").is_none());
        let protected = URL_SAFE_NO_PAD
            .decode(v["protected"].as_str().unwrap())
            .unwrap();
        let protected = String::from_utf8(protected).unwrap();
        assert!(protected.starts_with("{\"alg\":\"ECDH-ES+A256KW\",\"enc\":\"A256GCM\",\"epk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"), "{protected}");
        let jwe = Jwe::parse(json.as_bytes()).unwrap();
        assert_eq!(jwe.decrypt(&key).unwrap().as_slice(), b"hello");
    }

    #[test]
    fn several_recipients_use_the_general_form_with_go_jose_top_level_key() {
        let rsa = PrivateKey::generate_rsa(2048).unwrap();
        let ec = PrivateKey::generate_ec(Curve::P521).unwrap();
        let json = encrypt_json(
            b"opts",
            &[rsa.public_key(), ec.public_key()],
            &BTreeMap::new(),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["recipients"].as_array().unwrap().len(), 2);
        assert_eq!(v["encrypted_key"], v["recipients"][0]["encrypted_key"]);
        assert_eq!(v["recipients"][0]["header"]["alg"], "RSA-OAEP");
        assert_eq!(v["recipients"][1]["header"]["epk"]["crv"], "P-521");
        let jwe = Jwe::parse(json.as_bytes()).unwrap();
        assert_eq!(jwe.decrypt(&rsa).unwrap().as_slice(), b"opts");
        assert_eq!(jwe.decrypt(&ec).unwrap().as_slice(), b"opts");
        let other = PrivateKey::generate_ec(Curve::P521).unwrap();
        let err = jwe.decrypt(&other).unwrap_err().to_string();
        assert!(
            err.contains("2 JWE recipients (RSA-OAEP, ECDH-ES+A256KW P-521)"),
            "{err}"
        );
    }

    #[test]
    fn compact_serialization_is_accepted() {
        let key = PrivateKey::generate_ec(Curve::P384).unwrap();
        let json = encrypt_json(b"compact", &[key.public_key()], &BTreeMap::new()).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        let compact = ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
            .map(|f| v[f].as_str().unwrap().to_string())
            .join(".");
        assert_eq!(
            Jwe::parse(compact.as_bytes())
                .unwrap()
                .decrypt(&key)
                .unwrap()
                .as_slice(),
            b"compact"
        );
    }

    #[test]
    fn rsa_oaep_256_recipients_are_unwrapped() {
        let key = PrivateKey::generate_rsa(2048).unwrap();
        let cek = [5u8; 32];
        let public = OaepPublicEncryptingKey::new(
            PublicEncryptingKey::from_der(key.public_key().spki_der()).unwrap(),
        )
        .unwrap();
        let mut ek = vec![0u8; public.ciphertext_size()];
        let ek = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut ek, None)
            .unwrap()
            .to_vec();
        let protected = URL_SAFE_NO_PAD.encode("{\"alg\":\"RSA-OAEP-256\",\"enc\":\"A256GCM\"}");
        let gcm = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).unwrap());
        let mut ct = b"sha256".to_vec();
        let tag = gcm
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::from(protected.as_bytes()),
                &mut ct,
            )
            .unwrap();
        let json = format!(
            "{{\"protected\":\"{protected}\",\"encrypted_key\":\"{}\",\"iv\":\"{}\",\"ciphertext\":\"{}\",\"tag\":\"{}\"}}",
            URL_SAFE_NO_PAD.encode(ek),
            URL_SAFE_NO_PAD.encode([1u8; 12]),
            URL_SAFE_NO_PAD.encode(&ct),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        );
        assert_eq!(
            Jwe::parse(json.as_bytes())
                .unwrap()
                .decrypt(&key)
                .unwrap()
                .as_slice(),
            b"sha256"
        );
    }

    #[test]
    fn refuses_duplicate_header_names_crit_and_other_enc() {
        let key = PrivateKey::generate_ec(Curve::P256).unwrap();
        let json = encrypt_json(b"x", &[key.public_key()], &BTreeMap::new()).unwrap();
        let mut v: Value = serde_json::from_str(&json).unwrap();
        v["header"] = serde_json::json!({"alg": "RSA-OAEP"});
        assert!(Jwe::parse(v.to_string().as_bytes()).is_err());
        let mut v: Value = serde_json::from_str(&json).unwrap();
        v["unprotected"] = serde_json::json!({"crit": ["exp"]});
        assert!(matches!(
            Jwe::parse(v.to_string().as_bytes()),
            Err(Error::Unsupported(_))
        ));
        let mut v: Value = serde_json::from_str(&json).unwrap();
        v["protected"] = Value::String(
            URL_SAFE_NO_PAD.encode("{\"alg\":\"ECDH-ES+A256KW\",\"enc\":\"A128CBC-HS256\"}"),
        );
        assert!(matches!(
            Jwe::parse(v.to_string().as_bytes()),
            Err(Error::Unsupported(_))
        ));
    }
}
