//! FederatedJob controller: validate → place → realise the aggregator in the placed member
//! cluster → start participants on the nodes the orchestrator picks → read progress →
//! status. A finalizer removes what the job created in other clusters, which owner
//! references cannot reach.

pub mod aggregator_config;
pub mod applied;
pub mod build;
pub mod command;
pub mod credentials;
mod member;
pub mod member_watch;
pub mod names;
pub mod participants;
pub mod per_job;
pub mod pki;
mod place;
pub mod progress;
pub use place::Arrivals;
mod requeue;
pub mod status;
mod triggers;
pub mod validate;
pub mod vm;

use crate::orchestrator::{FailureMark, QueueState, Slot};
use crate::{Context, Error, FIELD_MANAGER};
use fedsky_crds::federated_job::{
    FailureMark as ApiFailureMark, FederatedJobStatus, ParticipantState,
};
use fedsky_crds::{FederatedJob, ParticipantPool};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use status::{AggregatorObs, Observation, PlacementObs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "federatedjob";
/// Finalizer guarding cross-cluster cleanup.
pub const FINALIZER: &str = "fl.fedsky.dev/cleanup";
/// Placed jobs reconciled at once (member-cluster work). Unbounded, a burst of 1,000 jobs
/// meant 1,000 reconciles in flight: over a thousand sockets, 330 MB resident, and member
/// API servers timing out under the applies (measured with `make bench-operator`).
///
/// The limit is a first-come-first-served semaphore inside the reconcile, not the
/// controller's own concurrency: once kube's controller has every worker busy it keeps due
/// jobs in a hash set and always takes the same ones first, and at 1,000 jobs the jobs
/// whose aggregator had just become available were never looked at again.
pub const CONCURRENCY: usize = 32;
/// Jobs placed at once: each is a few cached reads and one status write on the hub.
pub const PLACE_CONCURRENCY: usize = 32;
/// Jobs' objects a controller may lag behind the watch before the watch waits.
const SHARED_BUFFER: usize = 1024;

/// Runs both FederatedJob controllers until they stop. They share one watch and cache of
/// the jobs: the placer takes jobs that are not placed yet (hub only, fast), the lifecycle
/// controller everything after (member clusters, slow), so that a new job is never queued
/// behind member API servers.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<FederatedJob> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store_shared(SHARED_BUFFER);
    let (Some(to_placer), Some(to_lifecycle)) = (writer.subscribe(), writer.subscribe()) else {
        // Only a store that is not shared has no subscribers; ours is.
        tracing::error!("the FederatedJob cache cannot be shared; controllers not started");
        return;
    };
    ctx.jobs.set(reader.clone());
    let arrivals = ctx.arrivals.clone();
    let metrics = ctx.metrics.clone();
    let jobs = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|job: &mut FederatedJob| requeue::keep_times_only(&mut job.metadata))
        .reflect_shared(writer)
        .for_each(move |event| {
            if let Ok(event) = event {
                arrivals.observe(&event);
                metrics
                    .awaiting_placement
                    .set(i64::try_from(arrivals.len()).unwrap_or(i64::MAX));
            }
            futures::future::ready(())
        });
    let placer = place::controller(
        Controller::for_shared_stream(to_placer, reader.clone()),
        &ctx,
    )
    .shutdown_on_signal()
    .run(place::reconcile, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));
    let to_lifecycle = triggers::Relevant::default().filter(to_lifecycle);
    let mut lifecycle = Controller::for_shared_stream(to_lifecycle, reader);
    if let Some(aggregators) = ctx.member_watches.jobs() {
        lifecycle = lifecycle.reconcile_on(aggregators);
    }
    let lifecycle = lifecycle
        .owns(
            Api::<fedsky_crds::AggregatorPlacement>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    tokio::select! {
        () = jobs => {}
        ((), ()) = futures::future::join(placer, lifecycle) => {}
    }
}

async fn reconcile(job: Arc<FederatedJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    if place::hub_only(&job) {
        // The placer's; its status write brings the job back here once placed.
        return Ok(Action::await_change());
    }
    place::yield_to_placing(&ctx).await;
    let Ok(_slot) = ctx.member_slots.clone().acquire_owned().await else {
        return Ok(Action::requeue(requeue::ACTIVE));
    };
    let _busy = ctx.metrics.busy(CONTROLLER);
    // Boxed: a reconcile waiting for its slot then holds a pointer, not the whole state of
    // the member work (1,000 waiting jobs held ~40 MB more otherwise).
    Box::pin(reconcile_now(job, &ctx)).await
}

async fn reconcile_now(job: Arc<FederatedJob>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = job.namespace().unwrap_or_default();
    let api: Api<FederatedJob> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply(&job, ctx).await,
            Finalizer::Cleanup(job) => cleanup(&job, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(
        CONTROLLER,
        if result.is_ok() { "success" } else { "error" },
        Some(start.elapsed()),
    );
    result
}

// kube's Controller fixes this signature (Arcs by value).
#[allow(clippy::needless_pass_by_value)]
fn error_policy(job: Arc<FederatedJob>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), %error, "reconcile failed");
    ctx.metrics.error(CONTROLLER, error.category());
    error
        .retry_after()
        .map_or_else(Action::await_change, Action::requeue)
}

#[tracing::instrument(skip_all, fields(job = %job.name_any()))]
async fn apply(job: &FederatedJob, ctx: &Context) -> Result<Action, Error> {
    let mut prev = job.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut obs = initial_observation(job);
    let pool = match pool_of(job, ctx).await? {
        Ok(pool) => pool,
        Err(why) => {
            obs.invalid = Some(why);
            return finish(job, ctx, &prev, &obs, None, 0, now).await;
        }
    };
    let creds = member::credentials(ctx, job).await?;
    let valid = match validate::validate(job, &pool, &creds.token, &creds.ca) {
        Ok(v) => v,
        Err(e) => {
            obs.invalid = Some(e.to_string());
            return finish(job, ctx, &prev, &obs, None, 0, now).await;
        }
    };
    obs.placement = member::ensure_placement(ctx, job).await?;
    if let PlacementObs::Placed { option, .. } = &obs.placement {
        if first_placement(&prev) {
            // Report the decision before touching member clusters, so that `Placed` does
            // not wait on their API servers (slow or unreachable ones held it for minutes).
            let realising = Observation {
                aggregator: place::realising(option),
                ..obs.clone()
            };
            if let Some(next) = write_status(job, ctx, &prev, &realising, None, 0, now).await? {
                prev = next;
            }
        }
        let t = Instant::now();
        obs.aggregator = member::realise_aggregator(ctx, &valid, option).await;
        tracing::debug!(aggregator = ?obs.aggregator, took_ms = t.elapsed().as_millis(), "aggregator observed");
    }
    let mut queue = queue_state(&prev);
    let mut replacements = u32::try_from(prev.replacements.unwrap_or(0)).unwrap_or(0);
    let placed = match &obs.placement {
        PlacementObs::Placed { option, .. } => {
            Some((option.cloud.as_str(), option.region.as_str()))
        }
        _ => None,
    };
    if let AggregatorObs::Ready {
        endpoint,
        model_url,
        ..
    } = &obs.aggregator
    {
        let outcome = member::run_participants(
            ctx,
            &valid,
            endpoint,
            placed,
            &mut queue,
            replacements,
            &prev.participants,
            now,
        )
        .await;
        // The next reader of these sites must see the participants just started.
        for c in &outcome.plan.create {
            ctx.sites.invalidate(valid.site(&c.site));
        }
        for (o, why) in &outcome.plan.replaced {
            publish(
                ctx,
                job,
                EventType::Warning,
                "ParticipantReplaced",
                &format!("{why}; starting a replacement"),
            )
            .await;
            tracing::info!(participant = %o.name, %why, "participant replaced");
        }
        for c in &outcome.plan.create {
            let name = names::participant(&valid.key, &c.site, c.n);
            publish(
                ctx,
                job,
                EventType::Normal,
                "ParticipantStarted",
                &format!("{name} on {}/{}", c.site, c.node),
            )
            .await;
        }
        replacements += outcome.plan.new_replacements;
        obs.running = outcome.running;
        obs.participants = merge_participants(&prev.participants, outcome.states);
        obs.budget_exhausted = matches!(
            outcome.plan.shortfall,
            Some(crate::orchestrator::SelectError::BudgetExhausted { .. })
        );
        obs.shortfall = outcome.plan.shortfall.map(|e| e.to_string());
        obs.progress = progress::read_progress(&ctx.http, model_url).await;
    }
    finish(job, ctx, &prev, &obs, Some(queue), replacements, now).await
}

/// What is known of a job before anything is looked at.
fn initial_observation(job: &FederatedJob) -> Observation {
    Observation {
        invalid: None,
        placement: PlacementObs::Pending(String::new()),
        aggregator: AggregatorObs::Waiting(
            "WaitingForPlacement",
            "the placement is not solved yet".into(),
        ),
        participants: Vec::new(),
        running: 0,
        min_per_round: usize::try_from(job.spec.participants.min_per_round).unwrap_or(1),
        max_per_round: usize::try_from(job.spec.participants.max_per_round).unwrap_or(1),
        shortfall: None,
        budget_exhausted: false,
        rounds: job.spec.training.rounds,
        progress: None,
    }
}

/// The job's pool from the cache (or the hub when the cache does not hold it); the inner
/// error says why the job is invalid without it.
async fn pool_of(
    job: &FederatedJob,
    ctx: &Context,
) -> Result<Result<ParticipantPool, String>, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = &job.spec.participants.pool_ref.name;
    if let Some(p) = ctx.pools.get(Some(&ns), name).await {
        return Ok(Ok((*p).clone()));
    }
    let pools: Api<ParticipantPool> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(pools
        .get_opt(name)
        .await?
        .ok_or_else(|| format!("spec.participants.poolRef: ParticipantPool {ns}/{name} not found")))
}

/// Keeps replaced participants visible (bounded) next to the live ones.
fn merge_participants(
    prev: &[ParticipantState],
    now: Vec<ParticipantState>,
) -> Vec<ParticipantState> {
    let mut out = now;
    for p in prev.iter().filter(|p| p.state == "Replaced") {
        if !out.iter().any(|q| q.name == p.name) {
            out.push(p.clone());
        }
    }
    // Over the bound, the oldest replaced entries go (they are last); live ones never.
    while out.len() > MAX_PARTICIPANT_ENTRIES {
        match out.iter().rposition(|p| p.state == "Replaced") {
            Some(i) => {
                out.remove(i);
            }
            None => break,
        }
    }
    out
}

/// Participant entries kept in the status, live ones first.
const MAX_PARTICIPANT_ENTRIES: usize = 100;

/// The job has not been placed before and nothing runs for it yet.
fn first_placement(prev: &FederatedJobStatus) -> bool {
    !fedsky_crds::conditions::is_true(&prev.conditions, status::types::PLACED)
        && prev.participants.is_empty()
}

fn queue_state(prev: &FederatedJobStatus) -> QueueState {
    QueueState {
        cursor: prev
            .queue_cursor
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0),
        failures: prev
            .failure_marks
            .iter()
            .map(|m| {
                let slot = Slot {
                    site: m.site.clone(),
                    node: m.node.clone(),
                };
                let mark = FailureMark {
                    count: u32::try_from(m.count).unwrap_or(0),
                    last: m.last_failure_time.0.as_second(),
                };
                (slot, mark)
            })
            .collect(),
    }
}

async fn finish(
    job: &FederatedJob,
    ctx: &Context,
    prev: &FederatedJobStatus,
    obs: &Observation,
    queue: Option<QueueState>,
    replacements: u32,
    now: Timestamp,
) -> Result<Action, Error> {
    let written = write_status(job, ctx, prev, obs, queue, replacements, now).await?;
    let next = written.as_ref().unwrap_or(prev);
    let terminal = matches!(
        next.phase,
        Some(
            fedsky_crds::federated_job::JobPhase::Succeeded
                | fedsky_crds::federated_job::JobPhase::Failed
        )
    );
    Ok(if obs.invalid.is_some() || terminal {
        Action::requeue(Duration::from_secs(60))
    } else if let AggregatorObs::Starting { cluster } = &obs.aggregator
        && ctx.member_watches.watching(cluster)
    {
        // Its Deployment is watched: becoming available wakes the job. (A starting
        // process or VM is not, and is polled like any other job.)
        Action::requeue(requeue::QUIET)
    } else if written.is_some() {
        Action::requeue(requeue::ACTIVE)
    } else {
        let last =
            requeue::last_status_change(job.metadata.managed_fields.as_deref(), FIELD_MANAGER);
        Action::requeue(requeue::after(requeue::unchanged_for(last, now)))
    })
}

/// Computes and writes the status; returns what was written, `None` when it equals `prev`
/// (nothing is sent: an unchanged status is no work for the hub). Without `queue` the
/// queue cursor, failure marks and replacement count stay as they were.
async fn write_status(
    job: &FederatedJob,
    ctx: &Context,
    prev: &FederatedJobStatus,
    obs: &Observation,
    queue: Option<QueueState>,
    replacements: u32,
    now: Timestamp,
) -> Result<Option<FederatedJobStatus>, Error> {
    let mut next = status::compute(prev, obs, job.metadata.generation, now);
    if let Some(q) = queue {
        next.queue_cursor = i64::try_from(q.cursor).ok();
        next.failure_marks = q
            .failures
            .iter()
            .map(|(s, m)| ApiFailureMark {
                site: s.site.clone(),
                node: s.node.clone(),
                count: i32::try_from(m.count).unwrap_or(i32::MAX),
                last_failure_time: Time(Timestamp::from_second(m.last).unwrap_or(now)),
            })
            .collect();
        next.replacements = Some(i32::try_from(replacements).unwrap_or(i32::MAX));
    }
    if next == *prev {
        return Ok(None);
    }
    if prev.phase != next.phase
        && let Some(p) = next.phase
    {
        publish(
            ctx,
            job,
            EventType::Normal,
            "PhaseChanged",
            &format!("phase {p:?}"),
        )
        .await;
    }
    let api =
        Api::<FederatedJob>::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    crate::status_patch::patch_status(&api, job, &next).await?;
    Ok(Some(next))
}

async fn cleanup(job: &FederatedJob, ctx: &Context) -> Result<Action, Error> {
    member::cleanup(ctx, job).await?;
    ctx.applied.forget(&names::job_key(
        &job.namespace().unwrap_or_default(),
        &job.name_any(),
    ));
    ctx.credentials.forget(&job.uid().unwrap_or_default());
    publish(
        ctx,
        job,
        EventType::Normal,
        "CleanedUp",
        "removed the job's objects from member clusters",
    )
    .await;
    Ok(Action::await_change())
}

/// Longest an Event waits for jobs to be placed.
const EVENT_MAX_DELAY: Duration = Duration::from_secs(10);

/// Publishes an Event without holding up the reconcile: nothing it does depends on the
/// Event, and a few at a time keep a burst of transitions from crowding the hub.
async fn publish(ctx: &Context, job: &FederatedJob, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let recorder = ctx.recorder.clone();
    let object = job.object_ref(&());
    let slots = ctx.events.clone();
    let arrivals = ctx.arrivals.clone();
    tokio::spawn(async move {
        // New jobs first: an Event can wait a few seconds, a job waiting to be placed
        // should not.
        place::wait_while(|| arrivals.busy(Instant::now()), EVENT_MAX_DELAY).await;
        let _slot = slots.acquire_owned().await;
        if let Err(e) = recorder.publish(&event, &object).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, state: &str) -> ParticipantState {
        ParticipantState {
            name: name.into(),
            site: "eu".into(),
            node: None,
            state: state.into(),
            message: None,
            last_heartbeat: None,
        }
    }

    #[test]
    fn replaced_participants_stay_listed_and_the_oldest_go_first() {
        let prev: Vec<ParticipantState> = (0..MAX_PARTICIPANT_ENTRIES)
            .map(|i| entry(&format!("old-{i}"), "Replaced"))
            .collect();
        let now: Vec<ParticipantState> = (0..5)
            .map(|i| entry(&format!("live-{i}"), "Running"))
            .chain([entry("just-replaced", "Replaced")])
            .collect();
        let out = merge_participants(&prev, now);
        assert_eq!(out.len(), MAX_PARTICIPANT_ENTRIES);
        let names: Vec<&str> = out.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names[..6],
            [
                "live-0",
                "live-1",
                "live-2",
                "live-3",
                "live-4",
                "just-replaced"
            ]
        );
        assert_eq!(names[6], "old-0", "the newest of the earlier ones stay");
        assert_eq!(names.last(), Some(&"old-93"));
        // A participant replaced earlier and seen again is listed once.
        let again = merge_participants(&out, vec![entry("old-0", "Replaced")]);
        assert_eq!(again.iter().filter(|p| p.name == "old-0").count(), 1);
    }

    #[test]
    fn live_participants_are_never_dropped_for_the_bound() {
        let now: Vec<ParticipantState> = (0..MAX_PARTICIPANT_ENTRIES + 3)
            .map(|i| entry(&format!("live-{i}"), "Running"))
            .collect();
        let out = merge_participants(&[entry("old", "Replaced")], now);
        assert_eq!(out.len(), MAX_PARTICIPANT_ENTRIES + 3);
        assert!(out.iter().all(|p| p.state == "Running"));
    }
}
