//! The controllers' caches of the hub objects they watch, read by the other controllers
//! instead of one request to the hub per reconcile: at 1,000 jobs those reads were a large
//! share of the hub's load (docs/operator-benchmark.md).

use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A controller's reflector store, shared once that controller runs.
pub struct Cache<K: kube::Resource<DynamicType = ()> + Clone + 'static>(Arc<OnceLock<Store<K>>>);

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Default for Cache<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> std::fmt::Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shared", &self.0.get().is_some())
            .finish()
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    /// Shares `store`; a later call (controllers restarted) keeps the first.
    pub fn set(&self, store: Store<K>) {
        let _ = self.0.set(store);
    }

    /// The store once it holds the result of its first full listing; `None` before, so
    /// that callers ask the hub rather than trust a partial view.
    pub async fn ready(&self) -> Option<&Store<K>> {
        let store = self.0.get()?;
        tokio::time::timeout(Duration::ZERO, store.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok())
            .then_some(store)
    }

    /// The cached `name` in `namespace` (`None` for cluster-scoped), if the store is ready
    /// and holds it. Absence proves nothing (the store may lag a create): ask the hub.
    pub async fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut key = ObjectRef::<K>::new(name);
        if let Some(ns) = namespace {
            key = key.within(ns);
        }
        self.ready().await?.get(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::ParticipantPool;
    use kube::runtime::watcher::Event;

    fn pool(ns: &str, name: &str) -> ParticipantPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
            "metadata": { "name": name, "namespace": ns },
            "spec": { "sites": [] },
        }))
        .expect("pool")
    }

    #[tokio::test]
    async fn a_cache_answers_only_once_its_store_is_listed() {
        let cache: Cache<ParticipantPool> = Cache::default();
        assert!(cache.get(Some("a"), "p").await.is_none(), "not shared yet");
        let (reader, mut writer) = kube::runtime::reflector::store();
        cache.set(reader);
        assert!(cache.ready().await.is_none(), "not listed yet");
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(pool("a", "p")));
        writer.apply_watcher_event(&Event::InitDone);
        assert!(cache.get(Some("a"), "p").await.is_some());
        assert!(cache.get(Some("b"), "p").await.is_none());
        assert!(cache.get(Some("a"), "q").await.is_none());
    }
}
