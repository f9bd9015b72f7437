//! The placer: takes FederatedJobs that are not placed yet through validation and the
//! placement to `Placed`, using only the hub (cached reads and one status write), in its
//! own controller so that a new job never waits behind member-cluster work. Until a job is
//! placed nothing of it exists outside the hub, so it needs no finalizer yet; the
//! lifecycle controller adds it before the first member-cluster request.

use super::status::{AggregatorObs, PlacementObs};
use super::{FINALIZER, first_placement, validate};
use crate::{Context, Error};
use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::{AggregatorPlacement, FederatedJob, ParticipantPool};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "federatedjob-placer";
/// Longest a member-cluster reconcile waits for placing to finish.
const MAX_YIELD: Duration = Duration::from_secs(15);
/// Next look at a job whose placement is not solved yet, besides the watches.
const PENDING: Duration = Duration::from_secs(5);

/// The placer's watches besides the jobs: a ParticipantPool or AggregatorPlacement that
/// appears or changes re-triggers the jobs waiting for it. `kubectl apply -f` of a
/// directory creates a job before its pool (alphabetical order), and such a job must not
/// wait for its next periodic check.
pub(super) fn controller(c: Controller<FederatedJob>, ctx: &Context) -> Controller<FederatedJob> {
    let jobs = c.store();
    let for_placements = jobs.clone();
    // Only a pool that is new or whose spec changed (a new generation) matters to a job
    // waiting for it; its status changes with every capacity update, and re-triggering
    // every waiting job on each would flood the queue in a burst of new jobs.
    let generations: Mutex<HashMap<PoolKey, Option<i64>>> = Mutex::new(HashMap::new());
    c.watches(
        Api::<ParticipantPool>::all(ctx.client.clone()),
        watcher::Config::default(),
        move |pool| {
            let key = (pool.namespace(), pool.name_any());
            let mut seen = generations.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.insert(key, pool.metadata.generation) == Some(pool.metadata.generation) {
                return Vec::new();
            }
            drop(seen);
            super::super::users_of_pool(&jobs, &pool, |job, name| {
                job.spec.participants.pool_ref.name == name && hub_only(job)
            })
        },
    )
    .watches(
        Api::<AggregatorPlacement>::all(ctx.client.clone()),
        watcher::Config::default(),
        move |ap| waiting_for(&for_placements, &ap),
    )
}

/// A pool by namespace and name.
type PoolKey = (Option<String>, String);

/// The unplaced jobs that use `ap`: by reference, or their own inline placement.
fn waiting_for(
    jobs: &Store<FederatedJob>,
    ap: &AggregatorPlacement,
) -> Vec<ObjectRef<FederatedJob>> {
    let ns = ap.namespace();
    let name = ap.name_any();
    jobs.state()
        .iter()
        .filter(|j| j.namespace() == ns && hub_only(j))
        .filter(|j| match &j.spec.placement.placement_ref {
            Some(r) => r.name == name,
            None => j.name_any() == name,
        })
        .map(|j| ObjectRef::from_obj(j.as_ref()))
        .collect()
}

/// A job not placed yet, without our finalizer and not being deleted: nothing of it
/// exists outside the hub.
pub(super) fn hub_only(job: &FederatedJob) -> bool {
    job.metadata.deletion_timestamp.is_none()
        && !job.finalizers().iter().any(|f| f == FINALIZER)
        && job.status.as_ref().is_none_or(first_placement)
}

/// What the aggregator waits for once the job is placed.
pub(super) fn realising(option: &PlacementOption) -> AggregatorObs {
    AggregatorObs::Waiting(
        "Starting",
        format!(
            "applying the aggregator in {}/{}",
            option.cloud, option.region
        ),
    )
}

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
struct Placing(Arc<AtomicUsize>);

impl Placing {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
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
pub(super) async fn yield_to_placing(ctx: &Context) {
    let waited = wait_while(
        || ctx.placing.load(Ordering::SeqCst) > 0 || ctx.arrivals.busy(Instant::now()),
        MAX_YIELD,
    )
    .await;
    ctx.metrics.yielded_seconds.inc_by(waited.as_secs_f64());
}

/// Waits while `busy` holds, at most `max`; returns how long it waited.
pub(super) async fn wait_while(busy: impl Fn() -> bool, max: Duration) -> Duration {
    let start = Instant::now();
    while busy() && start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

pub(super) async fn reconcile(job: Arc<FederatedJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !hub_only(&job) {
        return Ok(Action::await_change());
    }
    let _placing = Placing::enter(&ctx.placing);
    // First come, first served (see `CONCURRENCY` on why not the controller's limit).
    let Ok(_slot) = ctx.place_slots.clone().acquire_owned().await else {
        return Ok(Action::requeue(PENDING));
    };
    let _busy = ctx.metrics.busy(CONTROLLER);
    let start = Instant::now();
    let result = Box::pin(place(&job, &ctx)).await;
    ctx.metrics.reconciled(
        CONTROLLER,
        if result.is_ok() { "success" } else { "error" },
        Some(start.elapsed()),
    );
    result
}

#[tracing::instrument(skip_all, fields(job = %job.name_any()))]
async fn place(job: &FederatedJob, ctx: &Context) -> Result<Action, Error> {
    let prev = job.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut obs = super::initial_observation(job);
    let invalid = match super::pool_of(job, ctx).await? {
        Ok(pool) => validate::check(job, &pool).err().map(|e| e.to_string()),
        Err(why) => Some(why),
    };
    if let Some(why) = invalid {
        obs.invalid = Some(why);
        return super::finish(job, ctx, &prev, &obs, None, 0, now).await;
    }
    obs.placement = super::member::ensure_placement(ctx, job).await?;
    let placed = match &obs.placement {
        PlacementObs::Placed { option, .. } => {
            obs.aggregator = realising(option);
            true
        }
        _ => false,
    };
    super::write_status(job, ctx, &prev, &obs, None, 0, now).await?;
    // Once placed, the status write brings the job to the lifecycle controller.
    Ok(if placed {
        Action::await_change()
    } else {
        Action::requeue(PENDING)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::federated_job::{FederatedJobStatus, ParticipantState};

    #[test]
    fn a_job_needs_the_finalizer_only_once_placed() {
        let mut j = validate::tests::example_job();
        assert!(hub_only(&j));
        j.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert!(!hub_only(&j), "the lifecycle controller's");
        j.metadata.finalizers = None;
        j.status = Some(FederatedJobStatus {
            participants: vec![ParticipantState {
                name: "p-0".into(),
                site: "eu".into(),
                node: None,
                state: "Running".into(),
                message: None,
                last_heartbeat: None,
            }],
            ..Default::default()
        });
        assert!(!hub_only(&j), "something runs for it");
        j.status = None;
        j.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        assert!(!hub_only(&j), "being deleted");
    }

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

    #[test]
    fn a_placement_triggers_the_unplaced_jobs_that_use_it() {
        let (reader, mut writer) = kube::runtime::reflector::store();
        let mut by_ref = validate::tests::example_job();
        by_ref.metadata.name = Some("by-ref".into());
        by_ref.spec.placement.placement_ref = Some(fedsky_crds::common::LocalObjectRef {
            name: "shared".into(),
        });
        let mut inline = validate::tests::example_job();
        inline.metadata.name = Some("shared".into());
        inline.spec.placement.placement_ref = None;
        let mut placed = by_ref.clone();
        placed.metadata.name = Some("placed".into());
        placed.metadata.finalizers = Some(vec![FINALIZER.into()]);
        let mut other = by_ref.clone();
        other.metadata.name = Some("other".into());
        other.spec.placement.placement_ref = Some(fedsky_crds::common::LocalObjectRef {
            name: "elsewhere".into(),
        });
        writer.apply_watcher_event(&watcher::Event::Init);
        for j in [&by_ref, &inline, &placed, &other] {
            writer.apply_watcher_event(&watcher::Event::InitApply(j.clone()));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let ap: AggregatorPlacement = serde_json::from_value(serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
            "metadata": { "name": "shared", "namespace": by_ref.namespace() },
            "spec": { "participants": {} },
        }))
        .expect("placement");
        let mut names: Vec<String> = waiting_for(&reader, &ap)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["by-ref", "shared"]);
    }
}
