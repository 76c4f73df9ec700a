//! The SEV-SNP `ATTESTATION_REPORT` layout (AMD SEV-SNP ABI specification, "Attestation Report").
//!
//! The report is 1184 bytes for every version so far. Bytes `0x000..0x2A0` are signed; the
//! signature follows at `0x2A0` as two 72-byte little-endian integers R and S. Everything after
//! S (`0x330..0x4A0`) is reserved and *not* protected by the signature.
//!
//! Only two things depend on the processor generation: the layout of each 8-byte TCB version
//! (Turin added an FMC SVN and moved the other components) and, from version 3 on, the CPUID
//! fields that say which generation produced the report.
//!
//! Reading is split in two so that nothing is interpreted before it is authenticated:
//! [`signed_part`] and [`Signature::from_report`] need only the length, and
//! [`Report::parse`] reads the fields.

use crate::claims::SnpTcb;
use crate::error::{Error, Result};
use crate::evidence::SNP_REPORT_LEN;

/// What [`Error::Malformed`] says was being parsed.
pub(crate) const WHAT: &str = "SNP report";

/// Bytes covered by the report signature: `0x000..0x2A0`.
pub(crate) const SIGNED_LEN: usize = 0x2A0;

const VERSION: usize = 0x000;
const GUEST_SVN: usize = 0x004;
const POLICY: usize = 0x008;
const FAMILY_ID: usize = 0x010;
const IMAGE_ID: usize = 0x020;
const VMPL: usize = 0x030;
const SIGNATURE_ALGO: usize = 0x034;
const CURRENT_TCB: usize = 0x038;
const PLATFORM_INFO: usize = 0x040;
const KEY_INFO: usize = 0x048;
const REPORT_DATA: usize = 0x050;
const MEASUREMENT: usize = 0x090;
const HOST_DATA: usize = 0x0C0;
const ID_KEY_DIGEST: usize = 0x0E0;
const AUTHOR_KEY_DIGEST: usize = 0x110;
const REPORT_ID: usize = 0x140;
const REPORT_ID_MA: usize = 0x160;
const REPORTED_TCB: usize = 0x180;
const CPUID_FAM_ID: usize = 0x188;
const CPUID_MOD_ID: usize = 0x189;
const CPUID_STEP: usize = 0x18A;
const CHIP_ID: usize = 0x1A0;
const COMMITTED_TCB: usize = 0x1E0;
const LAUNCH_TCB: usize = 0x1F0;
const SIGNATURE_R: usize = 0x2A0;
const SIGNATURE_S: usize = 0x2E8;
/// Width of each of R and S in the report (little-endian, zero-extended).
const SIG_COMPONENT_LEN: usize = 72;
/// Width of a P-384 scalar.
const P384_SCALAR_LEN: usize = 48;

// The layout fits the report and the signed part ends where the signature begins.
const _: () = assert!(LAUNCH_TCB + 8 <= SIGNED_LEN);
const _: () = assert!(SIGNATURE_R == SIGNED_LEN);
const _: () = assert!(SIGNATURE_S == SIGNATURE_R + SIG_COMPONENT_LEN);
const _: () = assert!(SIGNATURE_S + SIG_COMPONENT_LEN <= SNP_REPORT_LEN);
const _: () = assert!(CHIP_ID + 64 == COMMITTED_TCB);
const _: () = assert!(REPORT_ID_MA == REPORT_ID + 32 && REPORTED_TCB == REPORT_ID_MA + 32);
const _: () = assert!(CPUID_MOD_ID == CPUID_FAM_ID + 1 && CPUID_STEP == CPUID_FAM_ID + 2);

/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384, the only one defined.
pub(crate) const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// An AMD EPYC generation that supports SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// 3rd generation EPYC (family 19h, models 00h-0Fh).
    Milan,
    /// 4th generation EPYC, including Bergamo and Siena (family 19h, models 10h-1Fh, A0h-AFh).
    Genoa,
    /// 5th generation EPYC (family 1Ah, models 00h-11h).
    Turin,
    /// 6th generation EPYC (family 1Ah, later models).
    Venice,
}

impl Generation {
    /// The product name AMD uses in certificate names and KDS URLs (`Milan`, …).
    pub fn name(self) -> &'static str {
        match self {
            Generation::Milan => "Milan",
            Generation::Genoa => "Genoa",
            Generation::Turin => "Turin",
            Generation::Venice => "Venice",
        }
    }

    /// The generation a CPUID family and model identify, if it is an SEV-SNP one.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Generation> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Generation::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Generation::Genoa),
            (0x1A, 0x00..=0x11) => Some(Generation::Turin),
            (0x1A, 0x50..=0x57 | 0x90..=0x9F | 0xA0..=0xAF | 0xC0..=0xC7) => {
                Some(Generation::Venice)
            }
            _ => None,
        }
    }

    /// Whether TCB versions carry an FMC SVN (and use the Turin layout).
    pub fn has_fmc(self) -> bool {
        matches!(self, Generation::Turin | Generation::Venice)
    }

    fn tcb(self, b: [u8; 8]) -> SnpTcb {
        if self.has_fmc() {
            // FMC, bootloader, TEE, SNP, reserved x3, microcode.
            SnpTcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            }
        } else {
            // Bootloader, TEE, reserved x4, SNP, microcode.
            SnpTcb {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            }
        }
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The key that signed a report (`KEY_INFO.SIGNING_KEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// The Versioned Chip Endorsement Key, unique to the chip and its TCB.
    Vcek,
    /// The Versioned Loaded Endorsement Key, provisioned by a cloud provider.
    Vlek,
    /// Not signed.
    None,
}

impl SigningKey {
    /// `vcek`, `vlek` or `none`, as in [`crate::claims::SnpFields::signing_key`].
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
            SigningKey::None => "none",
        }
    }

    /// The upper-case name used in messages (`VCEK`, …).
    pub fn label(self) -> &'static str {
        match self {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
            SigningKey::None => "no key",
        }
    }
}

/// The parsed fields of a report. Fields nobody reads (report id of the migration agent, the
/// mitigation vectors of version 5) are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub sig_algo: u32,
    pub current_tcb: SnpTcb,
    pub platform_info: u64,
    pub signing_key: SigningKey,
    pub mask_chip_key: bool,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub reported_tcb: SnpTcb,
    /// CPUID family, model and stepping (version 3 and later).
    pub cpuid: Option<[u8; 3]>,
    pub chip_id: [u8; 64],
    pub committed_tcb: SnpTcb,
    pub launch_tcb: SnpTcb,
    /// The generation whose TCB layout was used to read the TCB fields.
    pub layout: Generation,
}

/// The report as a fixed-size array, or why it is not one.
pub(crate) fn exact(raw: &[u8]) -> Result<&[u8; SNP_REPORT_LEN]> {
    raw.try_into().map_err(|_| {
        let hint = if raw.len() == 2 * SNP_REPORT_LEN && raw.iter().all(u8::is_ascii_hexdigit) {
            " (this looks like hex text: decode it first)"
        } else {
            ""
        };
        Error::malformed(
            WHAT,
            format!("expected {SNP_REPORT_LEN} bytes, found {}{hint}", raw.len()),
        )
    })
}

/// The signed bytes of a report: everything before the signature.
pub(crate) fn signed_part(raw: &[u8; SNP_REPORT_LEN]) -> &[u8] {
    &raw[..SIGNED_LEN]
}

fn bytes<const N: usize>(raw: &[u8; SNP_REPORT_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&raw[at..at + N]);
    out
}

fn u32_at(raw: &[u8; SNP_REPORT_LEN], at: usize) -> u32 {
    u32::from_le_bytes(bytes(raw, at))
}

fn u64_at(raw: &[u8; SNP_REPORT_LEN], at: usize) -> u64 {
    u64::from_le_bytes(bytes(raw, at))
}

/// Raw `KEY_INFO.SIGNING_KEY` (bits 4:2), unauthenticated; for messages only.
pub(crate) fn raw_signing_key(raw: &[u8; SNP_REPORT_LEN]) -> u32 {
    (u32_at(raw, KEY_INFO) >> 2) & 0b111
}

/// The report signature as ring's fixed-width big-endian `r || s` for P-384.
pub(crate) struct Signature(pub [u8; 2 * P384_SCALAR_LEN]);

impl Signature {
    /// Extracts R and S; fails if either does not fit a P-384 scalar (the top 24 of the 72
    /// little-endian bytes must be zero).
    pub(crate) fn from_report(raw: &[u8; SNP_REPORT_LEN]) -> std::result::Result<Self, String> {
        let mut out = [0u8; 2 * P384_SCALAR_LEN];
        for (i, (name, at)) in [("R", SIGNATURE_R), ("S", SIGNATURE_S)]
            .into_iter()
            .enumerate()
        {
            let le: [u8; SIG_COMPONENT_LEN] = bytes(raw, at);
            if le[P384_SCALAR_LEN..].iter().any(|&b| b != 0) {
                return Err(format!(
                    "signature {name} does not fit a P-384 scalar: its bytes 48..72 are not zero"
                ));
            }
            let dst = &mut out[i * P384_SCALAR_LEN..(i + 1) * P384_SCALAR_LEN];
            for (d, s) in dst.iter_mut().zip(le[..P384_SCALAR_LEN].iter().rev()) {
                *d = *s;
            }
        }
        Ok(Signature(out))
    }

    /// Whether R and S are both zero, as in reports the firmware did not sign.
    pub(crate) fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl Report {
    /// Reads every field.
    ///
    /// `layout` is the generation to read TCB versions with; without it the generation is taken
    /// from the report's CPUID fields (version 3 and later) or guessed from the CHIP_ID shape
    /// (version 2), as AMD's tools do. Verification passes the generation of the AMD root the
    /// signing key chains to, which is authoritative.
    pub(crate) fn parse(raw: &[u8], layout: Option<Generation>) -> Result<Report> {
        let raw = exact(raw)?;
        let version = u32_at(raw, VERSION);
        if !(2..=5).contains(&version) {
            return Err(Error::malformed(
                WHAT,
                format!("VERSION: expected 2, 3, 4 or 5, found {version}"),
            ));
        }
        let key_info = u32_at(raw, KEY_INFO);
        let signing_key = match (key_info >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => {
                return Err(Error::malformed(
                    WHAT,
                    format!(
                        "KEY_INFO.SIGNING_KEY: expected 0 (VCEK), 1 (VLEK) or 7 (none), found {other}"
                    ),
                ));
            }
        };
        let chip_id: [u8; 64] = bytes(raw, CHIP_ID);
        let cpuid = (version >= 3).then(|| bytes::<3>(raw, CPUID_FAM_ID));
        let layout = match (layout, cpuid) {
            (Some(g), _) => g,
            (None, Some([family, model, _])) => {
                Generation::from_cpuid(family, model).ok_or_else(|| {
                    Error::malformed(
                        WHAT,
                        format!(
                            "CPUID_FAM_ID {family:#04x}, CPUID_MOD_ID {model:#04x}: expected an \
                             SEV-SNP processor (Milan, Genoa, Turin or Venice)"
                        ),
                    )
                })?
            }
            // Version 2 has no CPUID. Turin's CHIP_ID is 8 bytes, zero-extended; a masked
            // CHIP_ID is all zero and says nothing, and Milan and Genoa share a layout.
            (None, None) => {
                if chip_id[8..].iter().all(|&b| b == 0) && chip_id[..8].iter().any(|&b| b != 0) {
                    Generation::Turin
                } else {
                    Generation::Milan
                }
            }
        };
        Ok(Report {
            version,
            guest_svn: u32_at(raw, GUEST_SVN),
            policy: u64_at(raw, POLICY),
            family_id: bytes(raw, FAMILY_ID),
            image_id: bytes(raw, IMAGE_ID),
            vmpl: u32_at(raw, VMPL),
            sig_algo: u32_at(raw, SIGNATURE_ALGO),
            current_tcb: layout.tcb(bytes(raw, CURRENT_TCB)),
            platform_info: u64_at(raw, PLATFORM_INFO),
            signing_key,
            mask_chip_key: key_info & 0b10 != 0,
            report_data: bytes(raw, REPORT_DATA),
            measurement: bytes(raw, MEASUREMENT),
            host_data: bytes(raw, HOST_DATA),
            id_key_digest: bytes(raw, ID_KEY_DIGEST),
            author_key_digest: bytes(raw, AUTHOR_KEY_DIGEST),
            report_id: bytes(raw, REPORT_ID),
            reported_tcb: layout.tcb(bytes(raw, REPORTED_TCB)),
            cpuid,
            chip_id,
            committed_tcb: layout.tcb(bytes(raw, COMMITTED_TCB)),
            launch_tcb: layout.tcb(bytes(raw, LAUNCH_TCB)),
            layout,
        })
    }

    /// The generation the report's CPUID fields name, when it has them and they name one.
    pub(crate) fn cpuid_generation(&self) -> Option<Generation> {
        self.cpuid.and_then(|c| Generation::from_cpuid(c[0], c[1]))
    }

    /// Whether CHIP_ID is all zero (masked by the guest policy, or a VLEK-signed report).
    pub(crate) fn chip_id_masked(&self) -> bool {
        self.chip_id.iter().all(|&b| b == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(version: u32) -> Vec<u8> {
        let mut raw = vec![0u8; SNP_REPORT_LEN];
        raw[..4].copy_from_slice(&version.to_le_bytes());
        raw
    }

    #[test]
    fn turin_tcb_layout_puts_fmc_first() {
        let b = [1, 2, 3, 4, 0, 0, 0, 9];
        assert_eq!(
            Generation::Turin.tcb(b),
            SnpTcb {
                fmc: Some(1),
                bootloader: 2,
                tee: 3,
                snp: 4,
                microcode: 9
            }
        );
        assert_eq!(
            Generation::Milan.tcb(b),
            SnpTcb {
                fmc: None,
                bootloader: 1,
                tee: 2,
                snp: 0,
                microcode: 9
            }
        );
    }

    #[test]
    fn version_3_reads_generation_from_cpuid() {
        let mut raw = blank(3);
        raw[CPUID_FAM_ID] = 0x1A;
        raw[CPUID_MOD_ID] = 0x02;
        assert_eq!(Report::parse(&raw, None).unwrap().layout, Generation::Turin);
        raw[CPUID_FAM_ID] = 0x17;
        let err = Report::parse(&raw, None).unwrap_err().to_string();
        assert!(err.contains("CPUID_FAM_ID 0x17"), "{err}");
    }

    #[test]
    fn version_2_with_short_chip_id_reads_as_turin() {
        let mut raw = blank(2);
        raw[CHIP_ID] = 0x1E;
        assert_eq!(Report::parse(&raw, None).unwrap().layout, Generation::Turin);
        raw[CHIP_ID + 63] = 1;
        assert_eq!(Report::parse(&raw, None).unwrap().layout, Generation::Milan);
    }

    #[test]
    fn reserved_signing_key_is_malformed() {
        let mut raw = blank(2);
        raw[KEY_INFO] = 3 << 2;
        let err = Report::parse(&raw, None).unwrap_err().to_string();
        assert!(err.contains("SIGNING_KEY"), "{err}");
    }

    #[test]
    fn signature_is_converted_to_big_endian() {
        let mut raw = blank(2);
        raw[SIGNATURE_R] = 0xAA; // least significant byte of R
        raw[SIGNATURE_S + 47] = 0xBB; // most significant byte of S
        let raw: [u8; SNP_REPORT_LEN] = raw.try_into().unwrap();
        let sig = Signature::from_report(&raw).unwrap();
        assert_eq!(sig.0[47], 0xAA);
        assert_eq!(sig.0[48], 0xBB);
    }

    #[test]
    fn signature_wider_than_p384_is_refused() {
        let mut raw = blank(2);
        raw[SIGNATURE_S + 60] = 1;
        let raw: [u8; SNP_REPORT_LEN] = raw.try_into().unwrap();
        let err = Signature::from_report(&raw).err().unwrap();
        assert!(err.contains("signature S"), "{err}");
    }
}
