//! `inspect` and the verifiers agree on what is malformed, for every TEE: evidence that
//! [`confidant_attest::inspect`] refuses is [`Error::Malformed`] for [`Verifiers::verify`] too,
//! with the same reason, whatever the endorsements and trust configuration (structure is checked
//! before signatures, collateral and trust); evidence that `inspect` parses is never malformed for
//! a verifier given the right endorsements: it is accepted or rejected.
//!
//! The inputs are the real SGX, TDX and SNP samples of `testdata/attestation/` and simulation
//! evidence, corrupted every way a parser meets: truncated, extended, header fields set to
//! unknown or wrong values, single bytes flipped, replaced by random bytes.

mod common;

use common::{Rng, SAMPLE_TIME, at, read};
use confidant_attest::attester::sim::SimAttester;
use confidant_attest::sim::SimPlatform;
use confidant_attest::verify::sim::SimVerifier;
use confidant_attest::{Attester, Endorsements, Error, Evidence, Tee, Verifiers, inspect};

/// What a command makes of evidence: the classes behind exit codes 2, 1 and 0.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    /// Could not be parsed: the reason (exit 2).
    Malformed(String),
    /// Parsed, judged, not authentic or not trusted (exit 1).
    Rejected,
    /// Parsed and (for verification) authentic (exit 0).
    Fine,
}

fn class<T>(result: confidant_attest::Result<T>) -> Class {
    match result {
        Ok(_) => Class::Fine,
        Err(e @ Error::Malformed { .. }) => Class::Malformed(e.to_string()),
        Err(e) if e.is_rejection() => Class::Rejected,
        Err(e) => panic!("neither malformed, rejected nor accepted: {e}"),
    }
}

/// One sample: its evidence with the endorsements that verify it, and the verifiers to use.
struct Sample {
    name: &'static str,
    evidence: Evidence,
    verifiers: Verifiers,
}

fn sgx() -> Sample {
    let mut evidence = Evidence::new(Tee::Sgx, read("sgx/quote.bin"));
    evidence.endorsements.collateral = Some(collateral("sgx/collateral.json"));
    Sample {
        name: "sgx",
        evidence,
        verifiers: Verifiers::new(),
    }
}

fn tdx() -> Sample {
    let mut evidence = Evidence::new(Tee::Tdx, read("tdx/quote.bin"));
    evidence.endorsements.collateral = Some(collateral("tdx/collateral.json"));
    Sample {
        name: "tdx",
        evidence,
        verifiers: Verifiers::new(),
    }
}

fn collateral(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(rel)).unwrap()
}

/// The SNP sample with its VCEK, ASK and ARK.
fn snp() -> Sample {
    let text = String::from_utf8(read("snp/report_milan.hex")).unwrap();
    let mut evidence = Evidence::new(Tee::Snp, hex::decode(text.trim()).unwrap());
    evidence.endorsements.vcek = Some(read("snp/vcek_milan.der"));
    evidence.endorsements.cert_chain =
        Some(String::from_utf8(read("snp/cert_chain_milan.pem")).unwrap());
    Sample {
        name: "snp",
        evidence,
        verifiers: Verifiers::new(),
    }
}

/// Simulation evidence of layout version 1 (no config id) or 2, with its platform key trusted.
fn sim(config_id: Option<[u8; 48]>) -> Sample {
    let platform = SimPlatform::generate().unwrap();
    let key = platform.public_key();
    let mut attester = SimAttester::new(platform, [0x42; 48]).with_version(7, 3);
    if let Some(id) = config_id {
        attester = attester.with_config_id(id);
    }
    Sample {
        name: if config_id.is_some() {
            "sim v2"
        } else {
            "sim v1"
        },
        evidence: attester.attest(&[0x17; 64]).unwrap(),
        verifiers: Verifiers::new().with_sim(SimVerifier::new(vec![key])),
    }
}

fn samples() -> Vec<Sample> {
    vec![sgx(), tdx(), snp(), sim(None), sim(Some([0x99; 48]))]
}

/// Every corruption of `raw` this test walks, each with a name for failure messages.
fn corruptions(tee: Tee, raw: &[u8], rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let len = raw.len();
    let mut cuts = vec![
        0,
        1,
        2,
        4,
        8,
        16,
        47,
        48,
        64,
        100,
        len / 2,
        len - 64,
        len - 1,
    ];
    cuts.retain(|&n| n < len);
    cuts.dedup();
    for n in cuts {
        out.push((format!("truncated to {n} bytes"), raw[..n].to_vec()));
    }
    for extra in [1, 64] {
        let mut v = raw.to_vec();
        v.resize(len + extra, 0);
        out.push((format!("extended by {extra} bytes"), v));
    }
    let set = |at: usize, bytes: &[u8]| {
        let mut v = raw.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    };
    match tee {
        Tee::Sgx | Tee::Tdx => {
            for version in [0u16, 1, 2, 3, 4, 5, 6, 0xFFFF] {
                out.push((
                    format!("quote version {version}"),
                    set(0, &version.to_le_bytes()),
                ));
            }
            for key_type in [0u16, 1, 2, 3, 0xFFFF] {
                out.push((
                    format!("attestation key type {key_type}"),
                    set(2, &key_type.to_le_bytes()),
                ));
            }
            for tee_type in [0u32, 0x81, 0x7F, u32::MAX] {
                out.push((
                    format!("TEE type {tee_type:#x}"),
                    set(4, &tee_type.to_le_bytes()),
                ));
            }
            // The u32 length of the signature data, after the 48-byte header and the report
            // body (an SGX enclave report of 384 bytes, a TD report of 584).
            let at = 48 + if tee == Tee::Sgx { 384 } else { 584 };
            let declared = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
            for n in [0, 1, declared - 1, declared + 1, u32::MAX] {
                out.push((
                    format!("signature data length {n}"),
                    set(at, &n.to_le_bytes()),
                ));
            }
        }
        Tee::Snp => {
            for version in [0u32, 1, 2, 3, 4, 5, 6, u32::MAX] {
                out.push((
                    format!("report version {version}"),
                    set(0, &version.to_le_bytes()),
                ));
            }
            for key in 0u32..8 {
                let mut v = raw.to_vec();
                let info = u32::from_le_bytes(v[0x48..0x4C].try_into().unwrap());
                let info = (info & !(0b111 << 2)) | (key << 2);
                v[0x48..0x4C].copy_from_slice(&info.to_le_bytes());
                out.push((format!("KEY_INFO.SIGNING_KEY {key}"), v));
            }
            for algo in [0u32, 2, u32::MAX] {
                out.push((
                    format!("SIGNATURE_ALGO {algo}"),
                    set(0x34, &algo.to_le_bytes()),
                ));
            }
            // Version 3 reads the CPUID fields the version-2 sample leaves zero.
            for (family, model) in [(0x00, 0x00), (0x19, 0x01), (0x19, 0x11), (0x17, 0x31)] {
                let mut v = set(0, &3u32.to_le_bytes());
                v[0x188] = family;
                v[0x189] = model;
                out.push((format!("version 3, CPUID {family:#04x}/{model:#04x}"), v));
            }
        }
        Tee::Sim => {
            for version in [0u16, 1, 2, 3, 0xFFFF] {
                out.push((
                    format!("sim version {version}"),
                    set(8, &version.to_le_bytes()),
                ));
            }
            for flags in [1u16, 2, 0x8000] {
                out.push((
                    format!("sim flags {flags:#x}"),
                    set(10, &flags.to_le_bytes()),
                ));
            }
            if len == confidant_attest::sim::REPORT_LEN_V2 {
                out.push(("zero config id".into(), set(64, &[0; 48])));
            }
            out.push(("magic".into(), set(0, b"CFDTSIM\x02")));
        }
    }
    // Single bytes flipped, about 60 positions spread over the whole input.
    let step = (len / 60).max(1);
    for i in (0..len).step_by(step).chain([len - 1]) {
        for mask in [0x01u8, 0xFF] {
            let mut v = raw.to_vec();
            v[i] ^= mask;
            out.push((format!("byte {i} ^ {mask:#04x}"), v));
        }
    }
    for n in [len, len / 3, 1184, 48] {
        out.push((format!("{n} random bytes"), rng.bytes(n)));
    }
    out
}

#[test]
fn inspect_and_verify_agree_on_malformed_for_every_tee() {
    let now = at(SAMPLE_TIME);
    let mut rng = Rng(0x1a5_9e7);
    for sample in samples() {
        let good = &sample.evidence;
        assert_eq!(class(inspect(good)), Class::Fine, "{}", sample.name);
        assert_eq!(
            class(sample.verifiers.verify(good, now)),
            Class::Fine,
            "{}",
            sample.name
        );
        let (mut malformed, mut parsed) = (0, 0);
        for (what, raw) in corruptions(good.tee, &good.evidence, &mut rng) {
            let ev = Evidence {
                evidence: raw,
                ..good.clone()
            };
            let inspected = class(inspect(&ev));
            let verified = class(sample.verifiers.verify(&ev, now));
            let case = format!("{} {what}", sample.name);
            match &inspected {
                Class::Malformed(_) => {
                    malformed += 1;
                    assert_eq!(verified, inspected, "{case}");
                    // Without endorsements or trust, too: malformed before anything is missing.
                    let bare = Evidence {
                        endorsements: Endorsements::default(),
                        ..ev.clone()
                    };
                    assert_eq!(
                        class(Verifiers::new().verify(&bare, now)),
                        inspected,
                        "{case}"
                    );
                }
                Class::Fine => {
                    parsed += 1;
                    assert!(
                        !matches!(verified, Class::Malformed(_)),
                        "{case}: inspect parses it but verify says {verified:?}"
                    );
                }
                Class::Rejected => unreachable!("inspect judges nothing"),
            }
        }
        assert!(
            malformed > 10 && parsed > 10,
            "{}: {malformed} malformed, {parsed} parsed: the walk must cover both",
            sample.name
        );
    }
}

#[test]
fn unparsable_sim_evidence_is_malformed_even_when_no_platform_is_trusted() {
    let good = sim(None).evidence;
    let mut bad = good.clone();
    bad.evidence.truncate(100);
    let err = Verifiers::new().verify(&bad, at(SAMPLE_TIME)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed simulation report: expected 224 (version 1) or 272 (version 2) bytes, got 100"
    );
    assert_eq!(err.to_string(), inspect(&bad).unwrap_err().to_string());
    // Well-formed, it is refused for want of trust, not for its shape.
    let err = Verifiers::new().verify(&good, at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, Error::NotTrusted { .. }), "{err}");
}

#[test]
fn snp_report_of_unknown_cpuid_is_malformed_before_its_signature_is_checked() {
    let mut sample = snp();
    sample.evidence.evidence[..4].copy_from_slice(&3u32.to_le_bytes());
    sample.evidence.evidence[0x188] = 0x17;
    let err = sample
        .verifiers
        .verify(&sample.evidence, at(SAMPLE_TIME))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed SNP report: CPUID_FAM_ID 0x17, CPUID_MOD_ID 0x00: expected an SEV-SNP \
         processor (Milan, Genoa, Turin or Venice)"
    );
}
