//! The placer: takes FederatedJobs that are not placed yet through validation and the
//! placement to `Placed`, using only the hub (cached reads and one status write), in its
//! own controller so that a new job never waits behind member-cluster work. Until a job is
//! placed nothing of it exists outside the hub, so it needs no finalizer yet; the
//! lifecycle controller adds it before the first member-cluster request.

use super::context::JobContext;
use super::plan::{self, hub_only};
use super::status::PlacementObs;
use super::yielding::Placing;
use super::{dereference, report, validate};
use crate::Error;
use fedsky_crds::{AggregatorPlacement, FederatedJob, ParticipantPool};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "federatedjob-placer";
/// Next look at a job whose placement is not solved yet, besides the watches.
const PENDING: Duration = Duration::from_secs(5);

/// The placer's watches besides the jobs: a ParticipantPool or AggregatorPlacement that
/// appears or changes re-triggers the jobs waiting for it. `kubectl apply -f` of a
/// directory creates a job before its pool (alphabetical order), and such a job must not
/// wait for its next periodic check.
pub(super) fn controller(
    c: Controller<FederatedJob>,
    ctx: &JobContext,
) -> Controller<FederatedJob> {
    let jobs = c.store();
    let for_placements = jobs.clone();
    // Only a pool that is new or whose spec changed (a new generation) matters to a job
    // waiting for it; its status changes with every capacity update, and re-triggering
    // every waiting job on each would flood the queue in a burst of new jobs.
    let generations: Mutex<HashMap<PoolKey, Option<i64>>> = Mutex::new(HashMap::new());
    c.watches(
        Api::<ParticipantPool>::all(ctx.shared.client.clone()),
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
        Api::<AggregatorPlacement>::all(ctx.shared.client.clone()),
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

pub(super) async fn reconcile(
    job: Arc<FederatedJob>,
    ctx: Arc<JobContext>,
) -> Result<Action, Error> {
    if !hub_only(&job) {
        return Ok(Action::await_change());
    }
    let _placing = Placing::enter(&ctx.placing);
    // First come, first served (see `CONCURRENCY` on why not the controller's limit).
    let Ok(_slot) = ctx.place_slots.clone().acquire_owned().await else {
        return Ok(Action::requeue(PENDING));
    };
    let _busy = ctx.shared.metrics.busy(CONTROLLER);
    let start = Instant::now();
    let result = Box::pin(place(&job, &ctx)).await;
    ctx.shared.metrics.reconciled(
        CONTROLLER,
        if result.is_ok() { "success" } else { "error" },
        Some(start.elapsed()),
    );
    result
}

#[tracing::instrument(skip_all, fields(job = %job.name_any()))]
async fn place(job: &FederatedJob, ctx: &JobContext) -> Result<Action, Error> {
    let prev = job.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut obs = plan::initial_observation(job);
    let invalid = match dereference::pool(job, &ctx.shared).await? {
        Ok(pool) => validate::check(job, &pool).err().map(|e| e.to_string()),
        Err(why) => Some(why),
    };
    if let Some(why) = invalid {
        obs.invalid = Some(why);
        return report::finish(job, ctx, &prev, &obs, None, 0, now).await;
    }
    obs.placement = dereference::placement(&ctx.shared, job).await?;
    let placed = match &obs.placement {
        PlacementObs::Placed { option, .. } => {
            obs.aggregator = plan::realising(option);
            true
        }
        _ => false,
    };
    report::write_status(job, ctx, &prev, &obs, None, 0, now).await?;
    // Once placed, the status write brings the job to the lifecycle controller.
    Ok(if placed {
        Action::await_change()
    } else {
        Action::requeue(PENDING)
    })
}

#[cfg(test)]
mod tests {
    use super::super::FINALIZER;
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
                state: fedsky_crds::federated_job::ParticipantPhase::Running,
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
