//! Workloads as pods: the aggregator's Deployment, Service, Secret and PVC (or, with an S3
//! model store, a second Secret with its S3 keys) in the placed member cluster, and one Job
//! (with its own Secret) per participant in its site's cluster, all applied server-side.

use super::{DesiredAggregator, ParticipantObs, Start, WorkloadError, Workloads};
use crate::clusters::{ClusterError, MEMBER_TIMEOUT, bounded};
use crate::controllers::federated_job::aggregator_node::{self, AggregatorNode};
use crate::controllers::federated_job::applied::{self, Applied};
use crate::controllers::federated_job::build;
use crate::controllers::federated_job::member_watch::MemberWatches;
use crate::controllers::federated_job::network_policy;
use crate::controllers::federated_job::participants::Phase;
use crate::controllers::federated_job::status::AggregatorObs;
use crate::controllers::federated_job::validate::ValidJob;
use crate::images::Images;
use crate::names::{self, AGGREGATOR_NAMESPACE, GRPC_PORT, HTTP_PORT};
use crate::{Context, FIELD_MANAGER};
use fedsky_crds::FederatedJob;
use fedsky_crds::member_cluster::ClusterTier;
use fedsky_crds::participant_pool::Site;
use fedsky_placement::catalog::Catalog;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;

/// Deployments and Jobs in member clusters.
#[derive(Debug)]
pub struct PodWorkloads {
    ctx: Arc<Context>,
    images: Images,
    /// What was last applied for each job's aggregator.
    applied: Applied,
    /// Watches of aggregator Deployments (shared with the controller, which they wake).
    watches: MemberWatches,
}

impl PodWorkloads {
    /// Pods from `images`, applied with the shared context's member clients.
    pub fn new(ctx: Arc<Context>, images: Images, watches: MemberWatches) -> Self {
        Self {
            ctx,
            images,
            applied: Applied::default(),
            watches,
        }
    }

    /// The operator's images with `job`'s `spec.images` applied.
    fn images_of(&self, job: &ValidJob) -> Images {
        self.images.for_job(job.image_overrides.as_ref())
    }
}

impl Workloads for PodWorkloads {
    fn ensure_aggregator<'a>(
        &'a self,
        job: &'a ValidJob,
        want: &'a DesiredAggregator,
    ) -> BoxFuture<'a, AggregatorObs> {
        async move {
            let Some(cluster) = want.cluster.clone() else {
                return super::no_member_cluster(&want.option);
            };
            let node = AggregatorNode::placed(&want.option, Catalog::builtin().ok());
            match apply_aggregator(self, job, &cluster, &node).await {
                Ok(Some((endpoint, model_url))) => AggregatorObs::Ready {
                    cluster,
                    endpoint,
                    model_url,
                },
                Ok(None) => match blocked(&self.ctx, job, &node, &cluster).await {
                    Some((reason, message)) => AggregatorObs::Blocked {
                        cluster,
                        reason,
                        message,
                    },
                    None => AggregatorObs::Starting { cluster },
                },
                Err(e) => AggregatorObs::Waiting("MemberClusterError", format!("{cluster}: {e}")),
            }
        }
        .boxed()
    }

    fn participants<'a>(
        &'a self,
        job: &'a ValidJob,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Vec<ParticipantObs>, WorkloadError>> {
        async move {
            let jobs = list_participants(&self.ctx, site, &job.key).await?;
            Ok(jobs.iter().filter_map(|j| observe(j, &site.name)).collect())
        }
        .boxed()
    }

    fn start_participant<'a>(
        &'a self,
        job: &'a ValidJob,
        start: Start<'a>,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        async move {
            let site = start.site;
            let client = self.ctx.clusters.get(&site.member_cluster)?;
            ensure_namespace(&client, &site.namespace)
                .await
                .map_err(WorkloadError::Member)?;
            // The policy first: the participant never runs unconfined.
            ssa(
                &Api::<NetworkPolicy>::namespaced(client.clone(), &site.namespace),
                &network_policy::participants(job, &site.namespace, start.endpoint),
            )
            .await
            .map_err(WorkloadError::Member)?;
            ssa(
                &Api::<Secret>::namespaced(client.clone(), &site.namespace),
                &build::participant_secret(job, start.plan)?,
            )
            .await
            .map_err(WorkloadError::Member)?;
            ssa(
                &Api::<Job>::namespaced(client, &site.namespace),
                &build::participant_job(job, start.plan, start.endpoint, &self.images_of(job)),
            )
            .await
            .map_err(WorkloadError::Member)?;
            Ok(())
        }
        .boxed()
    }

    fn remove_participant<'a>(
        &'a self,
        _job: &'a ValidJob,
        site: &'a Site,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        async move {
            // Best effort, as before: what is left is found and replaced again.
            if let Ok(client) = self.ctx.clusters.get(&site.member_cluster) {
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                let _ = Api::<Job>::namespaced(client.clone(), &site.namespace)
                    .delete(name, &dp)
                    .await;
                // Its certificate goes with it: a replaced participant must not rejoin.
                let _ = Api::<Secret>::namespaced(client, &site.namespace)
                    .delete(name, &dp)
                    .await;
            }
            Ok(())
        }
        .boxed()
    }

    fn cleanup<'a>(&'a self, job: &'a FederatedJob) -> BoxFuture<'a, Result<(), WorkloadError>> {
        async move {
            remove_everywhere(&self.ctx, job).await?;
            self.applied.forget(&names::job_key(
                &job.namespace().unwrap_or_default(),
                &job.name_any(),
            ));
            Ok(())
        }
        .boxed()
    }
}

async fn ssa<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

async fn ensure_namespace(client: &kube::Client, ns: &str) -> Result<(), kube::Error> {
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": ns, "labels": { "app.kubernetes.io/managed-by": "fedsky" } },
    }))
    .map_err(kube::Error::SerdeError)?;
    ssa(&Api::<Namespace>::all(client.clone()), &obj)
        .await
        .map(|_| ())
}

/// Applies the aggregator's objects in `cluster`, its pod on `node`; its endpoints once it
/// serves.
async fn apply_aggregator(
    w: &PodWorkloads,
    job: &ValidJob,
    cluster: &str,
    node: &AggregatorNode,
) -> Result<Option<(String, String)>, WorkloadError> {
    let ctx = &w.ctx;
    let client = ctx.clusters.get(cluster)?;
    w.watches.ensure(&ctx.clusters, cluster);
    let objs = build::aggregator(job, node, &w.images_of(job))?;
    let policy = network_policy::aggregator(job);
    let digest = applied::digest(
        cluster,
        &(
            &objs.secret,
            &objs.store_secret,
            &objs.pvc,
            &objs.service,
            &objs.deployment,
            &policy,
        ),
    );
    // Unchanged since the last apply: read back, and apply again only if it was deleted
    // or changed by someone else.
    if let Some(generation) = w.applied.current(&job.key, digest) {
        let read = async {
            let dep = Api::<Deployment>::namespaced(client.clone(), AGGREGATOR_NAMESPACE)
                .get_opt(&names::aggregator(&job.key))
                .await?;
            let svc = Api::<Service>::namespaced(client.clone(), AGGREGATOR_NAMESPACE)
                .get_opt(&names::aggregator(&job.key))
                .await?;
            Ok::<_, kube::Error>(dep.zip(svc))
        };
        match tokio::time::timeout(MEMBER_TIMEOUT, read).await {
            Ok(Ok(Some((dep, svc)))) if dep.metadata.generation == generation => {
                return Ok(served(job, svc, dep));
            }
            Ok(Ok(other)) => {
                tracing::debug!(
                    found = other.is_some(),
                    "aggregator changed or gone; applying again"
                );
                w.applied.forget(&job.key);
            }
            Ok(Err(e)) => return Err(WorkloadError::Member(e)),
            Err(_) => {
                return Err(ClusterError::Unreachable {
                    cluster: cluster.into(),
                    reason: "reading the aggregator timed out".into(),
                }
                .into());
            }
        }
    }
    let run = async {
        ensure_namespace(&client, AGGREGATOR_NAMESPACE).await?;
        let secrets = Api::<Secret>::namespaced(client.clone(), AGGREGATOR_NAMESPACE);
        ssa(&secrets, &objs.secret).await?;
        if let Some(store) = &objs.store_secret {
            ssa(&secrets, store).await?;
        }
        if let Some(pvc) = &objs.pvc {
            ssa(
                &Api::<PersistentVolumeClaim>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
                pvc,
            )
            .await?;
        }
        ssa(
            &Api::<NetworkPolicy>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
            &policy,
        )
        .await?;
        let svc = ssa(
            &Api::<Service>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
            &objs.service,
        )
        .await?;
        let dep = ssa(
            &Api::<Deployment>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
            &objs.deployment,
        )
        .await?;
        Ok::<_, kube::Error>((svc, dep))
    };
    let (svc, dep) = tokio::time::timeout(MEMBER_TIMEOUT * 4, run)
        .await
        .map_err(|_| ClusterError::Unreachable {
            cluster: cluster.into(),
            reason: "applying aggregator timed out".into(),
        })?
        .map_err(WorkloadError::Member)?;
    w.applied.record(&job.key, digest, dep.metadata.generation);
    Ok(served(job, svc, dep))
}

/// The aggregator's gRPC endpoint and model URL once its Deployment is available.
fn served(job: &ValidJob, svc: Service, dep: Deployment) -> Option<(String, String)> {
    let available = dep.status.and_then(|s| s.available_replicas).unwrap_or(0) >= 1;
    if !available {
        return None;
    }
    // A LoadBalancer address where the cloud assigned one; otherwise the in-cluster name.
    let host = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .and_then(|i| i.into_iter().next())
        .and_then(|i| i.ip.or(i.hostname))
        .unwrap_or_else(|| format!("{}.{AGGREGATOR_NAMESPACE}.svc", names::aggregator(&job.key)));
    Some((
        format!("{host}:{GRPC_PORT}"),
        format!("https://{host}:{HTTP_PORT}"),
    ))
}

/// What keeps the aggregator that is not serving yet from starting in `cluster`, from its
/// pods (see [`aggregator_node::blocked`]). A failed read is logged and taken as no news:
/// the objects are applied and the aggregator counts as starting.
async fn blocked(
    ctx: &Context,
    job: &ValidJob,
    node: &AggregatorNode,
    cluster: &str,
) -> Option<(&'static str, String)> {
    let client = ctx.clusters.get(cluster).ok()?;
    let pods: Api<Pod> = Api::namespaced(client, AGGREGATOR_NAMESPACE);
    let params = ListParams::default().labels(&format!(
        "{},{}=aggregator",
        names::selector(&job.key),
        names::LABEL_ROLE
    ));
    match bounded(cluster, "listing aggregator pods", pods.list(&params)).await {
        Ok(list) => aggregator_node::blocked(&list.items, node, cluster),
        Err(e) => {
            tracing::warn!(%cluster, error = %e, "cannot read the aggregator's pods");
            None
        }
    }
}

/// The participant Jobs of job `key` in `site`'s cluster.
async fn list_participants(
    ctx: &Context,
    site: &Site,
    key: &str,
) -> Result<Vec<Job>, ClusterError> {
    let client = ctx.clusters.get(&site.member_cluster)?;
    let jobs: Api<Job> = Api::namespaced(client, &site.namespace);
    let params = ListParams::default().labels(&names::selector(key));
    let list = bounded(
        &site.member_cluster,
        "listing participant Jobs",
        jobs.list(&params),
    );
    Ok(list.await?.items)
}

/// A participant Job as the planner sees it; `None` for one that is not ours in shape.
fn observe(job: &Job, site: &str) -> Option<ParticipantObs> {
    let name = job.name_any();
    let node = job
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .node_name
        .clone()?;
    let n = name.rsplit('-').next()?.parse().ok()?;
    let st = job.status.clone().unwrap_or_default();
    let phase = if st.failed.unwrap_or(0) > 0 {
        Phase::Failed
    } else if st.succeeded.unwrap_or(0) > 0 {
        Phase::Succeeded
    } else if st.ready.unwrap_or(0) > 0 || st.active.unwrap_or(0) > 0 && st.ready.is_none() {
        Phase::Running
    } else {
        Phase::Pending
    };
    Some(ParticipantObs {
        name,
        site: site.into(),
        node,
        n,
        phase,
    })
}

/// Deletes a job's aggregator objects (selected by `lp`) in one member cluster; what of
/// them is still there afterwards.
async fn delete_aggregator(
    client: kube::Client,
    lp: &ListParams,
    dp: &DeleteParams,
) -> Result<Option<String>, kube::Error> {
    let n = AGGREGATOR_NAMESPACE;
    Api::<Deployment>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    Api::<Service>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    Api::<Secret>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    Api::<NetworkPolicy>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    // Deletion is not immediate: the claim outlives the pod that mounts it. Left as it is,
    // a job of the same name created next would apply its claim onto the terminating one
    // and then find it gone, its aggregator Pending for good.
    let deployments = Api::<Deployment>::namespaced(client.clone(), n)
        .list(lp)
        .await?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client, n)
        .list(lp)
        .await?;
    Ok(left_behind(deployments.items.len(), claims.items.len()))
}

/// What of a job's aggregator is still being deleted, if anything.
fn left_behind(deployments: usize, claims: usize) -> Option<String> {
    let mut left = Vec::new();
    if deployments > 0 {
        left.push(format!("{deployments} Deployment(s)"));
    }
    if claims > 0 {
        left.push(format!("{claims} PersistentVolumeClaim(s)"));
    }
    (!left.is_empty()).then(|| left.join(" and "))
}

/// Deletes the job's objects in every member cluster it may have used.
pub(crate) async fn remove_everywhere(
    ctx: &Context,
    job: &FederatedJob,
) -> Result<(), WorkloadError> {
    let ns = job.namespace().unwrap_or_default();
    let key = names::job_key(&ns, &job.name_any());
    let lp = ListParams::default().labels(&names::selector(&key));
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    // The cluster the status names must be cleaned (retried until it is); the other
    // public clusters are cleaned as far as they answer, for an aggregator applied just
    // before a restart or a timeout kept its cluster out of the status.
    let recorded = job
        .status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .and_then(|p| p.member_cluster.clone());
    let members = ctx
        .list_member_clusters()
        .await
        .map_err(WorkloadError::Hub)?;
    let mut candidates: Vec<String> = members
        .iter()
        .filter(|mc| mc.spec.tier == ClusterTier::Public)
        .map(ResourceExt::name_any)
        .collect();
    candidates.extend(recorded.clone());
    candidates.sort();
    candidates.dedup();
    for cluster in candidates {
        let required = recorded.as_deref() == Some(cluster.as_str())
            && members.iter().any(|mc| mc.name_any() == cluster);
        let done = match ctx.clusters.get(&cluster) {
            Ok(client) => match delete_aggregator(client, &lp, &dp).await {
                Ok(None) => Ok(()),
                Ok(Some(what)) => Err(WorkloadError::StillDeleting {
                    cluster: cluster.clone(),
                    what,
                }),
                Err(e) => Err(WorkloadError::Member(e)),
            },
            Err(e) => Err(e.into()),
        };
        match done {
            Err(e) if required => return Err(e),
            Err(e) => tracing::debug!(%cluster, error = %e, "no aggregator cleanup there"),
            Ok(()) => {}
        }
    }
    let pool = Api::<fedsky_crds::ParticipantPool>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&job.spec.participants.pool_ref.name)
        .await
        .map_err(WorkloadError::Hub)?;
    for site in pool.map(|p| p.spec.sites).unwrap_or_default() {
        // A member that is gone for good would block deletion forever; skip unregistered ones.
        let Ok(client) = ctx.clusters.get(&site.member_cluster) else {
            continue;
        };
        Api::<Job>::namespaced(client.clone(), &site.namespace)
            .delete_collection(&dp, &lp)
            .await
            .map_err(WorkloadError::Member)?;
        Api::<Secret>::namespaced(client.clone(), &site.namespace)
            .delete_collection(&dp, &lp)
            .await
            .map_err(WorkloadError::Member)?;
        Api::<NetworkPolicy>::namespaced(client, &site.namespace)
            .delete_collection(&dp, &lp)
            .await
            .map_err(WorkloadError::Member)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::left_behind;

    #[test]
    fn a_job_is_gone_only_once_its_deployment_and_claim_are() {
        assert_eq!(left_behind(0, 0), None);
        assert_eq!(
            left_behind(0, 1).as_deref(),
            Some("1 PersistentVolumeClaim(s)")
        );
        assert_eq!(
            left_behind(1, 1).as_deref(),
            Some("1 Deployment(s) and 1 PersistentVolumeClaim(s)")
        );
    }
}
