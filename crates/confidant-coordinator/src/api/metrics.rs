//! Prometheus metrics of the API.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label value written escaped as the text exposition formats require (backslash, double
/// quote and line feed as `\\`, `\"`, `\n`; prometheus-client writes values as they are).
/// Every label value that is not a fixed word goes through this type.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct LabelText(pub String);

impl From<&str> for LabelText {
    fn from(s: &str) -> Self {
        LabelText(s.to_string())
    }
}

impl From<String> for LabelText {
    fn from(s: String) -> Self {
        LabelText(s)
    }
}

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        let mut rest = self.0.as_str();
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..i])?;
            encoder.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        encoder.write_str(rest)
    }
}

/// Labels of a request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's path pattern (`/api/v1/activate`), or `unmatched`.
    pub route: LabelText,
    /// The HTTP status.
    pub status: u16,
}

/// Labels of an activation counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActivationLabels {
    /// The workload, if the current manifest names it; any other name is counted as `unknown`.
    pub workload: LabelText,
    /// `ok` or the error code (`evidence_rejected`, `nonce`, …).
    pub outcome: String,
}

/// Labels of the volume commit counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeCommitLabels {
    /// `ok` or the error code (`volume_version_conflict`, `forbidden`, …).
    pub outcome: String,
}

/// The coordinator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Activations by workload and outcome.
    pub activations: Family<ActivationLabels, Counter>,
    /// Volume state commits by outcome.
    pub volume_commits: Family<VolumeCommitLabels, Counter>,
    /// Request durations in seconds.
    pub duration: Histogram,
    /// 0 accepting a manifest, 1 running, 2 recovery.
    pub state: Gauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("confidant_coordinator");
        let requests = Family::<RequestLabels, Counter>::default();
        let activations = Family::<ActivationLabels, Counter>::default();
        let volume_commits = Family::<VolumeCommitLabels, Counter>::default();
        let duration = Histogram::new([
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ]);
        let state = Gauge::default();
        registry.register(
            "requests",
            "API requests by route and status",
            requests.clone(),
        );
        registry.register(
            "activations",
            "Activations by workload and outcome",
            activations.clone(),
        );
        registry.register(
            "volume_commits",
            "Volume state commits by outcome",
            volume_commits.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "API request durations",
            duration.clone(),
        );
        registry.register(
            "state",
            "0 accepting a manifest, 1 running, 2 recovery",
            state.clone(),
        );
        Metrics {
            registry,
            requests,
            activations,
            volume_commits,
            duration,
            state,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_in_the_exposition() {
        let m = Metrics::new();
        m.activations
            .get_or_create(&ActivationLabels {
                workload: LabelText("a\"b\\c\nd} 1\n# EOF".into()),
                outcome: "ok".into(),
            })
            .inc();
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("confidant_coordinator_activations_total{"))
            .unwrap();
        assert_eq!(
            line,
            r#"confidant_coordinator_activations_total{workload="a\"b\\c\nd} 1\n# EOF",outcome="ok"} 1"#
        );
        // The made-up "# EOF" did not end the exposition early: one real EOF, at the end.
        assert_eq!(text.matches("\n# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
