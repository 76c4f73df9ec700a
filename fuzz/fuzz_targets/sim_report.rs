//! Simulation reports from untrusted bytes: parse, signature check, the verifier path, and the
//! hex platform-key parser. Any panic is a bug.
#![no_main]

use confidant_attest::sim::{self, SimReport};
use confidant_attest::verify::sim::SimVerifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = SimReport::parse(data) {
        let sig = report.verify_signature();
        // Parsing is exact: an accepted report serializes back to the same bytes.
        assert_eq!(report.to_bytes(), data, "parse/to_bytes do not round-trip");
        let _ = report.claims(sig.is_ok());
        // The verifier trusting the report's own key agrees with the bare signature check.
        let v = SimVerifier::new(vec![report.platform_key]).verify_report(data);
        assert_eq!(
            v.is_ok(),
            sig.is_ok(),
            "verifier and signature check disagree"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sim::parse_public_key(text);
    }
});
