//! The SEV-SNP verifier against a real Milan report, its VCEK and AMD's Milan chain
//! (`testdata/attestation/snp/`, from virtee/sev's own tests), and against every way of
//! breaking them.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Rng, SAMPLE_TIME, at, read};
use confidant_attest::claims::SnpTcb;
use confidant_attest::reference::{HexBytes, SnpReference};
use confidant_attest::verify::snp::{
    self, ChainSource, Generation, SigningKey, SnpVerification, SnpVerifier,
};
use confidant_attest::{
    Claims, Endorsements, Error, Evidence, ReferenceValues, Tee, TeeFields, Verifier, Verifiers,
};

const REPORT_LEN: usize = 1184;
/// Bytes `0x000..0x2A0` are signed; R and S follow, 72 bytes each.
const SIGNED_LEN: usize = 0x2A0;
const SIGNATURE_END: usize = 0x330;

const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const MILAN_CHIP_ID: &str = "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6";
/// REPORTED_TCB of the Milan report, which its VCEK's SPL extensions certify.
const MILAN_TCB: SnpTcb = SnpTcb {
    bootloader: 3,
    tee: 0,
    snp: 8,
    microcode: 0x73,
    fmc: None,
};

fn report() -> Vec<u8> {
    let text = String::from_utf8(read("snp/report_milan.hex")).expect("hex text");
    hex::decode(text.trim()).expect("hex")
}

fn vcek() -> Vec<u8> {
    read("snp/vcek_milan.der")
}

fn chain() -> String {
    String::from_utf8(read("snp/cert_chain_milan.pem")).expect("PEM text")
}

fn evidence(report: Vec<u8>, vcek: Option<Vec<u8>>, chain: Option<String>) -> Evidence {
    Evidence {
        tee: Tee::Snp,
        evidence: report,
        endorsements: Endorsements {
            collateral: None,
            vcek,
            cert_chain: chain,
        },
    }
}

/// 2025-06-19: inside the VCEK's validity (2023-04-03 to 2030-04-03) and the chain's.
fn now() -> std::time::SystemTime {
    at(SAMPLE_TIME)
}

fn verify(ev: &Evidence) -> confidant_attest::Result<SnpVerification> {
    SnpVerifier::new().verify_detailed(ev, now())
}

fn rejection(result: confidant_attest::Result<SnpVerification>) -> String {
    match result {
        Err(Error::Rejected {
            tee: Tee::Snp,
            reason,
        }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn malformed(result: confidant_attest::Result<impl std::fmt::Debug>) -> (&'static str, String) {
    match result {
        Err(Error::Malformed { what, reason }) => (what, reason),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn pem(der: &[u8]) -> String {
    let body = B64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The DER certificates of a PEM chain, in order.
fn ders(pem_text: &str) -> Vec<Vec<u8>> {
    pem_text
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            B64.decode(body).unwrap()
        })
        .collect()
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

fn snp_fields(claims: &Claims) -> &confidant_attest::claims::SnpFields {
    snp_of(&claims.fields)
}

fn snp_of(fields: &TeeFields) -> &confidant_attest::claims::SnpFields {
    match fields {
        TeeFields::Snp(s) => s,
        other => panic!("expected SNP fields, got {other:?}"),
    }
}

#[test]
fn milan_report_verifies_with_the_given_chain() {
    let v = verify(&evidence(report(), Some(vcek()), Some(chain()))).unwrap();
    assert_eq!(v.generation, Generation::Milan);
    assert_eq!(v.signing_key, SigningKey::Vcek);
    assert_eq!(v.chain, ChainSource::Given);
    assert!(v.notes.is_empty(), "{:?}", v.notes);

    let c = &v.claims;
    assert_eq!(c.tee, Tee::Snp);
    assert!(c.verified);
    assert_eq!(hex::encode(&c.measurement), MILAN_MEASUREMENT);
    assert_eq!(c.signer.as_deref(), Some(&[0u8; 48][..]), "no ID block");
    assert_eq!(c.product_id, None);
    assert_eq!(c.svn, Some(0));
    assert!(!c.debug, "policy 0x30000 has bit 19 clear");
    assert_eq!(c.tcb_status, None);
    assert_eq!(c.report_data, report()[0x50..0x90]);

    let s = snp_fields(c);
    assert_eq!(s.report_version, 2);
    assert_eq!(s.guest_policy, 0x30000);
    assert_eq!(s.vmpl, 0);
    assert_eq!(s.signing_key, "vcek");
    assert_eq!(hex::encode(s.chip_id), MILAN_CHIP_ID);
    assert_eq!(s.reported_tcb, MILAN_TCB);
    assert_eq!(s.current_tcb, MILAN_TCB);
    assert_eq!(s.committed_tcb, MILAN_TCB);
    assert_eq!(s.launch_tcb, MILAN_TCB);
    assert_eq!(s.platform_info, 1, "SMT enabled");
    assert_eq!(s.host_data, [0; 32]);
}

#[test]
fn milan_report_verifies_with_the_builtin_chain_selected_by_the_vcek_issuer() {
    let v = verify(&evidence(report(), Some(vcek()), None)).unwrap();
    assert_eq!(v.chain, ChainSource::BuiltIn);
    assert_eq!(v.generation, Generation::Milan);
    let given = verify(&evidence(report(), Some(vcek()), Some(chain()))).unwrap();
    assert_eq!(v.claims, given.claims);
}

#[test]
fn verifiers_dispatch_snp_evidence_decoded_from_hex_text() {
    let mut ev = Evidence::decode(&read("snp/report_milan.hex"), None).unwrap();
    assert_eq!(ev.tee, Tee::Snp);
    ev.endorsements.vcek = Some(vcek());
    let claims = Verifiers::new().verify(&ev, now()).unwrap();
    assert!(claims.verified);
    assert_eq!(SnpVerifier::new().tee(), Tee::Snp);
}

#[test]
fn inspected_claims_equal_verified_ones_except_verified() {
    let verified = verify(&evidence(report(), Some(vcek()), None))
        .unwrap()
        .claims;
    let inspected = snp::inspect(&report()).unwrap();
    let mut json = serde_json::to_value(&inspected).unwrap();
    assert_eq!(json["verified"], false);
    json["verified"] = true.into();
    assert_eq!(json, serde_json::to_value(&verified).unwrap());
    assert_eq!(
        confidant_attest::inspect(&evidence(report(), None, None)).unwrap(),
        inspected
    );
}

#[test]
fn vcek_in_pem_form_verifies() {
    let vcek_pem = pem(&vcek()).into_bytes();
    verify(&evidence(report(), Some(vcek_pem), None)).unwrap();
}

#[test]
fn chain_given_ark_first_verifies() {
    let certs = ders(&chain());
    assert_eq!(certs.len(), 2);
    let reversed = pem(&certs[1]) + &pem(&certs[0]);
    verify(&evidence(report(), Some(vcek()), Some(reversed))).unwrap();
}

/// The VCEK and its ASK and ARK in one PEM bundle, as Azure's instance metadata serves them.
fn bundle() -> Vec<u8> {
    (pem(&vcek()) + &chain()).into_bytes()
}

#[test]
fn vcek_bundle_verifies_with_the_chain_it_carries() {
    let v = verify(&evidence(report(), Some(bundle()), None)).unwrap();
    assert_eq!(v.chain, ChainSource::Given);
    assert_eq!(v.generation, Generation::Milan);
    let separate = verify(&evidence(report(), Some(vcek()), Some(chain()))).unwrap();
    assert_eq!(v, separate);
}

#[test]
fn vcek_bundle_in_an_envelope_verifies_through_verifiers() {
    // What a coordinator or any other consumer receives: the bundle as the envelope's `vcek`.
    let envelope = serde_json::json!({
        "tee": "snp",
        "evidence": B64.encode(report()),
        "endorsements": {"vcek": B64.encode(bundle())},
    });
    let ev = Evidence::decode(envelope.to_string().as_bytes(), None).unwrap();
    let claims = Verifiers::new().verify(&ev, now()).unwrap();
    assert!(claims.verified);
}

#[test]
fn vcek_bundle_with_ark_before_ask_verifies() {
    let certs = ders(&chain());
    let bundle = pem(&vcek()) + &pem(&certs[1]) + &pem(&certs[0]);
    verify(&evidence(report(), Some(bundle.into_bytes()), None)).unwrap();
}

#[test]
fn vcek_bundle_and_the_same_chain_given_separately_verify() {
    let certs = ders(&chain());
    // The same certificates in another order are the same chain.
    let reversed = pem(&certs[1]) + &pem(&certs[0]);
    let v = verify(&evidence(report(), Some(bundle()), Some(reversed))).unwrap();
    assert_eq!(v.chain, ChainSource::Given);
}

#[test]
fn vcek_bundle_and_a_different_chain_are_a_conflict() {
    let genoa = String::from_utf8_lossy(sev::certs::snp::builtin::genoa::ASK).into_owned()
        + &String::from_utf8_lossy(sev::certs::snp::builtin::genoa::ARK);
    let (what, reason) = malformed(verify(&evidence(report(), Some(bundle()), Some(genoa))));
    assert_eq!(what, "AMD certificate chain");
    assert_eq!(
        reason,
        "the VCEK's PEM bundle and cert_chain give different CA certificates: ASK CN=SEV-Milan, \
         ARK CN=ARK-Milan in the bundle, ASK CN=SEV-Genoa, ARK CN=ARK-Genoa in cert_chain; give \
         the chain once"
    );
}

#[test]
fn vcek_bundle_ark_is_trusted_only_for_its_amd_key() {
    let certs = ders(&chain());
    let mut ark = certs[1].clone();
    // The ARK's RSA modulus altered: a self-signed look-alike that AMD never issued.
    let modulus = position(&ark, &[0x02, 0x82, 0x02, 0x01, 0x00]) + 5;
    ark[modulus + 100] ^= 0x01;
    let forged = pem(&vcek()) + &pem(&certs[0]) + &pem(&ark);
    let reason = rejection(verify(&evidence(report(), Some(forged.into_bytes()), None)));
    assert!(reason.contains("is not one of AMD's roots"), "{reason}");
}

#[test]
fn vcek_bundle_starting_with_a_ca_certificate_is_malformed() {
    let certs = ders(&chain());
    let ask_first = pem(&certs[0]) + &pem(&vcek()) + &pem(&certs[1]);
    let (what, reason) = malformed(verify(&evidence(
        report(),
        Some(ask_first.into_bytes()),
        None,
    )));
    assert_eq!(what, "VCEK/VLEK certificate");
    assert_eq!(
        reason,
        "expected the VCEK or VLEK (first, when a PEM bundle also carries the ASK or ASVK and the \
         ARK), found CN=SEV-Milan, the CA certificate that issued certificate 2 (CN=SEV-VCEK)"
    );
    let ark_first = pem(&certs[1]) + &pem(&certs[0]) + &pem(&vcek());
    let (_, reason) = malformed(verify(&evidence(
        report(),
        Some(ark_first.into_bytes()),
        None,
    )));
    assert!(
        reason.ends_with("found CN=ARK-Milan, a self-issued CA certificate"),
        "{reason}"
    );
}

#[test]
fn vcek_bundle_of_another_chip_is_rejected_naming_the_chip_ids() {
    // Azure's bundle: a real Milan VCEK with the real ASK and ARK, but another chip's VCEK.
    let azure = read("azure/certs.pem");
    let reason = rejection(verify(&evidence(report(), Some(azure), None)));
    assert!(
        reason.starts_with("the report signature does not verify with the VCEK's key"),
        "{reason}"
    );
    // The first 8 bytes of the report's CHIP_ID, then of the Azure VCEK's hwID extension.
    assert!(
        reason.ends_with(
            "the report's CHIP_ID d49554ec717f4e5b… is not the VCEK's hwID da8a5695b5aeafdb…: is \
             this the VCEK of another chip?"
        ),
        "{reason}"
    );
    assert!(MILAN_CHIP_ID.starts_with("d49554ec717f4e5b"));
}

#[test]
fn vcek_bundle_with_a_missing_or_broken_ca_certificate_is_malformed() {
    let certs = ders(&chain());
    let vcek_and_ask = pem(&vcek()) + &pem(&certs[0]);
    let (what, reason) = malformed(verify(&evidence(
        report(),
        Some(vcek_and_ask.into_bytes()),
        None,
    )));
    assert_eq!(what, "AMD certificate chain");
    assert_eq!(
        reason,
        "the certificates after the VCEK in its PEM bundle: expected 2 certificates (the ASK or \
         ASVK, and the ARK), found 1"
    );
    let broken = pem(&vcek()) + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let (what, reason) = malformed(verify(&evidence(report(), Some(broken.into_bytes()), None)));
    assert_eq!(what, "VCEK/VLEK certificate");
    assert!(reason.starts_with("certificate 2: "), "{reason}");
    for garbage in [
        "-----BEGIN CERTIFICATE-----\n",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n",
    ] {
        let (what, _) = malformed(verify(&evidence(
            report(),
            Some(garbage.as_bytes().to_vec()),
            None,
        )));
        assert_eq!(what, "VCEK/VLEK certificate", "{garbage:?}");
    }
}

#[test]
fn rejects_report_with_flipped_signed_byte() {
    let verifier = SnpVerifier::new();
    let good = report();
    for i in 0..SIGNED_LEN {
        for mask in [0x01u8, 0xFF] {
            let mut bad = good.clone();
            bad[i] ^= mask;
            let result =
                verifier.verify_detailed(&evidence(bad.clone(), Some(vcek()), None), now());
            match result {
                Err(Error::Rejected { reason, .. }) => {
                    assert!(
                        reason.contains("report signature does not verify"),
                        "byte {i:#05x} ^ {mask:#04x}: {reason}"
                    );
                    snp::inspect(&bad).unwrap();
                }
                // VERSION and KEY_INFO are read before the signature, as inspect reads them.
                Err(Error::Malformed { what, reason }) => {
                    assert!(
                        (0x000..0x004).contains(&i) || (0x048..0x04C).contains(&i),
                        "byte {i:#05x} ^ {mask:#04x}: {reason}"
                    );
                    assert_eq!(malformed(snp::inspect(&bad)), (what, reason));
                }
                other => panic!("byte {i:#05x} ^ {mask:#04x}: {other:?}"),
            }
        }
    }
}

#[test]
fn rejects_report_with_flipped_signature_byte() {
    let verifier = SnpVerifier::new();
    let good = report();
    for i in SIGNED_LEN..SIGNATURE_END {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let result = verifier.verify_detailed(&evidence(bad, Some(vcek()), None), now());
        let reason = rejection(result);
        assert!(reason.contains("signature"), "byte {i:#05x}: {reason}");
    }
}

#[test]
fn bytes_after_the_signature_are_neither_signed_nor_read() {
    let good = verify(&evidence(report(), Some(vcek()), None)).unwrap();
    let mut raw = report();
    for b in &mut raw[SIGNATURE_END..] {
        *b = 0xA5;
    }
    let v = verify(&evidence(raw, Some(vcek()), None)).unwrap();
    assert_eq!(v.claims, good.claims);
}

#[test]
fn rejects_unsigned_report_saying_so() {
    let mut raw = report();
    raw[0x48] |= 7 << 2; // KEY_INFO.SIGNING_KEY = none
    raw[SIGNED_LEN..SIGNATURE_END].fill(0);
    let reason = rejection(verify(&evidence(raw.clone(), Some(vcek()), None)));
    assert!(reason.contains("not signed"), "{reason}");
    let inspected = snp::inspect(&raw).unwrap();
    assert_eq!(snp_of(inspected.fields()).signing_key, "none");
}

#[test]
fn truncated_or_extended_report_is_malformed() {
    let verifier = SnpVerifier::new();
    let good = report();
    let lengths = (0..REPORT_LEN).chain([REPORT_LEN + 1, REPORT_LEN + 64, 2 * REPORT_LEN]);
    for len in lengths {
        let mut raw = good.clone();
        raw.resize(len, 0);
        let (what, reason) = malformed(snp::inspect(&raw));
        assert_eq!(what, "SNP report");
        assert_eq!(reason, format!("expected 1184 bytes, found {len}"));
        let (_, reason) =
            malformed(verifier.verify_detailed(&evidence(raw, Some(vcek()), None), now()));
        assert!(reason.contains(&format!("found {len}")), "{reason}");
    }
}

#[test]
fn undecoded_hex_text_is_malformed_with_a_hint() {
    let (_, reason) = malformed(snp::inspect(read("snp/report_milan.hex").trim_ascii()));
    assert!(reason.contains("looks like hex text"), "{reason}");
}

#[test]
fn random_garbage_is_malformed_and_never_verifies() {
    let verifier = SnpVerifier::new();
    let mut rng = Rng(0x5e7_5eed);
    for round in 0..3000 {
        let len = match round % 3 {
            0 => REPORT_LEN,
            _ => (rng.next_u64() % (2 * REPORT_LEN as u64)) as usize,
        };
        let garbage = rng.bytes(len);
        let (_, inspected) = malformed(snp::inspect(&garbage));
        // Structure before signatures: a report-sized input that does not parse is malformed
        // for the verifier too, for the same reason, and never reaches the signature check.
        let (_, verified) =
            malformed(verifier.verify_detailed(&evidence(garbage, Some(vcek()), None), now()));
        assert_eq!(verified, inspected, "garbage of {len} bytes");
    }
}

#[test]
fn report_of_unknown_version_is_malformed() {
    let mut raw = report();
    raw[0] = 1;
    let (_, reason) = malformed(snp::inspect(&raw));
    assert_eq!(reason, "VERSION: expected 2, 3, 4 or 5, found 1");
}

#[test]
fn missing_vcek_is_a_missing_endorsement() {
    match verify(&evidence(report(), None, Some(chain()))) {
        Err(Error::MissingEndorsement { tee, what, hint }) => {
            assert_eq!(tee, Tee::Snp);
            assert_eq!(what, "a VCEK or VLEK certificate");
            assert_eq!(
                hint,
                "pass --vcek FILE (DER, PEM, or a PEM bundle: the VCEK, then its ASK and ARK)"
            );
        }
        other => panic!("expected MissingEndorsement, got {other:?}"),
    }
}

#[test]
fn garbage_vcek_or_chain_is_malformed() {
    let mut rng = Rng(7);
    for len in [0, 1, 10, 500, 1300] {
        let (what, _) = malformed(verify(&evidence(report(), Some(rng.bytes(len)), None)));
        assert_eq!(what, "VCEK/VLEK certificate");
    }
    for text in [
        "",
        "not PEM",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    ] {
        let (what, _) = malformed(verify(&evidence(report(), Some(vcek()), Some(text.into()))));
        assert_eq!(what, "AMD certificate chain", "{text:?}");
    }
    let one = pem(&ders(&chain())[0]);
    let (_, reason) = malformed(verify(&evidence(report(), Some(vcek()), Some(one))));
    assert!(reason.contains("expected 2 certificates"), "{reason}");
}

#[test]
fn rejects_vcek_with_altered_public_key() {
    let mut bad = vcek();
    // The P-384 point starts 04 a1 7a cc d8.
    let at = position(&bad, &[0x04, 0xa1, 0x7a, 0xcc, 0xd8]);
    bad[at + 10] ^= 0x01;
    let reason = rejection(verify(&evidence(report(), Some(bad), None)));
    assert!(
        reason.contains("the ASK (CN=SEV-Milan) did not sign the VCEK"),
        "{reason}"
    );
}

#[test]
fn rejects_every_single_byte_change_of_the_vcek() {
    let verifier = SnpVerifier::new();
    let good = vcek();
    for i in 0..good.len() {
        for mask in [0x01u8, 0xFF] {
            let mut bad = good.clone();
            bad[i] ^= mask;
            match verifier.verify_detailed(&evidence(report(), Some(bad), Some(chain())), now()) {
                Err(Error::Rejected { .. } | Error::Malformed { .. }) => {}
                other => panic!("VCEK byte {i} ^ {mask:#04x}: {other:?}"),
            }
        }
    }
}

#[test]
fn rejects_every_single_byte_change_of_the_given_chain() {
    let verifier = SnpVerifier::new();
    let good = ders(&chain());
    for (n, cert) in good.iter().enumerate() {
        for i in 0..cert.len() {
            let mut certs = good.clone();
            certs[n][i] ^= 0x01;
            let bad = pem(&certs[0]) + &pem(&certs[1]);
            match verifier.verify_detailed(&evidence(report(), Some(vcek()), Some(bad)), now()) {
                Err(Error::Rejected { .. } | Error::Malformed { .. }) => {}
                other => panic!("chain certificate {n} byte {i} flipped: {other:?}"),
            }
        }
    }
}

#[test]
fn rejects_chain_of_another_generation() {
    let genoa = String::from_utf8_lossy(sev::certs::snp::builtin::genoa::ASK).into_owned()
        + &String::from_utf8_lossy(sev::certs::snp::builtin::genoa::ARK);
    let reason = rejection(verify(&evidence(report(), Some(vcek()), Some(genoa))));
    assert_eq!(
        reason,
        "the VCEK was issued by CN=SEV-Milan but the chain's ASK is CN=SEV-Genoa"
    );
}

#[test]
fn rejects_milan_ask_under_genoa_ark() {
    let milan_ask = pem(&ders(&chain())[0]);
    let mixed = milan_ask + &String::from_utf8_lossy(sev::certs::snp::builtin::genoa::ARK);
    let reason = rejection(verify(&evidence(report(), Some(vcek()), Some(mixed))));
    assert_eq!(
        reason,
        "the ASK was issued by CN=ARK-Milan but the chain's ARK is CN=ARK-Genoa"
    );
}

#[test]
fn rejects_chain_whose_ark_is_not_an_amd_root() {
    let certs = ders(&chain());
    let mut ark = certs[1].clone();
    // Change the ARK's RSA modulus: its key is no longer AMD's.
    let modulus = position(&ark, &[0x02, 0x82, 0x02, 0x01, 0x00]) + 5;
    ark[modulus + 100] ^= 0x01;
    let forged = pem(&certs[0]) + &pem(&ark);
    let reason = rejection(verify(&evidence(report(), Some(vcek()), Some(forged))));
    assert!(reason.contains("is not one of AMD's roots"), "{reason}");
}

#[test]
fn rejects_given_ark_with_altered_certificate_body() {
    let certs = ders(&chain());
    let mut ark = certs[1].clone();
    // The ARK-Milan notAfter 2045-10-22 (UTCTime "451022172305Z") becomes 2045-10-23: same
    // key, new body.
    let not_after = position(&ark, b"451022172305Z");
    ark[not_after + 5] = b'3';
    let forged = pem(&certs[0]) + &pem(&ark);
    let reason = rejection(verify(&evidence(report(), Some(vcek()), Some(forged))));
    assert!(
        reason.contains("the ARK (CN=ARK-Milan) is not self-signed"),
        "{reason}"
    );
}

#[test]
fn rejects_vcek_outside_its_validity() {
    let ev = evidence(report(), Some(vcek()), None);
    let verifier = SnpVerifier::new();
    // 2031-01-01, after notAfter 2030-04-03.
    let reason = rejection(verifier.verify_detailed(&ev, at(1_924_992_000)));
    assert_eq!(
        reason,
        "the VCEK has expired: notAfter 2030-04-03T19:23:43Z, verifying as of 2031-01-01T00:00:00Z"
    );
    // 2023-01-01, before notBefore 2023-04-03.
    let reason = rejection(verifier.verify_detailed(&ev, at(1_672_531_200)));
    assert!(
        reason.starts_with("the VCEK is not valid yet: notBefore 2023-04-03"),
        "{reason}"
    );
}

#[test]
fn vlek_without_a_chain_needs_the_asvk() {
    // Rename the certificate's subject to the VLEK's: it now claims to be a VLEK.
    let mut vlek = vcek();
    let subject = position(&vlek, b"SEV-VCEK");
    vlek[subject..subject + 8].copy_from_slice(b"SEV-VLEK");
    match verify(&evidence(report(), Some(vlek.clone()), None)) {
        Err(Error::MissingEndorsement { what, hint, .. }) => {
            assert!(what.contains("ASVK"), "{what}");
            assert!(hint.starts_with("pass --chain FILE"), "{hint}");
        }
        other => panic!("expected MissingEndorsement, got {other:?}"),
    }
    // With a chain, the altered certificate no longer carries the ASK's signature.
    let reason = rejection(verify(&evidence(report(), Some(vlek), Some(chain()))));
    assert!(reason.contains("did not sign the VLEK"), "{reason}");
}

#[test]
fn evidence_of_another_tee_is_refused() {
    let mut ev = evidence(report(), Some(vcek()), None);
    ev.tee = Tee::Tdx;
    let (what, _) = malformed(verify(&ev));
    assert_eq!(what, "evidence");
}

fn verified_claims() -> Claims {
    verify(&evidence(report(), Some(vcek()), None))
        .unwrap()
        .claims
}

fn snp_refs(snp: SnpReference) -> ReferenceValues {
    ReferenceValues {
        tee: Some(Tee::Snp),
        snp: Some(snp),
        ..ReferenceValues::default()
    }
}

#[test]
fn reference_values_accept_the_milan_launch() {
    let refs = ReferenceValues {
        measurements: vec![HexBytes(hex::decode(MILAN_MEASUREMENT).unwrap())],
        ..snp_refs(SnpReference {
            host_data: Some(HexBytes(vec![0; 32])),
            guest_policy: Some(0x30000),
            max_vmpl: Some(0),
            min_tcb: Some(MILAN_TCB),
            ..SnpReference::default()
        })
    };
    let appraisal = refs.appraise(&verified_claims());
    assert!(appraisal.accepted(), "{:?}", appraisal.mismatches);
}

#[test]
fn reference_values_report_host_data_mismatch() {
    let refs = snp_refs(SnpReference {
        host_data: Some(HexBytes(vec![0x11; 32])),
        ..SnpReference::default()
    });
    let appraisal = refs.appraise(&verified_claims());
    assert_eq!(appraisal.mismatches.len(), 1, "{:?}", appraisal.mismatches);
    let m = &appraisal.mismatches[0];
    assert_eq!(m.field, "snp.host_data");
    assert_eq!(m.expected, "11".repeat(32));
    assert_eq!(m.got, "00".repeat(32));
}

#[test]
fn reference_values_report_tcb_below_minimum() {
    let refs = snp_refs(SnpReference {
        min_tcb: Some(SnpTcb {
            snp: 9,
            microcode: 0x74,
            ..MILAN_TCB
        }),
        ..SnpReference::default()
    });
    let appraisal = refs.appraise(&verified_claims());
    let got: Vec<String> = appraisal
        .mismatches
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "snp.reported_tcb.snp: expected >= 9, got 8",
            "snp.reported_tcb.microcode: expected >= 116, got 115",
        ]
    );
}

// Reference values refuse inspected claims: `appraise` takes only `Claims`, which only verifiers
// make (the `compile_fail` example on `InspectedClaims` checks that it does not compile).
