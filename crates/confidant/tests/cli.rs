//! The `confidant attest` command line, run as a user runs it: exit codes, output shapes and
//! refusal of bad input without panics.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{code, json, stdout};

fn vector(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/attestation")
        .join(rel)
}

fn confidant(home: &Path, args: &[&str]) -> Output {
    common::run_confidant(Some(home), args)
}

const SAMPLE_AT: &str = "2025-06-19T12:00:00Z";

fn verify_sample(home: &Path, quote: &Path, collateral: &str, at: &str, extra: &[&str]) -> Output {
    let q = quote.to_str().unwrap();
    let c = vector(collateral);
    let mut args = vec![
        "attest",
        "verify",
        q,
        "--collateral",
        c.to_str().unwrap(),
        "--at",
        at,
    ];
    args.extend_from_slice(extra);
    confidant(home, &args)
}

#[test]
fn verify_sgx_sample_is_accepted_with_snake_case_json_claims() {
    let home = tempfile::tempdir().unwrap();
    let o = verify_sample(
        home.path(),
        &vector("sgx/quote.bin"),
        "sgx/collateral.json",
        SAMPLE_AT,
        &["--output", "json"],
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(
        v["claims"]["tcb_status"],
        "ConfigurationAndSWHardeningNeeded"
    );
    assert_eq!(v["claims"]["mr_enclave"], v["claims"]["measurement"]);
    assert!(v["claims"]["mr_signer"].is_string());
    assert!(
        v["claims"]["advisory_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "INTEL-SA-00615")
    );
    assert_eq!(v["claims"]["report_data"].as_str().unwrap().len(), 128);
}

#[test]
fn verify_tdx_sample_is_accepted_and_shows_rtmrs() {
    let home = tempfile::tempdir().unwrap();
    let o = verify_sample(
        home.path(),
        &vector("tdx/quote.bin"),
        "tdx/collateral.json",
        "1750334400",
        &["-o", "json"],
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["claims"]["tcb_status"], "UpToDate");
    for f in [
        "mr_td",
        "rtmr_0",
        "rtmr_1",
        "rtmr_2",
        "rtmr_3",
        "mr_config_id",
    ] {
        assert_eq!(v["claims"][f].as_str().unwrap().len(), 96, "{f}");
    }
}

#[test]
fn verify_outdated_tdx_sample_exits_1_with_the_reason() {
    let home = tempfile::tempdir().unwrap();
    let o = verify_sample(
        home.path(),
        &vector("tdx/quote_outdated.bin"),
        "tdx/collateral_outdated.json",
        "2026-03-01T00:00:00Z",
        &[],
    );
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(
        out.contains("verdict: REJECTED") && out.contains("No matching TCB level found"),
        "{out}"
    );
}

#[test]
fn verify_with_expired_collateral_exits_1_and_names_the_window() {
    let home = tempfile::tempdir().unwrap();
    let o = verify_sample(
        home.path(),
        &vector("tdx/quote.bin"),
        "tdx/collateral.json",
        "2026-11-01T00:00:00Z",
        &[],
    );
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("valid from 2025-06-19T10:16:03Z to 2025-07-19T10:16:03Z"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn hex_base64_and_envelope_inputs_give_the_same_verdict() {
    let home = tempfile::tempdir().unwrap();
    let raw = std::fs::read(vector("sgx/quote.bin")).unwrap();
    let hexf = home.path().join("q.hex");
    std::fs::write(&hexf, hex::encode(&raw)).unwrap();
    use base64::Engine;
    let b64f = home.path().join("q.b64");
    std::fs::write(
        &b64f,
        base64::engine::general_purpose::STANDARD.encode(&raw),
    )
    .unwrap();
    let envf = home.path().join("q.json");
    let coll: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vector("sgx/collateral.json")).unwrap()).unwrap();
    let mut ev = confidant_attest_envelope(&raw);
    ev["endorsements"] = serde_json::json!({ "collateral": coll });
    std::fs::write(&envf, ev.to_string()).unwrap();
    for f in [&hexf, &b64f] {
        let o = verify_sample(home.path(), f, "sgx/collateral.json", SAMPLE_AT, &[]);
        assert_eq!(code(&o), 0, "{}: {}", f.display(), stdout(&o));
    }
    let o = confidant(
        home.path(),
        &[
            "attest",
            "verify",
            envf.to_str().unwrap(),
            "--at",
            SAMPLE_AT,
        ],
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

fn confidant_attest_envelope(raw: &[u8]) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({"tee": "sgx", "evidence": base64::engine::general_purpose::STANDARD.encode(raw)})
}

#[test]
fn truncated_and_garbage_evidence_exit_2_with_an_error() {
    let home = tempfile::tempdir().unwrap();
    let raw = std::fs::read(vector("tdx/quote.bin")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", b"\x00\x01garbage\xff".to_vec()),
        ("truncated header", raw[..40].to_vec()),
        ("truncated body", raw[..600].to_vec()),
        ("bad json", b"{\"tee\": \"tdx\", \"evidence\": 12}".to_vec()),
        ("bad hex", b"zz".to_vec()),
    ];
    for (name, bytes) in cases {
        let f = home.path().join("in");
        std::fs::write(&f, &bytes).unwrap();
        for fmt in ["human", "json"] {
            let o = confidant(
                home.path(),
                &[
                    "attest",
                    "verify",
                    f.to_str().unwrap(),
                    "--tee",
                    "tdx",
                    "--output",
                    fmt,
                    "--collateral",
                    vector("tdx/collateral.json").to_str().unwrap(),
                    "--at",
                    SAMPLE_AT,
                ],
            );
            assert_eq!(
                code(&o),
                2,
                "{name} ({fmt}): {}{}",
                stdout(&o),
                String::from_utf8_lossy(&o.stderr)
            );
            if fmt == "json" {
                assert!(json(&o)["error"]["message"].is_string());
            } else {
                assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: "));
            }
        }
    }
}

#[test]
fn missing_collateral_and_bad_time_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let q = vector("tdx/quote.bin");
    let o = confidant(home.path(), &["attest", "verify", q.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--collateral"));
    let o = confidant(
        home.path(),
        &["attest", "verify", q.to_str().unwrap(), "--at", "yesterday"],
    );
    assert_eq!(code(&o), 2);
}

#[test]
fn inspect_shows_fields_and_says_not_verified() {
    let home = tempfile::tempdir().unwrap();
    let o = confidant(
        home.path(),
        &[
            "attest",
            "inspect",
            vector("sgx/quote.bin").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("NOT VERIFIED"));
    let o = confidant(
        home.path(),
        &[
            "attest",
            "inspect",
            vector("tdx/quote.bin").to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    let v = json(&o);
    assert_eq!(v["verified"], false);
    assert_eq!(v["tee"], "tdx");
}

/// Sim: init, quote bound to a nonce and key, verify; refused without explicit opt-in.
#[test]
fn simulation_round_trip_needs_explicit_opt_in_and_binds_nonce_and_key() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let o = confidant(h, &["attest", "sim", "init"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("SIMULATION"));
    // A second init would replace the platform: refused.
    assert_eq!(code(&confidant(h, &["attest", "sim", "init"])), 2);

    let spki = h.join("key.der");
    std::fs::write(
        &spki,
        b"0\x2a0\x05\x06\x03\x2b\x65\x70\x03\x21\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    )
    .unwrap();
    let ev = h.join("ev.json");
    let o = confidant(
        h,
        &[
            "attest",
            "sim",
            "quote",
            "--nonce",
            "0badc0de",
            "--public-key",
            spki.to_str().unwrap(),
            "--svn",
            "3",
            "--out",
            ev.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let ev_s = ev.to_str().unwrap();
    let spki_s = spki.to_str().unwrap();

    let o = confidant(h, &["attest", "verify", ev_s]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("--allow-simulation"), "{}", stdout(&o));

    let o = confidant(
        h,
        &[
            "attest",
            "verify",
            ev_s,
            "--allow-simulation",
            "--nonce",
            "0badc0de",
            "--public-key",
            spki_s,
            "-o",
            "json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["simulation"], true);
    assert_eq!(v["claims"]["svn"], 3);
    assert!(v["warnings"][0].as_str().unwrap().contains("SIMULATION"));

    let o = confidant(
        h,
        &[
            "attest",
            "verify",
            ev_s,
            "--allow-simulation",
            "--nonce",
            "0badc0df",
            "--public-key",
            spki_s,
        ],
    );
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("report_data: expected"));

    let o = confidant(
        h,
        &[
            "attest",
            "verify",
            ev_s,
            "--allow-simulation",
            "--sim-platform-key",
            &"00".repeat(32),
        ],
    );
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("is not trusted"));

    let refs = h.join("refs.yaml");
    std::fs::write(&refs, "tee: sim\nmeasurements: [\"00\"]\nmin_svn: 4\n").unwrap();
    let o = confidant(
        h,
        &[
            "attest",
            "verify",
            ev_s,
            "--allow-simulation",
            "--reference-values",
            refs.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(
        out.contains("measurement: expected 00, got ") && out.contains("svn: expected >= 4, got 3"),
        "{out}"
    );

    std::fs::write(&refs, "tee: sim\nmeasurment: [\"00\"]\n").unwrap();
    let o = confidant(
        h,
        &[
            "attest",
            "verify",
            ev_s,
            "--allow-simulation",
            "--reference-values",
            refs.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown field `measurment`"));
}

#[test]
fn quote_without_a_tee_fails_loudly_and_never_falls_back_to_simulation() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    assert_eq!(code(&confidant(h, &["attest", "sim", "init"])), 0);
    let missing = h.join("absent");
    let m = missing.to_str().unwrap();
    let o = confidant(
        h,
        &[
            "attest",
            "quote",
            "--report-data",
            "aa",
            "--gramine-root",
            m,
            "--tsm-root",
            m,
        ],
    );
    assert_eq!(code(&o), 2);
    assert!(o.stdout.is_empty(), "no evidence may be printed");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tee sim"));
    // Named explicitly, simulation works and says so.
    let o = confidant(
        h,
        &[
            "attest",
            "quote",
            "--report-data",
            "aa",
            "--tee",
            "sim",
            "--gramine-root",
            m,
            "--tsm-root",
            m,
        ],
    );
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("SIMULATION"));
    let v = json(&o);
    assert_eq!(v["tee"], "sim");
}

#[test]
fn input_files_larger_than_their_kind_allows_are_refused_naming_the_limit() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big.bin");
    std::fs::write(&big, vec![b'A'; (4 << 20) + 1]).unwrap();
    let b = big.to_str().unwrap();
    let quote = vector("sgx/quote.bin");
    let q = quote.to_str().unwrap();
    for (args, limit) in [
        (vec!["attest", "verify", b], "at most 4194304 bytes (4 MiB)"),
        (
            vec!["attest", "inspect", b],
            "at most 4194304 bytes (4 MiB)",
        ),
        (
            vec!["manifest", "validate", b],
            "at most 4194304 bytes (4 MiB)",
        ),
        (
            vec!["attest", "verify", q, "--reference-values", b],
            "at most 1048576 bytes (1 MiB)",
        ),
    ] {
        let o = confidant(d.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 2, "{args:?}: {err}");
        assert!(err.contains(limit), "{args:?}: {err}");
    }
    // Not a regular file: the cap holds while reading.
    let o = confidant(d.path(), &["attest", "verify", "/dev/zero"]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("at most 4194304 bytes"));
}
