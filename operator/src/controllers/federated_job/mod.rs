//! FederatedJob controller: validate → place → realise the aggregator in the placed member
//! cluster → start participants on the nodes the orchestrator picks → read progress →
//! status. A finalizer removes what the job created in other clusters, which owner
//! references cannot reach.
//!
//! Each reconcile is a pipeline, one module per step: [`dereference`] (pool, credentials,
//! the model store's S3 keys, placement, member clusters) → [`validate`] (pure) →
//! [`plan`] (pure: where the aggregator goes, the participants' starts and replacements) →
//! [`apply`] (through the [`crate::workloads::Workloads`] chosen at start-up) →
//! [`status`] (pure) written by [`report`]. The placer ([`place`]) runs the first steps
//! for jobs not placed yet.

pub mod aggregator_client;
pub mod aggregator_config;
pub mod aggregator_node;
pub mod allowlist;
pub mod applied;
mod apply;
mod archive;
pub mod build;
pub mod context;
pub mod credentials;
mod dereference;
pub mod job_secret;
pub mod member_watch;
pub mod model_store;
pub mod network_policy;
mod observe;
pub mod participants;
pub mod per_job;
mod place;
pub mod plan;
pub mod progress;
mod report;
mod requeue;
pub mod status;
mod triggers;
pub mod validate;
mod yielding;

pub use context::JobContext;
pub use yielding::Arrivals;

use crate::runtime::Runtime;
use crate::{Context, Error};
use fedsky_crds::FederatedJob;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use status::{AggregatorObs, Observation, PlacementObs};
use std::sync::Arc;
use std::time::Instant;

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
pub async fn run(shared: Arc<Context>, runtime: &Runtime) {
    let ctx = JobContext::new(shared, runtime);
    let api: Api<FederatedJob> = Api::all(ctx.shared.client.clone());
    let (reader, writer) = reflector::store_shared(SHARED_BUFFER);
    let (Some(to_placer), Some(to_lifecycle)) = (writer.subscribe(), writer.subscribe()) else {
        // Only a store that is not shared has no subscribers; ours is.
        tracing::error!("the FederatedJob cache cannot be shared; controllers not started");
        return;
    };
    ctx.shared.jobs.set(reader.clone());
    let arrivals = ctx.arrivals.clone();
    let metrics = ctx.shared.metrics.clone();
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
            Api::<fedsky_crds::AggregatorPlacement>::all(ctx.shared.client.clone()),
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

async fn reconcile(job: Arc<FederatedJob>, ctx: Arc<JobContext>) -> Result<Action, Error> {
    if plan::hub_only(&job) {
        // The placer's; its status write brings the job back here once placed.
        return Ok(Action::await_change());
    }
    yielding::yield_to_placing(&ctx).await;
    let Ok(_slot) = ctx.member_slots.clone().acquire_owned().await else {
        return Ok(Action::requeue(requeue::ACTIVE));
    };
    let _busy = ctx.shared.metrics.busy(CONTROLLER);
    // Boxed: a reconcile waiting for its slot then holds a pointer, not the whole state of
    // the member work (1,000 waiting jobs held ~40 MB more otherwise).
    Box::pin(reconcile_now(job, &ctx)).await
}

async fn reconcile_now(job: Arc<FederatedJob>, ctx: &Arc<JobContext>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = job.namespace().unwrap_or_default();
    let api: Api<FederatedJob> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply_job(&job, ctx).await,
            Finalizer::Cleanup(job) => cleanup(&job, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.shared.metrics.reconciled(
        CONTROLLER,
        if result.is_ok() { "success" } else { "error" },
        Some(start.elapsed()),
    );
    result
}

// kube's Controller fixes this signature (Arcs by value).
#[allow(clippy::needless_pass_by_value)]
fn error_policy(job: Arc<FederatedJob>, error: &Error, ctx: Arc<JobContext>) -> Action {
    tracing::warn!(job = %job.name_any(), %error, "reconcile failed");
    ctx.shared.metrics.error(CONTROLLER, error.category());
    error
        .retry_after()
        .map_or_else(Action::await_change, Action::requeue)
}

/// The lifecycle pipeline: dereference (pool, credentials, placement) → validate → plan
/// and apply the aggregator → plan and apply the participants → progress → status.
#[tracing::instrument(skip_all, fields(job = %job.name_any()))]
async fn apply_job(job: &FederatedJob, ctx: &JobContext) -> Result<Action, Error> {
    let mut prev = job.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut obs = plan::initial_observation(job);
    let pool = match dereference::pool(job, &ctx.shared).await? {
        Ok(pool) => pool,
        Err(why) => {
            obs.invalid = Some(why);
            return report::finish(job, ctx, &prev, &obs, None, 0, now).await;
        }
    };
    let creds = dereference::credentials(ctx, job).await?;
    let s3 = match dereference::s3_credentials(&ctx.shared, job).await? {
        Ok(s3) => s3,
        Err(why) => {
            obs.invalid = Some(why);
            return report::finish(job, ctx, &prev, &obs, None, 0, now).await;
        }
    };
    let valid = match validate::validate(job, &pool, creds.token.expose(), &creds.ca, s3) {
        Ok(v) => v,
        Err(e) => {
            obs.invalid = Some(e.to_string());
            return report::finish(job, ctx, &prev, &obs, None, 0, now).await;
        }
    };
    obs.placement = dereference::placement(&ctx.shared, job).await?;
    if let PlacementObs::Placed { option, .. } = &obs.placement {
        if plan::first_placement(&prev) {
            // Report the decision before touching member clusters, so that `Placed` does
            // not wait on their API servers (slow or unreachable ones held it for minutes).
            let realising = Observation {
                aggregator: plan::realising(option),
                ..obs.clone()
            };
            if let Some(next) =
                report::write_status(job, ctx, &prev, &realising, None, 0, now).await?
            {
                prev = next;
            }
        }
        let t = Instant::now();
        obs.aggregator = apply::aggregator(ctx, &valid, option).await;
        tracing::debug!(aggregator = ?obs.aggregator, took_ms = t.elapsed().as_millis(), "aggregator observed");
    }
    let mut queue = plan::queue_state(&prev);
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
        let aggregator = apply::Aggregator { endpoint, placed };
        let outcome = apply::participants(
            ctx,
            &valid,
            &aggregator,
            &mut queue,
            replacements,
            &prev.participants,
            now.as_second(),
        )
        .await;
        apply::announce(ctx, job, &valid, &outcome).await;
        replacements += outcome.plan.new_replacements;
        obs.running = outcome.running;
        obs.participants = plan::merge_participants(&prev.participants, outcome.states);
        // Right after the starts and removals, so a replaced participant is shut out
        // before its replacement runs (see `allowlist`).
        match ctx.aggregator_client(&valid.key, &valid.ca) {
            Ok(client) => {
                let want = allowlist::allowed(&obs.participants);
                allowlist::sync(ctx, &valid.key, &client, model_url, want).await;
            }
            Err(e) => tracing::warn!(error = %e, "no client to send the participant list with"),
        }
        obs.budget_exhausted = matches!(
            outcome.plan.shortfall,
            Some(crate::orchestrator::SelectError::BudgetExhausted { .. })
        );
        obs.shortfall = outcome.plan.shortfall.map(|e| e.to_string());
        obs.progress = match ctx.aggregator_client(&valid.key, &valid.ca) {
            Ok(client) => progress::read_progress(&client, model_url).await,
            Err(e) => {
                tracing::warn!(error = %e, "no client for the aggregator's model manager");
                None
            }
        };
    }
    let (action, written) =
        report::finish_with_status(job, ctx, &prev, &obs, Some(queue), replacements, now).await?;
    // After the write, from the status written: archiving and tracking record the job and
    // never hold it up (see `archive` and `crate::tracking`).
    let aggregator = ctx.aggregator_client(&valid.key, &valid.ca).ok();
    if let (AggregatorObs::Ready { .. }, Some(client)) = (&obs.aggregator, &aggregator) {
        archive::keep(job, ctx, &written, client, false).await;
    }
    if job.spec.tracking.is_some() {
        crate::tracking::sync(&ctx.shared, &ctx.http, aggregator.as_ref(), job, &written).await;
    }
    Ok(action)
}

/// Removes what the job has outside the hub (its workloads wherever they may be), then
/// forgets it.
async fn cleanup(job: &FederatedJob, ctx: &JobContext) -> Result<Action, Error> {
    // Before the aggregator goes: it is where a version not yet archived comes from.
    archive::on_delete(job, ctx).await;
    ctx.workloads.cleanup(job).await?;
    dereference::delete_credentials(&ctx.shared, job).await?;
    ctx.credentials.forget(&job.uid().unwrap_or_default());
    ctx.forget_aggregator_client(&crate::names::job_key(
        &job.namespace().unwrap_or_default(),
        &job.name_any(),
    ));
    ctx.shared.metrics.forget_job(&report::job_labels(job));
    report::publish(
        ctx,
        job,
        EventType::Normal,
        "CleanedUp",
        "removed the job's objects from member clusters",
    )
    .await;
    Ok(Action::await_change())
}
