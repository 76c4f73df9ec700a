//! Value encryption: AES-256-GCM under the data key, with additional data that binds each
//! ciphertext to its table and key. Layout in `docs/formats/coordinator-state.md`.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::error::{Result, StoreError};

/// Length of a data key in bytes (AES-256).
pub const DATA_KEY_LEN: usize = 32;
/// Version byte of an encrypted value.
pub const VALUE_VERSION: u8 = 1;
/// Length of the AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes an encrypted value adds to its plaintext: version, nonce and tag.
pub const VALUE_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Domain of the additional data of a stored value.
pub(crate) const VALUE_DOMAIN: &[u8] = b"confidant/v1/value";
/// Domain of the additional data of the key check record.
pub(crate) const KEY_CHECK_DOMAIN: &[u8] = b"confidant/v1/key-check";
/// The plaintext of the key check record.
pub(crate) const KEY_CHECK_PLAINTEXT: &[u8] = b"confidant state data key";

/// The random 256-bit key every value is encrypted under. Wiped from memory on drop; its
/// `Debug` output never shows it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// A fresh key from the system's CSPRNG.
    pub fn generate() -> Result<DataKey> {
        let mut k = Zeroizing::new([0u8; DATA_KEY_LEN]);
        SystemRandom::new()
            .fill(&mut k[..])
            .map_err(|_| StoreError::Crypto("the system random generator failed".into()))?;
        Ok(DataKey(k))
    }

    /// A key from its bytes (recovery: the key reassembled from shares).
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    /// A key from a slice, which must be exactly [`DATA_KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<DataKey> {
        let arr: [u8; DATA_KEY_LEN] = bytes.try_into().map_err(|_| {
            StoreError::Crypto(format!(
                "data key: expected {DATA_KEY_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(DataKey::from_bytes(arr))
    }

    /// The key's bytes (to seal it, or to split it into recovery shares).
    pub fn as_bytes(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The additional authenticated data of a value: domain, version, then table and key, each
/// length-prefixed (u32 little-endian) so no two (table, key) pairs share an encoding.
pub(crate) fn aad(domain: &[u8], table: &str, key: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(domain.len() + 9 + table.len() + key.len());
    a.extend_from_slice(domain);
    a.push(VALUE_VERSION);
    for part in [table.as_bytes(), key.as_bytes()] {
        a.extend_from_slice(&(part.len() as u32).to_le_bytes());
        a.extend_from_slice(part);
    }
    a
}

/// Encrypts and authenticates values under a data key.
pub(crate) struct ValueCipher {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl ValueCipher {
    /// A cipher for `data_key`.
    pub(crate) fn new(data_key: &DataKey) -> ValueCipher {
        let unbound = UnboundKey::new(&AES_256_GCM, data_key.as_bytes())
            .expect("a 32-byte key is a valid AES-256-GCM key");
        ValueCipher {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// `version ‖ nonce ‖ ciphertext ‖ tag` of `plaintext` stored under `table`/`key`.
    pub(crate) fn seal(
        &self,
        domain: &[u8],
        table: &str,
        key: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Crypto("the system random generator failed".into()))?;
        let mut out = Vec::with_capacity(plaintext.len() + VALUE_OVERHEAD);
        out.push(VALUE_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(1 + NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(domain, table, key)),
                &mut body,
            )
            .map_err(|_| StoreError::Crypto("AES-256-GCM encryption failed".into()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plaintext of a value stored under `table`/`key`, or [`StoreError::Integrity`] naming
    /// them if it is malformed or does not authenticate.
    pub(crate) fn open(
        &self,
        domain: &[u8],
        table: &str,
        key: &str,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        let integrity = |reason: String| StoreError::Integrity {
            table: table.to_owned(),
            key: key.to_owned(),
            reason,
        };
        if stored.len() < VALUE_OVERHEAD {
            return Err(integrity(format!(
                "expected at least {VALUE_OVERHEAD} bytes, got {}",
                stored.len()
            )));
        }
        if stored[0] != VALUE_VERSION {
            return Err(integrity(format!(
                "expected value version {VALUE_VERSION}, got {}",
                stored[0]
            )));
        }
        let nonce: [u8; NONCE_LEN] = stored[1..1 + NONCE_LEN].try_into().expect("length checked");
        let mut body = stored[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(domain, table, key)),
                &mut body,
            )
            .map_err(|_| {
                integrity(
                    "AES-256-GCM authentication failed: the value was altered or belongs to \
                     another key"
                        .into(),
                )
            })?;
        let len = plain.len();
        body.truncate(len);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_encodings_of_distinct_names_differ() {
        assert_ne!(aad(VALUE_DOMAIN, "ab", "c"), aad(VALUE_DOMAIN, "a", "bc"));
        assert_ne!(aad(VALUE_DOMAIN, "a", "b"), aad(KEY_CHECK_DOMAIN, "a", "b"));
    }

    #[test]
    fn every_flipped_bit_of_a_value_is_refused() {
        let c = ValueCipher::new(&DataKey::generate().unwrap());
        let v = c.seal(VALUE_DOMAIN, "t", "k", b"secret").unwrap();
        assert_eq!(v.len(), 6 + VALUE_OVERHEAD);
        assert_eq!(c.open(VALUE_DOMAIN, "t", "k", &v).unwrap(), b"secret");
        for i in 0..v.len() * 8 {
            let mut b = v.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(c.open(VALUE_DOMAIN, "t", "k", &b).is_err(), "bit {i}");
        }
    }

    #[test]
    fn data_key_debug_is_redacted() {
        let k = DataKey::from_bytes([0x41; 32]);
        assert_eq!(format!("{k:?}"), "DataKey(<redacted>)");
    }
}
