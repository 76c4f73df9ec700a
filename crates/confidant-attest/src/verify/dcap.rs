//! Intel DCAP: SGX and TDX ECDSA quotes, verified with dcap-qvl against Intel's root of trust.
//!
//! Collateral (PCK CRL, root CA CRL, TCB info, QE identity and their issuer chains) is given
//! offline in dcap-qvl's JSON form; nothing is fetched at verify time. The verdict is as of the
//! caller's `now`, so expired collateral is refused however valid it once was.

use std::time::SystemTime;

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::configs::RingConfig;
use dcap_qvl::quote::{Quote, Report};
use dcap_qvl::verify::QuoteVerifier;

use crate::claims::{Claims, InspectedClaims, SgxFields, TdxFields, TeeFields};
use crate::error::{Error, Result};
use crate::evidence::Evidence;
use crate::tee::Tee;

use super::{Verifier, unix_secs};

/// Parsed DCAP collateral, ready for repeated verification.
pub type Collateral = QuoteCollateralV3;

/// Parses collateral in dcap-qvl's JSON form.
pub fn parse_collateral(json: &serde_json::Value) -> Result<Collateral> {
    serde_json::from_value(json.clone())
        .map_err(|e| Error::malformed("DCAP collateral", e.to_string()))
}

/// Parses collateral from JSON text.
pub fn parse_collateral_str(text: &str) -> Result<Collateral> {
    serde_json::from_str(text).map_err(|e| Error::malformed("DCAP collateral", e.to_string()))
}

/// The TEE a DCAP quote claims to come from, after a full parse.
pub fn parse_quote(raw: &[u8]) -> Result<(Tee, Quote)> {
    let quote = Quote::parse(raw).map_err(|e| Error::malformed("DCAP quote", format!("{e:#}")))?;
    let tee = if quote.report.is_sgx() {
        Tee::Sgx
    } else {
        Tee::Tdx
    };
    Ok((tee, quote))
}

/// Verifies SGX and TDX quotes.
pub struct DcapVerifier {
    inner: QuoteVerifier<RingConfig>,
}

impl Default for DcapVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl DcapVerifier {
    /// A verifier trusting Intel's SGX root CA (the production root).
    pub fn new() -> Self {
        DcapVerifier {
            // Debug TEEs are authentic evidence; whether they are acceptable is decided by
            // reference values (`allow_debug`), which say why when they refuse.
            inner: QuoteVerifier::new_prod()
                .with_config::<RingConfig>()
                .allow_debug(true),
        }
    }

    /// A verifier trusting another root CA (DER), for test roots or private PKIs.
    pub fn with_root_ca(root_ca_der: Vec<u8>) -> Self {
        DcapVerifier {
            inner: QuoteVerifier::new_with_config(root_ca_der).allow_debug(true),
        }
    }

    /// Verifies a raw quote against already-parsed collateral as of `now`.
    pub fn verify_quote(
        &self,
        raw: &[u8],
        collateral: &Collateral,
        now: SystemTime,
    ) -> Result<Claims> {
        let (tee, _) = parse_quote(raw)?;
        let now = unix_secs(now);
        // dcap-qvl enforces the same TCB info and QE identity windows (same fields, same RFC 3339
        // parser, same bounds), so the window check only runs once it has refused: the verdict is
        // unchanged, the better message still wins, and the accepting path does not parse both
        // JSON documents a second time (~5-9% of a verification).
        let report = self.inner.verify(raw, collateral, now).map_err(|e| {
            match check_collateral_window(tee, collateral, now) {
                Err(window) => window,
                Ok(()) => Error::rejected(tee, humanize_times(&format!("{e:#}"))),
            }
        })?;
        let mut claims = report_claims(tee, quote_version(raw), &report.report, true);
        claims.tcb_status = Some(report.status.clone());
        claims.advisory_ids = report.advisory_ids.clone();
        Ok(claims)
    }
}

impl Verifier for DcapVerifier {
    fn tee(&self) -> Tee {
        Tee::Tdx
    }

    fn verify(&self, evidence: &Evidence, now: SystemTime) -> Result<Claims> {
        let (tee, _) = parse_quote(&evidence.evidence)?;
        if tee != evidence.tee {
            return Err(Error::malformed(
                "DCAP quote",
                format!(
                    "evidence says {} but the quote is a {tee} quote",
                    evidence.tee
                ),
            ));
        }
        let json = evidence
            .endorsements
            .collateral
            .as_ref()
            .ok_or(Error::MissingEndorsement {
                tee,
                what: "collateral",
                hint: "pass --collateral FILE (dcap-qvl's JSON collateral for this platform)",
            })?;
        let collateral = parse_collateral(json)?;
        self.verify_quote(&evidence.evidence, &collateral, now)
    }
}

/// Refuses collateral whose TCB info or QE identity is not valid at `now`, naming the window.
///
/// dcap-qvl checks this too; checking when it refuses lets the error say which document and which
/// dates.
fn check_collateral_window(tee: Tee, c: &Collateral, now: u64) -> Result<()> {
    for (name, json) in [("TCB info", &c.tcb_info), ("QE identity", &c.qe_identity)] {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::malformed("DCAP collateral", format!("{name} is not JSON: {e}")))?;
        let date = |field: &str| -> Result<u64> {
            let text = v[field].as_str().ok_or_else(|| {
                Error::malformed("DCAP collateral", format!("{name} has no {field} string"))
            })?;
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .and_then(|t| u64::try_from(t.timestamp()).ok())
                .ok_or_else(|| {
                    Error::malformed(
                        "DCAP collateral",
                        format!("{name} {field} {text:?} is not an RFC 3339 time"),
                    )
                })
        };
        let (issue, next) = (date("issueDate")?, date("nextUpdate")?);
        if now < issue || now > next {
            return Err(Error::rejected(
                tee,
                format!(
                    "collateral not valid at {}: {name} is valid from {} to {} (fetch fresh collateral, \
                     or verify --at a time inside that window)",
                    rfc3339(now),
                    rfc3339(issue),
                    rfc3339(next)
                ),
            ));
        }
    }
    Ok(())
}

/// Unix seconds as [`crate::time::rfc3339`] prints them.
fn rfc3339(secs: u64) -> String {
    std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(secs))
        .map_or_else(|| format!("{secs} (Unix seconds)"), crate::time::rfc3339)
}

/// Rewrites webpki's `UnixTime(1775215317)` in error messages as RFC 3339 times.
fn humanize_times(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("UnixTime(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "UnixTime(".len()..];
        match after
            .find(')')
            .and_then(|j| after[..j].parse::<u64>().ok().map(|n| (j, n)))
        {
            Some((j, n)) => {
                out.push_str(&rfc3339(n));
                rest = &after[j + 1..];
            }
            None => {
                out.push_str("UnixTime(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn quote_version(raw: &[u8]) -> u16 {
    u16::from_le_bytes([raw[0], raw[1]])
}

/// What a quote says, without verifying it ([`InspectedClaims`]).
pub fn inspect(raw: &[u8]) -> Result<InspectedClaims> {
    let (tee, quote) = parse_quote(raw)?;
    Ok(InspectedClaims::new(report_claims(
        tee,
        quote.header.version,
        &quote.report,
        false,
    )))
}

fn report_claims(tee: Tee, quote_version: u16, report: &Report, verified: bool) -> Claims {
    if let Some(r) = report.as_sgx() {
        return Claims {
            tee,
            verified,
            measurement: r.mr_enclave.to_vec(),
            signer: Some(r.mr_signer.to_vec()),
            product_id: Some(r.isv_prod_id.into()),
            svn: Some(r.isv_svn.into()),
            // SECS.ATTRIBUTES.DEBUG is bit 1 of the flags.
            debug: r.attributes[0] & 0x02 != 0,
            tcb_status: None,
            advisory_ids: Vec::new(),
            report_data: r.report_data,
            fields: TeeFields::Sgx(SgxFields {
                mr_enclave: r.mr_enclave,
                mr_signer: r.mr_signer,
                isv_prod_id: r.isv_prod_id,
                isv_svn: r.isv_svn,
                attributes: r.attributes,
                misc_select: r.misc_select,
                cpu_svn: r.cpu_svn,
                quote_version,
            }),
        };
    }
    let td = report.as_td10().expect("a DCAP report is either SGX or TD");
    Claims {
        tee,
        verified,
        measurement: td.mr_td.to_vec(),
        signer: Some(td.mr_signer_seam.to_vec()),
        product_id: None,
        svn: None,
        // TDATTRIBUTES.DEBUG is bit 0.
        debug: td.td_attributes[0] & 0x01 != 0,
        tcb_status: None,
        advisory_ids: Vec::new(),
        report_data: td.report_data,
        fields: TeeFields::Tdx(TdxFields {
            mr_td: td.mr_td,
            rtmr_0: td.rt_mr0,
            rtmr_1: td.rt_mr1,
            rtmr_2: td.rt_mr2,
            rtmr_3: td.rt_mr3,
            mr_config_id: td.mr_config_id,
            mr_owner: td.mr_owner,
            mr_owner_config: td.mr_owner_config,
            mr_seam: td.mr_seam,
            mr_signer_seam: td.mr_signer_seam,
            seam_attributes: td.seam_attributes,
            td_attributes: td.td_attributes,
            xfam: td.xfam,
            tee_tcb_svn: td.tee_tcb_svn,
            mr_service_td: report.as_td15().map(|r| r.mr_service_td),
            quote_version,
        }),
    }
}
