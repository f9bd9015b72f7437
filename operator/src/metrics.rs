//! Prometheus metrics, named like controller-runtime's so existing dashboards work.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// `{controller, result}` labels of reconcile counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Controller name, for example `membercluster`.
    pub controller: String,
    /// `success`, `error` or `requeue`.
    pub result: String,
}

/// `{controller}` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name.
    pub controller: String,
}

/// `{controller, category}` labels of reconcile errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Controller name.
    pub controller: String,
    /// Error category (see `Error::category`).
    pub category: String,
}

/// All operator metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    active_workers: Family<ControllerLabels, Gauge>,
    /// Jobs waiting for the placer's first look.
    pub awaiting_placement: Gauge,
    /// Seconds member-cluster reconciles waited for new jobs to be placed, in total.
    pub yielded_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_time = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let leader = Gauge::default();
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        let awaiting_placement = Gauge::default();
        let yielded_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        registry.register(
            "fedsky_jobs_awaiting_placement",
            "FederatedJobs not looked at by the placer since they were created or changed",
            awaiting_placement.clone(),
        );
        registry.register(
            "fedsky_member_work_yielded_seconds",
            "Seconds member-cluster reconciles waited for new jobs to be placed",
            yielded_seconds.clone(),
        );
        registry.register(
            "controller_runtime_reconcile",
            "Total reconciliations per controller and result",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total reconciliation errors per controller and category",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            leader,
            active_workers,
            awaiting_placement,
            yielded_seconds,
        }
    }
}

impl Metrics {
    /// Counts a worker of `controller` as busy until the guard drops.
    pub fn busy(&self, controller: &str) -> Busy {
        let gauge = self
            .active_workers
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .clone();
        gauge.inc();
        Busy(gauge)
    }

    /// Shared handle.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records one reconcile's outcome and, when it ran to the end, its duration.
    pub fn reconciled(&self, controller: &str, result: &str, took: Option<Duration>) {
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.into(),
                result: result.into(),
            })
            .inc();
        if let Some(took) = took {
            self.reconcile_time
                .get_or_create(&ControllerLabels {
                    controller: controller.into(),
                })
                .observe(took.as_secs_f64());
        }
    }

    /// Records a reconcile error by category.
    pub fn error(&self, controller: &str, category: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                category: category.into(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A busy worker; see [`Metrics::busy`].
#[derive(Debug)]
pub struct Busy(Gauge);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_controller_runtime_names() {
        let m = Metrics::default();
        m.reconciled("membercluster", "success", Some(Duration::from_millis(3)));
        m.error("membercluster", "ClusterUnreachable");
        let text = m.encode();
        assert!(text.contains("controller_runtime_reconcile_total{controller=\"membercluster\",result=\"success\"} 1"), "{text}");
        assert!(text.contains("controller_runtime_reconcile_errors_total{controller=\"membercluster\",category=\"ClusterUnreachable\"} 1"));
        assert!(text.contains("controller_runtime_reconcile_time_seconds_bucket"));
        let busy = m.busy("federatedjob");
        assert!(
            m.encode()
                .contains("controller_runtime_active_workers{controller=\"federatedjob\"} 1")
        );
        drop(busy);
        assert!(
            m.encode()
                .contains("controller_runtime_active_workers{controller=\"federatedjob\"} 0")
        );
    }
}
