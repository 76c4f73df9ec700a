//! Prometheus metrics of the API.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's path pattern (`/api/v1/activate`).
    pub route: String,
    /// The HTTP status.
    pub status: u16,
}

/// Labels of an activation counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActivationLabels {
    /// The workload (as requested; unknown names are counted as `unknown`).
    pub workload: String,
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
