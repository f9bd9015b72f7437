//! What both FederatedJob controllers do at the end of a step: write the status (only
//! when it changed), choose when to look again, publish Events.

use super::context::JobContext;
use super::requeue;
use super::status::{self, AggregatorObs, Observation};
use super::yielding::wait_while;
use crate::metrics::{JobLabels, JobSample};
use crate::orchestrator::QueueState;
use crate::{Error, FIELD_MANAGER};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::{FailureMark as ApiFailureMark, FederatedJobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use std::time::{Duration, Instant};

/// Writes the status and chooses when to look again: soon after a change, slowly for a
/// job that keeps its status, and on its aggregator's watch where there is one.
pub(super) async fn finish(
    job: &FederatedJob,
    ctx: &JobContext,
    prev: &FederatedJobStatus,
    obs: &Observation,
    queue: Option<QueueState>,
    replacements: u32,
    now: Timestamp,
) -> Result<Action, Error> {
    finish_with_status(job, ctx, prev, obs, queue, replacements, now)
        .await
        .map(|(action, _)| action)
}

/// [`finish`], also returning the job's status as it now stands (what was written, or
/// `prev` when nothing changed), for work that follows the write.
pub(super) async fn finish_with_status(
    job: &FederatedJob,
    ctx: &JobContext,
    prev: &FederatedJobStatus,
    obs: &Observation,
    queue: Option<QueueState>,
    replacements: u32,
    now: Timestamp,
) -> Result<(Action, FederatedJobStatus), Error> {
    let written = write_status(job, ctx, prev, obs, queue, replacements, now).await?;
    let next = written.as_ref().unwrap_or(prev);
    // Only jobs with the finalizer, whose cleanup drops the series again (the placer's
    // jobs have none yet, and no rounds either).
    if job.finalizers().iter().any(|f| f == super::FINALIZER) {
        ctx.shared.metrics.job(
            &job_labels(job),
            job.metadata.uid.as_deref().unwrap_or_default(),
            &JobSample::of(next),
        );
    }
    let terminal = matches!(
        next.phase,
        Some(
            fedsky_crds::federated_job::JobPhase::Succeeded
                | fedsky_crds::federated_job::JobPhase::Failed
        )
    );
    let action = if obs.invalid.is_some() || terminal {
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
    };
    Ok((action, written.unwrap_or_else(|| prev.clone())))
}

/// The labels of `job`'s metrics.
pub(super) fn job_labels(job: &FederatedJob) -> JobLabels {
    JobLabels {
        federatedjob_namespace: job.namespace().unwrap_or_default(),
        federatedjob: job.name_any(),
    }
}

/// Computes and writes the status; returns what was written, `None` when it equals `prev`
/// (nothing is sent: an unchanged status is no work for the hub). Without `queue` the
/// queue cursor, failure marks and replacement count stay as they were.
pub(super) async fn write_status(
    job: &FederatedJob,
    ctx: &JobContext,
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
    let api = Api::<FederatedJob>::namespaced(
        ctx.shared.client.clone(),
        &job.namespace().unwrap_or_default(),
    );
    crate::status_patch::patch_status(&api, job, &next).await?;
    Ok(Some(next))
}

/// Longest an Event waits for jobs to be placed.
const EVENT_MAX_DELAY: Duration = Duration::from_secs(10);

/// Publishes an Event without holding up the reconcile: nothing it does depends on the
/// Event, and a few at a time keep a burst of transitions from crowding the hub.
pub(super) async fn publish(
    ctx: &JobContext,
    job: &FederatedJob,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let recorder = ctx.shared.recorder.clone();
    let object = job.object_ref(&());
    let slots = ctx.shared.events.clone();
    let arrivals = ctx.arrivals.clone();
    tokio::spawn(async move {
        // New jobs first: an Event can wait a few seconds, a job waiting to be placed
        // should not.
        wait_while(|| arrivals.busy(Instant::now()), EVENT_MAX_DELAY).await;
        let _slot = slots.acquire_owned().await;
        if let Err(e) = recorder.publish(&event, &object).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    });
}
