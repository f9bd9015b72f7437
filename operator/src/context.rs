//! State shared by all controllers, built in one place. What only the FederatedJob
//! controllers use is theirs (`controllers::federated_job::context`).

use crate::cache::Cache;
use crate::clusters::ClusterRegistry;
use crate::metrics::Metrics;
use crate::secret_scope::SecretScope;
use fedsky_crds::MemberCluster;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use std::sync::Arc;

/// What every reconcile gets.
#[derive(Clone)]
pub struct Context {
    /// Client of the hub cluster, where fedsky objects live.
    pub client: kube::Client,
    /// Publishes Kubernetes Events on fedsky objects.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// One client per member cluster.
    pub clusters: ClusterRegistry,
    /// Recent node views per participant site, shared by all reconciles.
    pub sites: crate::controllers::participant_pool::nodes::SiteCache,
    /// Events being published at once; more wait, so that a burst of transitions does not
    /// become a burst of hub requests.
    pub events: Arc<tokio::sync::Semaphore>,
    /// The FederatedJob controllers' cache.
    pub jobs: Cache<fedsky_crds::FederatedJob>,
    /// The ParticipantPool controller's cache.
    pub pools: Cache<fedsky_crds::ParticipantPool>,
    /// The AggregatorPlacement controller's cache.
    pub placements: Cache<fedsky_crds::AggregatorPlacement>,
    /// The MemberCluster controller's cache.
    pub member_clusters: Cache<MemberCluster>,
    /// The namespaces whose Secrets the operator reads and writes.
    pub secrets: SecretScope,
    /// The hub's model archive (`spec.modelStore.retain`), if the operator keeps one.
    pub archive: Option<Arc<crate::models::ModelArchive>>,
}

/// Events published at once.
const EVENTS_IN_FLIGHT: usize = 4;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// Builds the context for a hub client.
    pub fn new(
        client: kube::Client,
        metrics: Arc<Metrics>,
        secrets: SecretScope,
        archive: Option<Arc<crate::models::ModelArchive>>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            clusters: ClusterRegistry::default(),
            sites: Default::default(),
            events: Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT)),
            jobs: Cache::default(),
            pools: Cache::default(),
            placements: Cache::default(),
            member_clusters: Cache::default(),
            secrets,
            archive,
            client,
            metrics,
        })
    }

    /// Every MemberCluster, from the cache once it is filled.
    pub async fn list_member_clusters(&self) -> Result<Vec<MemberCluster>, kube::Error> {
        Ok(match self.member_clusters.ready().await {
            Some(store) => store.state().iter().map(|mc| (**mc).clone()).collect(),
            None => {
                Api::<MemberCluster>::all(self.client.clone())
                    .list(&ListParams::default())
                    .await?
                    .items
            }
        })
    }
}
