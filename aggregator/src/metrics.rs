//! Prometheus metrics of the aggregator (`/metrics`, text format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::round::UpdateRefusal;
use crate::update::UpdateRejection;

/// Labels of counters split by a reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Stable reason label (`non_finite`, `stale_round`, ...).
    pub reason: String,
}

/// Labels of counters split by an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `completed` or `failed`.
    pub result: String,
}

/// Reasons the service adds to those of the pure core.
pub const SERVICE_REASONS: &[&str] = &[
    "unauthenticated",
    "permission_denied",
    "not_listed",
    "message_too_large",
    "protocol",
    "stale_base",
    "capacity",
    "zero_examples",
];

/// Every metric the aggregator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Rounds finished, by result.
    pub rounds: Family<ResultLabels, Counter>,
    /// Round in progress (or waited for).
    pub current_round: Gauge,
    /// Updates accepted into an aggregate.
    pub updates_accepted: Counter,
    /// Updates and calls refused, by reason.
    pub updates_rejected: Family<ReasonLabels, Counter>,
    /// Bytes of update data received.
    pub update_bytes: Counter,
    /// Bytes of model data sent to participants.
    pub download_bytes: Counter,
    /// Time to finish an aggregation (strategy `finish` and encoding).
    pub aggregation_seconds: Histogram,
    /// Time to commit a round to the model store.
    pub checkpoint_seconds: Histogram,
    /// Participants currently connected.
    pub connected_participants: Gauge,
    /// Model versions pruned by `--keep-versions`, by result (`deleted`, `failed`).
    pub versions_pruned: Family<ResultLabels, Counter>,
    /// Registered participants revoked because the operator's list no longer names them.
    pub participants_revoked: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, with all reason labels at 0 so dashboards and
    /// `rate()` see them before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fedsky_aggregator");
        let m = Self {
            rounds: Family::default(),
            current_round: Gauge::default(),
            updates_accepted: Counter::default(),
            updates_rejected: Family::default(),
            update_bytes: Counter::default(),
            download_bytes: Counter::default(),
            aggregation_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            checkpoint_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            connected_participants: Gauge::default(),
            versions_pruned: Family::default(),
            participants_revoked: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("rounds", "Rounds finished, by result", m.rounds.clone());
        registry.register(
            "current_round",
            "Round in progress or waited for",
            m.current_round.clone(),
        );
        registry.register(
            "updates_accepted",
            "Updates accepted into an aggregate",
            m.updates_accepted.clone(),
        );
        registry.register(
            "updates_rejected",
            "Updates and data-plane calls refused, by reason",
            m.updates_rejected.clone(),
        );
        registry.register(
            "update_bytes",
            "Bytes of update data received",
            m.update_bytes.clone(),
        );
        registry.register(
            "download_bytes",
            "Bytes of model data sent to participants",
            m.download_bytes.clone(),
        );
        registry.register(
            "aggregation_seconds",
            "Time to finish one aggregation",
            m.aggregation_seconds.clone(),
        );
        registry.register(
            "checkpoint_seconds",
            "Time to commit one round to the model store",
            m.checkpoint_seconds.clone(),
        );
        registry.register(
            "connected_participants",
            "Participants currently connected",
            m.connected_participants.clone(),
        );
        registry.register(
            "versions_pruned",
            "Model versions deleted to keep --keep-versions, by result",
            m.versions_pruned.clone(),
        );
        registry.register(
            "participants_revoked",
            "Registered participants removed because the operator's list no longer names them",
            m.participants_revoked.clone(),
        );
        for result in ["completed", "failed"] {
            let _ = m.rounds.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        for result in ["deleted", "failed"] {
            let _ = m.versions_pruned.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        let reasons = UpdateRejection::REASONS
            .iter()
            .chain(UpdateRefusal::REASONS)
            .chain(SERVICE_REASONS);
        for reason in reasons {
            let _ = m.updates_rejected.get_or_create(&ReasonLabels {
                reason: (*reason).into(),
            });
        }
        Self { registry, ..m }
    }

    /// Counts one refusal.
    pub fn reject(&self, reason: &str) {
        self.updates_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Value of a rejection counter (for tests and the status endpoint).
    pub fn rejected(&self, reason: &str) -> u64 {
        self.updates_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .get()
    }

    /// Counts a finished round.
    pub fn round_finished(&self, result: &str) {
        self.rounds
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a model version pruned (`deleted`) or whose deletion failed.
    pub fn version_pruned(&self, result: &str) {
        self.versions_pruned
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
