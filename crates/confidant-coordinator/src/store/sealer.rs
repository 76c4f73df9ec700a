//! Sealers: what wraps the data key so that only this TEE can unwrap it.
//!
//! A [`Sealer`] seals a short secret (the 32-byte data key) to the platform. Implementations:
//!
//! - [`SimSealer`] — **SIMULATION ONLY.** Its key-encryption key is derived from the simulation
//!   platform's Ed25519 key file; whoever can read that file (the host, its admin, a backup)
//!   can unseal the state. It proves the protocol, not confidentiality.
//! - [`testing::FixedKeySealer`] and [`testing::FailingSealer`] — fakes for tests.
//!
//! Hardware sealers are not written yet; the trait is ready for them:
//! - SGX (under Gramine): the enclave's sealing key from `/dev/attestation/keys/_sgx_mrenclave`
//!   (or `_sgx_mrsigner`), used as the key-encryption key.
//! - SEV-SNP: a derived key from the firmware (`SNP_GET_DERIVED_KEY`, `MSG_KEY_REQ` through
//!   `/dev/sev-guest`), bound to the measurement and the chosen guest policy fields.
//! - TDX has no sealing key; a TDX coordinator needs a key broker or recovery on every start.

use std::path::{Path, PathBuf};

use ring::hkdf;
use zeroize::Zeroizing;

use super::cipher::{DataKey, ValueCipher};

/// Domain (HKDF info, and the additional data's domain) of the simulation key-encryption key.
pub const SIM_SEAL_INFO: &[u8] = b"confidant/v1/seal";

/// A sealing failure, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

/// Seals secrets to the platform: what [`Sealer::seal`] produces only the same platform (and
/// the same TEE identity) can [`Sealer::unseal`].
pub trait Sealer: Send + Sync {
    /// A short, stable name of the kind of sealing (`sim`, `sgx-mrenclave`, …), recorded next to
    /// the wrapped data key so a mismatch is reported as such.
    fn kind(&self) -> &'static str;

    /// A human description for logs and errors; says loudly if the sealing is simulated.
    fn label(&self) -> String {
        self.kind().to_owned()
    }

    /// Seals `secret`.
    fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, SealError>;

    /// Unseals what [`Sealer::seal`] produced; fails if it was sealed elsewhere or altered.
    fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// Seals with AES-256-GCM under a 256-bit key-encryption key; the additional data binds the
/// sealer kind. The sealed form has the layout of a stored value (version, nonce, ciphertext,
/// tag; see `docs/formats/coordinator-state.md`).
struct AeadKek {
    kind: &'static str,
    cipher: ValueCipher,
}

/// The "key" the additional data names for a sealed secret.
const SEALED_NAME: &str = "data-key";

impl AeadKek {
    fn new(kind: &'static str, kek: &DataKey) -> AeadKek {
        AeadKek {
            kind,
            cipher: ValueCipher::new(kek),
        }
    }

    fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        self.cipher
            .seal(SIM_SEAL_INFO, self.kind, SEALED_NAME, secret)
            .map_err(|e| SealError(e.to_string()))
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.cipher
            .open(SIM_SEAL_INFO, self.kind, SEALED_NAME, sealed)
            .map(Zeroizing::new)
            .map_err(|_| {
                SealError(
                    "AES-256-GCM authentication failed: sealed under another key, or altered"
                        .into(),
                )
            })
    }
}

/// **SIMULATION ONLY** sealing: the key-encryption key is
/// `HKDF-SHA256(salt = "", ikm = Ed25519 seed of the platform key, info = "confidant/v1/seal")`.
///
/// Anyone who can read the simulation platform key file (`platform.pk8`) can derive it and
/// unseal the coordinator's state. Use it to exercise the protocol on machines without TEE
/// hardware, never to protect real secrets.
pub struct SimSealer {
    kek: AeadKek,
    source: Option<PathBuf>,
}

impl std::fmt::Debug for SimSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSealer")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The prefix of an Ed25519 PKCS#8 document (v1 or v2) from the algorithm identifier to the
/// seed: `SEQUENCE { OID 1.3.101.112 } OCTET STRING { OCTET STRING (32) }`.
const ED25519_PKCS8_SEED_PREFIX: [u8; 11] = [
    0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

struct KekLen;

impl hkdf::KeyType for KekLen {
    fn len(&self) -> usize {
        super::cipher::DATA_KEY_LEN
    }
}

impl SimSealer {
    /// The sealer of the simulation platform whose PKCS#8 key is `pkcs8`.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SimSealer, SealError> {
        // Parse it as the platform does, so a key the platform refuses is refused here too.
        confidant_attest::sim::SimPlatform::from_pkcs8(pkcs8)
            .map_err(|e| SealError(format!("simulation platform key: {e}")))?;
        // The seed (the private key proper) is the input, not the whole document, so the same
        // key re-encoded (PKCS#8 v1 or v2) derives the same key-encryption key.
        let seed = pkcs8
            .get(5..48)
            .filter(|b| b[..11] == ED25519_PKCS8_SEED_PREFIX)
            .map(|b| &b[11..])
            .ok_or_else(|| {
                SealError(
                    "simulation platform key: expected an Ed25519 PKCS#8 seed at byte 16".into(),
                )
            })?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(seed);
        let mut kek = Zeroizing::new([0u8; super::cipher::DATA_KEY_LEN]);
        prk.expand(&[SIM_SEAL_INFO], KekLen)
            .and_then(|okm| okm.fill(&mut kek[..]))
            .map_err(|_| SealError("HKDF-SHA256 expansion failed".into()))?;
        Ok(SimSealer {
            kek: AeadKek::new("sim", &DataKey::from_bytes(*kek)),
            source: None,
        })
    }

    /// The sealer of the simulation platform whose key is in `sim_dir` (the directory
    /// `confidant_attest::sim::SimPlatform::dir` names; the file is `platform.pk8`).
    pub fn load(sim_dir: &Path) -> Result<SimSealer, SealError> {
        let path = sim_dir.join(confidant_attest::sim::KEY_FILE);
        let pkcs8 = Zeroizing::new(
            std::fs::read(&path)
                .map_err(|e| SealError(format!("reading {}: {e}", path.display())))?,
        );
        let mut s = Self::from_pkcs8(&pkcs8)?;
        s.source = Some(path);
        Ok(s)
    }
}

impl Sealer for SimSealer {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn label(&self) -> String {
        let file = match &self.source {
            Some(p) => p.display().to_string(),
            None => "the simulation platform key".to_owned(),
        };
        format!("sim (SIMULATION ONLY, not confidential: whoever reads {file} can unseal)")
    }

    fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        self.kek.seal(secret)
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.kek.unseal(sealed)
    }
}

/// Sealers for tests: one that seals under a key the test chooses, one that always fails.
pub mod testing {
    use super::*;

    /// Seals under a fixed 256-bit key the test chooses; two instances with the same key
    /// unseal each other's output, with different keys they do not (a "different machine").
    pub struct FixedKeySealer(AeadKek);

    impl FixedKeySealer {
        /// A sealer with key-encryption key `key`.
        pub fn new(key: [u8; 32]) -> FixedKeySealer {
            FixedKeySealer(AeadKek::new("test-fixed-key", &DataKey::from_bytes(key)))
        }
    }

    impl Sealer for FixedKeySealer {
        fn kind(&self) -> &'static str {
            "test-fixed-key"
        }

        fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, SealError> {
            self.0.seal(secret)
        }

        fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
            self.0.unseal(sealed)
        }
    }

    /// A sealer whose platform is gone: sealing and unsealing always fail.
    pub struct FailingSealer;

    impl Sealer for FailingSealer {
        fn kind(&self) -> &'static str {
            "test-failing"
        }

        fn seal(&self, _: &[u8]) -> Result<Vec<u8>, SealError> {
            Err(SealError("the failing test sealer never seals".into()))
        }

        fn unseal(&self, _: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
            Err(SealError("the failing test sealer never unseals".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confidant_attest::sim::SimPlatform;

    #[test]
    fn sim_sealer_derives_the_same_key_from_the_same_platform() {
        let dir = tempfile::tempdir().unwrap();
        SimPlatform::init(dir.path()).unwrap();
        let a = SimSealer::load(dir.path()).unwrap();
        let b = SimSealer::load(dir.path()).unwrap();
        let sealed = a.seal(b"k").unwrap();
        assert_eq!(&b.unseal(&sealed).unwrap()[..], b"k");
        assert!(a.label().contains("SIMULATION"), "{}", a.label());
    }

    #[test]
    fn sim_sealer_of_another_platform_cannot_unseal() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        SimPlatform::init(d1.path()).unwrap();
        SimPlatform::init(d2.path()).unwrap();
        let sealed = SimSealer::load(d1.path()).unwrap().seal(b"k").unwrap();
        assert!(SimSealer::load(d2.path()).unwrap().unseal(&sealed).is_err());
    }

    #[test]
    fn sim_sealer_refuses_a_key_that_is_not_ed25519_pkcs8() {
        assert!(SimSealer::from_pkcs8(&[0u8; 83]).is_err());
    }

    #[test]
    fn sealed_output_of_one_sealer_kind_is_refused_by_another_with_the_same_key() {
        // The kind is in the additional data: a fixed-key sealer with the sim sealer's key
        // still does not accept its output.
        let a = testing::FixedKeySealer::new([7; 32]);
        let b = AeadKek::new("other", &DataKey::from_bytes([7; 32]));
        assert!(b.unseal(&a.seal(b"k").unwrap()).is_err());
    }
}
