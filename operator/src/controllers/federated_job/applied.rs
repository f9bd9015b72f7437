//! What the operator last applied for each job's aggregator, so that a reconcile whose
//! desired objects did not change reads them back instead of applying them again. Applying
//! the namespace, Secret, volume claim, Service and Deployment every reconcile of 1,000
//! jobs was over a thousand server-side applies a second against one member API server,
//! and reconciles queued behind them (docs/operator-benchmark.md).
//!
//! Memory only: after a restart every job applies once more, which is also what makes an
//! operator killed mid-apply finish the job it started.

use super::per_job::PerJob;
use serde::Serialize;
use std::hash::{Hash, Hasher};

/// Digest of the desired objects; equal digests mean an apply would change nothing we own.
pub fn digest<T: Serialize>(cluster: &str, objects: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cluster.hash(&mut h);
    // Serialising k8s-openapi types is deterministic (sorted maps), so equal objects
    // give equal bytes.
    serde_json::to_vec(objects).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Digest of the last successful apply per job key, with the `metadata.generation` the
/// Deployment had after it: a different generation read back means someone changed the
/// Deployment, and it is applied again.
#[derive(Clone, Debug, Default)]
pub struct Applied(PerJob<Record>);

/// Digest of the applied objects and the Deployment's generation after the apply.
type Record = (u64, Option<i64>);

impl Applied {
    /// The Deployment generation after the last apply for `key`, if that apply was of
    /// `digest`.
    pub fn current(&self, key: &str, digest: u64) -> Option<Option<i64>> {
        self.0
            .get(key)
            .filter(|(d, _)| *d == digest)
            .map(|(_, g)| g)
    }

    /// Records a successful apply.
    pub fn record(&self, key: &str, digest: u64, generation: Option<i64>) {
        self.0.insert(key, (digest, generation));
    }

    /// Forgets `key`: its objects are gone or must be applied again.
    pub fn forget(&self, key: &str) {
        self.0.forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_is_current_until_the_objects_or_the_cluster_change() {
        let applied = Applied::default();
        let objs = serde_json::json!({ "replicas": 1 });
        let d = digest("eu", &objs);
        assert_eq!(applied.current("ns/job", d), None);
        applied.record("ns/job", d, Some(3));
        assert_eq!(applied.current("ns/job", d), Some(Some(3)));
        assert_eq!(d, digest("eu", &serde_json::json!({ "replicas": 1 })));
        assert_eq!(applied.current("ns/job", digest("us", &objs)), None);
        let other = digest("eu", &serde_json::json!({ "replicas": 2 }));
        assert_eq!(applied.current("ns/job", other), None);
        applied.forget("ns/job");
        assert_eq!(applied.current("ns/job", d), None);
    }
}
