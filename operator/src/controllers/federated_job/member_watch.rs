//! Watches of the aggregators in member clusters, so that a job whose aggregator becomes
//! available (or stops being so), or whose aggregator pod the scheduler cannot place (or
//! places after all), is reconciled at once instead of at its next poll. Polling alone,
//! 1,000 starting jobs noticed their aggregators minutes late
//! (docs/operator-benchmark.md). Per member cluster that hosts aggregators, one watch of
//! their Deployments and one of their pods, started with the first aggregator applied
//! there; nothing is cached.

use super::aggregator_node;
use crate::clusters::ClusterRegistry;
use crate::names::{AGGREGATOR_NAMESPACE, ANNOTATION_JOB, LABEL_ROLE};
use fedsky_crds::FederatedJob;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// Server-side watch timeout, below the member clients' read timeout (5 s) so that a quiet
/// watch ends cleanly and resumes instead of failing and listing again.
const WATCH_TIMEOUT_SECS: u32 = 4;
/// Pause before a failed watch starts again (with the cluster's current client).
const RETRY: Duration = Duration::from_secs(5);

/// The watches, and the stream of jobs they wake.
#[derive(Clone)]
pub struct MemberWatches {
    started: Arc<Mutex<HashSet<String>>>,
    tx: mpsc::UnboundedSender<ObjectRef<FederatedJob>>,
    rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<FederatedJob>>>>>,
}

impl Default for MemberWatches {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            started: Arc::default(),
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }
}

impl std::fmt::Debug for MemberWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberWatches").finish_non_exhaustive()
    }
}

impl MemberWatches {
    /// The jobs to reconcile because their aggregator changed; `None` after the first call
    /// (one controller consumes it).
    pub fn jobs(&self) -> Option<impl Stream<Item = ObjectRef<FederatedJob>> + Send + 'static> {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|job| (job, rx))
        }))
    }

    /// Whether aggregator Deployments in `cluster` are watched.
    pub fn watching(&self, cluster: &str) -> bool {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(cluster)
    }

    /// Starts watching `cluster` unless a watch runs there already. The watch ends when
    /// the cluster is no longer registered.
    pub fn ensure(&self, clusters: &ClusterRegistry, cluster: &str) {
        if !self
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cluster.to_string())
        {
            return;
        }
        let (clusters, cluster, tx, started) = (
            clusters.clone(),
            cluster.to_string(),
            self.tx.clone(),
            self.started.clone(),
        );
        tokio::spawn(async move {
            // Each on its own: one that fails (a grant missing) leaves the other running.
            futures::future::join(
                keep_watching::<Deployment, _>(&clusters, &cluster, &tx, deployment_changed),
                keep_watching::<Pod, _>(&clusters, &cluster, &tx, pod_changed),
            )
            .await;
            started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&cluster);
        });
    }
}

/// What a watch remembers of each object by name, and the job to wake when that changes.
type Changed<K, S> = fn(&mut HashMap<String, S>, &K) -> Option<ObjectRef<FederatedJob>>;

/// Watches the aggregators' `K`s in `cluster`, starting again after each failure, until
/// the cluster is no longer registered or the controller stops.
async fn keep_watching<K, S>(
    clusters: &ClusterRegistry,
    cluster: &str,
    tx: &mpsc::UnboundedSender<ObjectRef<FederatedJob>>,
    changed: Changed<K, S>,
) where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut seen = HashMap::new();
    // A new client each time: the kubeconfig may have been rotated.
    while let Ok(client) = clusters.get(cluster) {
        let api = Api::<K>::namespaced(client, AGGREGATOR_NAMESPACE);
        let why = watch(api, &mut seen, tx, changed).await;
        if tx.is_closed() {
            break;
        }
        tracing::info!(%cluster, kind = %K::kind(&()), %why, "aggregator watch restarts");
        tokio::time::sleep(RETRY).await;
    }
}

/// Watches until the first error, sending the job of each object `changed` reports. A
/// deleted object is forgotten, so `seen` holds only the cluster's current aggregators.
async fn watch<K, S>(
    api: Api<K>,
    seen: &mut HashMap<String, S>,
    tx: &mpsc::UnboundedSender<ObjectRef<FederatedJob>>,
    changed: Changed<K, S>,
) -> String
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + 'static,
{
    let config = watcher::Config::default()
        .labels(&format!("{LABEL_ROLE}=aggregator"))
        .timeout(WATCH_TIMEOUT_SECS);
    let mut events = std::pin::pin!(watcher(api, config));
    while let Some(event) = events.next().await {
        let obj = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
            Ok(watcher::Event::Delete(o)) => {
                if let Some(name) = &o.meta().name {
                    seen.remove(name);
                }
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(e) => return e.to_string(),
        };
        if let Some(job) = changed(seen, &obj)
            && tx.send(job).is_err()
        {
            return "the controller stopped".into();
        }
    }
    "the watch ended".into()
}

/// The job to wake when `dep` is new or its availability changed; remembers it.
fn deployment_changed(
    available: &mut HashMap<String, bool>,
    dep: &Deployment,
) -> Option<ObjectRef<FederatedJob>> {
    let name = dep.metadata.name.clone()?;
    let now = dep
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        >= 1;
    if available.insert(name, now) == Some(now) {
        return None;
    }
    job_of(&dep.metadata)
}

/// The job to wake when `pod` became blocked (the scheduler refused it, or a container
/// cannot start), blocked for another reason, or unblocked; remembers it. A new pod not
/// blocked is no news: its Deployment's watch covers it.
fn pod_changed(
    blocked: &mut HashMap<String, Option<&'static str>>,
    pod: &Pod,
) -> Option<ObjectRef<FederatedJob>> {
    let name = pod.metadata.name.clone()?;
    let now = aggregator_node::block_reason(pod);
    if blocked.insert(name, now).flatten() == now {
        return None;
    }
    job_of(&pod.metadata)
}

/// The job named by an object's `namespace/name` annotation.
fn job_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ObjectRef<FederatedJob>> {
    let reference = meta.annotations.as_ref()?.get(ANNOTATION_JOB)?;
    let (ns, job) = reference.split_once('/')?;
    Some(ObjectRef::new(job).within(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, job: Option<&str>, available: Option<i32>) -> Deployment {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "namespace": AGGREGATOR_NAMESPACE },
        }))
        .expect("deployment");
        if let Some(j) = job {
            d.metadata.annotations = Some([(ANNOTATION_JOB.to_string(), j.to_string())].into());
        }
        d.status = available.map(|n| k8s_openapi::api::apps::v1::DeploymentStatus {
            available_replicas: Some(n),
            ..Default::default()
        });
        d
    }

    #[test]
    fn a_job_is_woken_when_its_aggregator_appears_or_its_availability_changes() {
        let mut seen = HashMap::new();
        let woken = |r: Option<ObjectRef<FederatedJob>>| r.map(|r| (r.namespace, r.name));
        let job = Some((Some("covid".to_string()), "xray".to_string()));
        assert_eq!(
            woken(deployment_changed(
                &mut seen,
                &dep("a", Some("covid/xray"), None)
            )),
            job
        );
        assert_eq!(
            woken(deployment_changed(
                &mut seen,
                &dep("a", Some("covid/xray"), Some(0))
            )),
            None
        );
        assert_eq!(
            woken(deployment_changed(
                &mut seen,
                &dep("a", Some("covid/xray"), Some(1))
            )),
            job
        );
        assert_eq!(
            woken(deployment_changed(
                &mut seen,
                &dep("a", Some("covid/xray"), Some(1))
            )),
            None
        );
        assert_eq!(
            woken(deployment_changed(
                &mut seen,
                &dep("a", Some("covid/xray"), Some(0))
            )),
            job
        );
        // Not one of ours (no job annotation, or not namespace/name): nothing to wake.
        assert_eq!(
            woken(deployment_changed(&mut seen, &dep("b", None, Some(1)))),
            None
        );
        assert_eq!(
            woken(deployment_changed(
                &mut seen,
                &dep("c", Some("xray"), Some(1))
            )),
            None
        );
    }

    fn pod(name: &str, scheduled: Option<(&str, &str)>) -> Pod {
        let conditions: Vec<serde_json::Value> = scheduled
            .into_iter()
            .map(|(status, reason)| {
                serde_json::json!({ "type": "PodScheduled", "status": status, "reason": reason })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "namespace": AGGREGATOR_NAMESPACE,
                          "annotations": { ANNOTATION_JOB: "covid/xray" } },
            "status": { "conditions": conditions },
        }))
        .expect("pod")
    }

    #[test]
    fn a_job_is_woken_when_its_aggregator_pod_cannot_be_scheduled_and_when_it_can() {
        let mut seen = HashMap::new();
        let woken = |r: Option<ObjectRef<FederatedJob>>| r.map(|r| (r.namespace, r.name));
        let job = Some((Some("covid".to_string()), "xray".to_string()));
        // New and not refused (yet): no news.
        assert_eq!(woken(pod_changed(&mut seen, &pod("a", None))), None);
        let refused = Some(("False", "Unschedulable"));
        assert_eq!(woken(pod_changed(&mut seen, &pod("a", refused))), job);
        assert_eq!(woken(pod_changed(&mut seen, &pod("a", refused))), None);
        let placed = Some(("True", ""));
        assert_eq!(woken(pod_changed(&mut seen, &pod("a", placed))), job);
        assert_eq!(woken(pod_changed(&mut seen, &pod("a", placed))), None);
        // Seen first when already refused (after an operator restart).
        assert_eq!(woken(pod_changed(&mut seen, &pod("b", refused))), job);
        // Placed, then its image cannot be had: news; the same again: none.
        let mut stuck = pod("a", placed);
        let status = stuck.status.get_or_insert_default();
        status.init_container_statuses = Some(vec![
            serde_json::from_value(serde_json::json!({
                "name": "init-model", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "waiting": { "reason": "ErrImageNeverPull" } } }))
            .expect("status"),
        ]);
        assert_eq!(woken(pod_changed(&mut seen, &stuck)), job);
        assert_eq!(woken(pod_changed(&mut seen, &stuck)), None);
        assert_eq!(woken(pod_changed(&mut seen, &pod("a", placed))), job);
    }

    #[tokio::test]
    async fn the_stream_of_woken_jobs_is_taken_once() {
        let watches = MemberWatches::default();
        assert!(!watches.watching("aws-eu"));
        watches.ensure(&ClusterRegistry::default(), "aws-eu");
        // Not registered: the watch ends at once and is no longer counted.
        for _ in 0..100 {
            if !watches.watching("aws-eu") {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(!watches.watching("aws-eu"));
        let mut jobs = Box::pin(watches.jobs().expect("first"));
        assert!(watches.jobs().is_none());
        watches
            .tx
            .send(ObjectRef::new("xray").within("covid"))
            .expect("send");
        assert_eq!(jobs.next().await.map(|r| r.name), Some("xray".to_string()));
    }
}
