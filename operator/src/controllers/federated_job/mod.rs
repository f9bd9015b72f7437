//! FederatedJob controller: validate → place → realise the aggregator in the placed member
//! cluster → start participants on the nodes the orchestrator picks → read progress →
//! status. A finalizer removes what the job created in other clusters, which owner
//! references cannot reach.

pub mod build;
pub mod command;
mod member;
pub mod names;
pub mod participants;
pub mod pki;
pub mod status;
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
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use status::{AggregatorObs, Observation, PlacementObs};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "federatedjob";
/// Finalizer guarding cross-cluster cleanup.
pub const FINALIZER: &str = "fl.fedsky.dev/cleanup";
/// Jobs reconciled at once. Unbounded, a burst of 1,000 jobs meant 1,000 reconciles in
/// flight: over a thousand sockets, 330 MB resident, and member API servers timing out
/// under the applies (measured with `make bench-operator`).
pub const CONCURRENCY: u16 = 32;

/// Runs the controller until the stream ends. A ParticipantPool that appears or changes
/// re-triggers the jobs that reference it and have not started yet: `kubectl apply -f` of a
/// directory creates the job before its pool (alphabetical order), and such a job must not
/// wait for its next periodic check. Running jobs re-read their pool every few seconds.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<FederatedJob> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    // Only a pool that is new or whose spec changed (a new generation) matters to a job
    // waiting for it; its status changes with every capacity update, and re-triggering
    // every waiting job on each would flood the queue in a burst of new jobs.
    let generations: Mutex<HashMap<PoolKey, Option<i64>>> = Mutex::new(HashMap::new());
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .owns(
            Api::<fedsky_crds::AggregatorPlacement>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<ParticipantPool>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |pool| {
                let key = (pool.namespace(), pool.name_any());
                let mut seen = generations.lock().unwrap_or_else(PoisonError::into_inner);
                if seen.insert(key, pool.metadata.generation) == Some(pool.metadata.generation) {
                    return Vec::new();
                }
                drop(seen);
                super::users_of_pool(&store, &pool, |job, name| {
                    job.spec.participants.pool_ref.name == name && not_started(job)
                })
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// A pool by namespace and name.
type PoolKey = (Option<String>, String);

/// A job that has not reached `Starting` yet (no phase, `Pending` or `Placing`).
fn not_started(job: &FederatedJob) -> bool {
    use fedsky_crds::federated_job::JobPhase;
    matches!(
        job.status.as_ref().and_then(|s| s.phase.as_ref()),
        None | Some(JobPhase::Pending | JobPhase::Placing)
    )
}

async fn reconcile(job: Arc<FederatedJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = job.namespace().unwrap_or_default();
    let api: Api<FederatedJob> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply(&job, &ctx).await,
            Finalizer::Cleanup(job) => cleanup(&job, &ctx).await,
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
    let ns = job.namespace().unwrap_or_default();
    let mut prev = job.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let pools: Api<ParticipantPool> = Api::namespaced(ctx.client.clone(), &ns);
    let pool_name = &job.spec.participants.pool_ref.name;
    let mut obs = Observation {
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
    };
    let Some(pool) = pools.get_opt(pool_name).await? else {
        obs.invalid = Some(format!(
            "spec.participants.poolRef: ParticipantPool {ns}/{pool_name} not found"
        ));
        return finish(job, ctx, &prev, &obs, None, 0, now).await;
    };
    let token = member::ensure_token(ctx, job).await?;
    let ca = member::ensure_ca(ctx, job).await?;
    let valid = match validate::validate(job, &pool, &token, &ca) {
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
                aggregator: AggregatorObs::Waiting(
                    "Starting",
                    format!(
                        "applying the aggregator in {}/{}",
                        option.cloud, option.region
                    ),
                ),
                ..obs.clone()
            };
            prev = write_status(job, ctx, &prev, &realising, None, 0, now).await?;
        }
        obs.aggregator = member::realise_aggregator(ctx, &valid, option).await;
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
        let outcome =
            member::run_participants(ctx, &valid, endpoint, placed, &mut queue, replacements, now)
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
        obs.progress = member::read_progress(model_url).await;
    }
    finish(job, ctx, &prev, &obs, Some(queue), replacements, now).await
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
    let excess = out.len().saturating_sub(100);
    out.drain(..excess);
    out
}

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
    let next = write_status(job, ctx, prev, obs, queue, replacements, now).await?;
    let terminal = matches!(
        next.phase,
        Some(
            fedsky_crds::federated_job::JobPhase::Succeeded
                | fedsky_crds::federated_job::JobPhase::Failed
        )
    );
    Ok(if obs.invalid.is_some() || terminal {
        Action::requeue(Duration::from_secs(60))
    } else {
        Action::requeue(Duration::from_secs(5))
    })
}

/// Computes and writes the status; returns what was written. Without `queue` the queue
/// cursor, failure marks and replacement count stay as they were.
async fn write_status(
    job: &FederatedJob,
    ctx: &Context,
    prev: &FederatedJobStatus,
    obs: &Observation,
    queue: Option<QueueState>,
    replacements: u32,
    now: Timestamp,
) -> Result<FederatedJobStatus, Error> {
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
    let ns = job.namespace().unwrap_or_default();
    let patch = serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1",
        "kind": "FederatedJob",
        "status": next,
    });
    Api::<FederatedJob>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &job.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(next)
}

async fn cleanup(job: &FederatedJob, ctx: &Context) -> Result<Action, Error> {
    member::cleanup(ctx, job).await?;
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

async fn publish(ctx: &Context, job: &FederatedJob, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}
