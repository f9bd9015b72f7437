//! ParticipantPool controller: for each site, the eligible nodes in its member cluster
//! (Ready, not cordoned, matching the selector, meeting the minimum spec) and their free
//! resources; conditions when the pool has fewer eligible nodes than its jobs need.

pub mod nodes;
pub mod status;

use crate::capacity::Resources;
use crate::status_patch::patch_status;
use crate::{Context, Error};
use fedsky_crds::{FederatedJob, ParticipantPool};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "participantpool";
/// Seconds between refreshes of free resources.
pub const REFRESH: Duration = Duration::from_secs(15);

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<ParticipantPool> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    ctx.pools.set(controller.store());
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[tracing::instrument(skip_all, fields(pool = %pool.name_any()))]
async fn reconcile(pool: Arc<ParticipantPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = pool.namespace().unwrap_or_default();
    let pool_min = pool
        .spec
        .min_spec
        .as_ref()
        .map(Resources::from_amounts)
        .unwrap_or_default();
    let mut sites = Vec::with_capacity(pool.spec.sites.len());
    for site in &pool.spec.sites {
        let views = nodes::site_nodes(&ctx, site).await;
        sites.push(status::SiteObservation {
            site: site.name.clone(),
            nodes: views,
        });
    }
    // The FederatedJob controllers' cache once it holds every job: listing them all from
    // the hub each refresh took seconds at 1,000 jobs (docs/operator-benchmark.md).
    let needed = match ctx.jobs.ready().await {
        Some(store) => needed(
            store.state().iter().map(AsRef::as_ref),
            &ns,
            &pool.name_any(),
        ),
        None => {
            let jobs: Api<FederatedJob> = Api::namespaced(ctx.client.clone(), &ns);
            let list = jobs.list(&Default::default()).await?;
            needed(list.items.iter(), &ns, &pool.name_any())
        }
    };
    let prev = pool.status.clone().unwrap_or_default();
    let next = status::compute(
        &prev,
        &sites,
        &pool_min,
        needed,
        pool.metadata.generation,
        Timestamp::now(),
    );
    let api = Api::<ParticipantPool>::namespaced(ctx.client.clone(), &ns);
    patch_status(&api, pool.as_ref(), &next).await?;
    ctx.metrics
        .reconciled(CONTROLLER, "success", Some(start.elapsed()));
    Ok(Action::requeue(REFRESH))
}

/// The largest `maxPerRound` among the jobs in `ns` using pool `name`.
fn needed<'a>(jobs: impl Iterator<Item = &'a FederatedJob>, ns: &str, name: &str) -> i32 {
    jobs.filter(|j| {
        j.metadata.namespace.as_deref() == Some(ns) && j.spec.participants.pool_ref.name == name
    })
    .map(|j| j.spec.participants.max_per_round)
    .max()
    .unwrap_or(0)
}

// kube's Controller fixes this signature (Arcs by value).
#[allow(clippy::needless_pass_by_value)]
fn error_policy(pool: Arc<ParticipantPool>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(pool = %pool.name_any(), %error, "reconcile failed");
    ctx.metrics.error(CONTROLLER, error.category());
    ctx.metrics.reconciled(CONTROLLER, "error", None);
    error
        .retry_after()
        .map_or_else(Action::await_change, Action::requeue)
}
