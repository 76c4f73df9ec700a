//! SEV-SNP attestation reports from untrusted bytes: parse-only inspection (the hand-written
//! report parser) and full verification with the real Milan VCEK, its ASK and ARK taken from
//! the built-in AMD chain; the two agree on what is malformed. Any panic is a bug.
//!
//! A given (PEM) chain is fuzzed by `snp_endorsements`; with fixed endorsements it adds no
//! input-dependent path here and would halve the rate (each verify checks two RSA-4096 and two
//! P-384 signatures).
#![no_main]

mod common;

use confidant_attest::verify::snp;
use confidant_attest::{Endorsements, Error, Evidence, Tee, Verifier};
use libfuzzer_sys::fuzz_target;

use common::*;

fuzz_target!(|data: &[u8]| {
    let inspected = snp::inspect(data);
    let ev = Evidence {
        tee: Tee::Snp,
        evidence: data.to_vec(),
        endorsements: Endorsements {
            collateral: None,
            vcek: Some(SNP_VCEK.to_vec()),
            cert_chain: None,
        },
    };
    let verified = SNP.verify(&ev, at(SNP_NOW_SECS));
    if verified.is_ok() {
        // Whatever verifies must also parse.
        assert!(inspected.is_ok(), "a report verified but does not inspect");
    }
    // Structure before signatures: malformed for one is malformed for the other, for the same
    // reason, and what inspects is judged (accepted or rejected), never malformed.
    match (&inspected, &verified) {
        (Err(i), Err(v @ Error::Malformed { .. })) => assert_eq!(i.to_string(), v.to_string()),
        (Err(i), v) => panic!("inspect says {i} but verify says {v:?}"),
        (Ok(_), Err(v @ Error::Malformed { .. })) => panic!("inspect parses, verify says {v}"),
        (Ok(_), _) => {}
    }
});
