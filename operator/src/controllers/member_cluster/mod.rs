//! MemberCluster controller: builds a client from the kubeconfig Secret, probes the
//! member's API server (version, nodes) and reports reachability in status. An
//! unreachable cluster turns `Ready` false with the error and recovers by itself on a
//! later probe. When `spec.credentialsSecretRef` is set, the cloud credentials are checked
//! too and reported as `CredentialsValid` (see [`credentials`]). Referenced Secrets are
//! watched, so a rotated Secret is picked up at once without a restart.

pub mod credentials;
mod probe;
pub mod status;

use crate::clusters::ClusterError;
use crate::status_patch::patch_status;
use crate::{Context, Error};
use fedsky_crds::MemberCluster;
use fedsky_crds::member_cluster::MemberClusterStatus;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "membercluster";
/// Default seconds between probes.
pub const DEFAULT_PROBE_INTERVAL: u64 = 30;

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<MemberCluster> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store();
    // Each probe writes a new `lastProbeTime`; without the generation filter that write
    // would bring the cluster straight back for another probe (a node listing per member
    // and a hub write, over and over). Probes are periodic anyway.
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let controller = Controller::for_stream(changes, reader);
    let clusters = controller.store();
    ctx.member_clusters.set(controller.store());
    // Secrets are not cached: each watch (one per namespace the operator reads; it may
    // read no others) only maps a changed Secret to the clusters that reference it.
    let mut controller = controller;
    for ns in ctx.secrets.readable() {
        let clusters = clusters.clone();
        controller = controller.watches(
            Api::<Secret>::namespaced(ctx.client.clone(), ns),
            watcher::Config::default(),
            move |secret| credentials::referencing(&clusters.state(), &secret),
        );
    }
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[tracing::instrument(skip_all, fields(membercluster = %mc.name_any()))]
async fn reconcile(mc: Arc<MemberCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let outcome = probe_member(&mc, &ctx).await;
    let creds = credentials::check(&ctx.client, &ctx.secrets, &mc).await;
    let prev = mc.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut next = status::compute(&prev, &outcome, mc.metadata.generation, now);
    credentials::set_condition(&mut next, &mc, creds.as_ref(), now);
    patch_status(&Api::all(ctx.client.clone()), mc.as_ref(), &next).await?;
    publish_transition(&ctx, &mc, &prev, &next, &outcome).await;
    publish_credentials(&ctx, &mc, &prev, &next).await;

    let result = if outcome.is_ok() {
        "success"
    } else {
        "requeue"
    };
    ctx.metrics
        .reconciled(CONTROLLER, result, Some(start.elapsed()));
    if let Err(e) = &outcome {
        ctx.metrics.error(CONTROLLER, e.category());
        tracing::info!(error = %e, "member cluster not ready");
    }
    let every = mc
        .spec
        .probe_interval_seconds
        .map_or(DEFAULT_PROBE_INTERVAL, |s| {
            u64::try_from(s).unwrap_or(DEFAULT_PROBE_INTERVAL)
        });
    Ok(Action::requeue(credentials::requeue_after(
        creds.as_ref(),
        now,
        Duration::from_secs(every),
    )))
}

// kube's Controller fixes this signature (Arcs by value).
#[allow(clippy::needless_pass_by_value)]
fn error_policy(mc: Arc<MemberCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(membercluster = %mc.name_any(), %error, "reconcile failed");
    ctx.metrics.error(CONTROLLER, error.category());
    ctx.metrics.reconciled(CONTROLLER, "error", None);
    error
        .retry_after()
        .map_or_else(Action::await_change, Action::requeue)
}

async fn probe_member(mc: &MemberCluster, ctx: &Context) -> Result<probe::Probe, ClusterError> {
    let r = &mc.spec.kubeconfig_secret_ref;
    let namespace = r.namespace.clone().unwrap_or_default();
    let key = r.key.clone().unwrap_or_else(|| "kubeconfig".into());
    ctx.secrets.check(&namespace, &r.name)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets
        .get_opt(&r.name)
        .await
        .map_err(|source| ClusterError::Call {
            cluster: "hub".into(),
            doing: None,
            source,
        })?
        .ok_or_else(|| ClusterError::SecretMissing {
            namespace: namespace.clone(),
            name: r.name.clone(),
        })?;
    let client = ctx
        .clusters
        .client_for(&mc.name_any(), &secret, &key)
        .await?;
    probe::probe(&mc.name_any(), &client).await
}

async fn publish_transition(
    ctx: &Context,
    mc: &MemberCluster,
    prev: &MemberClusterStatus,
    next: &MemberClusterStatus,
    outcome: &Result<probe::Probe, ClusterError>,
) {
    let Some((reachable, reason)) = status::ready_transition(prev, next) else {
        return;
    };
    let event = Event {
        type_: if reachable {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: reason.to_string(),
        note: Some(match outcome {
            Ok(p) => format!(
                "reachable: {} with {} nodes ({} ready)",
                p.version, p.nodes, p.ready_nodes
            ),
            Err(e) => e.to_string(),
        }),
        action: "Probe".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &mc.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// An Event when `CredentialsValid` changes; its note is the condition's message, which
/// names the identity or the problem and never a secret value.
async fn publish_credentials(
    ctx: &Context,
    mc: &MemberCluster,
    prev: &MemberClusterStatus,
    next: &MemberClusterStatus,
) {
    let Some((valid, reason)) = credentials::transition(prev, next) else {
        return;
    };
    let note = fedsky_crds::conditions::find(&next.conditions, credentials::CREDENTIALS_VALID)
        .map(|c| c.message.clone());
    let event = Event {
        type_: if valid {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: if valid {
            "CredentialsValid".into()
        } else {
            reason
        },
        note,
        action: "ValidateCredentials".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &mc.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}
