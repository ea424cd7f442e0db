//! The reconciler's own Prometheus metrics (its `/metrics`).
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `camux_reconciler_reconciles_total` | counter | decisions made |
//! | `camux_reconciler_errors_total{op,kind}` | counter | failed reads and actions: `op` is `daemon_status`, `get_node`, `list_pods`, `apply_labels`, `remove_labels`, `evict`; `kind` as [`IoError::kind`](super::kube_io::IoError::kind), or `unknown` for the daemon |
//! | `camux_reconciler_evictions_total{result}` | counter | eviction attempts: `evicted`, `refused` (429, a PodDisruptionBudget), `failed`, `gone` |
//! | `camux_reconciler_label_changes_total` | counter | label patches applied |
//! | `camux_reconciler_daemon_status_known` | gauge | 1 while the daemon's `/status` is readable, else 0 (then nothing is changed) |
//! | `camux_reconciler_stream_ready{stream}` | gauge | 1 for each stream labelled ready now |
//! | `camux_reconciler_stream_down_seconds{stream}` | gauge | how long each down stream has been down, as the reconciler counts it |
//! | `camux_reconciler_last_success_timestamp_seconds` | gauge | Unix time of the last decision whose every read and action succeeded |
//!
//! ```
//! let m = camux::reconciler::metrics::ReconcilerMetrics::new();
//! m.reconciles.inc();
//! assert!(m.encode().contains("camux_reconciler_reconciles_total 1"));
//! ```

use prometheus::{
    Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metrics, registered in their own [`Registry`].
#[derive(Clone)]
pub struct ReconcilerMetrics {
    registry: Registry,
    /// Decisions made.
    pub reconciles: IntCounter,
    /// Failures by operation and kind.
    pub errors: IntCounterVec,
    /// Eviction attempts by result.
    pub evictions: IntCounterVec,
    /// Label patches applied.
    pub label_changes: IntCounter,
    /// Whether the daemon's status is readable.
    pub daemon_known: IntGauge,
    /// Ready streams.
    pub stream_ready: IntGaugeVec,
    /// Down time of down streams.
    pub stream_down_seconds: prometheus::GaugeVec,
    /// Last fully successful decision.
    pub last_success: Gauge,
}

impl Default for ReconcilerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ReconcilerMetrics {
    /// Makes and registers every metric.
    pub fn new() -> ReconcilerMetrics {
        let registry = Registry::new();
        let opts = |n: &str, h: &str| Opts::new(format!("camux_reconciler_{n}"), h);
        let reconciles = IntCounter::with_opts(opts("reconciles_total", "Decisions made."))
            .expect("valid metric");
        let errors = IntCounterVec::new(
            opts(
                "errors_total",
                "Failed reads and actions, by operation and kind.",
            ),
            &["op", "kind"],
        )
        .expect("valid metric");
        let evictions = IntCounterVec::new(
            opts(
                "evictions_total",
                "Eviction attempts, by result (evicted, refused, failed, gone).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let label_changes =
            IntCounter::with_opts(opts("label_changes_total", "Node label patches applied."))
                .expect("valid metric");
        let daemon_known = IntGauge::with_opts(opts(
            "daemon_status_known",
            "1 while the daemon's /status is readable; while 0 the reconciler changes nothing.",
        ))
        .expect("valid metric");
        let stream_ready = IntGaugeVec::new(
            opts(
                "stream_ready",
                "1 for each stream whose node label says ready.",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let stream_down_seconds = prometheus::GaugeVec::new(
            opts(
                "stream_down_seconds",
                "How long each down stream has been down, as the reconciler counts it.",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let last_success = Gauge::with_opts(opts(
            "last_success_timestamp_seconds",
            "Unix time of the last decision whose every read and action succeeded.",
        ))
        .expect("valid metric");
        // Every result from the start, so rate() and alerts see zeros
        // rather than no series.
        for result in ["evicted", "refused", "failed", "gone"] {
            evictions.with_label_values(&[result]);
        }
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(evictions.clone()),
            Box::new(label_changes.clone()),
            Box::new(daemon_known.clone()),
            Box::new(stream_ready.clone()),
            Box::new(stream_down_seconds.clone()),
            Box::new(last_success.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        ReconcilerMetrics {
            registry,
            reconciles,
            errors,
            evictions,
            label_changes,
            daemon_known,
            stream_ready,
            stream_down_seconds,
            last_success,
        }
    }

    /// Counts a failure.
    pub fn error(&self, op: &str, kind: &str) {
        self.errors.with_label_values(&[op, kind]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}
