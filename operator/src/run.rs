//! Wiring: HTTP endpoints, leader election, then the controllers.

use crate::leader::{self, Election};
use crate::metrics::Metrics;
use crate::{Context, controllers, http};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Operator settings (from flags in `main`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    /// Leader election; `None` acts at once (single replica, tests).
    pub election: Option<Election>,
    /// Where aggregators and participants run.
    pub runtime: Arc<crate::runtime::Runtime>,
    /// The operator's own namespace and the namespaces whose Secrets it reads.
    pub secrets: crate::secret_scope::SecretScope,
    /// The model archive and its API; `None` archives nothing.
    pub model_api: Option<crate::models::ModelApiSettings>,
}

impl Default for Settings {
    /// Loopback metrics on a free port, no election, pods in member clusters, Secrets in
    /// `fedsky-system` (tests).
    fn default() -> Self {
        Self {
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            election: None,
            runtime: Arc::default(),
            secrets: crate::secret_scope::SecretScope::default(),
            model_api: None,
        }
    }
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The metrics port could not be bound.
    #[error("serving {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The model archive or its API could not start.
    #[error("model API: {0}")]
    ModelApi(#[from] crate::models::ModelApiError),
    /// Another replica took the Lease; exiting guarantees we never act alongside it.
    #[error("lost leadership of Lease {0}; exiting so that only one replica acts")]
    LostLeadership(String),
}

/// Runs until a shutdown signal or lost leadership.
pub async fn run(client: kube::Client, settings: Settings) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind(settings.metrics_addr)
        .await
        .map_err(|source| RunError::Http {
            addr: settings.metrics_addr,
            source,
        })?;
    let router = http::router(metrics.clone(), ready_rx);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    // Every replica serves the archive (a standby too, so downloads survive a failover);
    // only the leader writes it.
    let archive = match &settings.model_api {
        Some(api) => Some(crate::models::start(client.clone(), api).await?.0),
        None => None,
    };
    let ctx = Context::new(client.clone(), metrics.clone(), settings.secrets, archive);
    let runtime = settings.runtime;
    let Some(election) = settings.election else {
        let _ = ready_tx.send(true);
        metrics.leader.set(1);
        controllers_forever(ctx, &runtime).await;
        return Ok(());
    };
    let lease = format!("{}/{}", election.namespace, election.name);
    let mut leading = leader::spawn(client, election);
    // A standby replica is ready: it serves metrics and waits for the Lease.
    let _ = ready_tx.send(true);
    while !*leading.borrow_and_update() {
        if leading.changed().await.is_err() {
            return Ok(());
        }
    }
    tracing::info!(%lease, "acquired leadership; starting controllers");
    metrics.leader.set(1);
    tokio::select! {
        () = controllers_forever(ctx, &runtime) => Ok(()),
        () = lost(&mut leading) => {
            metrics.leader.set(0);
            Err(RunError::LostLeadership(lease))
        }
    }
}

async fn lost(leading: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow_and_update() {
            return;
        }
    }
}

/// The four controllers over the shared context; `runtime` picks where the FederatedJob
/// controllers run workloads.
async fn controllers_forever(ctx: Arc<Context>, runtime: &crate::runtime::Runtime) {
    tokio::join!(
        controllers::member_cluster::run(ctx.clone()),
        controllers::participant_pool::run(ctx.clone()),
        controllers::aggregator_placement::run(ctx.clone()),
        controllers::federated_job::run(ctx, runtime),
    );
}

/// Default lease timings: a standby takes over within 15 s of the leader vanishing.
pub fn default_election(namespace: String, identity: String) -> Election {
    Election {
        namespace,
        name: "fedsky-operator-leader".into(),
        identity,
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    }
}
