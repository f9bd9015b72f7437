//! Keeping only the newest model versions (`--keep-versions`): after each
//! commit the versions the retention rule gives up
//! ([`crate::store::retention`]) leave the listing, then their objects are
//! deleted. A failed delete is logged and never fails the round; the objects
//! are still in the store's listing, so the next round deletes them.

use std::time::Duration;

use super::{Coordinator, State};
use crate::store::retention::{BEST_METRIC, Pinned, best_version, to_prune};

/// Longest the listing, and then the deletes, may hold up the round loop (a store that
/// does not answer); what is left goes after the next round.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(30);

/// A version whose objects are being written; pruning keeps it until the
/// guard is dropped (also when the writing request is cancelled).
pub(super) struct Writing<'a> {
    core: &'a Coordinator,
    version: u64,
}

impl<'a> Writing<'a> {
    /// Marks `version` in `s` (the coordinator's state, locked by the caller).
    pub(super) fn start(core: &'a Coordinator, s: &mut State, version: u64) -> Self {
        *s.writing.entry(version).or_default() += 1;
        Self { core, version }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut s = self.core.lock();
        if let Some(n) = s.writing.get_mut(&self.version) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.writing.remove(&self.version);
            }
        }
    }
}

impl Coordinator {
    /// Deletes the versions beyond the retention limit, if there is one;
    /// `checkpointed` is the version `checkpoint.json` names.
    pub(super) async fn prune(&self, checkpointed: u64) {
        let checkpoints = &self.inner.checkpoints;
        let Some(keep) = checkpoints.keep_versions() else {
            return;
        };
        let stored = match tokio::time::timeout(PRUNE_TIMEOUT, checkpoints.stored_versions()).await
        {
            Ok(Ok(stored)) => stored,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot list model versions to prune; trying again after the next round");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    timeout_s = PRUNE_TIMEOUT.as_secs(),
                    "listing model versions to prune timed out; trying again after the next round"
                );
                return;
            }
        };
        let doomed = {
            let mut s = self.lock();
            let pinned = Pinned {
                latest: s.global.version,
                checkpointed: Some(checkpointed),
                writing: s.writing.keys().copied().collect(),
                best: best_version(&s.versions, BEST_METRIC, true).map(|v| v.version),
            };
            let doomed = to_prune(&stored, keep, &pinned);
            // Out of the listing first: no download or evaluation report
            // starts on a version about to go.
            s.versions.retain(|v| !doomed.contains(&v.version));
            s.evaluations.retain(|v, _| !doomed.contains(v));
            s.evaluated.retain(|(_, v)| !doomed.contains(v));
            doomed
        };
        let metrics = &self.inner.metrics;
        let deletes = async {
            for version in doomed {
                match checkpoints.delete_version(version).await {
                    Ok(()) => {
                        metrics.version_pruned("deleted");
                        tracing::info!(version, keep = keep.get(), "pruned model version");
                    }
                    Err(e) => {
                        metrics.version_pruned("failed");
                        tracing::warn!(version, error = %e, "cannot delete a pruned model version; trying again after the next round");
                    }
                }
            }
        };
        if tokio::time::timeout(PRUNE_TIMEOUT, deletes).await.is_err() {
            metrics.version_pruned("failed");
            tracing::warn!(
                timeout_s = PRUNE_TIMEOUT.as_secs(),
                "deleting pruned model versions timed out; the rest go after the next round"
            );
        }
    }
}
