//! DCAP collateral JSON from untrusted text: parse it (both entry points) and, when it parses,
//! verify the real TDX quote against it. Any panic is a bug.
#![no_main]

mod common;

use confidant_attest::verify::dcap;
use libfuzzer_sys::fuzz_target;

use common::*;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = dcap::parse_collateral_str(text);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        // The envelope path (collateral as a JSON value) accepts whatever the file path
        // accepts. Not the converse: a Value has already merged duplicate keys.
        let via_value = dcap::parse_collateral(&value);
        if parsed.is_ok() {
            assert!(
                via_value.is_ok(),
                "collateral parses as text but not as a JSON value"
            );
        }
    }
    if let Ok(collateral) = parsed {
        let _ = DCAP.verify_quote(TDX_QUOTE, &collateral, at(DCAP_NOW_SECS));
    }
});
