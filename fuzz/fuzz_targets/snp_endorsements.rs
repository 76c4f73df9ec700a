//! SEV-SNP endorsements from untrusted bytes (they travel with the evidence): the input is the
//! VCEK/VLEK certificate (DER, PEM, or a PEM bundle of the VCEK, ASK and ARK), alone and with the
//! real ASK/ARK chain beside it, and, as text, the ASK/ARK chain (PEM); the real Milan report is
//! verified with each. Any panic is a bug.
#![no_main]

mod common;

use confidant_attest::{Endorsements, Evidence, Tee, Verifier};
use libfuzzer_sys::fuzz_target;

use common::*;

fuzz_target!(|data: &[u8]| {
    // The input as the VCEK, with the built-in chain its issuer names.
    let mut ev = Evidence {
        tee: Tee::Snp,
        evidence: SNP_REPORT.clone(),
        endorsements: Endorsements {
            collateral: None,
            vcek: Some(data.to_vec()),
            cert_chain: None,
        },
    };
    let alone = SNP.verify(&ev, at(SNP_NOW_SECS));
    // The input as the VCEK (or a VCEK bundle) beside the real chain, which is also the built-in
    // Milan chain: a bundle's chain must be the same certificates, and a chain beside can never
    // make verification pass that failed alone.
    ev.endorsements.cert_chain = Some(SNP_CERT_CHAIN.to_string());
    let beside = SNP.verify(&ev, at(SNP_NOW_SECS));
    assert!(
        beside.is_err() || alone.is_ok(),
        "verified with the Milan chain beside it but not alone: {alone:?}"
    );
    // The input as the given chain, with the real VCEK.
    if let Ok(text) = std::str::from_utf8(data) {
        ev.endorsements.vcek = Some(SNP_VCEK.to_vec());
        ev.endorsements.cert_chain = Some(text.to_string());
        let _ = SNP.verify(&ev, at(SNP_NOW_SECS));
    }
});
