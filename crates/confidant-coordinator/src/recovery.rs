//! Recovery: the state's data key split among recovery owners.
//!
//! The manifest's `recovery` section names owners by their RSA public keys and a `threshold`.
//! [`split_for_owners`] splits the store's [`DataKey`] into one Shamir share per owner (any
//! `threshold` of them reassemble it, fewer reveal nothing about it) and encrypts each share to
//! its owner with RSA-OAEP-SHA256. The coordinator keeps these [`EncryptedShare`]s *outside* the
//! sealed state: recovery is needed exactly when the state cannot be unsealed, so the shares
//! must be readable without the data key. That is safe because a share is only useful to the
//! owner holding the matching private key, and only together with `threshold - 1` others.
//!
//! Recovery, end to end:
//!
//! 1. The coordinator starts, [`crate::store::RedbStore::open`] fails with
//!    [`crate::store::StoreError::Sealed`], and it enters recovery, handing out the stored
//!    [`EncryptedShare`]s.
//! 2. On each owner's machine, `confidant recover` calls [`decrypt_share`] with the owner's
//!    private key and sends the [`Share`] to the coordinator (over attested TLS).
//! 3. With `threshold` shares, the coordinator calls [`combine`], opens the state with
//!    [`crate::store::RedbStore::open_with_data_key`] (which fails with
//!    [`crate::store::StoreError::WrongDataKey`] if a share was wrong) and seals the key anew
//!    with [`crate::store::RedbStore::rewrap`].
//!
//! Layouts and what this does not protect are in `docs/formats/coordinator-state.md`, section
//! "Recovery shares".

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1::der::pem::PemLabel;
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, SecretDocument};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::{DATA_KEY_LEN, DataKey};

/// Version byte that starts a share's plaintext.
pub const SHARE_VERSION: u8 = 1;
/// Length of a share's plaintext: version, Shamir x-coordinate, one y byte per key byte.
pub const SHARE_LEN: usize = 2 + DATA_KEY_LEN;
/// The RSA-OAEP label of an encrypted share: a ciphertext made for another purpose under the
/// same owner key does not decrypt as a share, nor a share as anything else.
pub const SHARE_OAEP_LABEL: &[u8] = b"confidant/v1/recovery-share";
/// The smallest owner key accepted, in bits.
pub const MIN_OWNER_KEY_BITS: usize = 2048;
/// The most owners (Shamir over GF(256) has 255 non-zero x-coordinates).
pub const MAX_OWNERS: usize = 255;

/// A recovery result.
pub type Result<T, E = RecoveryError> = std::result::Result<T, E>;

/// What went wrong in recovery. Each variant says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The threshold does not fit the number of owners.
    #[error("recovery.threshold: expected 1 to {owners} (the number of owners), got {threshold}")]
    Threshold {
        /// The threshold given.
        threshold: u32,
        /// The number of owners.
        owners: usize,
    },

    /// The number of owners is not supported.
    #[error("recovery.keys: expected 1 to {MAX_OWNERS} owners, got {0}")]
    Owners(usize),

    /// An owner's public key cannot be used.
    #[error("recovery owner key #{index}: {reason}")]
    OwnerKey {
        /// Position of the key in the list given (0-based).
        index: usize,
        /// What was expected and what was found.
        reason: String,
    },

    /// Two owner entries are the same key (they would hold two shares of one person).
    #[error("recovery owner keys #{first} and #{second} are the same key ({key_id})")]
    DuplicateOwner {
        /// The first occurrence.
        first: usize,
        /// The repeated one.
        second: usize,
        /// The key's id.
        key_id: String,
    },

    /// The owner's private key cannot be used.
    #[error("recovery private key: {0}")]
    PrivateKey(String),

    /// The share was encrypted to another owner than the private key given.
    #[error("the share is for owner key {expected}, but the private key given is {got}")]
    WrongOwner {
        /// The share's `owner_key_id`.
        expected: String,
        /// The id of the private key's public half.
        got: String,
    },

    /// RSA-OAEP decryption of a share failed: the ciphertext was altered or truncated.
    #[error(
        "decrypting the share for owner key {owner_key_id} failed: the ciphertext was altered or is not a recovery share"
    )]
    Decrypt {
        /// The share's `owner_key_id`.
        owner_key_id: String,
    },

    /// A share's bytes are not a share.
    #[error("malformed share: {0}")]
    MalformedShare(String),

    /// Fewer shares than the threshold were given.
    #[error("not enough recovery shares: expected {expected} (the threshold), got {got}")]
    NotEnoughShares {
        /// The threshold.
        expected: u32,
        /// The shares given.
        got: usize,
    },

    /// Two shares given have the same Shamir index (the same share twice, or shares of two
    /// different splits).
    #[error(
        "recovery shares #{first} and #{second} both have index {index}; each owner's share counts once"
    )]
    DuplicateShare {
        /// Position of the first one (0-based).
        first: usize,
        /// Position of the repeated one.
        second: usize,
        /// Their Shamir index (x-coordinate).
        index: u8,
    },

    /// A cryptographic primitive failed (encryption, random generation).
    #[error("crypto error: {0}")]
    Crypto(String),
}

/// One owner's share of the data key, encrypted to that owner's RSA key. Stored by the
/// coordinator outside the sealed state; only the owner can decrypt it.
///
/// JSON: `{"owner_key_id": "<64 hex digits>", "ciphertext": "<standard base64>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedShare {
    /// SHA-256 of the owner's public key as SubjectPublicKeyInfo DER, lower-case hex: tells an
    /// owner which share is theirs (`openssl pkey -pubin -outform DER | sha256sum`).
    pub owner_key_id: String,
    /// RSA-OAEP (SHA-256, MGF1-SHA-256, label [`SHARE_OAEP_LABEL`]) of the share's plaintext;
    /// as long as the owner's modulus.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

/// A decrypted share: a Shamir index (x-coordinate, 1 to 255) and one byte of the polynomial
/// values per data-key byte. Wiped from memory on drop; its `Debug` shows only the index.
#[derive(Clone)]
pub struct Share(Zeroizing<[u8; SHARE_LEN]>);

impl Share {
    /// The share's bytes: `version ‖ index ‖ y[32]` (what `confidant recover` sends).
    pub fn as_bytes(&self) -> &[u8; SHARE_LEN] {
        &self.0
    }

    /// A share from its bytes, checking length, version and a non-zero index.
    pub fn from_bytes(bytes: &[u8]) -> Result<Share> {
        let arr: [u8; SHARE_LEN] = bytes.try_into().map_err(|_| {
            RecoveryError::MalformedShare(format!(
                "expected {SHARE_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        let arr = Zeroizing::new(arr);
        if arr[0] != SHARE_VERSION {
            return Err(RecoveryError::MalformedShare(format!(
                "expected version {SHARE_VERSION}, got {}",
                arr[0]
            )));
        }
        if arr[1] == 0 {
            return Err(RecoveryError::MalformedShare(
                "expected an index of 1 to 255, got 0 (index 0 would be the key itself)".into(),
            ));
        }
        Ok(Share(arr))
    }

    /// The Shamir index (x-coordinate), 1 to 255; distinct for each owner of one split.
    pub fn index(&self) -> u8 {
        self.0[1]
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share(index {}, <redacted>)", self.index())
    }
}

/// The key id of an RSA public key: SHA-256 of its SubjectPublicKeyInfo DER, lower-case hex.
/// Accepts PEM `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1); both forms of one key have
/// the same id. A key that does not parse is [`RecoveryError::OwnerKey`] with index 0.
pub fn owner_key_id(public_key_pem: &str) -> Result<String> {
    let (spki, _) = parse_public_key(public_key_pem)
        .map_err(|reason| RecoveryError::OwnerKey { index: 0, reason })?;
    Ok(key_id(&spki))
}

/// Splits `data_key` into one share per owner, any `threshold` of which reassemble it, and
/// encrypts each to its owner. `owners` are RSA public keys (PEM, SPKI or PKCS#1, at least
/// [`MIN_OWNER_KEY_BITS`] bits); the result is in the same order.
///
/// Each call makes a fresh, independent split: shares of two calls do not combine.
pub fn split_for_owners(
    data_key: &DataKey,
    owners: &[&str],
    threshold: u32,
) -> Result<Vec<EncryptedShare>> {
    if owners.is_empty() || owners.len() > MAX_OWNERS {
        return Err(RecoveryError::Owners(owners.len()));
    }
    if threshold == 0 || threshold as usize > owners.len() {
        return Err(RecoveryError::Threshold {
            threshold,
            owners: owners.len(),
        });
    }
    // Parse every key before splitting, so a bad key fails before any secret is touched.
    let mut keys = Vec::with_capacity(owners.len());
    for (index, pem) in owners.iter().enumerate() {
        let (spki, _) =
            parse_public_key(pem).map_err(|reason| RecoveryError::OwnerKey { index, reason })?;
        let id = key_id(&spki);
        if let Some(first) = keys.iter().position(|(other, _)| *other == id) {
            return Err(RecoveryError::DuplicateOwner {
                first,
                second: index,
                key_id: id,
            });
        }
        let reject = |e: &dyn std::fmt::Display| RecoveryError::OwnerKey {
            index,
            reason: format!("aws-lc-rs rejects the key: {e}"),
        };
        let public = PublicEncryptingKey::from_der(&spki).map_err(|e| reject(&e))?;
        let public = OaepPublicEncryptingKey::new(public).map_err(|e| reject(&e))?;
        keys.push((id, public));
    }

    let threshold = u8::try_from(threshold).expect("threshold <= owners <= 255");
    let shares = blahaj::Sharks(threshold).dealer(data_key.as_bytes());
    let mut out = Vec::with_capacity(keys.len());
    for ((id, public), share) in keys.into_iter().zip(shares) {
        let raw = Zeroizing::new(Vec::from(&share));
        debug_assert_eq!(raw.len(), SHARE_LEN - 1);
        let mut plain = Zeroizing::new([0u8; SHARE_LEN]);
        plain[0] = SHARE_VERSION;
        plain[1..].copy_from_slice(&raw);
        let mut ciphertext = vec![0u8; public.ciphertext_size()];
        let len = public
            .encrypt(
                &OAEP_SHA256_MGF1SHA256,
                &plain[..],
                &mut ciphertext,
                Some(SHARE_OAEP_LABEL),
            )
            .map_err(|_| {
                RecoveryError::Crypto(format!("RSA-OAEP encryption to owner key {id} failed"))
            })?
            .len();
        ciphertext.truncate(len);
        out.push(EncryptedShare {
            owner_key_id: id,
            ciphertext,
        });
    }
    Ok(out)
}

/// The owner's side (`confidant recover`): decrypts `share` with the owner's RSA private key
/// (PEM `PRIVATE KEY`, PKCS#8, as `openssl genpkey` writes it; or `RSA PRIVATE KEY`, PKCS#1).
///
/// Decryption is aws-lc-rs's RSA-OAEP, which is constant-time; the `rsa` crate's decryption
/// (RUSTSEC-2023-0071, Marvin) is never used. Checks first that the share is for this key
/// ([`RecoveryError::WrongOwner`]); an altered ciphertext gives [`RecoveryError::Decrypt`].
pub fn decrypt_share(share: &EncryptedShare, owner_private_key_pem: &str) -> Result<Share> {
    let pkcs8 = private_key_pkcs8(owner_private_key_pem)?;
    let private = PrivateDecryptingKey::from_pkcs8(pkcs8.as_bytes())
        .map_err(|e| RecoveryError::PrivateKey(format!("aws-lc-rs rejects the key: {e}")))?;
    let spki = private
        .public_key()
        .as_der()
        .map_err(|_| RecoveryError::PrivateKey("encoding its public key failed".into()))?;
    let id = key_id(spki.as_ref());
    if id != share.owner_key_id {
        return Err(RecoveryError::WrongOwner {
            expected: share.owner_key_id.clone(),
            got: id,
        });
    }
    let private = OaepPrivateDecryptingKey::new(private)
        .map_err(|e| RecoveryError::PrivateKey(format!("not usable for RSA-OAEP: {e}")))?;
    let mut plain = Zeroizing::new(vec![0u8; private.min_output_size()]);
    let len = private
        .decrypt(
            &OAEP_SHA256_MGF1SHA256,
            &share.ciphertext,
            &mut plain,
            Some(SHARE_OAEP_LABEL),
        )
        .map_err(|_| RecoveryError::Decrypt {
            owner_key_id: share.owner_key_id.clone(),
        })?
        .len();
    Share::from_bytes(&plain[..len])
}

/// The coordinator's side: reassembles the data key from `threshold` or more shares.
///
/// Refuses fewer than `threshold` shares and two shares with the same index. Shares cannot be
/// authenticated on their own: a wrong or altered share yields a wrong key, which
/// [`crate::store::RedbStore::open_with_data_key`] then refuses with
/// [`crate::store::StoreError::WrongDataKey`].
pub fn combine(shares: &[Share], threshold: u32) -> Result<DataKey> {
    if threshold == 0 || threshold as usize > MAX_OWNERS {
        return Err(RecoveryError::Threshold {
            threshold,
            owners: MAX_OWNERS,
        });
    }
    if shares.len() < threshold as usize {
        return Err(RecoveryError::NotEnoughShares {
            expected: threshold,
            got: shares.len(),
        });
    }
    for (second, s) in shares.iter().enumerate() {
        if let Some(first) = shares[..second].iter().position(|f| f.index() == s.index()) {
            return Err(RecoveryError::DuplicateShare {
                first,
                second,
                index: s.index(),
            });
        }
    }
    let parsed = shares
        .iter()
        .map(|s| {
            blahaj::Share::try_from(&s.as_bytes()[1..])
                .map_err(|e| RecoveryError::MalformedShare(e.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    let threshold = u8::try_from(threshold).expect("threshold checked <= 255");
    let secret = Zeroizing::new(
        blahaj::Sharks(threshold)
            .recover(&parsed)
            .map_err(|e| RecoveryError::MalformedShare(e.to_owned()))?,
    );
    DataKey::from_slice(&secret).map_err(|e| RecoveryError::MalformedShare(e.to_string()))
}

/// SHA-256 of `spki_der`, lower-case hex.
fn key_id(spki_der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, spki_der))
}

/// An owner's PEM public key as SubjectPublicKeyInfo DER, and its size in bits.
fn parse_public_key(pem: &str) -> std::result::Result<(Vec<u8>, usize), String> {
    let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| {
            format!("expected an RSA public key in PEM (PUBLIC KEY or RSA PUBLIC KEY): {e}")
        })?;
    let bits = key.size() * 8;
    if bits < MIN_OWNER_KEY_BITS {
        return Err(format!(
            "expected at least {MIN_OWNER_KEY_BITS} bits, got {bits}"
        ));
    }
    let spki = key
        .to_public_key_der()
        .map_err(|e| format!("encoding as SubjectPublicKeyInfo: {e}"))?;
    Ok((spki.as_bytes().to_vec(), bits))
}

/// The owner's PEM private key as PKCS#8 DER (PKCS#1 keys are converted).
fn private_key_pkcs8(pem: &str) -> Result<SecretDocument> {
    let (label, doc) = SecretDocument::from_pem(pem.trim())
        .map_err(|e| RecoveryError::PrivateKey(format!("expected a PEM private key: {e}")))?;
    if label == rsa::pkcs8::PrivateKeyInfo::PEM_LABEL {
        Ok(doc)
    } else if label == rsa::pkcs1::RsaPrivateKey::PEM_LABEL {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::from_pkcs1_der(doc.as_bytes())
            .map_err(|e| RecoveryError::PrivateKey(format!("PKCS#1: {e}")))?;
        key.to_pkcs8_der()
            .map_err(|e| RecoveryError::PrivateKey(format!("converting to PKCS#8: {e}")))
    } else {
        Err(RecoveryError::PrivateKey(format!(
            "expected PEM label PRIVATE KEY or RSA PRIVATE KEY, got {label}"
        )))
    }
}

/// Serde for `Vec<u8>` as standard base64 (padded).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(index: u8, fill: u8) -> Share {
        let mut b = [fill; SHARE_LEN];
        b[0] = SHARE_VERSION;
        b[1] = index;
        Share::from_bytes(&b).unwrap()
    }

    #[test]
    fn combine_refuses_fewer_shares_than_the_threshold() {
        let err = combine(&[share(1, 7)], 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not enough recovery shares: expected 2 (the threshold), got 1"
        );
    }

    #[test]
    fn combine_refuses_the_same_share_twice() {
        let err = combine(&[share(3, 7), share(3, 7)], 2).unwrap_err();
        assert!(
            matches!(
                err,
                RecoveryError::DuplicateShare {
                    first: 0,
                    second: 1,
                    index: 3
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn share_bytes_are_checked() {
        assert!(Share::from_bytes(&[1; SHARE_LEN - 1]).is_err());
        let mut b = [1u8; SHARE_LEN];
        b[0] = 2;
        assert!(Share::from_bytes(&b).is_err());
        b[0] = SHARE_VERSION;
        b[1] = 0;
        assert!(Share::from_bytes(&b).is_err());
    }

    #[test]
    fn share_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", share(5, 0x41)),
            "Share(index 5, <redacted>)"
        );
    }

    /// Stored shares must combine after any crate upgrade: this pins the field (GF(2^8) mod
    /// 0x11d) and the interpolation. With threshold 2, key byte s = 0x42 and coefficient
    /// a = 0x80: y(1) = a + s = 0xc2 and y(2) = 2a + s = 0x1d + 0x42 = 0x5f.
    #[test]
    fn combine_matches_a_known_answer_in_gf256_mod_0x11d() {
        let key = combine(&[share(1, 0xc2), share(2, 0x5f)], 2).unwrap();
        assert_eq!(key.as_bytes(), &[0x42; DATA_KEY_LEN]);
    }

    #[test]
    fn blahaj_shares_recombine_through_our_encoding() {
        let key = DataKey::from_bytes([0x5a; DATA_KEY_LEN]);
        let raw: Vec<blahaj::Share> = blahaj::Sharks(3).dealer(key.as_bytes()).take(5).collect();
        let ours: Vec<Share> = raw
            .iter()
            .map(|s| {
                let mut b = vec![SHARE_VERSION];
                b.extend(Vec::from(s));
                Share::from_bytes(&b).unwrap()
            })
            .collect();
        let back = combine(&[ours[4].clone(), ours[0].clone(), ours[2].clone()], 3).unwrap();
        assert_eq!(back.as_bytes(), key.as_bytes());
        let wrong = combine(&ours[..2], 2).unwrap();
        assert_ne!(wrong.as_bytes(), key.as_bytes(), "2 of a 3-threshold split");
    }
}
