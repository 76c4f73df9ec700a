//! The key hierarchy and the two AEAD uses: chunks and the index.
//!
//! All subkeys come from HKDF-SHA256 with the volume id as salt and the volume key as input key
//! material; the info strings are fixed labels (`docs/formats/volume.md`, "Keys").

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{digest, hkdf, hmac, rand};
use zeroize::Zeroizing;

use crate::format::{CHUNK_SIZE, ID_LEN, NONCE_LEN, STORED_CHUNK_SIZE, TAG_LEN};

/// Domain label of the header key.
pub(crate) const LABEL_HEADER: &[u8] = b"confidant/shield/v1/header";
/// Domain label of the index key and of the index AAD.
pub(crate) const LABEL_INDEX: &[u8] = b"confidant/shield/v1/index";
/// Domain label of file keys and of chunk AADs.
pub(crate) const LABEL_FILE: &[u8] = b"confidant/shield/v1/file";
/// Domain label of chunk AADs.
pub(crate) const LABEL_CHUNK: &[u8] = b"confidant/shield/v1/chunk";

/// A failure of the cryptographic library itself (not of the data): the system CSPRNG, HKDF or
/// AES-GCM key setup or sealing reported an error. None of these fail on valid inputs; if one
/// does, the operation is refused (`EIO`) rather than continued with a weaker key or nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected {0} to succeed, found an error from the cryptographic library")]
pub struct CryptoFailure(pub &'static str);

impl From<CryptoFailure> for std::io::Error {
    fn from(e: CryptoFailure) -> Self {
        std::io::Error::other(e)
    }
}

/// A volume's 256-bit key. Wiped from memory on drop; never printed.
pub struct VolumeKey(Zeroizing<[u8; 32]>);

impl VolumeKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Takes exactly 32 bytes (a key file's content, a secret released by the coordinator).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Self::from_bytes(arr))
    }

    /// A fresh random key from the system CSPRNG.
    pub fn generate() -> Result<Self, CryptoFailure> {
        let mut k = Zeroizing::new([0u8; 32]);
        random(&mut *k)?;
        Ok(Self(k))
    }

    /// The raw key bytes (for handing the key to its owner, e.g. a key file).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn derive(
        &self,
        volume_id: &[u8; ID_LEN],
        info: &[&[u8]],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoFailure> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, volume_id).extract(&*self.0);
        let mut out = Zeroizing::new([0u8; 32]);
        prk.expand(info, hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut *out))
            .map_err(|_| CryptoFailure("HKDF-SHA256 key derivation"))?;
        Ok(out)
    }
}

impl std::fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeKey(..)")
    }
}

/// Fills `buf` from the system CSPRNG.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), CryptoFailure> {
    rand::fill(buf).map_err(|_| CryptoFailure("the system CSPRNG"))
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn aead_key(bytes: &[u8; 32]) -> Result<LessSafeKey, CryptoFailure> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoFailure("AES-256-GCM key setup"))
}

/// HMAC-SHA256 of the header's checked bytes with the header key.
pub(crate) fn header_check(
    key: &VolumeKey,
    volume_id: &[u8; ID_LEN],
    bytes: &[u8],
) -> Result<[u8; 32], CryptoFailure> {
    let k = key.derive(volume_id, &[LABEL_HEADER])?;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &*k), bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Verifies a header key check in constant time.
pub(crate) fn header_check_ok(
    key: &VolumeKey,
    volume_id: &[u8; ID_LEN],
    bytes: &[u8],
    check: &[u8; 32],
) -> Result<bool, CryptoFailure> {
    let k = key.derive(volume_id, &[LABEL_HEADER])?;
    Ok(hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &*k), bytes, check).is_ok())
}

/// Encrypts and decrypts index objects: nonce ‖ ciphertext ‖ tag,
/// AAD = `LABEL_INDEX` ‖ volume id ‖ version (u64 LE).
pub(crate) struct IndexCipher {
    key: LessSafeKey,
    volume_id: [u8; ID_LEN],
}

impl IndexCipher {
    pub(crate) fn new(key: &VolumeKey, volume_id: [u8; ID_LEN]) -> Result<Self, CryptoFailure> {
        Ok(Self {
            key: aead_key(&*key.derive(&volume_id, &[LABEL_INDEX])?)?,
            volume_id,
        })
    }

    fn aad(&self, version: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(LABEL_INDEX.len() + ID_LEN + 8);
        aad.extend_from_slice(LABEL_INDEX);
        aad.extend_from_slice(&self.volume_id);
        aad.extend_from_slice(&version.to_le_bytes());
        aad
    }

    pub(crate) fn seal(&self, version: u64, plaintext: &[u8]) -> Result<Vec<u8>, CryptoFailure> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(version)),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| CryptoFailure("AES-256-GCM sealing"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The plaintext, or `None` if the object was not sealed for this volume, key and version.
    pub(crate) fn open(&self, version: u64, object: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if object.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = object[..NONCE_LEN].try_into().ok()?;
        let mut buf = Zeroizing::new(object[NONCE_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(version)),
                &mut buf,
            )
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

/// Why a stored chunk was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkFault {
    /// The `d/` object ends before the chunk's slot (truncated).
    Missing,
    /// The stored tag is not the one the chunk table pins (an older or foreign copy).
    TagMismatch,
    /// AES-GCM refused the chunk (bytes changed, or moved from another file/position/epoch).
    Authentication,
}

impl ChunkFault {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            ChunkFault::Missing => "stored chunk is missing (the data object was truncated)",
            ChunkFault::TagMismatch => {
                "stored chunk is not the one the chunk table pins (replaced by an older or foreign copy)"
            }
            ChunkFault::Authentication => {
                "stored chunk fails authentication (modified, or moved from another file or position)"
            }
        }
    }
}

/// A file's chunk cipher: key = HKDF(volume key, `LABEL_FILE` ‖ file id),
/// AAD = `LABEL_CHUNK` ‖ volume id ‖ file id ‖ chunk index (u64 LE) ‖ epoch (u64 LE).
pub(crate) struct FileCipher {
    key: LessSafeKey,
    volume_id: [u8; ID_LEN],
    file_id: [u8; ID_LEN],
}

impl FileCipher {
    pub(crate) fn new(
        key: &VolumeKey,
        volume_id: [u8; ID_LEN],
        file_id: [u8; ID_LEN],
    ) -> Result<Self, CryptoFailure> {
        Ok(Self {
            key: aead_key(&*key.derive(&volume_id, &[LABEL_FILE, &file_id])?)?,
            volume_id,
            file_id,
        })
    }

    fn aad(&self, index: u64, epoch: u64) -> [u8; LABEL_CHUNK.len() + 2 * ID_LEN + 16] {
        let mut aad = [0u8; LABEL_CHUNK.len() + 2 * ID_LEN + 16];
        let l = LABEL_CHUNK.len();
        aad[..l].copy_from_slice(LABEL_CHUNK);
        aad[l..l + ID_LEN].copy_from_slice(&self.volume_id);
        aad[l + ID_LEN..l + 2 * ID_LEN].copy_from_slice(&self.file_id);
        aad[l + 2 * ID_LEN..l + 2 * ID_LEN + 8].copy_from_slice(&index.to_le_bytes());
        aad[l + 2 * ID_LEN + 8..].copy_from_slice(&epoch.to_le_bytes());
        aad
    }

    /// Encrypts one chunk of plaintext into `out` (nonce ‖ ciphertext ‖ tag); returns the tag.
    pub(crate) fn seal(
        &self,
        index: u64,
        epoch: u64,
        plaintext: &[u8; CHUNK_SIZE],
        out: &mut [u8; STORED_CHUNK_SIZE],
    ) -> Result<[u8; TAG_LEN], CryptoFailure> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        out[..NONCE_LEN].copy_from_slice(&nonce);
        out[NONCE_LEN..NONCE_LEN + CHUNK_SIZE].copy_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(index, epoch)),
                &mut out[NONCE_LEN..NONCE_LEN + CHUNK_SIZE],
            )
            .map_err(|_| CryptoFailure("AES-256-GCM sealing"))?;
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        out[NONCE_LEN + CHUNK_SIZE..].copy_from_slice(&t);
        Ok(t)
    }

    /// Checks and decrypts a stored chunk in place; on success the plaintext is
    /// `stored[NONCE_LEN..NONCE_LEN + CHUNK_SIZE]`.
    pub(crate) fn open(
        &self,
        index: u64,
        epoch: u64,
        expected_tag: &[u8; TAG_LEN],
        stored: &mut [u8; STORED_CHUNK_SIZE],
    ) -> Result<(), ChunkFault> {
        if &stored[NONCE_LEN + CHUNK_SIZE..] != expected_tag {
            return Err(ChunkFault::TagMismatch);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&stored[..NONCE_LEN]);
        self.key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(index, epoch)),
                &mut stored[NONCE_LEN..],
            )
            .map(|_| ())
            .map_err(|_| ChunkFault::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_refuses_other_position_epoch_and_file() {
        let k = VolumeKey::from_bytes([7; 32]);
        let c = FileCipher::new(&k, [1; 16], [2; 16]).unwrap();
        let mut out = [0u8; STORED_CHUNK_SIZE];
        let tag = c.seal(5, 9, &[0xab; CHUNK_SIZE], &mut out).unwrap();
        let mut s = out;
        assert_eq!(c.open(5, 9, &tag, &mut s), Ok(()));
        assert_eq!(s[NONCE_LEN], 0xab);
        let mut s = out;
        assert_eq!(c.open(6, 9, &tag, &mut s), Err(ChunkFault::Authentication));
        let mut s = out;
        assert_eq!(c.open(5, 8, &tag, &mut s), Err(ChunkFault::Authentication));
        let other = FileCipher::new(&k, [1; 16], [3; 16]).unwrap();
        let mut s = out;
        assert_eq!(
            other.open(5, 9, &tag, &mut s),
            Err(ChunkFault::Authentication)
        );
        let mut s = out;
        assert_eq!(c.open(5, 9, &[0; 16], &mut s), Err(ChunkFault::TagMismatch));
    }

    #[test]
    fn index_is_bound_to_version() {
        let k = VolumeKey::from_bytes([7; 32]);
        let c = IndexCipher::new(&k, [1; 16]).unwrap();
        let o = c.seal(3, b"tree").unwrap();
        assert_eq!(c.open(3, &o).unwrap().as_slice(), b"tree");
        assert!(c.open(4, &o).is_none());
    }
}
