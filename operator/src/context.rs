//! State shared by all controllers, built in one place.

use crate::clusters::ClusterRegistry;
use crate::metrics::Metrics;
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
    /// Images of the aggregator and participants.
    pub images: crate::controllers::federated_job::build::Images,
    /// Where workloads run: pods in member clusters or local processes.
    pub runtime: Arc<crate::runtime::Runtime>,
    /// Recent node views per participant site, shared by all reconciles.
    pub sites: crate::controllers::participant_pool::nodes::SiteCache,
}

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
        runtime: Arc<crate::runtime::Runtime>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            clusters: ClusterRegistry::default(),
            sites: Default::default(),
            images: Default::default(),
            runtime,
            client,
            metrics,
        })
    }
}
