//! DCAP quotes (SGX and TDX) from untrusted bytes: parse-only inspection and full verification
//! against the real collateral, which agree on what is malformed. Any panic is a bug; errors are
//! the expected outcome.
#![no_main]

mod common;

use confidant_attest::verify::dcap;
use confidant_attest::{Error, Tee};
use libfuzzer_sys::fuzz_target;

use common::*;

fuzz_target!(|data: &[u8]| {
    let parsed = dcap::inspect(data);
    let _ = dcap::parse_quote(data);
    // Verify against the collateral of the quote's own kind, so mutated quotes of either kind
    // reach past the FMSPC/collateral match into TCB, QE identity and signature checks.
    let collateral = match &parsed {
        Ok(c) if c.tee() == Tee::Sgx => &*SGX_COLLATERAL,
        _ => &*TDX_COLLATERAL,
    };
    let verified = DCAP.verify_quote(data, collateral, at(DCAP_NOW_SECS));
    if verified.is_ok() {
        // Whatever verifies must also parse.
        assert!(parsed.is_ok(), "a quote verified but does not inspect");
    }
    // Structure before signatures: malformed for one is malformed for the other (the collateral
    // is the real one, so a malformed verdict can only be the quote's), and what inspects is
    // judged, never malformed.
    assert_eq!(
        parsed.as_ref().err().map(ToString::to_string),
        match &verified {
            Err(e @ Error::Malformed { .. }) => Some(e.to_string()),
            _ => None,
        },
        "inspect and verify disagree on malformed"
    );
    // The collateral parser, on the same bytes seen as text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dcap::parse_collateral_str(text);
    }
});
