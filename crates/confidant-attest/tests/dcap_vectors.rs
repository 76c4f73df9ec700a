//! The real SGX and TDX quotes in `testdata/attestation/` get the verdicts their README states,
//! and every tampering, truncation or garbage input is refused without a panic.

mod common;

use common::*;
use confidant_attest::reference::{HexBytes, TcbPolicy};
use confidant_attest::verify::dcap::{Collateral, DcapVerifier, parse_collateral_str};
use confidant_attest::{Error, Evidence, ReferenceValues, Tee, TeeFields, Verifier};

fn collateral(rel: &str) -> Collateral {
    parse_collateral_str(std::str::from_utf8(&read(rel)).unwrap()).unwrap()
}

fn sgx() -> (Vec<u8>, Collateral) {
    (read("sgx/quote.bin"), collateral("sgx/collateral.json"))
}

fn tdx() -> (Vec<u8>, Collateral) {
    (read("tdx/quote.bin"), collateral("tdx/collateral.json"))
}

#[test]
fn sgx_sample_verifies_with_configuration_and_sw_hardening_needed() {
    let (q, c) = sgx();
    let claims = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap();
    assert_eq!(claims.tee, Tee::Sgx);
    assert!(claims.verified);
    assert_eq!(
        claims.tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
    for sa in ["INTEL-SA-00289", "INTEL-SA-00615"] {
        assert!(
            claims.advisory_ids.iter().any(|a| a == sa),
            "{sa} missing: {:?}",
            claims.advisory_ids
        );
    }
    let TeeFields::Sgx(f) = &claims.fields else {
        panic!("not SGX fields")
    };
    assert_eq!(claims.measurement, f.mr_enclave);
    assert_eq!(claims.signer.as_deref(), Some(&f.mr_signer[..]));
    assert_eq!(&claims.report_data[..13], b"Hello, world!");
    // Accepted by default policy, with warnings for the status and the advisories.
    let a = ReferenceValues::default().appraise(&claims);
    assert!(a.accepted(), "{:?}", a.mismatches);
    assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
}

#[test]
fn tdx_sample_verifies_up_to_date() {
    let (q, c) = tdx();
    let claims = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap();
    assert_eq!(claims.tee, Tee::Tdx);
    assert_eq!(claims.tcb_status.as_deref(), Some("UpToDate"));
    assert!(claims.advisory_ids.is_empty());
    let TeeFields::Tdx(f) = &claims.fields else {
        panic!("not TDX fields")
    };
    assert_eq!(claims.measurement, f.mr_td);
    assert_eq!(f.quote_version, 4);
    let a = ReferenceValues::default().appraise(&claims);
    assert!(a.accepted() && a.warnings.is_empty(), "{a:?}");
}

#[test]
fn tdx_outdated_sample_is_rejected_no_matching_tcb_level() {
    let q = read("tdx/quote_outdated.bin");
    let c = collateral("tdx/collateral_outdated.json");
    let err = DcapVerifier::new()
        .verify_quote(&q, &c, at(OUTDATED_SAMPLE_TIME))
        .unwrap_err();
    assert!(
        matches!(err, Error::Rejected { tee: Tee::Tdx, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("No matching TCB level found"),
        "{err}"
    );
}

#[test]
fn expired_collateral_is_rejected_naming_its_window() {
    let (q, c) = tdx();
    let err = DcapVerifier::new()
        .verify_quote(&q, &c, at(1_795_000_000))
        .unwrap_err();
    assert!(err.is_rejection());
    let msg = err.to_string();
    assert!(
        msg.contains("collateral not valid at 2026-") && msg.contains("valid from 2025-06-19"),
        "{msg}"
    );
}

#[test]
fn collateral_not_yet_issued_is_rejected() {
    let (q, c) = sgx();
    let err = DcapVerifier::new()
        .verify_quote(&q, &c, at(1_700_000_000))
        .unwrap_err();
    assert!(err.is_rejection(), "{err}");
}

#[test]
fn sgx_collateral_does_not_verify_a_tdx_quote() {
    let (q, _) = tdx();
    let (_, c) = sgx();
    let err = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap_err();
    assert!(err.is_rejection(), "{err}");
}

/// Flips each byte in `ranges` and checks the quote is no longer accepted.
fn assert_every_flip_refused(q: &[u8], c: &Collateral, ranges: &[std::ops::Range<usize>]) {
    let v = DcapVerifier::new();
    let mut flipped = 0;
    for i in ranges.iter().cloned().flatten() {
        let mut t = q.to_vec();
        t[i] ^= 0x01;
        let r = v.verify_quote(&t, c, at(SAMPLE_TIME));
        assert!(r.is_err(), "flipping byte {i} was accepted");
        flipped += 1;
    }
    assert!(flipped > 1000, "only {flipped} bytes flipped");
}

/// The signed parts of a v3/v4 quote. Header and report body are signed by the attestation key;
/// the key itself is hashed into the QE report, which the PCK signs. The two length fields
/// between them (`auth data length`, `certification data type and size`) are not signed: a
/// change there either breaks parsing or reads the same bytes again.
fn signed_regions(q: &[u8]) -> Vec<std::ops::Range<usize>> {
    let version = u16::from_le_bytes([q[0], q[1]]);
    let body = if version == 4 && q[4] == 0x81 {
        584
    } else {
        384
    };
    let signed = 48 + body;
    let sig = signed + 4;
    let key = sig + 64;
    // v3 puts the QE report right after the key; v4 wraps it in certification data (type, size).
    let qe_report = if version == 3 { key + 64 } else { key + 64 + 6 };
    vec![0..signed, sig..key + 64, qe_report..qe_report + 384 + 64]
}

#[test]
fn rejects_sgx_quote_with_any_flipped_signed_byte() {
    let (q, c) = sgx();
    assert_every_flip_refused(&q, &c, &signed_regions(&q));
}

#[test]
fn rejects_tdx_quote_with_any_flipped_signed_byte() {
    let (q, c) = tdx();
    assert_every_flip_refused(&q, &c, &signed_regions(&q));
}

/// Length of the quote structure: header, body, auth-data length and auth data. The TDX sample
/// carries 70 bytes of padding after it, which are not part of the quote.
fn structure_len(q: &[u8]) -> usize {
    let body = if q[4] == 0x81 { 584 } else { 384 };
    let at = 48 + body;
    at + 4 + u32::from_le_bytes(q[at..at + 4].try_into().unwrap()) as usize
}

#[test]
fn truncated_quotes_are_refused_without_panic() {
    for (q, c) in [sgx(), tdx()] {
        let v = DcapVerifier::new();
        for len in 0..structure_len(&q) {
            let r = v.verify_quote(&q[..len], &c, at(SAMPLE_TIME));
            assert!(r.is_err(), "a quote cut at {len} bytes was accepted");
            assert!(
                confidant_attest::verify::dcap::inspect(&q[..len]).is_err(),
                "cut at {len} parsed"
            );
        }
    }
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let mut rng = Rng(0x5eed);
    let (q, c) = tdx();
    let v = DcapVerifier::new();
    for n in 0..2000 {
        let mut g = rng.bytes((n * 7) % 6000);
        if n % 2 == 0 && g.len() >= 8 {
            // Keep a plausible header so parsing goes deeper.
            g[..8].copy_from_slice(&q[..8]);
        }
        let _ = v.verify_quote(&g, &c, at(SAMPLE_TIME));
        let _ = confidant_attest::verify::dcap::inspect(&g);
    }
    let err = v
        .verify_quote(b"not a quote", &c, at(SAMPLE_TIME))
        .unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

#[test]
fn envelope_without_collateral_names_the_missing_endorsement() {
    let (q, _) = tdx();
    let ev = Evidence::new(Tee::Tdx, q);
    let err = DcapVerifier::new()
        .verify(&ev, at(SAMPLE_TIME))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingEndorsement {
                what: "collateral",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn envelope_claiming_the_wrong_tee_is_malformed() {
    let (q, c) = sgx();
    let mut ev = Evidence::new(Tee::Tdx, q);
    ev.endorsements.collateral = Some(serde_json::to_value(&c).unwrap());
    let err = DcapVerifier::new()
        .verify(&ev, at(SAMPLE_TIME))
        .unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

#[test]
fn envelope_with_collateral_verifies_like_the_direct_call() {
    let (q, c) = sgx();
    let mut ev = Evidence::new(Tee::Sgx, q.clone());
    ev.endorsements.collateral =
        Some(serde_json::from_slice(&read("sgx/collateral.json")).unwrap());
    let via_env = confidant_attest::Verifiers::new()
        .verify(&ev, at(SAMPLE_TIME))
        .unwrap();
    let direct = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap();
    assert_eq!(via_env, direct);
}

#[test]
fn inspect_reads_fields_without_collateral() {
    let ev = Evidence::decode(&read("tdx/quote.bin"), None).unwrap();
    assert_eq!(ev.tee, Tee::Tdx);
    let claims = confidant_attest::inspect(&ev).unwrap();
    assert_eq!(serde_json::to_value(&claims).unwrap()["verified"], false);
    assert!(claims.tcb_status().is_none());
    // Unverified claims are never appraised: `appraise` takes only verifiers' `Claims` (see the
    // `compile_fail` example on `InspectedClaims`).
}

#[test]
fn reference_values_report_every_mismatch_with_expected_and_got() {
    let (q, c) = tdx();
    let claims = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap();
    let refs = ReferenceValues {
        tee: Some(Tee::Sgx),
        measurements: vec![HexBytes(vec![0xab; 48])],
        tdx: Some(confidant_attest::reference::TdxReference {
            rtmr_3: Some(HexBytes(vec![0x11; 48])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let a = refs.appraise(&claims);
    let fields: Vec<&str> = a.mismatches.iter().map(|m| m.field.as_str()).collect();
    assert_eq!(fields, ["tee", "measurement", "tdx.rtmr_3"]);
    let m = &a.mismatches[1];
    assert_eq!(m.expected, "ab".repeat(48));
    assert_eq!(m.got, hex::encode(&claims.measurement));
    assert_eq!(
        a.mismatches[2].to_string(),
        format!(
            "tdx.rtmr_3: expected {}, got {}",
            "11".repeat(48),
            "00".repeat(48)
        )
    );
}

#[test]
fn reference_values_match_the_real_tdx_measurements() {
    let (q, c) = tdx();
    let claims = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap();
    let TeeFields::Tdx(f) = &claims.fields else {
        panic!()
    };
    let refs = ReferenceValues {
        tee: Some(Tee::Tdx),
        measurements: vec![HexBytes(vec![0; 48]), HexBytes(f.mr_td.to_vec())],
        tdx: Some(confidant_attest::reference::TdxReference {
            rtmr_0: Some(HexBytes(f.rtmr_0.to_vec())),
            rtmr_1: Some(HexBytes(f.rtmr_1.to_vec())),
            rtmr_2: Some(HexBytes(f.rtmr_2.to_vec())),
            mr_seam: vec![HexBytes(f.mr_seam.to_vec())],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(refs.appraise(&claims).accepted());
}

#[test]
fn tcb_policy_can_demand_up_to_date_and_refuse_advisories() {
    let (q, c) = sgx();
    let claims = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap();
    let strict = ReferenceValues {
        tcb: TcbPolicy {
            accepted_statuses: Some(vec!["UpToDate".into()]),
            accepted_advisories: Some(vec!["INTEL-SA-00289".into()]),
            rejected_advisories: vec!["INTEL-SA-00615".into()],
        },
        ..Default::default()
    };
    let a = strict.appraise(&claims);
    let fields: Vec<&str> = a.mismatches.iter().map(|m| m.field.as_str()).collect();
    assert_eq!(
        fields,
        ["tcb_status", "advisory_ids", "advisory_ids"],
        "{:?}",
        a.mismatches
    );
    assert_eq!(a.mismatches[0].got, "ConfigurationAndSWHardeningNeeded");
}

#[test]
fn debug_tee_is_refused_unless_allowed() {
    let (q, c) = sgx();
    let mut claims = DcapVerifier::new()
        .verify_quote(&q, &c, at(SAMPLE_TIME))
        .unwrap();
    claims.debug = true;
    let a = ReferenceValues::default().appraise(&claims);
    assert_eq!(a.mismatches[0].field, "debug");
    let lax = ReferenceValues {
        allow_debug: true,
        ..Default::default()
    };
    assert!(lax.appraise(&claims).accepted());
}

#[test]
fn reference_values_parse_from_json_and_refuse_unknown_fields() {
    let ok = ReferenceValues::from_json(
        r#"{"tee":"tdx","measurements":["00ff"],"tcb":{"accepted_statuses":["UpToDate"]}}"#,
    )
    .unwrap();
    assert_eq!(ok.measurements[0].0, vec![0x00, 0xff]);
    let err = ReferenceValues::from_json(r#"{"measurment":["00"]}"#).unwrap_err();
    assert!(err.contains("unknown field `measurment`"), "{err}");
}
