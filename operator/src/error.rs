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
    /// The built-in placement catalog does not load (a bug in the build; like an invalid
    /// spec, retrying cannot help).
    #[error("invalid spec: builtin catalog: {0}")]
    Catalog(#[source] fedsky_placement::CatalogError),
    /// The finalizer helper failed (adding/removing the finalizer or the inner reconcile).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The process runtime failed to start, observe or stop a local process.
    #[error("process runtime: {0}")]
    Runtime(String),
    /// A cloud call for an aggregator VM failed (deleting it blocks job deletion).
    #[error("cloud: {0}")]
    Cloud(#[from] fedsky_clouds::provision::ProvisionError),
    /// The job's certificates could not be issued, or its stored CA is unusable.
    #[error("job PKI: {0}")]
    Pki(#[from] crate::controllers::federated_job::pki::PkiError),
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
            Self::InvalidSpec(_) | Self::Catalog(_) => "InvalidSpec",
            Self::Cloud(e) => e.reason(),
            Self::Runtime(_) => "ProcessRuntimeError",
            Self::Serialize(_) => "InternalError",
            Self::Pki(_) => "CertificateError",
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
            Self::InvalidSpec(_) | Self::Catalog(_) => None,
            // Credentials or a refused call need the user; check again now and then.
            Self::Cloud(e) if e.is_user_error() => Some(Duration::from_secs(60)),
            _ => Some(Duration::from_secs(5)),
        }
    }
}
