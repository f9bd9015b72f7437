//! State shared by all controllers, built in one place.

use crate::cache::Cache;
use crate::clusters::ClusterRegistry;
use crate::controllers::federated_job::{applied::Applied, credentials::Credentials};
use crate::metrics::Metrics;
use kube::runtime::events::{Recorder, Reporter};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

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
    /// What was last applied for each job's aggregator.
    pub applied: Applied,
    /// Each job's token and CA, read from the hub once per job and operator run.
    pub credentials: Credentials,
    /// Lifecycle reconciles that may run at once, first come first served.
    pub member_slots: Arc<tokio::sync::Semaphore>,
    /// Placer reconciles that may run at once, first come first served.
    pub place_slots: Arc<tokio::sync::Semaphore>,
    /// Jobs being placed right now: member-cluster work yields to them (placing needs only
    /// the hub and is what a user waits for after `kubectl apply`).
    pub placing: Arc<AtomicUsize>,
    /// Jobs waiting for the placer's first look; member-cluster work yields to them too.
    pub arrivals: crate::controllers::federated_job::Arrivals,
    /// Events being published at once; more wait, so that a burst of transitions does not
    /// become a burst of hub requests.
    pub events: Arc<tokio::sync::Semaphore>,
    /// HTTP client of the aggregators' status APIs, shared so that its connections and TLS
    /// setup are not rebuilt per reconcile.
    pub http: reqwest::Client,
    /// Watches of aggregator Deployments in member clusters.
    pub member_watches: crate::controllers::federated_job::member_watch::MemberWatches,
    /// The FederatedJob controllers' cache.
    pub jobs: Cache<fedsky_crds::FederatedJob>,
    /// The ParticipantPool controller's cache.
    pub pools: Cache<fedsky_crds::ParticipantPool>,
    /// The AggregatorPlacement controller's cache.
    pub placements: Cache<fedsky_crds::AggregatorPlacement>,
    /// The MemberCluster controller's cache.
    pub member_clusters: Cache<fedsky_crds::MemberCluster>,
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
            applied: Applied::default(),
            credentials: Credentials::default(),
            member_slots: Arc::new(tokio::sync::Semaphore::new(
                crate::controllers::federated_job::CONCURRENCY,
            )),
            place_slots: Arc::new(tokio::sync::Semaphore::new(
                crate::controllers::federated_job::PLACE_CONCURRENCY,
            )),
            placing: Arc::default(),
            arrivals: Default::default(),
            events: Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT)),
            http: reqwest::Client::new(),
            member_watches: Default::default(),
            jobs: Cache::default(),
            pools: Cache::default(),
            placements: Cache::default(),
            member_clusters: Cache::default(),
            images: Default::default(),
            runtime,
            client,
            metrics,
        })
    }
}
