//! Normalized claims: what a verifier returns and what reference values are matched against.
//!
//! Every TEE reports its identity differently (MRENCLAVE, MRTD, the SNP launch digest, …). The
//! common fields below let policy treat them alike; the per-TEE fields keep every raw value for
//! policies that need them (RTMRs, host data, guest policy, …).

use serde::{Deserialize, Serialize};

use crate::hex_serde;
use crate::tee::Tee;

/// The claims one piece of evidence makes, after verification: only this crate's verifiers
/// ([`crate::Verifier`]) make them (the struct is `#[non_exhaustive]` and not deserializable),
/// so a `Claims` value outside this crate is always a verifier's verdict. Evidence read without
/// verifying it gives [`InspectedClaims`], which reference values do not accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Claims {
    /// Which TEE produced the evidence.
    pub tee: Tee,
    /// Whether the claims were verified: always `true` outside this crate (kept for the JSON
    /// form, where inspected claims say `false`).
    pub verified: bool,
    /// The launch measurement: MRENCLAVE (SGX), MRTD (TDX), MEASUREMENT (SNP), or the hash of what
    /// the simulation platform launched (sim).
    #[serde(with = "hex_serde")]
    pub measurement: Vec<u8>,
    /// Who vouches for the measured code: MRSIGNER (SGX), MRSIGNER_SEAM (TDX), the ID key digest
    /// (SNP), the platform key digest (sim).
    #[serde(with = "hex_serde::option", default)]
    pub signer: Option<Vec<u8>>,
    /// Product id: ISVPRODID (SGX), the simulation product id; absent elsewhere.
    pub product_id: Option<u32>,
    /// Security version of the workload: ISVSVN (SGX), GUEST_SVN (SNP), the simulation svn.
    pub svn: Option<u32>,
    /// Whether the TEE runs in debug mode (its memory can be read by the host).
    pub debug: bool,
    /// Intel TCB status (`UpToDate`, `SWHardeningNeeded`, …) for verified DCAP evidence.
    pub tcb_status: Option<String>,
    /// Intel security advisories that apply to the platform's TCB.
    #[serde(default)]
    pub advisory_ids: Vec<String>,
    /// The 64 bytes of report data the workload bound into the evidence.
    #[serde(with = "hex_serde")]
    pub report_data: [u8; 64],
    /// Raw per-TEE fields.
    #[serde(flatten)]
    pub fields: TeeFields,
}

/// What evidence says about itself, read without verifying anything ([`crate::inspect`],
/// `confidant attest inspect`): the same fields as [`Claims`], readable but not usable as
/// claims. Reference values appraise only [`Claims`]:
///
/// ```compile_fail
/// # use confidant_attest::{Evidence, ReferenceValues};
/// # fn f(evidence: &Evidence) {
/// let inspected = confidant_attest::inspect(evidence).unwrap();
/// ReferenceValues::default().appraise(&inspected); // expected `&Claims`
/// # }
/// ```
///
/// Its JSON form is that of [`Claims`] with `"verified": false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct InspectedClaims(Claims);

impl InspectedClaims {
    /// Wraps claims made without verification (marking them unverified).
    pub(crate) fn new(mut claims: Claims) -> InspectedClaims {
        claims.verified = false;
        InspectedClaims(claims)
    }

    /// Which TEE the evidence says produced it.
    pub fn tee(&self) -> Tee {
        self.0.tee
    }

    /// The launch measurement the evidence states (see [`Claims::measurement`]).
    pub fn measurement(&self) -> &[u8] {
        &self.0.measurement
    }

    /// Who the evidence says vouches for the code (see [`Claims::signer`]).
    pub fn signer(&self) -> Option<&[u8]> {
        self.0.signer.as_deref()
    }

    /// The product id the evidence states.
    pub fn product_id(&self) -> Option<u32> {
        self.0.product_id
    }

    /// The workload security version the evidence states.
    pub fn svn(&self) -> Option<u32> {
        self.0.svn
    }

    /// Whether the evidence says the TEE runs in debug mode.
    pub fn debug(&self) -> bool {
        self.0.debug
    }

    /// The Intel TCB status: `None` (only verification against collateral establishes it).
    pub fn tcb_status(&self) -> Option<&str> {
        self.0.tcb_status.as_deref()
    }

    /// Intel security advisories: empty (only verification establishes them).
    pub fn advisory_ids(&self) -> &[String] {
        &self.0.advisory_ids
    }

    /// The report data the evidence carries.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.0.report_data
    }

    /// The raw per-TEE fields the evidence states.
    pub fn fields(&self) -> &TeeFields {
        &self.0.fields
    }
}

/// The raw fields of each kind of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum TeeFields {
    /// SGX enclave report fields.
    Sgx(SgxFields),
    /// TDX TD report fields.
    Tdx(TdxFields),
    /// SEV-SNP attestation report fields.
    Snp(SnpFields),
    /// Simulation report fields.
    Sim(SimFields),
}

/// Fields of an SGX enclave report inside a DCAP quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxFields {
    /// MRENCLAVE, the enclave's measurement.
    #[serde(with = "hex_serde")]
    pub mr_enclave: [u8; 32],
    /// MRSIGNER, the hash of the enclave signer's key.
    #[serde(with = "hex_serde")]
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// SECS attributes (flags, xfrm).
    #[serde(with = "hex_serde")]
    pub attributes: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// CPUSVN of the platform when the report was made.
    #[serde(with = "hex_serde")]
    pub cpu_svn: [u8; 16],
    /// Quote version (3 or 4).
    pub quote_version: u16,
}

/// Fields of a TDX TD report inside a DCAP quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxFields {
    /// MRTD, the measurement of the initial TD contents.
    #[serde(with = "hex_serde")]
    pub mr_td: [u8; 48],
    /// Runtime measurement register 0 (firmware).
    #[serde(with = "hex_serde")]
    pub rtmr_0: [u8; 48],
    /// Runtime measurement register 1 (OS loader, kernel).
    #[serde(with = "hex_serde")]
    pub rtmr_1: [u8; 48],
    /// Runtime measurement register 2 (OS, command line, initrd).
    #[serde(with = "hex_serde")]
    pub rtmr_2: [u8; 48],
    /// Runtime measurement register 3 (application defined).
    #[serde(with = "hex_serde")]
    pub rtmr_3: [u8; 48],
    /// MRCONFIGID, software-defined configuration id set by the host at launch.
    #[serde(with = "hex_serde")]
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    #[serde(with = "hex_serde")]
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    #[serde(with = "hex_serde")]
    pub mr_owner_config: [u8; 48],
    /// MRSEAM, the measurement of the TDX module.
    #[serde(with = "hex_serde")]
    pub mr_seam: [u8; 48],
    /// MRSIGNER_SEAM, the signer of the TDX module.
    #[serde(with = "hex_serde")]
    pub mr_signer_seam: [u8; 48],
    /// SEAM attributes.
    #[serde(with = "hex_serde")]
    pub seam_attributes: [u8; 8],
    /// TD attributes (bit 0: DEBUG).
    #[serde(with = "hex_serde")]
    pub td_attributes: [u8; 8],
    /// XFAM.
    #[serde(with = "hex_serde")]
    pub xfam: [u8; 8],
    /// TEE TCB SVN.
    #[serde(with = "hex_serde")]
    pub tee_tcb_svn: [u8; 16],
    /// MRSERVICETD (TDX 1.5 reports only).
    #[serde(with = "hex_serde::option", default)]
    pub mr_service_td: Option<[u8; 48]>,
    /// Quote version (4 or 5).
    pub quote_version: u16,
}

/// An AMD SEV-SNP TCB version, as reported in attestation reports and VCEK extensions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct SnpTcb {
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// CPU microcode SVN.
    pub microcode: u8,
    /// FMC SVN (Turin and later), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

/// Fields of an SEV-SNP attestation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpFields {
    /// Report format version.
    pub report_version: u32,
    /// The guest policy the VM was launched with.
    pub guest_policy: u64,
    /// Family id supplied at launch.
    #[serde(with = "hex_serde")]
    pub family_id: [u8; 16],
    /// Image id supplied at launch.
    #[serde(with = "hex_serde")]
    pub image_id: [u8; 16],
    /// The VMPL the report was requested from.
    pub vmpl: u32,
    /// Data the host supplied at launch (HOST_DATA).
    #[serde(with = "hex_serde")]
    pub host_data: [u8; 32],
    /// SHA-384 digest of the ID key that signed the ID block, zero if none.
    #[serde(with = "hex_serde")]
    pub id_key_digest: [u8; 48],
    /// SHA-384 digest of the author key, zero if none.
    #[serde(with = "hex_serde")]
    pub author_key_digest: [u8; 48],
    /// Report id of the guest.
    #[serde(with = "hex_serde")]
    pub report_id: [u8; 32],
    /// Chip id (zeroes when masked or for VLEK-signed reports).
    #[serde(with = "hex_serde")]
    pub chip_id: [u8; 64],
    /// The TCB the report (and its VCEK) is bound to.
    pub reported_tcb: SnpTcb,
    /// The platform's current TCB.
    pub current_tcb: SnpTcb,
    /// The committed TCB (anti-rollback floor).
    pub committed_tcb: SnpTcb,
    /// The TCB when the guest was launched.
    pub launch_tcb: SnpTcb,
    /// Platform information flags (bit 0: SMT enabled, bit 1: TSME enabled, …).
    pub platform_info: u64,
    /// Which key signed: `vcek`, `vlek`, or `none`.
    pub signing_key: String,
}

/// Fields of a simulation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimFields {
    /// The simulation platform's Ed25519 public key.
    #[serde(with = "hex_serde")]
    pub platform_key: [u8; 32],
    /// The launcher's config id (version-2 reports), like TDX MRCONFIGID or SNP HOST_DATA.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "hex_serde::option"
    )]
    pub config_id: Option<[u8; 48]>,
    /// Always true: the claims come from software, not hardware.
    pub simulation: bool,
}
