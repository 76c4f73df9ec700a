//! AMD SEV-SNP: attestation reports signed by a VCEK or VLEK, verified up to AMD's root keys.
//!
//! Verification, in order. Structure is checked before any signature, so that what [`inspect`]
//! calls malformed is malformed here too ([`Error::Malformed`]); nothing in the report is
//! *trusted* before its signature verifies:
//!
//! 1. The report parses as [`inspect`] parses it: exactly 1184 bytes, VERSION 2 to 5, a defined
//!    KEY_INFO.SIGNING_KEY, and (version 3 on) the CPUID of an SEV-SNP processor.
//! 2. The endorsements parse: the VCEK (or VLEK), DER or PEM, or a PEM bundle of the VCEK followed
//!    by its ASK (or ASVK) and ARK (as Azure serves them); its TCB and hwID extensions; the chain
//!    given as `cert_chain`. A bundle's chain and a `cert_chain` must be the same certificates.
//! 3. The CA chain is the given one (from the bundle or `cert_chain`) or, for a VCEK, the one built
//!    into the `sev` crate for the generation named by the VCEK's issuer (`SEV-Milan`,
//!    `SEV-Genoa`, `SEV-Turin`). A given chain must end at the public key of a built-in AMD ARK,
//!    wherever it came from; a VLEK's ASVK is not built in and must be given.
//! 4. ARK → ASK (or ASVK) → VCEK (or VLEK) signatures, names, and validity as of `now`.
//! 5. The report signature (ECDSA P-384, SHA-384) over bytes `0x000..0x2A0`, with the VCEK's key.
//! 6. The authenticated report: its signing-key field against the certificate kind, its CPUID
//!    generation against the ARK's, its REPORTED_TCB against the VCEK's TCB extensions, and its
//!    CHIP_ID against the VCEK's hwID.
//!
//! Whether the (authentic) launch measurement, policy, host data and TCB are *acceptable* is for
//! [`crate::ReferenceValues`] to decide.

mod certs;
mod endorsements;
mod report;

use std::time::SystemTime;

use ring::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use x509_cert::Certificate;

use crate::claims::{Claims, InspectedClaims, SnpFields, SnpTcb, TeeFields};
use crate::error::{Error, Result};
use crate::evidence::Evidence;
use crate::reference::SNP_POLICY_DEBUG;
use crate::tee::Tee;

use self::certs::{BuiltinChain, CertifiedTcb, VekExtensions, name_label};
use self::endorsements::{GivenEndorsements, ca_role};
use self::report::Report;
pub use self::report::{Generation, SigningKey};

use super::{Verifier, unix_secs};

/// Where the ASK (or ASVK) and ARK of a verification came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainSource {
    /// Given with the evidence (`cert_chain`, or after the VCEK in a PEM bundle), its ARK
    /// matched to a built-in AMD root.
    Given,
    /// Built into the `sev` crate, selected by the VCEK's issuer.
    BuiltIn,
}

/// The outcome of a successful SNP verification, with what [`Claims`] cannot say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpVerification {
    /// The verified claims (`verified: true`).
    pub claims: Claims,
    /// The processor generation whose AMD root the signing key chains to.
    pub generation: Generation,
    /// Which key signed the report.
    pub signing_key: SigningKey,
    /// Where the CA certificates came from.
    pub chain: ChainSource,
    /// Checks that could not be made, and why (e.g. a masked CHIP_ID).
    pub notes: Vec<String>,
}

/// Verifies SEV-SNP attestation reports against AMD's built-in roots (Milan, Genoa, Turin).
#[derive(Debug)]
pub struct SnpVerifier {
    /// The built-in ARK and ASK of each generation, or why they could not be read.
    builtins: std::result::Result<Vec<BuiltinChain>, String>,
}

impl Default for SnpVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl SnpVerifier {
    /// A verifier trusting AMD's built-in roots.
    pub fn new() -> Self {
        SnpVerifier {
            builtins: certs::builtin_chains(),
        }
    }

    fn builtins(&self) -> Result<&[BuiltinChain]> {
        self.builtins
            .as_deref()
            .map_err(|e| Error::Crypto(e.clone()))
    }

    /// Verifies SNP evidence as of `now` and says how (generation, key, chain, notes).
    pub fn verify_detailed(&self, evidence: &Evidence, now: SystemTime) -> Result<SnpVerification> {
        if evidence.tee != Tee::Snp {
            return Err(Error::malformed(
                "evidence",
                format!(
                    "evidence says {} but this verifier checks snp",
                    evidence.tee
                ),
            ));
        }
        // Structure first, exactly as `inspect` checks it: a report that does not parse is
        // malformed whatever the endorsements, and is never judged by a signature. Its fields are
        // only trusted (and read again, with the TCB layout of the root it chains to) below, once
        // the signature verifies.
        let raw = report::exact(&evidence.evidence)?;
        let unverified = Report::parse(raw, None)?;
        let GivenEndorsements {
            vek,
            kind,
            extensions,
            chain: given_chain,
        } = GivenEndorsements::parse(&evidence.endorsements)?;
        let chain = self.chain_for(&vek, kind, given_chain)?;
        check_chain(&vek, kind, &chain, unix_secs(now))?;
        check_report_signature(raw, &unverified, &vek, kind, &extensions)?;

        let report = Report::parse(raw, Some(chain.generation))?;
        let mut notes = Vec::new();
        check_report_against_certificate(&report, kind, &extensions, chain.generation, &mut notes)?;
        Ok(SnpVerification {
            claims: claims(&report, true),
            generation: chain.generation,
            signing_key: kind,
            chain: chain.source,
            notes,
        })
    }

    /// The CA certificates for `vek`: the given chain (ARK pinned to a built-in root) or the
    /// built-in chain its issuer names.
    fn chain_for(
        &self,
        vek: &Certificate,
        kind: SigningKey,
        given: Option<(Certificate, Certificate)>,
    ) -> Result<CaChain> {
        let builtins = self.builtins()?;
        if let Some((ask, ark)) = given {
            // A given ARK is never trusted for being given: only its key's match with a
            // built-in AMD root makes it one.
            let spki = &ark.tbs_certificate.subject_public_key_info;
            let root = builtins
                .iter()
                .find(|b| &b.ark.tbs_certificate.subject_public_key_info == spki)
                .ok_or_else(|| {
                    Error::rejected(
                        Tee::Snp,
                        format!(
                            "the given chain's ARK ({}) is not one of AMD's roots: expected the key \
                             of {}",
                            name_label(&ark.tbs_certificate.subject),
                            builtins
                                .iter()
                                .map(|b| format!("ARK-{}", b.generation))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            return Ok(CaChain {
                generation: root.generation,
                ask,
                ark,
                source: ChainSource::Given,
            });
        }
        if kind == SigningKey::Vlek {
            return Err(Error::MissingEndorsement {
                tee: Tee::Snp,
                what: "the ASVK and ARK that certify the VLEK (no ASVK is built in)",
                hint: "pass --chain FILE (PEM: ASVK then ARK, from AMD KDS /vlek/v1/{product}/cert_chain)",
            });
        }
        let builtin = certs::issuer_generation(vek)
            .and_then(|g| builtins.iter().find(|b| b.generation == g))
            .ok_or(Error::MissingEndorsement {
                tee: Tee::Snp,
                what: "the ASK and ARK that certify the VCEK (its issuer is not a built-in AMD \
                       signing key: SEV-Milan, SEV-Genoa or SEV-Turin)",
                hint: "pass --chain FILE (PEM: ASK then ARK, from AMD KDS /vcek/v1/{product}/cert_chain)",
            })?;
        Ok(CaChain {
            generation: builtin.generation,
            ask: builtin.ask.clone(),
            ark: builtin.ark.clone(),
            source: ChainSource::BuiltIn,
        })
    }
}

impl Verifier for SnpVerifier {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn verify(&self, evidence: &Evidence, now: SystemTime) -> Result<Claims> {
        self.verify_detailed(evidence, now).map(|v| v.claims)
    }
}

/// What a report says, without verifying it ([`InspectedClaims`]).
///
/// The TCB layout is taken from the report's CPUID fields (version 3 and later) or, for
/// version 2, from the shape of CHIP_ID; the signature is not checked.
pub fn inspect(raw: &[u8]) -> Result<InspectedClaims> {
    Ok(InspectedClaims::new(claims(
        &Report::parse(raw, None)?,
        false,
    )))
}

/// The ASK (or ASVK) and ARK a VCEK (or VLEK) is checked against.
struct CaChain {
    generation: Generation,
    ask: Certificate,
    ark: Certificate,
    source: ChainSource,
}

/// ARK → ASK → VEK: names, signatures and validity.
fn check_chain(vek: &Certificate, kind: SigningKey, chain: &CaChain, now: u64) -> Result<()> {
    let reject = |reason: String| Error::rejected(Tee::Snp, reason);
    let vek_role = kind.label();
    let ca_role = ca_role(kind);
    let (ask, ark) = (&chain.ask, &chain.ark);
    if vek.tbs_certificate.issuer != ask.tbs_certificate.subject {
        return Err(reject(format!(
            "the {vek_role} was issued by {} but the chain's {ca_role} is {}",
            name_label(&vek.tbs_certificate.issuer),
            name_label(&ask.tbs_certificate.subject)
        )));
    }
    if ask.tbs_certificate.issuer != ark.tbs_certificate.subject {
        return Err(reject(format!(
            "the {ca_role} was issued by {} but the chain's ARK is {}",
            name_label(&ask.tbs_certificate.issuer),
            name_label(&ark.tbs_certificate.subject)
        )));
    }
    if chain.source == ChainSource::Given {
        // The ARK's key is pinned; its certificate body (validity, names) is checked here.
        certs::signed_by(ark, ark).map_err(|e| {
            reject(format!(
                "the ARK ({}) is not self-signed: {e}",
                name_label(&ark.tbs_certificate.subject)
            ))
        })?;
        certs::signed_by(ark, ask).map_err(|e| {
            reject(format!(
                "the ARK ({}) did not sign the {ca_role} ({}): {e}",
                name_label(&ark.tbs_certificate.subject),
                name_label(&ask.tbs_certificate.subject)
            ))
        })?;
    }
    certs::signed_by(ask, vek).map_err(|e| {
        reject(format!(
            "the {ca_role} ({}) did not sign the {vek_role}: {e}",
            name_label(&ask.tbs_certificate.subject)
        ))
    })?;
    for (role, cert) in [(vek_role, vek), (ca_role, ask), ("ARK", ark)] {
        certs::check_validity(role, cert, now).map_err(reject)?;
    }
    Ok(())
}

/// The report signature over bytes `0x000..0x2A0`, with the VEK's P-384 key.
/// `unverified` (the same bytes, parsed) only serves to say why, when it does not verify.
fn check_report_signature(
    raw: &[u8; crate::evidence::SNP_REPORT_LEN],
    unverified: &Report,
    vek: &Certificate,
    kind: SigningKey,
    ext: &VekExtensions,
) -> Result<()> {
    let label = kind.label();
    let reject = |reason: String| Error::rejected(Tee::Snp, reason);
    let point = certs::p384_point(vek).map_err(|e| reject(format!("the {label}: {e}")))?;
    let sig = report::Signature::from_report(raw).map_err(reject)?;
    if sig.is_zero() && report::raw_signing_key(raw) == 7 {
        return Err(reject(
            "the report is not signed (KEY_INFO.SIGNING_KEY says none and the signature is zero)"
                .into(),
        ));
    }
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
        .verify(report::signed_part(raw), &sig.0)
        .map_err(|_| {
            reject(format!(
                "the report signature does not verify with the {label}'s key: report bytes \
                 0x000..0x2A0 or the signature were altered, or another key signed it{}",
                another_chip_hint(unverified, ext, kind)
            ))
        })
}

/// When a report signature does not verify: says so if the (unauthenticated) CHIP_ID is not the
/// VCEK's hwID, the usual reason being the VCEK of another chip (a bundle or file for another
/// machine). Empty otherwise.
fn another_chip_hint(unverified: &Report, extensions: &VekExtensions, kind: SigningKey) -> String {
    let label = kind.label();
    match &extensions.hw_id {
        Some(hw_id)
            if !unverified.chip_id_masked()
                && check_chip_id(&unverified.chip_id, hw_id, label).is_err() =>
        {
            format!(
                "; the report's CHIP_ID {}… is not the {label}'s hwID {}…: is this the {label} of \
                 another chip?",
                hex::encode(&unverified.chip_id[..8]),
                hex::encode(&hw_id[..hw_id.len().min(8)])
            )
        }
        _ => String::new(),
    }
}

/// Checks the authenticated report against the certificate that signed it.
fn check_report_against_certificate(
    report: &Report,
    kind: SigningKey,
    ext: &VekExtensions,
    generation: Generation,
    notes: &mut Vec<String>,
) -> Result<()> {
    let reject = |reason: String| Error::rejected(Tee::Snp, reason);
    let label = kind.label();
    if report.sig_algo != report::SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(reject(format!(
            "SIGNATURE_ALGO: expected {} (ECDSA P-384 with SHA-384), got {}",
            report::SIG_ALGO_ECDSA_P384_SHA384,
            report.sig_algo
        )));
    }
    if report.signing_key != kind {
        return Err(reject(format!(
            "KEY_INFO.SIGNING_KEY: the report says it was signed by {} but the certificate given \
             is a {label}",
            report.signing_key.label()
        )));
    }
    // A CPUID that names no SEV-SNP processor was refused as malformed before any signature.
    if let Some(g) = report.cpuid_generation()
        && g != generation
    {
        return Err(reject(format!(
            "the report's CPUID names a {g} processor but the {label} chains to ARK-{generation}"
        )));
    }
    check_tcb(&report.reported_tcb, &ext.tcb, label).map_err(reject)?;
    match &ext.hw_id {
        Some(hw_id) if report.chip_id_masked() => notes.push(format!(
            "CHIP_ID is masked (all zero): not compared with the {label}'s hwID {}",
            hex::encode(hw_id)
        )),
        Some(hw_id) => check_chip_id(&report.chip_id, hw_id, label).map_err(reject)?,
        None if kind == SigningKey::Vcek => {
            notes.push("the VCEK has no hwID extension: CHIP_ID not compared".into());
        }
        None => {}
    }
    Ok(())
}

/// REPORTED_TCB must be the TCB the VCEK was derived for, component by component.
fn check_tcb(
    reported: &SnpTcb,
    certified: &CertifiedTcb,
    label: &str,
) -> std::result::Result<(), String> {
    let mut problems = Vec::new();
    let components = [
        (
            "bootloader",
            "blSPL",
            reported.bootloader,
            certified.bootloader,
        ),
        ("tee", "teeSPL", reported.tee, certified.tee),
        ("snp", "snpSPL", reported.snp, certified.snp),
        (
            "microcode",
            "ucodeSPL",
            reported.microcode,
            certified.microcode,
        ),
    ];
    for (name, ext, got, want) in components {
        match want {
            Some(want) if want != got => problems.push(format!(
                "reported_tcb.{name}: expected {want} ({label} {ext}), got {got}"
            )),
            Some(_) => {}
            None => problems.push(format!(
                "reported_tcb.{name}: the {label} has no {ext} extension to compare {got} with"
            )),
        }
    }
    match (reported.fmc, certified.fmc) {
        (Some(got), Some(want)) if got != want => problems.push(format!(
            "reported_tcb.fmc: expected {want} ({label} fmcSPL), got {got}"
        )),
        (Some(got), None) => problems.push(format!(
            "reported_tcb.fmc: the {label} has no fmcSPL extension to compare {got} with"
        )),
        (None, Some(want)) => problems.push(format!(
            "reported_tcb.fmc: the {label} certifies fmcSPL {want} but the report's TCB has no FMC"
        )),
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// CHIP_ID must be the VCEK's hwID (64 bytes, or 8 zero-extended bytes on Turin and later).
fn check_chip_id(chip_id: &[u8; 64], hw_id: &[u8], label: &str) -> std::result::Result<(), String> {
    let n = hw_id.len().min(chip_id.len());
    if chip_id[..n] == *hw_id && chip_id[n..].iter().all(|&b| b == 0) {
        Ok(())
    } else {
        Err(format!(
            "chip_id: expected {} ({label} hwID), got {}",
            hex::encode(hw_id),
            hex::encode(chip_id)
        ))
    }
}

fn claims(r: &Report, verified: bool) -> Claims {
    Claims {
        tee: Tee::Snp,
        verified,
        measurement: r.measurement.to_vec(),
        signer: Some(r.id_key_digest.to_vec()),
        product_id: None,
        svn: Some(r.guest_svn),
        debug: r.policy & SNP_POLICY_DEBUG != 0,
        tcb_status: None,
        advisory_ids: Vec::new(),
        report_data: r.report_data,
        fields: TeeFields::Snp(SnpFields {
            report_version: r.version,
            guest_policy: r.policy,
            family_id: r.family_id,
            image_id: r.image_id,
            vmpl: r.vmpl,
            host_data: r.host_data,
            id_key_digest: r.id_key_digest,
            author_key_digest: r.author_key_digest,
            report_id: r.report_id,
            chip_id: r.chip_id,
            reported_tcb: r.reported_tcb,
            current_tcb: r.current_tcb,
            committed_tcb: r.committed_tcb,
            launch_tcb: r.launch_tcb,
            platform_info: r.platform_info,
            signing_key: r.signing_key.as_str().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcb(bootloader: u8, tee: u8, snp: u8, microcode: u8, fmc: Option<u8>) -> SnpTcb {
        SnpTcb {
            bootloader,
            tee,
            snp,
            microcode,
            fmc,
        }
    }

    fn certified(t: SnpTcb) -> CertifiedTcb {
        CertifiedTcb {
            bootloader: Some(t.bootloader),
            tee: Some(t.tee),
            snp: Some(t.snp),
            microcode: Some(t.microcode),
            fmc: t.fmc,
        }
    }

    #[test]
    fn tcb_equal_to_the_certified_one_passes() {
        let t = tcb(3, 0, 8, 115, None);
        check_tcb(&t, &certified(t), "VCEK").unwrap();
        let t = tcb(3, 0, 8, 115, Some(2));
        check_tcb(&t, &certified(t), "VCEK").unwrap();
    }

    #[test]
    fn tcb_mismatch_names_component_expected_and_got() {
        let err = check_tcb(
            &tcb(3, 0, 9, 115, None),
            &certified(tcb(3, 0, 8, 115, None)),
            "VCEK",
        )
        .unwrap_err();
        assert_eq!(err, "reported_tcb.snp: expected 8 (VCEK snpSPL), got 9");
    }

    #[test]
    fn tcb_mismatch_reports_every_component() {
        let err = check_tcb(
            &tcb(4, 1, 8, 115, Some(1)),
            &certified(tcb(3, 0, 8, 115, Some(2))),
            "VCEK",
        )
        .unwrap_err();
        assert!(err.contains("reported_tcb.bootloader: expected 3"), "{err}");
        assert!(err.contains("reported_tcb.tee: expected 0"), "{err}");
        assert!(
            err.contains("reported_tcb.fmc: expected 2 (VCEK fmcSPL), got 1"),
            "{err}"
        );
    }

    #[test]
    fn tcb_without_certified_component_is_refused() {
        let t = tcb(3, 0, 8, 115, None);
        let mut c = certified(t);
        c.microcode = None;
        let err = check_tcb(&t, &c, "VCEK").unwrap_err();
        assert!(err.contains("no ucodeSPL extension"), "{err}");
    }

    #[test]
    fn fmc_certified_but_not_reported_is_refused() {
        let t = tcb(3, 0, 8, 115, None);
        let mut c = certified(t);
        c.fmc = Some(1);
        let err = check_tcb(&t, &c, "VCEK").unwrap_err();
        assert!(err.contains("has no FMC"), "{err}");
    }

    #[test]
    fn chip_id_must_equal_hw_id() {
        let chip = [7u8; 64];
        check_chip_id(&chip, &[7; 64], "VCEK").unwrap();
        let err = check_chip_id(&chip, &[8; 64], "VCEK").unwrap_err();
        assert!(err.starts_with("chip_id: expected 0808"), "{err}");
    }

    #[test]
    fn turin_hw_id_is_the_zero_extended_chip_id() {
        let mut chip = [0u8; 64];
        chip[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        check_chip_id(&chip, &[1, 2, 3, 4, 5, 6, 7, 8], "VCEK").unwrap();
        chip[20] = 1;
        assert!(check_chip_id(&chip, &[1, 2, 3, 4, 5, 6, 7, 8], "VCEK").is_err());
    }
}
