//! AggregatorPlacement controller: solves off the async runtime with the same pure code
//! as `fedsky placement solve`, and writes the selected candidate, a bounded Pareto front,
//! the solver, evaluations, solve time and catalog version into status. It re-solves only
//! when its inputs change (spec, the pool's sites, member-cluster regions, catalog), so
//! status does not flap. A solve that fails without the spec being at fault is retried
//! with backoff ([`solve`]).

mod solve;

use crate::status_patch::patch_status;
use crate::{Context, Error};
use fedsky_crds::common::CloudProvider;
use fedsky_crds::conditions::{READY, RECONCILING, STALLED, Setter};
use fedsky_crds::{AggregatorPlacement, AggregatorPlacementStatus, MemberCluster, ParticipantPool};
use fedsky_placement::Catalog;
use fedsky_placement_spec::{self as convert, SpecContext};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use solve::{SOLVE_FAILED, SolveFailure};

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "aggregatorplacement";

/// Runs the controller until the stream ends; a changed pool re-triggers the placements
/// that reference it.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<AggregatorPlacement> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    ctx.placements.set(controller.store());
    let failures = solve::Failures::default();
    let on_error = failures.clone();
    controller
        .watches(
            Api::<ParticipantPool>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |pool| {
                super::users_of_pool(&store, &pool, |ap, name| {
                    ap.spec
                        .participants
                        .pool_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
                })
            },
        )
        .shutdown_on_signal()
        .run(
            move |ap, ctx| {
                let failures = failures.clone();
                async move {
                    let key = ObjectRef::from_obj(&*ap);
                    let result = reconcile(ap, ctx).await;
                    if result.is_ok() {
                        failures.reset(&key);
                    }
                    result
                }
            },
            move |ap, error, ctx| error_policy(ap, error, ctx, &on_error),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[tracing::instrument(skip_all, fields(placement = %ap.name_any()))]
async fn reconcile(ap: Arc<AggregatorPlacement>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = ap.namespace().unwrap_or_default();
    let catalog = Catalog::builtin().map_err(SolveFailure::Catalog)?;
    let pool = match &ap.spec.participants.pool_ref {
        Some(r) => {
            Api::<ParticipantPool>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&r.name)
                .await?
        }
        None => None,
    };
    let clusters: BTreeMap<String, (CloudProvider, String)> =
        Api::<MemberCluster>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|mc| (mc.name_any(), (mc.spec.provider, mc.spec.region)))
            .collect();
    let digest = input_digest(&ap, pool.as_ref(), &clusters, catalog.version());
    let prev = ap.status.clone().unwrap_or_default();
    if prev.input_digest.as_deref() == Some(digest.as_str())
        && prev.observed_generation == ap.metadata.generation
    {
        ctx.metrics
            .reconciled(CONTROLLER, "success", Some(start.elapsed()));
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    let spec = ap.spec.clone();
    let pool_name = pool.as_ref().map(ResourceExt::name_any);
    let pool_spec = pool.map(|p| p.spec);
    // The solve is CPU-bound (NSGA-II on large spaces): keep it off the async workers.
    let solved = solve::off_runtime(move || {
        let sctx = SpecContext {
            pool: pool_name.as_deref().zip(pool_spec.as_ref()),
            member_clusters: clusters,
            strategy: None,
        };
        convert::solve_spec(catalog, &spec, &sctx)
    })
    .await;
    // A spec error goes to status below; any other failure is retried with backoff.
    let outcome = match solved {
        Ok(outcome) => outcome,
        Err(failure) => return Err(solve::failed(&ctx, &ap, failure).await),
    };

    let now = Timestamp::now();
    let generation = ap.metadata.generation;
    let mut next = match &outcome {
        Ok(o) => convert::to_status(o, convert::STATUS_FRONT_LIMIT),
        Err(_) => AggregatorPlacementStatus {
            catalog_version: Some(catalog.version().to_string()),
            ..Default::default()
        },
    };
    next.conditions = prev.conditions.clone();
    next.observed_generation = generation;
    next.input_digest = Some(digest);
    next.last_solved_time = Some(Time(now));
    let (feasible, reason, message, stalled) = match &outcome {
        Ok(o) => {
            let (ok, reason, message) = convert::feasible_condition(o);
            (ok, reason, message, !ok)
        }
        Err(e) => {
            next.infeasible_reason = Some(e.to_string());
            (false, e.reason(), e.to_string(), true)
        }
    };
    Setter::new(&mut next.conditions, generation, now)
        .set(convert::FEASIBLE, feasible, reason, message.clone())
        .set(
            READY,
            feasible,
            if feasible { "Solved" } else { reason },
            message.clone(),
        )
        .set(RECONCILING, false, "Solved", "")
        .set(
            STALLED,
            stalled,
            if stalled { reason } else { "NotStalled" },
            if stalled { message } else { String::new() },
        );

    let api = Api::<AggregatorPlacement>::namespaced(ctx.client.clone(), &ns);
    patch_status(&api, ap.as_ref(), &next).await?;
    ctx.metrics
        .reconciled(CONTROLLER, "success", Some(start.elapsed()));
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// An invalid spec waits for a change; a failed solve is retried after a wait that
/// doubles per consecutive failure of the object ([`solve::backoff`]); other transient
/// errors retry after their fixed delay.
// kube's Controller fixes this signature (Arcs by value).
#[allow(clippy::needless_pass_by_value)]
fn error_policy(
    ap: Arc<AggregatorPlacement>,
    error: &Error,
    ctx: Arc<Context>,
    failures: &solve::Failures,
) -> Action {
    tracing::warn!(placement = %ap.name_any(), %error, "reconcile failed");
    ctx.metrics.error(CONTROLLER, error.category());
    match error.retry_after() {
        None => Action::await_change(),
        Some(first) if matches!(error, Error::Solve(_)) => {
            let n = failures.record(ObjectRef::from_obj(&*ap));
            Action::requeue(solve::backoff(first, n))
        }
        Some(after) => Action::requeue(after),
    }
}

/// A stable digest of the solve's inputs (FNV over their canonical JSON).
pub fn input_digest(
    ap: &AggregatorPlacement,
    pool: Option<&ParticipantPool>,
    clusters: &BTreeMap<String, (CloudProvider, String)>,
    catalog_version: &str,
) -> String {
    let text = serde_json::json!({
        "spec": ap.spec,
        "pool": pool.map(|p| &p.spec),
        "clusters": clusters,
        "catalog": catalog_version,
    })
    .to_string();
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// FNV-1a: stable across processes and Rust versions, unlike `DefaultHasher`.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
