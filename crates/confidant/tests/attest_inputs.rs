//! `confidant attest` on every input file as operators have them: an SNP VCEK given as a PEM
//! bundle (VCEK, then ASK and ARK), and corrupted evidence of every TEE, on which `attest inspect`
//! and `attest verify` must agree: malformed (exit 2) for both, or parsed by `inspect` (exit 0)
//! and judged by `verify` (exit 0 or 1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{code, json, stdout};

fn vector(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vector(rel)).unwrap()
}

fn confidant(home: &Path, args: &[&str]) -> Output {
    common::run_confidant(Some(home), args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Inside the validity of the SGX and TDX collateral and of the Milan VCEK and chain.
const SAMPLE_AT: &str = "2025-06-19T12:00:00Z";

fn pem(der: &[u8]) -> String {
    let body = B64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The DER certificates of a PEM text, in order.
fn ders(pem_text: &str) -> Vec<Vec<u8>> {
    pem_text
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            B64.decode(body).unwrap()
        })
        .collect()
}

fn milan_chain() -> String {
    String::from_utf8(read("snp/cert_chain_milan.pem")).unwrap()
}

/// `attest verify` of the real Milan report with `--vcek VCEK` and `extra`, as JSON.
fn verify_snp(home: &Path, vcek: &Path, extra: &[&str]) -> Output {
    let report = vector("snp/report_milan.hex");
    let mut args = vec![
        "attest",
        "verify",
        report.to_str().unwrap(),
        "--vcek",
        vcek.to_str().unwrap(),
        "--at",
        SAMPLE_AT,
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    confidant(home, &args)
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn vcek_as_der_pem_or_pem_bundle_verifies_the_milan_report() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let der = read("snp/vcek_milan.der");
    let single = write(h, "vcek.pem", pem(&der));
    let bundle = write(h, "bundle.pem", pem(&der) + &milan_chain());
    let chain = vector("snp/cert_chain_milan.pem");
    let mut claims = Vec::new();
    for (name, vcek, extra) in [
        ("DER", vector("snp/vcek_milan.der"), vec![]),
        ("PEM", single.clone(), vec![]),
        ("PEM bundle", bundle.clone(), vec![]),
        (
            "PEM bundle and the same --chain",
            bundle.clone(),
            vec!["--chain", chain.to_str().unwrap()],
        ),
    ] {
        let o = verify_snp(h, &vcek, &extra);
        assert_eq!(code(&o), 0, "{name}: {}{}", stdout(&o), stderr(&o));
        let v = json(&o);
        assert_eq!(v["verdict"], "accepted", "{name}");
        assert_eq!(v["tee"], "snp", "{name}");
        claims.push(v["claims"].clone());
    }
    assert!(claims.windows(2).all(|w| w[0] == w[1]), "{claims:?}");
}

#[test]
fn vcek_bundle_of_another_chip_is_rejected_saying_so() {
    let home = tempfile::tempdir().unwrap();
    // Azure's bundle: genuine VCEK, ASK and ARK, but the VCEK of another chip.
    let o = verify_snp(home.path(), &vector("azure/certs.pem"), &[]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["verdict"], "rejected");
    let reason = v["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("the report signature does not verify with the VCEK's key")
            && reason.contains("is this the VCEK of another chip?"),
        "{reason}"
    );
}

#[test]
fn vcek_bundle_that_does_not_start_with_a_vcek_or_does_not_parse_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let vcek = pem(&read("snp/vcek_milan.der"));
    let ca = ders(&milan_chain());
    let mut altered_ask = ca[0].clone();
    let last = altered_ask.len() - 1;
    altered_ask[last] ^= 0x01; // a signature byte: the same names, another certificate
    let other_chain = write(h, "other.pem", pem(&altered_ask) + &pem(&ca[1]));
    let bundle = write(h, "bundle.pem", vcek.clone() + &milan_chain());
    let cases = [
        (
            "ASK first",
            write(h, "ask-first.pem", pem(&ca[0]) + &vcek + &pem(&ca[1])),
            vec![],
            "found CN=SEV-Milan, the CA certificate that issued certificate 2 (CN=SEV-VCEK)",
        ),
        (
            "garbage PEM",
            write(
                h,
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            ),
            vec![],
            "malformed VCEK/VLEK certificate: certificate 1: ",
        ),
        (
            "a garbage certificate after the VCEK",
            write(
                h,
                "garbage-after.pem",
                vcek.clone() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
            vec![],
            "malformed VCEK/VLEK certificate: certificate 2: ",
        ),
        (
            "no ARK",
            write(h, "no-ark.pem", vcek.clone() + &pem(&ca[0])),
            vec![],
            "the certificates after the VCEK in its PEM bundle: expected 2 certificates",
        ),
        (
            "another --chain",
            bundle,
            vec!["--chain", other_chain.to_str().unwrap()],
            "the VCEK's PEM bundle and cert_chain give different CA certificates",
        ),
    ];
    for (name, file, extra, message) in cases {
        let o = verify_snp(h, &file, &extra);
        assert_eq!(code(&o), 2, "{name}: {}{}", stdout(&o), stderr(&o));
        let v = json(&o);
        let got = v["error"]["message"].as_str().unwrap();
        assert!(got.contains(message), "{name}: {got}");
    }
}

/// One TEE's evidence, as a raw file with `--tee`, and what `attest verify` needs to judge it.
struct Sample {
    tee: &'static str,
    raw: Vec<u8>,
    verify_args: Vec<String>,
}

/// Simulation evidence from this home's platform, as raw report bytes.
fn sim_report(home: &Path) -> Vec<u8> {
    assert_eq!(code(&confidant(home, &["attest", "sim", "init"])), 0);
    let o = confidant(
        home,
        &[
            "attest",
            "sim",
            "quote",
            "--report-data",
            "ab",
            "-o",
            "json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    B64.decode(json(&o)["evidence"].as_str().unwrap()).unwrap()
}

fn samples(home: &Path) -> Vec<Sample> {
    let path = |rel: &str| vector(rel).to_str().unwrap().to_string();
    let dcap = |collateral: &str| {
        vec![
            "--collateral".to_string(),
            path(collateral),
            "--at".into(),
            SAMPLE_AT.into(),
        ]
    };
    let report = hex::decode(
        String::from_utf8(read("snp/report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    vec![
        Sample {
            tee: "sgx",
            raw: read("sgx/quote.bin"),
            verify_args: dcap("sgx/collateral.json"),
        },
        Sample {
            tee: "tdx",
            raw: read("tdx/quote.bin"),
            verify_args: dcap("tdx/collateral.json"),
        },
        Sample {
            tee: "snp",
            raw: report,
            verify_args: vec![
                "--vcek".into(),
                path("snp/vcek_milan.der"),
                "--at".into(),
                SAMPLE_AT.into(),
            ],
        },
        Sample {
            tee: "sim",
            raw: sim_report(home),
            verify_args: vec!["--allow-simulation".into()],
        },
    ]
}

/// Corruptions every parser meets: truncation, extension, version and type fields, a flipped
/// byte in the middle, random bytes; each with its name.
fn corruptions(tee: &str, raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let len = raw.len();
    let set = |at: usize, bytes: &[u8]| {
        let mut v = raw.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    };
    let mut out = vec![
        ("as it is".to_string(), raw.to_vec()),
        ("truncated to 47 bytes".into(), raw[..47].to_vec()),
        ("truncated by half".into(), raw[..len / 2].to_vec()),
        ("truncated by one byte".into(), raw[..len - 1].to_vec()),
        ("extended by one byte".into(), [raw, &[0u8][..]].concat()),
        ("one byte flipped in the middle".into(), {
            let mut v = raw.to_vec();
            v[len / 2] ^= 0x01;
            v
        }),
        // Deterministic noise (a linear congruential sequence), the sample's length.
        (
            "random bytes".into(),
            (0..len as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ];
    match tee {
        "sgx" | "tdx" => {
            for version in [2u16, 6] {
                out.push((
                    format!("quote version {version}"),
                    set(0, &version.to_le_bytes()),
                ));
            }
            out.push(("TEE type 0x7f".into(), set(4, &0x7Fu32.to_le_bytes())));
            let flipped_tee = if tee == "sgx" { 0x81u32 } else { 0 };
            out.push((
                "the other DCAP TEE type".into(),
                set(4, &flipped_tee.to_le_bytes()),
            ));
        }
        "snp" => {
            for version in [1u32, 3, 6] {
                out.push((
                    format!("report version {version}"),
                    set(0, &version.to_le_bytes()),
                ));
            }
            out.push(("KEY_INFO.SIGNING_KEY 3".into(), set(0x48, &[3 << 2])));
        }
        "sim" => {
            out.push(("sim version 9".into(), set(8, &9u16.to_le_bytes())));
            out.push(("sim flags 0x8000".into(), set(10, &0x8000u16.to_le_bytes())));
        }
        other => panic!("no corruptions for {other}"),
    }
    out
}

#[test]
fn attest_inspect_and_verify_agree_on_malformed_versus_rejected_for_every_tee() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let file = h.join("evidence.bin");
    let f = file.to_str().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for sample in samples(h) {
        for (what, raw) in corruptions(sample.tee, &sample.raw) {
            std::fs::write(&file, &raw).unwrap();
            let case = format!("{} {what}", sample.tee);
            let inspect = code(&confidant(
                h,
                &["attest", "inspect", f, "--tee", sample.tee],
            ));
            let mut args = vec!["attest", "verify", f, "--tee", sample.tee];
            args.extend(sample.verify_args.iter().map(String::as_str));
            let o = confidant(h, &args);
            let verify = code(&o);
            match inspect {
                2 => assert_eq!(verify, 2, "{case}: {}{}", stdout(&o), stderr(&o)),
                0 => assert!(
                    verify == 0 || verify == 1,
                    "{case}: inspect parses it, verify exits {verify}: {}",
                    stderr(&o)
                ),
                other => panic!("{case}: inspect exits {other}"),
            }
            if sample.tee == "sim" {
                // Without --allow-simulation: refused for want of trust (1), but only once it
                // parses; malformed is malformed first.
                let o = confidant(h, &["attest", "verify", f, "--tee", "sim"]);
                let expected = if inspect == 2 { 2 } else { 1 };
                assert_eq!(code(&o), expected, "{case} untrusted: {}", stderr(&o));
            }
            if what == "as it is" {
                assert_eq!((inspect, verify), (0, 0), "{case}");
            }
            seen.insert((sample.tee, inspect, verify));
        }
    }
    // The walk reaches both classes for every TEE, and verdicts of both kinds.
    for tee in ["sgx", "tdx", "snp", "sim"] {
        assert!(seen.contains(&(tee, 2, 2)), "{tee}: no malformed case");
        assert!(seen.contains(&(tee, 0, 1)), "{tee}: no rejected case");
    }
}
