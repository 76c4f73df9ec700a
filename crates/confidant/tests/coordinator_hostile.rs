//! A stranger on the coordinator's open port, with no credentials: whatever it sends, every
//! error answer has the API's JSON error body (also the ones the HTTP framework makes itself),
//! and made-up workload names do not become metrics series.

mod coord;

use coord::{Client, setup};
use serde_json::{Value, json};

/// A coordinator with metrics on a loopback port: (it, API URL, metrics URL).
fn start_with_metrics(home: &std::path::Path) -> (coord::Coordinator, String, String) {
    let (child, line) = coord::spawn(
        home,
        &[
            "--output",
            "json",
            "coordinator",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let doc: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let api = doc["api"].as_str().unwrap().to_string();
    let metrics = doc["metrics"].as_str().unwrap().to_string();
    (
        coord::Coordinator {
            child,
            url: api.clone(),
        },
        api,
        metrics,
    )
}

fn metrics_text(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}");
    String::from_utf8(out.stdout).unwrap()
}

/// The answer is the API's error body with `code`, and `status`.
fn assert_json_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

/// A manifest with one sim workload, `web`, that no real evidence matches.
const MANIFEST: &str = coord::ONE_WORKLOAD_MANIFEST;

#[test]
fn strangers_get_json_errors_and_no_metrics_series() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _, _, _) = setup(dir.path());
    let (_coordinator, api, metrics) = start_with_metrics(&home);
    let anon = Client {
        url: api.clone(),
        cert: None,
    };
    let (code, body) = anon.call("POST", "/api/v1/manifest", Some(MANIFEST.as_bytes()));
    assert_eq!(code, 201, "{body}");

    // The framework's own refusals carry the API's error body.
    assert_json_error(
        &anon.call("DELETE", "/api/v1/status", None),
        405,
        "method_not_allowed",
    );
    assert_json_error(
        &anon.call("PUT", "/api/v1/activate", Some(b"{}")),
        405,
        "method_not_allowed",
    );
    let huge = vec![b'x'; (4 << 20) + 1];
    assert_json_error(
        &anon.call("POST", "/api/v1/activate", Some(&huge)),
        413,
        "payload_too_large",
    );
    assert_json_error(
        &anon.call("GET", "/api/v1/manifest?version=abc", None),
        400,
        "malformed",
    );
    assert_json_error(
        &anon.call("GET", "/api/v1/audit?limit=-1", None),
        400,
        "malformed",
    );
    assert_json_error(&anon.call("GET", "/api/v1/nothing", None), 404, "not_found");
    assert_json_error(&anon.call("GET", "/api/v1/%ff%fe", None), 404, "not_found");

    // A flood of made-up workload names: each refused, all counted under one `unknown` series.
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("confidant_coordinator_activations_total{"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for i in 0..40 {
        let name = format!("made-up-{i}\u{1b}[31m\n{}", "x".repeat(i));
        let body = json!({
            "workload": name, "nonce": "00".repeat(32), "csr": "not a csr",
            "evidence": {"tee": "sim", "evidence": "AAAA"},
        });
        let answer = anon.call(
            "POST",
            "/api/v1/activate",
            Some(body.to_string().as_bytes()),
        );
        assert!(answer.0 >= 400, "{}", answer.1);
        assert!(answer.1["error"]["code"].is_string(), "{}", answer.1);
    }
    let text = metrics_text(&metrics);
    let activations = series(&text);
    assert!(!activations.is_empty(), "no activation series in:\n{text}");
    assert!(
        activations
            .iter()
            .all(|l| l.contains("workload=\"unknown\"")),
        "{activations:#?}"
    );
    assert!(!text.contains("made-up"), "a made-up name became a label");
    // The name the manifest has keeps its own series.
    let body = json!({
        "workload": "web", "nonce": "00".repeat(32), "csr": "not a csr",
        "evidence": {"tee": "sim", "evidence": "AAAA"},
    });
    let answer = anon.call(
        "POST",
        "/api/v1/activate",
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(answer.0, 422, "{}", answer.1);
    let text = metrics_text(&metrics);
    assert!(
        series(&text).iter().any(|l| l.contains("workload=\"web\"")),
        "{text}"
    );
}
