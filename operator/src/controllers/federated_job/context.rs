//! What the FederatedJob controllers own besides the shared [`Context`]: the jobs'
//! credentials, the slots and yielding between placer and lifecycle, the member watches,
//! the HTTPS clients of the jobs' aggregators and where workloads run.

use super::aggregator_client::{self, AggregatorClientError};
use super::allowlist::Pushed;
use super::credentials::Credentials;
use super::member_watch::MemberWatches;
use super::per_job::PerJob;
use super::yielding::Arrivals;
use super::{CONCURRENCY, PLACE_CONCURRENCY};
use crate::Context;
use crate::pki::Ca;
use crate::runtime::Runtime;
use crate::workloads::Workloads;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

/// What every FederatedJob reconcile gets.
#[derive(Clone)]
pub struct JobContext {
    /// What all controllers share.
    pub shared: Arc<Context>,
    /// Where the aggregator and participants run, chosen once at start-up.
    pub workloads: Arc<dyn Workloads>,
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
    pub arrivals: Arrivals,
    /// A plain HTTP client with the system's trust roots, for services outside the job's
    /// PKI. Not for aggregators: their model managers need [`JobContext::aggregator_client`].
    pub http: reqwest::Client,
    /// Each job's HTTPS client of its aggregator, by job key, with the fingerprint of the
    /// CA it was built for (see [`JobContext::aggregator_client`]).
    aggregator_clients: PerJob<(String, reqwest::Client)>,
    /// The participant list each job's aggregator was last sent or found to hold, by job
    /// key (see [`super::allowlist`]).
    pub allowlists: PerJob<Pushed>,
    /// Watches of aggregator Deployments in member clusters (the pods workloads start
    /// them; they wake the lifecycle controller).
    pub member_watches: MemberWatches,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").finish_non_exhaustive()
    }
}

impl JobContext {
    /// The FederatedJob controllers' context over `shared`, with the workloads of
    /// `runtime`.
    pub fn new(shared: Arc<Context>, runtime: &Runtime) -> Arc<Self> {
        let member_watches = MemberWatches::default();
        let workloads = crate::workloads::select(runtime, shared.clone(), member_watches.clone());
        Arc::new(Self {
            shared,
            workloads,
            credentials: Credentials::default(),
            member_slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENCY)),
            place_slots: Arc::new(tokio::sync::Semaphore::new(PLACE_CONCURRENCY)),
            placing: Arc::default(),
            arrivals: Arrivals::default(),
            http: reqwest::Client::new(),
            aggregator_clients: PerJob::default(),
            allowlists: PerJob::default(),
            member_watches,
        })
    }

    /// The HTTPS client of the model manager of job `key`'s aggregator, whose CA is `ca`:
    /// it trusts that CA only and presents the operator's certificate from it (see
    /// [`aggregator_client`]). Built once per job and CA and kept, so its connections and
    /// TLS sessions are reused across reconciles; a job created again under the same name
    /// has a new CA and gets a new client.
    pub fn aggregator_client(
        &self,
        key: &str,
        ca: &Ca,
    ) -> Result<reqwest::Client, AggregatorClientError> {
        let fingerprint = ca.fingerprint();
        if let Some((built_for, client)) = self.aggregator_clients.get(key)
            && built_for == fingerprint
        {
            return Ok(client);
        }
        let client = aggregator_client::build(key, ca)?;
        self.aggregator_clients
            .insert(key, (fingerprint, client.clone()));
        Ok(client)
    }

    /// Forgets job `key`'s aggregator client and the participant list sent to it (the
    /// job is gone).
    pub fn forget_aggregator_client(&self, key: &str) {
        self.aggregator_clients.forget(key);
        self.allowlists.forget(key);
    }
}
