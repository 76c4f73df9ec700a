//! The simulation TEE: a software platform key that signs reports.
//!
//! It makes every protocol step real (real keys, real signatures) on machines without TEE
//! hardware, and it proves nothing about isolation: whoever holds the platform key can sign any
//! report. Evidence of this kind is refused unless a verifier is explicitly configured to trust
//! the platform key. See `docs/formats/sim-evidence.md` for the byte layout.

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::claims::{Claims, InspectedClaims, SimFields, TeeFields};
use crate::error::{Error, Result};
use crate::tee::Tee;

/// The first 8 bytes of every simulation report.
pub const MAGIC: [u8; 8] = *b"CFDTSIM\x01";
/// Layout version 1: no config id.
pub const VERSION: u16 = 1;
/// Layout version 2: a 48-byte config id after the measurement.
pub const VERSION_2: u16 = 2;
/// Length of the signed part of a version-1 report.
pub const SIGNED_LEN: usize = 160;
/// Length of a whole version-1 report (signed part and Ed25519 signature).
pub const REPORT_LEN: usize = SIGNED_LEN + 64;
/// Length of the signed part of a version-2 report.
pub const SIGNED_LEN_V2: usize = SIGNED_LEN + 48;
/// Length of a whole version-2 report.
pub const REPORT_LEN_V2: usize = SIGNED_LEN_V2 + 64;
/// Flag bit: the simulated TEE runs in debug mode.
pub const FLAG_DEBUG: u16 = 1;

/// The body of a simulation report, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReportBody {
    /// Debug mode flag.
    pub debug: bool,
    /// Product id of the launched workload.
    pub product_id: u16,
    /// Security version of the launched workload.
    pub svn: u16,
    /// SHA-384 of what the platform launched.
    pub measurement: [u8; 48],
    /// What the launcher configured the workload with, measured separately from its code
    /// (like TDX MRCONFIGID or SNP HOST_DATA); all zero: none (a version-1 report).
    pub config_id: [u8; 48],
    /// Data bound by the workload.
    pub report_data: [u8; 64],
}

/// A parsed simulation report (signature not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// The signed fields.
    pub body: SimReportBody,
    /// The Ed25519 public key of the platform that claims to have signed.
    pub platform_key: [u8; 32],
    /// Ed25519 signature over the first [`SIGNED_LEN`] bytes.
    pub signature: [u8; 64],
}

impl SimReport {
    /// Parses a report; never panics, whatever the bytes.
    pub fn parse(raw: &[u8]) -> Result<SimReport> {
        const WHAT: &str = "simulation report";
        if raw.len() != REPORT_LEN && raw.len() != REPORT_LEN_V2 {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "expected {REPORT_LEN} (version 1) or {REPORT_LEN_V2} (version 2) bytes, got {}",
                    raw.len()
                ),
            ));
        }
        if raw[..8] != MAGIC {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "expected magic {}, got {}",
                    hex::encode(MAGIC),
                    hex::encode(&raw[..8])
                ),
            ));
        }
        let u16_at = |o: usize| u16::from_le_bytes([raw[o], raw[o + 1]]);
        let version = u16_at(8);
        let expected_version = if raw.len() == REPORT_LEN {
            VERSION
        } else {
            VERSION_2
        };
        if version != expected_version {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "expected version {expected_version} for a {}-byte report, got {version}",
                    raw.len()
                ),
            ));
        }
        let flags = u16_at(10);
        if flags & !FLAG_DEBUG != 0 {
            return Err(Error::malformed(
                WHAT,
                format!("unknown flag bits {:#06x}", flags & !FLAG_DEBUG),
            ));
        }
        let mut r = SimReport {
            body: SimReportBody {
                debug: flags & FLAG_DEBUG != 0,
                product_id: u16_at(12),
                svn: u16_at(14),
                measurement: [0; 48],
                config_id: [0; 48],
                report_data: [0; 64],
            },
            platform_key: [0; 32],
            signature: [0; 64],
        };
        r.body.measurement.copy_from_slice(&raw[16..64]);
        let mut o = 64;
        if version == VERSION_2 {
            r.body.config_id.copy_from_slice(&raw[64..112]);
            if r.body.config_id == [0; 48] {
                return Err(Error::malformed(
                    WHAT,
                    "expected a non-zero config id in a version-2 report (version 1 has none), got zeros",
                ));
            }
            o = 112;
        }
        r.body.report_data.copy_from_slice(&raw[o..o + 64]);
        r.platform_key.copy_from_slice(&raw[o + 64..o + 96]);
        r.signature.copy_from_slice(&raw[o + 96..o + 160]);
        Ok(r)
    }

    /// The signed bytes of a report with this body and key: version 1 when the config id is
    /// all zero, version 2 otherwise.
    pub fn signed_bytes(body: &SimReportBody, platform_key: &[u8; 32]) -> Vec<u8> {
        let v2 = body.config_id != [0; 48];
        let mut b = Vec::with_capacity(SIGNED_LEN_V2);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&(if v2 { VERSION_2 } else { VERSION }).to_le_bytes());
        let flags = if body.debug { FLAG_DEBUG } else { 0 };
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&body.product_id.to_le_bytes());
        b.extend_from_slice(&body.svn.to_le_bytes());
        b.extend_from_slice(&body.measurement);
        if v2 {
            b.extend_from_slice(&body.config_id);
        }
        b.extend_from_slice(&body.report_data);
        b.extend_from_slice(platform_key);
        b
    }

    /// Serializes the whole report.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Self::signed_bytes(&self.body, &self.platform_key);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Checks the Ed25519 signature against the key the report names.
    pub fn verify_signature(&self) -> Result<()> {
        let signed = Self::signed_bytes(&self.body, &self.platform_key);
        UnparsedPublicKey::new(&ED25519, &self.platform_key)
            .verify(&signed, &self.signature)
            .map_err(|_| {
                Error::rejected(
                    Tee::Sim,
                    "the report's Ed25519 signature does not verify under its platform key",
                )
            })
    }

    /// What this report says, unverified (the simulation verifier checks the signature and the
    /// platform key: [`crate::verify::sim::SimVerifier`]).
    pub fn inspect(&self) -> InspectedClaims {
        InspectedClaims::new(self.claims(false))
    }

    /// The claims this report makes; `verified` only after [`SimReport::verify_signature`] and
    /// the platform key check.
    pub(crate) fn claims(&self, verified: bool) -> Claims {
        Claims {
            tee: Tee::Sim,
            verified,
            measurement: self.body.measurement.to_vec(),
            signer: Some(platform_key_digest(&self.platform_key).to_vec()),
            product_id: Some(self.body.product_id.into()),
            svn: Some(self.body.svn.into()),
            debug: self.body.debug,
            tcb_status: None,
            advisory_ids: Vec::new(),
            report_data: self.body.report_data,
            fields: TeeFields::Sim(SimFields {
                platform_key: self.platform_key,
                config_id: (self.body.config_id != [0; 48]).then_some(self.body.config_id),
                simulation: true,
            }),
        }
    }
}

/// SHA-256 of a platform public key: the `signer` claim of simulation evidence.
pub fn platform_key_digest(key: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// A simulation platform: the Ed25519 key pair that stands in for TEE hardware.
pub struct SimPlatform {
    key: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPlatform")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// File name of the platform's private key (PKCS#8) inside the simulation directory.
pub const KEY_FILE: &str = "platform.pk8";
/// File name of the platform's public key (hex) inside the simulation directory.
pub const PUB_FILE: &str = "platform.pub";

impl SimPlatform {
    /// Generates a fresh platform key.
    pub fn generate() -> Result<SimPlatform> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Crypto("Ed25519 key generation failed".into()))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// Loads a platform key from PKCS#8 bytes.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SimPlatform> {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| Error::malformed("simulation platform key", e.to_string()))?;
        Ok(SimPlatform {
            key,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The directory holding the platform key under a Confidant state directory.
    pub fn dir(home: &Path) -> PathBuf {
        home.join("sim")
    }

    /// Creates a platform key in `dir` (mode 0600), refusing to overwrite an existing one.
    pub fn init(dir: &Path) -> Result<SimPlatform> {
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() {
            return Err(Error::io(
                "creating",
                &key_path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a simulation platform key already exists; remove it to make a new platform",
                ),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let p = Self::generate()?;
        write_private(&key_path, &p.pkcs8)?;
        let pub_path = dir.join(PUB_FILE);
        std::fs::write(&pub_path, format!("{}\n", hex::encode(p.public_key())))
            .map_err(|e| Error::io("writing", &pub_path, e))?;
        Ok(p)
    }

    /// Loads the platform key from `dir`.
    pub fn load(dir: &Path) -> Result<SimPlatform> {
        let key_path = dir.join(KEY_FILE);
        let pkcs8 = std::fs::read(&key_path).map_err(|e| Error::io("reading", &key_path, e))?;
        Self::from_pkcs8(&pkcs8)
    }

    /// The platform's Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.key.public_key().as_ref());
        k
    }

    /// Signs a report body.
    pub fn sign(&self, body: SimReportBody) -> SimReport {
        let platform_key = self.public_key();
        let signed = SimReport::signed_bytes(&body, &platform_key);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.key.sign(&signed).as_ref());
        SimReport {
            body,
            platform_key,
            signature,
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("writing", path, e))
}

/// Parses a platform public key given as hex (64 hex digits).
pub fn parse_public_key(text: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| Error::malformed("simulation platform public key", e.to_string()))?;
    bytes.as_slice().try_into().map_err(|_| {
        Error::malformed(
            "simulation platform public key",
            format!("expected 32 bytes, got {}", bytes.len()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> SimReportBody {
        SimReportBody {
            debug: false,
            product_id: 7,
            svn: 3,
            measurement: [0xaa; 48],
            config_id: [0; 48],
            report_data: [0x55; 64],
        }
    }

    fn body_v2() -> SimReportBody {
        SimReportBody {
            config_id: [0xc0; 48],
            ..body()
        }
    }

    #[test]
    fn signed_report_round_trips_and_verifies() {
        let p = SimPlatform::generate().unwrap();
        let r = p.sign(body());
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), REPORT_LEN);
        let back = SimReport::parse(&bytes).unwrap();
        assert_eq!(back, r);
        back.verify_signature().unwrap();
    }

    #[test]
    fn version_2_carries_the_config_id() {
        let p = SimPlatform::generate().unwrap();
        let r = p.sign(body_v2());
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), REPORT_LEN_V2);
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), VERSION_2);
        let back = SimReport::parse(&bytes).unwrap();
        back.verify_signature().unwrap();
        match back.claims(true).fields {
            TeeFields::Sim(f) => assert_eq!(f.config_id, Some([0xc0; 48])),
            other => panic!("{other:?}"),
        }
        // A version-2 report without a config id, or with the other version number, is refused.
        let mut zero = bytes.clone();
        zero[64..112].fill(0);
        assert!(SimReport::parse(&zero).is_err());
        let mut v1 = bytes.clone();
        v1[8] = 1;
        assert!(SimReport::parse(&v1).is_err());
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let p = SimPlatform::generate().unwrap();
        for bytes in [p.sign(body()).to_bytes(), p.sign(body_v2()).to_bytes()] {
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x01;
                let ok = SimReport::parse(&b).and_then(|r| r.verify_signature());
                assert!(ok.is_err(), "flipping byte {i} was not noticed");
            }
        }
    }

    #[test]
    fn init_refuses_to_overwrite_a_platform() {
        let dir = tempfile::tempdir().unwrap();
        let p = SimPlatform::init(dir.path()).unwrap();
        assert!(SimPlatform::init(dir.path()).is_err());
        assert_eq!(
            SimPlatform::load(dir.path()).unwrap().public_key(),
            p.public_key()
        );
    }
}
