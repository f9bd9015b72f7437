//! The operator's top-level error: one variant per cause, with a category for metrics
//! labels and Event reasons.

use std::time::Duration;

/// Anything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the hub's API server failed.
    #[error("hub API: {0}")]
    Kube(#[from] kube::Error),
    /// A member cluster could not be reached or used.
    #[error(transparent)]
    Cluster(#[from] crate::clusters::ClusterError),
    /// The object's spec cannot be acted on until the user changes it.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The finalizer helper failed (adding/removing the finalizer or the inner reconcile).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Starting, observing or removing workloads (pods, processes, VMs) failed.
    #[error(transparent)]
    Workloads(#[from] crate::workloads::WorkloadError),
    /// A hub Secret the job owns lacks keys the operator put there.
    #[error(
        "hub Secret {secret} exists without the keys {keys:?}; delete it so that the operator recreates it"
    )]
    IncompleteSecret {
        /// `namespace/name`.
        secret: String,
        /// The keys it should have.
        keys: Vec<String>,
    },
    /// The job's certificates could not be issued, or its stored CA is unusable.
    #[error("job PKI: {0}")]
    Pki(#[from] crate::pki::PkiError),
    /// A placement solve failed for a reason the spec does not explain (a panic, a solver
    /// or catalog defect): retried with backoff, never reported as an invalid spec.
    #[error("placement solve: {0}")]
    Solve(#[from] crate::controllers::aggregator_placement::SolveFailure),
    /// Status could not be serialised (a bug).
    #[error("serialising status: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// Short label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "HubApiError",
            Self::Cluster(e) => e.category(),
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::Workloads(e) => e.category(),
            Self::IncompleteSecret { .. } => "HubSecretError",
            Self::Serialize(_) => "InternalError",
            Self::Pki(_) => "CertificateError",
            Self::Solve(_) => crate::controllers::aggregator_placement::SOLVE_FAILED,
            Self::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.category(),
                _ => "FinalizerError",
            },
        }
    }

    /// How soon to retry: user errors wait for a change (a watch event re-triggers),
    /// transient ones retry quickly.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::InvalidSpec(_) => None,
            // Credentials or a refused call need the user; check again now and then.
            // A cloud call for an aggregator VM failed (deleting it blocks job deletion).
            Self::Workloads(e) if e.is_user_error() => Some(Duration::from_secs(60)),
            _ => Some(Duration::from_secs(5)),
        }
    }
}
