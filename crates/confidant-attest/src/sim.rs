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

use crate::claims::{Claims, SimFields, TeeFields};
use crate::error::{Error, Result};
use crate::tee::Tee;

/// The first 8 bytes of every simulation report.
pub const MAGIC: [u8; 8] = *b"CFDTSIM\x01";
/// The only layout version so far.
pub const VERSION: u16 = 1;
/// Length of the signed part of a report.
pub const SIGNED_LEN: usize = 160;
/// Length of a whole report (signed part and Ed25519 signature).
pub const REPORT_LEN: usize = SIGNED_LEN + 64;
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
        if raw.len() != REPORT_LEN {
            return Err(Error::malformed(
                WHAT,
                format!("expected {REPORT_LEN} bytes, got {}", raw.len()),
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
        if version != VERSION {
            return Err(Error::malformed(
                WHAT,
                format!("expected version {VERSION}, got {version}"),
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
                report_data: [0; 64],
            },
            platform_key: [0; 32],
            signature: [0; 64],
        };
        r.body.measurement.copy_from_slice(&raw[16..64]);
        r.body.report_data.copy_from_slice(&raw[64..128]);
        r.platform_key.copy_from_slice(&raw[128..160]);
        r.signature.copy_from_slice(&raw[160..224]);
        Ok(r)
    }

    /// The signed bytes of a report with this body and key.
    pub fn signed_bytes(body: &SimReportBody, platform_key: &[u8; 32]) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        let flags = if body.debug { FLAG_DEBUG } else { 0 };
        b[10..12].copy_from_slice(&flags.to_le_bytes());
        b[12..14].copy_from_slice(&body.product_id.to_le_bytes());
        b[14..16].copy_from_slice(&body.svn.to_le_bytes());
        b[16..64].copy_from_slice(&body.measurement);
        b[64..128].copy_from_slice(&body.report_data);
        b[128..160].copy_from_slice(platform_key);
        b
    }

    /// Serializes the whole report.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Self::signed_bytes(&self.body, &self.platform_key).to_vec();
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

    /// The claims this report makes (unverified: call [`SimReport::verify_signature`] and check
    /// the platform key first).
    pub fn claims(&self, verified: bool) -> Claims {
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
            report_data: [0x55; 64],
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
    fn every_flipped_byte_is_refused() {
        let p = SimPlatform::generate().unwrap();
        let bytes = p.sign(body()).to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = SimReport::parse(&b).and_then(|r| r.verify_signature());
            assert!(ok.is_err(), "flipping byte {i} was not noticed");
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
