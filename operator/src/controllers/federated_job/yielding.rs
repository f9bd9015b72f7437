//! The lifecycle controller's member-cluster work yields to placing: jobs that wait for
//! the placer's first look ([`Arrivals`]), jobs being placed ([`Placing`]), and the
//! [`SETTLE`] time after the last arrival. Events wait for arrivals too.

use super::context::JobContext;
use super::plan::hub_only;
use fedsky_crds::FederatedJob;
use kube::ResourceExt;
use kube::runtime::watcher;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest a member-cluster reconcile waits for placing to finish.
const MAX_YIELD: Duration = Duration::from_secs(15);

/// Jobs the placer has not looked at since they were created or their spec changed, kept
/// up to date from the jobs' watch, and when the last one arrived: while there are any, and
/// for [`SETTLE`] after the last arrival, member-cluster work waits.
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<Waiting>>);

#[derive(Default)]
struct Waiting {
    jobs: HashSet<String>,
    last: Option<Instant>,
}

/// How long arrivals must have stopped before member work goes on. At a steady rate (100
/// jobs a second in the benchmark) the set is empty for most of the gaps between jobs, and
/// member work slipping into them took the CPU that placing needed (apply → `Placed` p99
/// 2.3–6.8 s on the shared benchmark machine).
pub const SETTLE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrivals").finish_non_exhaustive()
    }
}

impl Arrivals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows one event of the jobs' watch.
    pub fn observe(&self, event: &watcher::Event<FederatedJob>) {
        self.observe_at(event, Instant::now());
    }

    fn observe_at(&self, event: &watcher::Event<FederatedJob>, now: Instant) {
        let mut w = self.lock();
        let key =
            |j: &FederatedJob| format!("{}/{}", j.namespace().unwrap_or_default(), j.name_any());
        match event {
            watcher::Event::Init => w.jobs.clear(),
            watcher::Event::InitApply(j) | watcher::Event::Apply(j) => {
                if unseen(j) {
                    if w.jobs.insert(key(j)) {
                        w.last = Some(now);
                    }
                } else {
                    w.jobs.remove(&key(j));
                }
            }
            watcher::Event::Delete(j) => {
                w.jobs.remove(&key(j));
            }
            watcher::Event::InitDone => {}
        }
    }

    /// How many jobs wait for their first look.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Whether no job waits for its first look.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some job waits for its first look, or one arrived less than [`SETTLE`]
    /// before `now`.
    pub fn busy(&self, now: Instant) -> bool {
        let w = self.lock();
        !w.jobs.is_empty()
            || w.last
                .is_some_and(|t| now.saturating_duration_since(t) < SETTLE)
    }
}

/// A job to be placed whose status does not answer its current spec yet.
fn unseen(job: &FederatedJob) -> bool {
    hub_only(job)
        && job.status.as_ref().and_then(|s| s.observed_generation) != job.metadata.generation
}

/// Counts a placement in flight while alive.
pub(super) struct Placing(Arc<AtomicUsize>);

impl Placing {
    pub(super) fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Placing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (at most [`MAX_YIELD`]) while jobs wait to be placed, are being placed, or have
/// just been arriving ([`SETTLE`]):
/// member-cluster work shares the machine and the hub with placing, a user waits on
/// `Placed` after `kubectl apply`, and member work is polled anyway. Bounded, so a job the
/// placer keeps failing on holds the others up for no longer than that per reconcile.
pub(super) async fn yield_to_placing(ctx: &JobContext) {
    let waited = wait_while(
        || ctx.placing.load(Ordering::SeqCst) > 0 || ctx.arrivals.busy(Instant::now()),
        MAX_YIELD,
    )
    .await;
    ctx.shared
        .metrics
        .yielded_seconds
        .inc_by(waited.as_secs_f64());
}

/// Waits while `busy` holds, at most `max`; returns how long it waited.
pub(super) async fn wait_while(busy: impl Fn() -> bool, max: Duration) -> Duration {
    let start = Instant::now();
    while busy() && start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::super::{FINALIZER, validate};
    use super::*;
    use fedsky_crds::federated_job::FederatedJobStatus;

    #[test]
    fn arrivals_are_the_jobs_not_looked_at_since_their_last_spec_change() {
        let arrivals = Arrivals::default();
        let t0 = Instant::now();
        let later = t0 + SETTLE;
        let mut j = validate::tests::example_job();
        j.metadata.generation = Some(1);
        arrivals.observe_at(&watcher::Event::Apply(j.clone()), t0);
        assert!(arrivals.busy(later), "new");
        j.status = Some(FederatedJobStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        arrivals.observe_at(&watcher::Event::Apply(j.clone()), t0);
        assert!(arrivals.busy(t0), "looked at, but jobs were just arriving");
        assert!(
            !arrivals.busy(later),
            "looked at (placed or not), and quiet since"
        );
        j.metadata.generation = Some(2);
        arrivals.observe_at(&watcher::Event::Apply(j.clone()), later);
        assert!(arrivals.busy(later + SETTLE), "spec changed before placing");
        arrivals.observe_at(&watcher::Event::Delete(j.clone()), later);
        assert!(arrivals.is_empty(), "deleted");
        assert!(!arrivals.busy(later + SETTLE));
        arrivals.observe_at(&watcher::Event::Apply(j.clone()), later);
        arrivals.observe_at(&watcher::Event::Init, later);
        assert!(arrivals.is_empty(), "a relist starts over");
        j.metadata.finalizers = Some(vec![FINALIZER.into()]);
        arrivals.observe_at(&watcher::Event::InitApply(j), later + SETTLE);
        assert!(!arrivals.busy(later + SETTLE), "the lifecycle controller's");
    }
}
