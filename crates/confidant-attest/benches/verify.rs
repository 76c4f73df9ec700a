//! Verifications per second of the real SGX, TDX and SEV-SNP samples in `testdata/attestation`.
//!
//! For SGX and TDX, confidant's [`DcapVerifier::verify_quote`] is measured against calling
//! dcap-qvl directly with the same crypto backend (ring) and settings (production root,
//! `allow_debug(true)`), both with the collateral parsed once and the verifier built once outside
//! the timed loop, so the ratio is the cost of confidant's wrapper alone.
//!
//! Run with `cargo bench -p confidant-attest --bench verify` (or `bench/attest-verify`, which also
//! prints verifications per second and the ratios from criterion's estimates).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use confidant_attest::evidence::{Endorsements, Evidence};
use confidant_attest::tee::Tee;
use confidant_attest::verify::Verifier;
use confidant_attest::verify::dcap::{self, DcapVerifier};
use confidant_attest::verify::snp::SnpVerifier;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dcap_qvl::configs::RingConfig;
use dcap_qvl::verify::QuoteVerifier;

/// 2025-06-19T12:00:00Z: inside both DCAP samples' collateral windows (TCB info, QE identity and
/// PCK CRL issued 2025-06-19 ~10:00–10:56Z, next update 2025-07-19; root CA CRL to 2026-04-03)
/// and the SNP VCEK's validity (2023-04-03 to 2030-04-03).
const NOW_SECS: u64 = 1_750_334_400;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    let path = testdata(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn bench_dcap(c: &mut Criterion, group_name: &str, tee: Tee) {
    let quote = read(&format!("{group_name}/quote.bin"));
    let collateral_text = String::from_utf8(read(&format!("{group_name}/collateral.json")))
        .expect("collateral is UTF-8 JSON");
    // Parsed once, outside the timed loops, for both sides.
    let collateral = dcap::parse_collateral_str(&collateral_text).expect("collateral parses");
    let now = now();

    let confidant = DcapVerifier::new();
    let qvl = QuoteVerifier::new_prod()
        .with_config::<RingConfig>()
        .allow_debug(true);

    // Both sides must accept the sample at `now` before anything is timed.
    let claims = confidant
        .verify_quote(&quote, &collateral, now)
        .unwrap_or_else(|e| panic!("{group_name}: confidant refuses the sample: {e}"));
    assert_eq!(claims.tee, tee, "{group_name}: wrong TEE");
    assert!(claims.verified, "{group_name}: claims not marked verified");
    let report = qvl
        .verify(&quote, &collateral, NOW_SECS)
        .unwrap_or_else(|e| panic!("{group_name}: dcap-qvl refuses the sample: {e:#}"));
    assert_eq!(
        claims.tcb_status.as_deref(),
        Some(report.status.as_str()),
        "{group_name}: confidant and dcap-qvl disagree on the TCB status"
    );

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    group.bench_function("confidant", |b| {
        b.iter(|| {
            confidant
                .verify_quote(black_box(&quote), black_box(&collateral), black_box(now))
                .expect("verifies")
        })
    });
    group.bench_function("dcap-qvl", |b| {
        b.iter(|| {
            qvl.verify(
                black_box(&quote),
                black_box(&collateral),
                black_box(NOW_SECS),
            )
            .expect("verifies")
        })
    });
    group.finish();
}

fn sgx(c: &mut Criterion) {
    bench_dcap(c, "sgx", Tee::Sgx);
}

fn tdx(c: &mut Criterion) {
    bench_dcap(c, "tdx", Tee::Tdx);
}

fn snp(c: &mut Criterion) {
    let hex_text = String::from_utf8(read("snp/report_milan.hex")).expect("hex text");
    let compact: String = hex_text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let report = hex::decode(compact).expect("report is hex");
    // The VCEK alone: the ASK and ARK are AMD's built-in Milan chain.
    let evidence = Evidence {
        tee: Tee::Snp,
        evidence: report,
        endorsements: Endorsements {
            vcek: Some(read("snp/vcek_milan.der")),
            ..Endorsements::default()
        },
    };
    let now = now();
    let verifier = SnpVerifier::new();

    // The verifier must accept the sample at `now` before anything is timed.
    let claims = verifier
        .verify(&evidence, now)
        .unwrap_or_else(|e| panic!("snp: confidant refuses the sample: {e}"));
    assert_eq!(claims.tee, Tee::Snp, "snp: wrong TEE");
    assert!(claims.verified, "snp: claims not marked verified");

    let mut group = c.benchmark_group("snp");
    group.throughput(Throughput::Elements(1));
    group.bench_function("confidant", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&evidence), black_box(now))
                .expect("verifies")
        })
    });
    group.finish();
}

// `criterion_group!` makes an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, sgx, tdx, snp);
}
criterion_main!(group::benches);
