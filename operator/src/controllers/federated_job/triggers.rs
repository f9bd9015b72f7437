//! Which changes of a job wake the lifecycle controller. Its own status writes must not:
//! each would bring the job straight back for a reconcile that finds nothing new, doubling
//! the member-cluster work of 1,000 running jobs (docs/operator-benchmark.md). A new
//! generation, a finalizer or deletion, and the placer's `Placed` do; everything else is
//! polled by the periodic requeue.

use super::plan::hub_only;
use fedsky_crds::FederatedJob;
use kube::ResourceExt;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries of jobs not seen for this long are dropped (deleted jobs).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The last relevant state seen per job UID.
#[derive(Default)]
pub struct Relevant {
    seen: HashMap<String, (u64, Instant)>,
    since_prune: usize,
}

impl Relevant {
    /// Whether `job` changed in a way the lifecycle controller must see, remembering it.
    pub fn changed(&mut self, job: &FederatedJob, now: Instant) -> bool {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        job.metadata.generation.hash(&mut h);
        job.metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .hash(&mut h);
        job.finalizers().hash(&mut h);
        hub_only(job).hash(&mut h);
        let digest = h.finish();
        self.since_prune += 1;
        if self.since_prune >= 1024 {
            self.since_prune = 0;
            self.seen
                .retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
        }
        let uid = job.uid().unwrap_or_else(|| job.name_any());
        self.seen
            .insert(uid, (digest, now))
            .is_none_or(|(d, _)| d != digest)
    }

    /// Keeps the relevant changes of a stream of jobs.
    pub fn filter(
        self,
        jobs: impl futures::Stream<Item = Arc<FederatedJob>>,
    ) -> impl futures::Stream<Item = Arc<FederatedJob>> {
        use futures::StreamExt;
        let state = std::sync::Mutex::new(self);
        jobs.filter(move |job| {
            let mut s = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            futures::future::ready(s.changed(job, Instant::now()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::conditions::{ConditionStatus, NewCondition, set_condition};
    use fedsky_crds::federated_job::FederatedJobStatus;

    #[test]
    fn status_writes_do_not_wake_the_lifecycle_but_placing_and_spec_changes_do() {
        let mut r = Relevant::default();
        let t0 = Instant::now();
        let mut j = super::super::validate::tests::example_job();
        j.metadata.uid = Some("u1".into());
        j.metadata.generation = Some(1);
        assert!(r.changed(&j, t0), "first sight");
        assert!(!r.changed(&j, t0), "nothing new");
        let mut st = FederatedJobStatus::default();
        set_condition(
            &mut st.conditions,
            NewCondition {
                type_: super::super::status::types::PLACED,
                status: ConditionStatus::True,
                reason: "Solved",
                message: String::new(),
            },
            Some(1),
            k8s_openapi::jiff::Timestamp::now(),
        );
        j.status = Some(st);
        assert!(r.changed(&j, t0), "placed: the lifecycle's now");
        if let Some(s) = j.status.as_mut() {
            s.queue_cursor = Some(3);
        }
        assert!(!r.changed(&j, t0), "its own status write");
        j.metadata.finalizers = Some(vec![super::super::FINALIZER.into()]);
        assert!(r.changed(&j, t0), "finalizer added");
        j.metadata.generation = Some(2);
        assert!(r.changed(&j, t0), "spec changed");
        j.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert!(r.changed(&j, t0), "deleted");
    }

    #[test]
    fn jobs_unseen_for_long_are_forgotten() {
        let mut r = Relevant::default();
        let t0 = Instant::now();
        let mut j = super::super::validate::tests::example_job();
        j.metadata.uid = Some("gone".into());
        r.changed(&j, t0);
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        for i in 0..1024 {
            j.metadata.uid = Some(format!("u{i}"));
            r.changed(&j, later);
        }
        assert!(!r.seen.contains_key("gone"));
        assert!(r.seen.contains_key("u1"));
    }
}
