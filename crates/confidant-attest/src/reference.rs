//! Reference values: what verified claims must match before a workload is trusted.
//!
//! Authenticity (signatures, certificate chains, revocation) is the verifiers' job; this module
//! decides whether authentic claims are the *right* ones: the expected code, signer, versions,
//! TCB level, debug mode and per-TEE launch fields. Every difference is reported as a
//! [`Mismatch`] naming the field, what was expected and what was found.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::claims::{Claims, SnpTcb, TeeFields};
use crate::tee::Tee;

/// One field whose value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The claim, with its path (`tdx.rtmr_3`, `tcb_status`, …).
    pub field: String,
    /// What the reference values accept.
    pub expected: String,
    /// What the evidence claims.
    pub got: String,
}

impl Mismatch {
    /// Builds a mismatch.
    pub fn new(
        field: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Mismatch {
            field: field.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.field, self.expected, self.got
        )
    }
}

/// A byte string written as hex in reference-value files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct HexBytes(
    #[serde(with = "crate::hex_serde")]
    #[schemars(with = "String")]
    pub Vec<u8>,
);

impl HexBytes {
    fn matches(&self, got: &[u8]) -> bool {
        self.0 == got
    }
}

/// TCB statuses accepted when reference values do not say otherwise: the platform is patched,
/// possibly pending configuration or software hardening that the relying party is told about as
/// a warning. `OutOfDate*`, `Revoked` and `TDRelaunchAdvised*` are refused.
pub const DEFAULT_ACCEPTED_TCB_STATUSES: [&str; 4] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
];

/// What verified claims must match. All fields are optional; an empty set of reference values
/// still refuses debug TEEs and unacceptable TCB statuses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValues {
    /// The TEE the evidence must come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<Tee>,
    /// Accepted launch measurements (any one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<HexBytes>,
    /// The required signer (MRSIGNER, MRSIGNER_SEAM, SNP ID key digest, sim platform key digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<HexBytes>,
    /// The required product id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<u32>,
    /// The lowest accepted security version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_svn: Option<u32>,
    /// Whether a TEE in debug mode is acceptable (default: no).
    #[serde(default)]
    pub allow_debug: bool,
    /// Exact report data, when the caller knows it in advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_data: Option<HexBytes>,
    /// TCB status and advisory policy (Intel DCAP).
    #[serde(default)]
    pub tcb: TcbPolicy,
    /// TDX-specific values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxReference>,
    /// SEV-SNP-specific values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpReference>,
    /// Simulation launch values (the config id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimReference>,
}

/// Simulation launch values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimReference {
    /// Accepted config ids (version-2 reports): any of them; empty: not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_ids: Vec<HexBytes>,
}

/// Which Intel TCB statuses and advisories are acceptable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcbPolicy {
    /// Accepted statuses; default [`DEFAULT_ACCEPTED_TCB_STATUSES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_statuses: Option<Vec<String>>,
    /// When set, every advisory that applies must be in this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_advisories: Option<Vec<String>>,
    /// Advisories that are never acceptable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_advisories: Vec<String>,
}

/// TDX launch and runtime values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TdxReference {
    /// Runtime measurement register 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr_0: Option<HexBytes>,
    /// Runtime measurement register 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr_1: Option<HexBytes>,
    /// Runtime measurement register 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr_2: Option<HexBytes>,
    /// Runtime measurement register 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr_3: Option<HexBytes>,
    /// MRCONFIGID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<HexBytes>,
    /// MROWNER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner: Option<HexBytes>,
    /// MROWNERCONFIG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner_config: Option<HexBytes>,
    /// Accepted TDX module measurements (any one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mr_seam: Vec<HexBytes>,
    /// Exact XFAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<HexBytes>,
}

/// SEV-SNP launch values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnpReference {
    /// HOST_DATA supplied at launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<HexBytes>,
    /// Author key digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_key_digest: Option<HexBytes>,
    /// Family id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<HexBytes>,
    /// Image id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<HexBytes>,
    /// The exact guest policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_policy: Option<u64>,
    /// Whether the guest policy may allow SMT (policy bit 16); unset: either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_smt: Option<bool>,
    /// Whether a migration agent may be associated (policy bit 18); unset: either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_migration_agent: Option<bool>,
    /// The highest accepted VMPL the report came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vmpl: Option<u32>,
    /// The lowest accepted reported TCB, component by component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tcb: Option<SnpTcb>,
}

/// SNP guest policy bit: SMT allowed.
pub const SNP_POLICY_SMT: u64 = 1 << 16;
/// SNP guest policy bit: migration agent allowed.
pub const SNP_POLICY_MIGRATE_MA: u64 = 1 << 18;
/// SNP guest policy bit: debugging allowed.
pub const SNP_POLICY_DEBUG: u64 = 1 << 19;

/// The outcome of matching claims against reference values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appraisal {
    /// Every field that did not match; empty means accepted.
    pub mismatches: Vec<Mismatch>,
    /// Accepted, but worth telling the operator (TCB needs hardening, simulation, …).
    pub warnings: Vec<String>,
}

impl Appraisal {
    /// True when nothing mismatched.
    pub fn accepted(&self) -> bool {
        self.mismatches.is_empty()
    }
}

fn hex_list(v: &[HexBytes]) -> String {
    let items: Vec<String> = v.iter().map(|h| hex::encode(&h.0)).collect();
    if items.len() == 1 {
        items.into_iter().next().unwrap_or_default()
    } else {
        format!("one of [{}]", items.join(", "))
    }
}

/// The warning every appraisal that accepted a debug TEE (`allow_debug`) carries, and every
/// output shows, as it shows SIMULATION.
pub const DEBUG_WARNING: &str = "DEBUG TEE: the evidence comes from a TEE in debug mode (accepted by allow_debug): its host can read and change its memory, so nothing in it is confidential";

impl ReferenceValues {
    /// Parses reference values from JSON.
    pub fn from_json(text: &str) -> Result<ReferenceValues, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Matches verified claims; reports every mismatch, not only the first.
    pub fn appraise(&self, claims: &Claims) -> Appraisal {
        let mut a = Appraisal::default();
        let m = &mut a.mismatches;
        if !claims.verified {
            m.push(Mismatch::new(
                "verified",
                "true",
                "false (claims were only parsed)",
            ));
        }
        if let Some(tee) = self.tee
            && tee != claims.tee
        {
            m.push(Mismatch::new("tee", tee.as_str(), claims.tee.as_str()));
        }
        if claims.tee.is_simulation() {
            a.warnings.push(
                "SIMULATION: evidence signed by a software platform key, not TEE hardware".into(),
            );
        }
        if !self.measurements.is_empty()
            && !self
                .measurements
                .iter()
                .any(|h| h.matches(&claims.measurement))
        {
            m.push(Mismatch::new(
                "measurement",
                hex_list(&self.measurements),
                hex::encode(&claims.measurement),
            ));
        }
        if let Some(signer) = &self.signer {
            let got = claims.signer.as_deref().unwrap_or_default();
            if !signer.matches(got) {
                m.push(Mismatch::new(
                    "signer",
                    hex::encode(&signer.0),
                    hex::encode(got),
                ));
            }
        }
        if let Some(pid) = self.product_id
            && claims.product_id != Some(pid)
        {
            m.push(Mismatch::new(
                "product_id",
                pid.to_string(),
                opt(claims.product_id),
            ));
        }
        if let Some(min) = self.min_svn
            && claims.svn.is_none_or(|s| s < min)
        {
            m.push(Mismatch::new("svn", format!(">= {min}"), opt(claims.svn)));
        }
        if claims.debug && !self.allow_debug {
            m.push(Mismatch::new(
                "debug",
                "false (allow_debug is not set)",
                "true",
            ));
        }
        if claims.debug && self.allow_debug {
            a.warnings.push(DEBUG_WARNING.to_string());
        }
        if let Some(rd) = &self.report_data
            && !rd.matches(&claims.report_data)
        {
            m.push(Mismatch::new(
                "report_data",
                hex::encode(&rd.0),
                hex::encode(claims.report_data),
            ));
        }
        self.appraise_tcb(claims, &mut a);
        match &claims.fields {
            TeeFields::Tdx(t) => {
                if let Some(r) = &self.tdx {
                    let pairs: [(&str, &Option<HexBytes>, &[u8]); 8] = [
                        ("tdx.rtmr_0", &r.rtmr_0, &t.rtmr_0),
                        ("tdx.rtmr_1", &r.rtmr_1, &t.rtmr_1),
                        ("tdx.rtmr_2", &r.rtmr_2, &t.rtmr_2),
                        ("tdx.rtmr_3", &r.rtmr_3, &t.rtmr_3),
                        ("tdx.mr_config_id", &r.mr_config_id, &t.mr_config_id),
                        ("tdx.mr_owner", &r.mr_owner, &t.mr_owner),
                        (
                            "tdx.mr_owner_config",
                            &r.mr_owner_config,
                            &t.mr_owner_config,
                        ),
                        ("tdx.xfam", &r.xfam, &t.xfam),
                    ];
                    for (field, want, got) in pairs {
                        if let Some(want) = want
                            && !want.matches(got)
                        {
                            a.mismatches.push(Mismatch::new(
                                field,
                                hex::encode(&want.0),
                                hex::encode(got),
                            ));
                        }
                    }
                    if !r.mr_seam.is_empty() && !r.mr_seam.iter().any(|h| h.matches(&t.mr_seam)) {
                        a.mismatches.push(Mismatch::new(
                            "tdx.mr_seam",
                            hex_list(&r.mr_seam),
                            hex::encode(t.mr_seam),
                        ));
                    }
                }
            }
            TeeFields::Snp(s) => {
                if let Some(r) = &self.snp {
                    appraise_snp(r, s, &mut a.mismatches);
                }
            }
            TeeFields::Sim(f) => {
                if let Some(r) = &self.sim
                    && !r.config_ids.is_empty()
                {
                    let got = f
                        .config_id
                        .map(hex::encode)
                        .unwrap_or_else(|| "none (a version-1 report without config id)".into());
                    if !f
                        .config_id
                        .is_some_and(|c| r.config_ids.iter().any(|h| h.matches(&c)))
                    {
                        a.mismatches.push(Mismatch::new(
                            "sim.config_id",
                            hex_list(&r.config_ids),
                            got,
                        ));
                    }
                }
            }
            TeeFields::Sgx(_) => {}
        }
        if self.tdx.is_some() && !matches!(claims.fields, TeeFields::Tdx(_)) {
            a.mismatches.push(Mismatch::new(
                "tee",
                "tdx (reference values have a tdx section)",
                claims.tee.as_str(),
            ));
        }
        if self.sim.is_some() && !matches!(claims.fields, TeeFields::Sim(_)) {
            a.mismatches.push(Mismatch::new(
                "tee",
                "sim (reference values have a sim section)",
                claims.tee.as_str(),
            ));
        }
        if self.snp.is_some() && !matches!(claims.fields, TeeFields::Snp(_)) {
            a.mismatches.push(Mismatch::new(
                "tee",
                "snp (reference values have an snp section)",
                claims.tee.as_str(),
            ));
        }
        a
    }

    fn appraise_tcb(&self, claims: &Claims, a: &mut Appraisal) {
        let Some(status) = &claims.tcb_status else {
            return;
        };
        let accepted: Vec<&str> = match &self.tcb.accepted_statuses {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_ACCEPTED_TCB_STATUSES.to_vec(),
        };
        if !accepted.contains(&status.as_str()) {
            a.mismatches.push(Mismatch::new(
                "tcb_status",
                format!("one of [{}]", accepted.join(", ")),
                status.clone(),
            ));
        } else if status != "UpToDate" {
            a.warnings.push(format!(
                "TCB status is {status}: the platform needs attention"
            ));
        }
        if let Some(allowed) = &self.tcb.accepted_advisories {
            let extra: Vec<&String> = claims
                .advisory_ids
                .iter()
                .filter(|id| !allowed.contains(id))
                .collect();
            if !extra.is_empty() {
                a.mismatches.push(Mismatch::new(
                    "advisory_ids",
                    format!("only [{}]", allowed.join(", ")),
                    format!("{extra:?} too"),
                ));
            }
        }
        let bad: Vec<&String> = claims
            .advisory_ids
            .iter()
            .filter(|id| self.tcb.rejected_advisories.contains(id))
            .collect();
        if !bad.is_empty() {
            a.mismatches.push(Mismatch::new(
                "advisory_ids",
                format!("none of [{}]", self.tcb.rejected_advisories.join(", ")),
                format!("{bad:?}"),
            ));
        }
        if !claims.advisory_ids.is_empty() && a.mismatches.iter().all(|m| m.field != "advisory_ids")
        {
            a.warnings.push(format!(
                "advisories apply: {}",
                claims.advisory_ids.join(", ")
            ));
        }
    }
}

fn appraise_snp(r: &SnpReference, s: &crate::claims::SnpFields, m: &mut Vec<Mismatch>) {
    let pairs: [(&str, &Option<HexBytes>, &[u8]); 4] = [
        ("snp.host_data", &r.host_data, &s.host_data),
        (
            "snp.author_key_digest",
            &r.author_key_digest,
            &s.author_key_digest,
        ),
        ("snp.family_id", &r.family_id, &s.family_id),
        ("snp.image_id", &r.image_id, &s.image_id),
    ];
    for (field, want, got) in pairs {
        if let Some(want) = want
            && !want.matches(got)
        {
            m.push(Mismatch::new(field, hex::encode(&want.0), hex::encode(got)));
        }
    }
    if let Some(p) = r.guest_policy
        && p != s.guest_policy
    {
        m.push(Mismatch::new(
            "snp.guest_policy",
            format!("{p:#x}"),
            format!("{:#x}", s.guest_policy),
        ));
    }
    let bit = |field: &str, allow: Option<bool>, mask: u64, m: &mut Vec<Mismatch>| {
        if allow == Some(false) && s.guest_policy & mask != 0 {
            m.push(Mismatch::new(
                field,
                "bit clear",
                format!("set in guest policy {:#x}", s.guest_policy),
            ));
        }
    };
    bit("snp.guest_policy.smt", r.allow_smt, SNP_POLICY_SMT, m);
    bit(
        "snp.guest_policy.migrate_ma",
        r.allow_migration_agent,
        SNP_POLICY_MIGRATE_MA,
        m,
    );
    if let Some(max) = r.max_vmpl
        && s.vmpl > max
    {
        m.push(Mismatch::new(
            "snp.vmpl",
            format!("<= {max}"),
            s.vmpl.to_string(),
        ));
    }
    if let Some(min) = &r.min_tcb {
        let got = &s.reported_tcb;
        let comps = [
            ("bootloader", min.bootloader, got.bootloader),
            ("tee", min.tee, got.tee),
            ("snp", min.snp, got.snp),
            ("microcode", min.microcode, got.microcode),
        ];
        for (name, want, have) in comps {
            if have < want {
                m.push(Mismatch::new(
                    format!("snp.reported_tcb.{name}"),
                    format!(">= {want}"),
                    have.to_string(),
                ));
            }
        }
        if let Some(want) = min.fmc {
            let have = got.fmc.unwrap_or(0);
            if have < want {
                m.push(Mismatch::new(
                    "snp.reported_tcb.fmc",
                    format!(">= {want}"),
                    have.to_string(),
                ));
            }
        }
    }
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimPlatform, SimReportBody};

    fn sim_claims(config_id: [u8; 48]) -> Claims {
        sim_claims_debug(config_id, false)
    }

    fn sim_claims_debug(config_id: [u8; 48], debug: bool) -> Claims {
        let p = SimPlatform::generate().unwrap();
        p.sign(SimReportBody {
            debug,
            product_id: 0,
            svn: 0,
            measurement: [1; 48],
            config_id,
            report_data: [0; 64],
        })
        .claims(true)
    }

    #[test]
    fn sim_config_ids_are_matched() {
        let rv = ReferenceValues {
            sim: Some(SimReference {
                config_ids: vec![HexBytes(vec![7; 48])],
            }),
            ..ReferenceValues::default()
        };
        assert!(rv.appraise(&sim_claims([7; 48])).accepted());
        let other = rv.appraise(&sim_claims([8; 48]));
        assert_eq!(other.mismatches[0].field, "sim.config_id");
        let none = rv.appraise(&sim_claims([0; 48]));
        assert!(none.mismatches[0].got.starts_with("none"), "{none:?}");
    }

    #[test]
    fn a_debug_tee_is_refused_or_accepted_with_a_warning() {
        let debug = sim_claims_debug([0; 48], true);
        let refused = ReferenceValues::default().appraise(&debug);
        assert_eq!(refused.mismatches[0].field, "debug");
        assert!(refused.warnings.iter().all(|w| w != DEBUG_WARNING));
        let allowed = ReferenceValues {
            allow_debug: true,
            ..ReferenceValues::default()
        }
        .appraise(&debug);
        assert!(allowed.accepted(), "{allowed:?}");
        assert!(allowed.warnings.iter().any(|w| w == DEBUG_WARNING));
        // Without debug, no such warning.
        let production = ReferenceValues {
            allow_debug: true,
            ..ReferenceValues::default()
        }
        .appraise(&sim_claims([0; 48]));
        assert!(production.warnings.iter().all(|w| w != DEBUG_WARNING));
    }
}
