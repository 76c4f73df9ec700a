//! Shared fixtures for the fuzz targets: the real test vectors from `testdata/attestation/`,
//! compiled in so a target needs no files at run time, and the fixed times they verify at.
#![allow(dead_code)]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confidant_attest::verify::dcap::{self, Collateral, DcapVerifier};

pub const TDX_COLLATERAL_JSON: &str =
    include_str!("../../testdata/attestation/tdx/collateral.json");
pub const SGX_COLLATERAL_JSON: &str =
    include_str!("../../testdata/attestation/sgx/collateral.json");
pub const TDX_QUOTE: &[u8] = include_bytes!("../../testdata/attestation/tdx/quote.bin");
pub const SNP_VCEK: &[u8] = include_bytes!("../../testdata/attestation/snp/vcek_milan.der");
pub const SNP_CERT_CHAIN: &str =
    include_str!("../../testdata/attestation/snp/cert_chain_milan.pem");

/// 2025-06-25T00:00:00Z: inside the validity window of the TDX sample's collateral
/// (TCB info and QE identity issued 2025-06-19, next update 2025-07-19), so verification of the
/// real quote gets all the way through and mutations are checked against live collateral.
pub const DCAP_NOW_SECS: u64 = 1_750_809_600;
/// Same instant for SNP: the Milan VCEK is valid 2023-04-03 .. 2030-04-03.
pub const SNP_NOW_SECS: u64 = DCAP_NOW_SECS;

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub static TDX_COLLATERAL: LazyLock<Collateral> = LazyLock::new(|| {
    dcap::parse_collateral_str(TDX_COLLATERAL_JSON).expect("the real TDX collateral parses")
});
pub static SGX_COLLATERAL: LazyLock<Collateral> = LazyLock::new(|| {
    dcap::parse_collateral_str(SGX_COLLATERAL_JSON).expect("the real SGX collateral parses")
});
pub static DCAP: LazyLock<DcapVerifier> = LazyLock::new(DcapVerifier::new);

/// Built once: `SnpVerifier::new` parses AMD's built-in ARK/ASK certificates.
pub static SNP: LazyLock<confidant_attest::verify::snp::SnpVerifier> =
    LazyLock::new(confidant_attest::verify::snp::SnpVerifier::new);
pub const SNP_REPORT_HEX: &str = include_str!("../../testdata/attestation/snp/report_milan.hex");
pub static SNP_REPORT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let hex: String = SNP_REPORT_HEX.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("report_milan.hex is hex"))
        .collect()
});
