//! Prometheus metrics, named like controller-runtime's so existing dashboards work, plus
//! each FederatedJob's training progress as its status records it
//! (`fedsky_federatedjob_*`, see [`JobSample`]).

use fedsky_crds::federated_job::FederatedJobStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `{controller, result}` labels of reconcile counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Controller name, for example `membercluster`.
    pub controller: String,
    /// `success`, `error` or `requeue` (a member cluster that could not be probed).
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

/// `{federatedjob_namespace, federatedjob}` labels of a FederatedJob's metrics. Not
/// `namespace` and `job`: Prometheus sets those target labels itself (the operator pod's
/// namespace, the scrape job) and would rename ours to `exported_namespace` and
/// `exported_job`. The aggregators' PodMonitor (`terraform/modules/fedsky-member`) gives
/// their metrics the same two labels, so one dashboard variable selects both.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The FederatedJob's namespace.
    pub federatedjob_namespace: String,
    /// The FederatedJob's name.
    pub federatedjob: String,
}

/// A FederatedJob's training as its status records it, the values of its
/// `fedsky_federatedjob_*` metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobSample {
    /// Rounds completed (`status.currentRound`).
    pub rounds_completed: u64,
    /// Wall time of the most recent round whose duration is known
    /// (`status.history[].durationSeconds`).
    pub round_duration_seconds: Option<f64>,
    /// Participants whose updates made the most recent model version (round 1 or later).
    pub round_participants: Option<i64>,
    /// Evaluation accuracy of the most recent model version that has been evaluated.
    pub model_accuracy: Option<f64>,
    /// Evaluation loss of that version.
    pub model_loss: Option<f64>,
}

impl JobSample {
    /// The sample of a job whose status is `s`. Participants evaluate a version in the
    /// round after it, so the accuracy and loss belong to the newest version that has them
    /// (in the history or the latest model), not necessarily the latest one.
    pub fn of(s: &FederatedJobStatus) -> Self {
        let newest = |f: &dyn Fn(&fedsky_crds::federated_job::RoundMetrics) -> bool| {
            s.history.iter().rev().find(|h| f(h))
        };
        let evaluated = newest(&|h| h.accuracy.is_some() || h.loss.is_some())
            .map(|h| (h.round, h.accuracy, h.loss));
        let latest = s
            .latest_model
            .as_ref()
            .filter(|m| m.accuracy.is_some() || m.loss.is_some())
            .map(|m| (m.version, m.accuracy, m.loss));
        let (model_accuracy, model_loss) = match (evaluated, latest) {
            (Some(h), Some(m)) if m.0 > h.0 => (m.1, m.2),
            (Some(h), _) => (h.1, h.2),
            (None, Some(m)) => (m.1, m.2),
            (None, None) => (None, None),
        };
        Self {
            rounds_completed: u64::try_from(s.current_round.unwrap_or(0)).unwrap_or(0),
            round_duration_seconds: newest(&|h| h.duration_seconds.is_some())
                .and_then(|h| h.duration_seconds),
            round_participants: newest(&|h| h.round > 0).map(|h| i64::from(h.participants)),
            model_accuracy,
            model_loss,
        }
    }
}

/// A float gauge.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Per-job metrics and what was last exported for each job.
#[derive(Debug, Default)]
struct JobMetrics {
    rounds_completed: Family<JobLabels, Counter>,
    round_duration: Family<JobLabels, FloatGauge>,
    round_participants: Family<JobLabels, Gauge>,
    accuracy: Family<JobLabels, FloatGauge>,
    loss: Family<JobLabels, FloatGauge>,
    /// UID and rounds completed of each exported job, under one lock so that two
    /// reconciles of a job never interleave their updates.
    seen: Mutex<HashMap<JobLabels, (String, u64)>>,
}

impl JobMetrics {
    fn remove(&self, labels: &JobLabels) {
        self.rounds_completed.remove(labels);
        self.round_duration.remove(labels);
        self.round_participants.remove(labels);
        self.accuracy.remove(labels);
        self.loss.remove(labels);
    }
}

/// Sets `family`'s series for `labels` to `value`, or removes it when there is none.
fn set_or_remove<N, A>(
    family: &Family<JobLabels, Gauge<N, A>>,
    labels: &JobLabels,
    value: Option<N>,
) where
    A: prometheus_client::metrics::gauge::Atomic<N> + Default,
{
    match value {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    }
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
    jobs: JobMetrics,
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
        let jobs = JobMetrics::default();
        registry.register(
            "fedsky_federatedjob_rounds_completed",
            "Rounds a FederatedJob has completed (status.currentRound)",
            jobs.rounds_completed.clone(),
        );
        registry.register(
            "fedsky_federatedjob_round_duration_seconds",
            "Wall time of a FederatedJob's most recent round",
            jobs.round_duration.clone(),
        );
        registry.register(
            "fedsky_federatedjob_round_participants",
            "Participants whose updates made a FederatedJob's most recent model version",
            jobs.round_participants.clone(),
        );
        registry.register(
            "fedsky_federatedjob_model_accuracy",
            "Evaluation accuracy of a FederatedJob's most recent evaluated model version",
            jobs.accuracy.clone(),
        );
        registry.register(
            "fedsky_federatedjob_model_loss",
            "Evaluation loss of a FederatedJob's most recent evaluated model version",
            jobs.loss.clone(),
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
            jobs,
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

    /// Exports the training of job `labels` (UID `uid`) as its status records it.
    ///
    /// The rounds counter takes the value of `status.currentRound`, which the hub keeps:
    /// a restarted operator (or a new leader) starts the series at the value the old one
    /// ended with, so `increase()` counts no round twice. A lower value for the same UID
    /// comes from a stale read of the job and is ignored (the counter never goes back,
    /// which would count the rounds again as they return); a new UID is a new job under
    /// the same name and starts a new series.
    pub fn job(&self, labels: &JobLabels, uid: &str, sample: &JobSample) {
        let j = &self.jobs;
        let mut seen = j
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let exported = match seen.get(labels) {
            Some((u, rounds)) if u == uid => {
                if sample.rounds_completed < *rounds {
                    return;
                }
                *rounds
            }
            Some(_) => {
                j.remove(labels);
                0
            }
            None => 0,
        };
        j.rounds_completed
            .get_or_create(labels)
            .inc_by(sample.rounds_completed - exported);
        seen.insert(labels.clone(), (uid.to_string(), sample.rounds_completed));
        set_or_remove(&j.round_duration, labels, sample.round_duration_seconds);
        set_or_remove(&j.round_participants, labels, sample.round_participants);
        set_or_remove(&j.accuracy, labels, sample.model_accuracy);
        set_or_remove(&j.loss, labels, sample.model_loss);
    }

    /// Drops a deleted job's series.
    pub fn forget_job(&self, labels: &JobLabels) {
        let j = &self.jobs;
        let mut seen = j
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.remove(labels);
        j.remove(labels);
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

    fn status(
        current_round: i32,
        history: &[(i32, i32, Option<f64>, Option<f64>)],
    ) -> FederatedJobStatus {
        use fedsky_crds::federated_job::RoundMetrics;
        FederatedJobStatus {
            current_round: Some(current_round),
            history: history
                .iter()
                .map(
                    |&(round, participants, accuracy, duration_seconds)| RoundMetrics {
                        round,
                        participants,
                        accuracy,
                        loss: accuracy.map(|a| 1.0 - a),
                        duration_seconds,
                    },
                )
                .collect(),
            ..Default::default()
        }
    }

    fn xray() -> JobLabels {
        JobLabels {
            federatedjob_namespace: "covid".into(),
            federatedjob: "xray".into(),
        }
    }

    fn line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        let prefix = format!("{name}{{federatedjob_namespace=\"covid\",federatedjob=\"xray\"}} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    #[test]
    fn job_sample_takes_the_newest_known_values() {
        // Version 2 is not evaluated yet: accuracy and loss are version 1's.
        let s = status(
            2,
            &[
                (0, 0, Some(0.3), None),
                (1, 3, Some(0.6), Some(4.0)),
                (2, 2, None, Some(2.5)),
            ],
        );
        let sample = JobSample::of(&s);
        assert_eq!(sample.rounds_completed, 2);
        assert_eq!(sample.round_duration_seconds, Some(2.5));
        assert_eq!(sample.round_participants, Some(2));
        assert_eq!(sample.model_accuracy, Some(0.6));
        assert_eq!(sample.model_loss.map(|l| (l * 10.0).round()), Some(4.0));
        // Nothing measured yet: no gauges, zero rounds.
        let empty = JobSample::of(&FederatedJobStatus::default());
        assert_eq!(empty, JobSample::default());
        // The latest model's evaluation when it is newer than the history's.
        let mut s = status(2, &[(0, 0, Some(0.3), None)]);
        s.latest_model = Some(fedsky_crds::federated_job::ModelVersion {
            version: 2,
            accuracy: Some(0.8),
            ..Default::default()
        });
        assert_eq!(JobSample::of(&s).model_accuracy, Some(0.8));
    }

    #[test]
    fn rounds_counter_follows_status_without_counting_twice() {
        let m = Metrics::default();
        let s = status(4, &[(4, 3, Some(0.7), Some(6.0))]);
        m.job(&xray(), "uid-1", &JobSample::of(&s));
        m.job(&xray(), "uid-1", &JobSample::of(&s));
        let text = m.encode();
        assert_eq!(
            line(&text, "fedsky_federatedjob_rounds_completed_total"),
            Some("4"),
            "{text}"
        );
        assert_eq!(
            line(&text, "fedsky_federatedjob_round_duration_seconds"),
            Some("6.0"),
            "{text}"
        );
        assert_eq!(
            line(&text, "fedsky_federatedjob_round_participants"),
            Some("3"),
            "{text}"
        );
        assert_eq!(
            line(&text, "fedsky_federatedjob_model_accuracy"),
            Some("0.7"),
            "{text}"
        );

        // A restarted operator reads the same status: the series resumes at 4, not 8.
        let restarted = Metrics::default();
        restarted.job(&xray(), "uid-1", &JobSample::of(&s));
        let text = restarted.encode();
        assert_eq!(
            line(&text, "fedsky_federatedjob_rounds_completed_total"),
            Some("4"),
            "{text}"
        );

        // A stale read (fewer rounds, same job) changes nothing; the next round adds one.
        m.job(&xray(), "uid-1", &JobSample::of(&status(3, &[])));
        m.job(&xray(), "uid-1", &JobSample::of(&status(5, &[])));
        let text = m.encode();
        assert_eq!(
            line(&text, "fedsky_federatedjob_rounds_completed_total"),
            Some("5"),
            "{text}"
        );
        // Values the status no longer has are dropped.
        assert_eq!(
            line(&text, "fedsky_federatedjob_model_accuracy"),
            None,
            "{text}"
        );

        // The job created again under the same name starts a new series.
        m.job(&xray(), "uid-2", &JobSample::of(&status(1, &[])));
        let text = m.encode();
        assert_eq!(
            line(&text, "fedsky_federatedjob_rounds_completed_total"),
            Some("1"),
            "{text}"
        );

        m.forget_job(&xray());
        let text = m.encode();
        assert!(!text.contains("federatedjob=\"xray\""), "{text}");
    }
}
