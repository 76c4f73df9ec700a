//! Simulation reports from untrusted bytes: parse, signature check, the verifier path, and the
//! hex platform-key parser. Any panic is a bug.
#![no_main]

use std::time::UNIX_EPOCH;

use confidant_attest::sim::{self, SimReport};
use confidant_attest::verify::sim::SimVerifier;
use confidant_attest::{Error, Evidence, Tee, Verifiers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Malformed before untrusted: with no platform trusted, a report that does not parse is
    // malformed (as inspect says), one that parses is refused for want of trust.
    let parsed = SimReport::parse(data);
    let untrusted = Verifiers::new().verify(&Evidence::new(Tee::Sim, data.to_vec()), UNIX_EPOCH);
    match (&parsed, &untrusted) {
        (Err(p), Err(u @ Error::Malformed { .. })) => assert_eq!(p.to_string(), u.to_string()),
        (Ok(_), Err(Error::NotTrusted { .. })) => {}
        (p, u) => panic!("parse says {p:?} but the untrusting verifier says {u:?}"),
    }
    if let Ok(report) = parsed {
        let sig = report.verify_signature();
        // Parsing is exact: an accepted report serializes back to the same bytes.
        assert_eq!(report.to_bytes(), data, "parse/to_bytes do not round-trip");
        let inspected = report.inspect();
        // The verifier trusting the report's own key agrees with the bare signature check, and
        // its claims are the inspected ones, verified.
        let v = SimVerifier::new(vec![report.platform_key]).verify_report(data);
        assert_eq!(
            v.is_ok(),
            sig.is_ok(),
            "verifier and signature check disagree"
        );
        if let Ok(claims) = v {
            assert!(claims.verified);
            assert_eq!(claims.measurement, inspected.measurement());
            assert_eq!(&claims.report_data, inspected.report_data());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sim::parse_public_key(text);
    }
});
