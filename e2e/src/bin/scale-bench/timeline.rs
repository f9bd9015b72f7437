//! When each job reached each stage, to the millisecond: condition timestamps in status
//! are whole seconds, so the benchmark watches the hub's FederatedJobs and the public
//! member's aggregator Deployments and notes the moment a stage first shows up.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The aggregator's annotation naming its job (`<namespace>/<name>`).
const JOB_REF_ANNOTATION: &str = "fl.fedsky.dev/job-ref";
/// The operator's aggregator namespace in public member clusters.
const AGGREGATOR_NAMESPACE: &str = "fedsky-aggregators";

/// Moments in one job's life, as seen by the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobTimes {
    /// Just before the create request was sent.
    pub applied: Option<Instant>,
    /// The hub answered the create.
    pub created: Option<Instant>,
    /// `Placed` first True.
    pub placed: Option<Instant>,
    /// The aggregator Deployment first seen in the member cluster.
    pub deployment_seen: Option<Instant>,
    /// The aggregator Deployment first had an available replica.
    pub deployment_available: Option<Instant>,
    /// `AggregatorReady` first True.
    pub aggregator_ready: Option<Instant>,
}

/// Times by job name, filled by the watchers and the applier.
#[derive(Debug, Clone, Default)]
pub struct Timeline(Arc<Mutex<HashMap<String, JobTimes>>>);

impl Timeline {
    /// Updates one job's times.
    pub fn update(&self, job: &str, f: impl FnOnce(&mut JobTimes)) {
        // A poisoned lock means a watcher panicked; the data is still the best there is.
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(m.entry(job.to_string()).or_default());
    }

    /// A copy of every job's times.
    pub fn snapshot(&self) -> HashMap<String, JobTimes> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Jobs that have reached `stage`.
    pub fn count(&self, stage: impl Fn(&JobTimes) -> Option<Instant>) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|t| stage(t).is_some())
            .count()
    }
}

/// `to - from` where both happened.
pub fn between(from: Option<Instant>, to: Option<Instant>) -> Option<Duration> {
    Some(to?.saturating_duration_since(from?))
}

/// Whether `status.conditions` holds `type_` with status `True`.
pub fn condition_true(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

fn first(slot: &mut Option<Instant>, now: Instant) {
    slot.get_or_insert(now);
}

/// The FederatedJob API resource.
pub fn federated_jobs() -> ApiResource {
    fedsky("FederatedJob", "federatedjobs")
}

/// An API resource of fedsky's group.
pub fn fedsky(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "fl.fedsky.dev".into(),
        version: "v1alpha1".into(),
        api_version: "fl.fedsky.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Watches the namespace's FederatedJobs on the hub and records `Placed` and
/// `AggregatorReady`. Runs until aborted; the watcher re-lists after errors.
pub async fn watch_jobs(hub: kube::Client, namespace: String, timeline: Timeline) {
    let api: Api<DynamicObject> = Api::namespaced_with(hub, &namespace, &federated_jobs());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = events.next().await {
        let now = Instant::now();
        let Ok(obj) = ev else { continue };
        let Some(name) = obj.metadata.name.as_deref() else {
            continue;
        };
        let placed = condition_true(&obj.data, "Placed");
        let ready = condition_true(&obj.data, "AggregatorReady");
        if placed || ready {
            timeline.update(name, |t| {
                if placed {
                    first(&mut t.placed, now);
                }
                if ready {
                    first(&mut t.aggregator_ready, now);
                }
            });
        }
    }
}

/// Watches the aggregator Deployments in the public member cluster and records when each
/// appears and when it first has an available replica.
pub async fn watch_deployments(member: kube::Client, namespace: String, timeline: Timeline) {
    let api: Api<Deployment> = Api::namespaced(member, AGGREGATOR_NAMESPACE);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let prefix = format!("{namespace}/");
    while let Some(ev) = events.next().await {
        let now = Instant::now();
        let Ok(dep) = ev else { continue };
        let Some(job) = dep
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(JOB_REF_ANNOTATION))
            .and_then(|r| r.strip_prefix(&prefix))
        else {
            continue;
        };
        let available = dep
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            >= 1;
        timeline.update(job, |t| {
            first(&mut t.deployment_seen, now);
            if available {
                first(&mut t.deployment_available, now);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_true_condition_counts() {
        let obj = json!({"status": {"conditions": [
            {"type": "Placed", "status": "True"},
            {"type": "AggregatorReady", "status": "False"},
        ]}});
        assert!(condition_true(&obj, "Placed"));
        assert!(!condition_true(&obj, "AggregatorReady"));
        assert!(!condition_true(&json!({}), "Placed"));
    }

    #[test]
    fn the_first_moment_is_kept() {
        let tl = Timeline::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        tl.update("a", |t| first(&mut t.placed, t0));
        tl.update("a", |t| first(&mut t.placed, t1));
        assert_eq!(tl.snapshot()["a"].placed, Some(t0));
        assert_eq!(tl.count(|t| t.placed), 1);
        assert_eq!(between(Some(t0), Some(t1)), Some(Duration::from_millis(5)));
        assert_eq!(between(None, Some(t1)), None);
    }
}
