//! A value per job shared by every reconcile, in memory only; the lock is held for one
//! entry's read or write, never across a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Values by job key or UID.
#[derive(Clone)]
pub struct PerJob<V> {
    inner: Arc<Mutex<HashMap<String, V>>>,
}

impl<V> Default for PerJob<V> {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
        }
    }
}

impl<V> std::fmt::Debug for PerJob<V> {
    // Values may be secrets (tokens, CA keys): only their number is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let jobs = self.lock().len();
        f.debug_struct("PerJob").field("jobs", &jobs).finish()
    }
}

impl<V> PerJob<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of `job`, if known.
    pub fn get(&self, job: &str) -> Option<V>
    where
        V: Clone,
    {
        self.lock().get(job).cloned()
    }

    /// Sets the value of `job`.
    pub fn insert(&self, job: &str, value: V) {
        self.lock().insert(job.to_owned(), value);
    }

    /// Forgets `job`.
    pub fn forget(&self, job: &str) {
        self.lock().remove(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_per_job_until_forgotten_and_not_shown() {
        let m: PerJob<String> = PerJob::default();
        assert_eq!(m.get("a"), None);
        m.insert("a", "secret".into());
        // Clones share the map, as every reconcile's context does.
        let shared = m.clone();
        shared.insert("b", "other".into());
        assert_eq!(m.get("a").as_deref(), Some("secret"));
        assert_eq!(format!("{m:?}"), "PerJob { jobs: 2 }");
        m.forget("a");
        assert_eq!(m.get("a"), None);
        assert_eq!(m.get("b").as_deref(), Some("other"));
    }
}
