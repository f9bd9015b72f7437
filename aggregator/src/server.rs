//! Wiring: the gRPC server (with TLS and health), the HTTP model manager (with the
//! same TLS and its access check) and the coordinator's round timer, as one handle to
//! stop or abandon.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::coordinator::Coordinator;
use crate::http_auth::{HttpAuth, HttpTlsError, Peer, TlsListener, Token};
use crate::proto::aggregator_server::AggregatorServer;
use crate::service::{AggregatorService, IdentityMode};

/// Errors starting the servers.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A TLS file could not be read.
    #[error("reading {what} from {path} failed")]
    ReadTls {
        /// Which file.
        what: &'static str,
        /// Path.
        path: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS material was refused.
    #[error("TLS configuration is invalid")]
    Tls(#[source] tonic::transport::Error),
    /// The TLS material was refused for the HTTP port.
    #[error("TLS configuration of the HTTP port is invalid")]
    HttpTls(#[source] HttpTlsError),
    /// A listener's address could not be read.
    #[error("listener address unavailable")]
    Listener(#[source] std::io::Error),
}

/// Server certificate, key and the CA that signs client certificates (PEM).
#[derive(Clone)]
pub struct TlsPem {
    /// Server certificate chain.
    pub cert: Vec<u8>,
    /// Server private key.
    pub key: Vec<u8>,
    /// CA bundle that participant certificates must chain to.
    pub client_ca: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem").finish_non_exhaustive()
    }
}

impl TlsPem {
    /// Reads the three PEM files (as mounted from the operator's Secret).
    pub fn from_files(cert: &Path, key: &Path, client_ca: &Path) -> Result<Self, ServerError> {
        let read = |what: &'static str, p: &Path| {
            std::fs::read(p).map_err(|source| ServerError::ReadTls {
                what,
                path: p.display().to_string(),
                source,
            })
        };
        Ok(Self {
            cert: read("server certificate", cert)?,
            key: read("server key", key)?,
            client_ca: read("client CA", client_ca)?,
        })
    }
}

/// How the two ports are secured.
#[derive(Debug, Clone)]
pub enum Transport {
    /// TLS on both ports with the same server certificate, client certificates
    /// verified against the job CA. gRPC calls without a certificate reach the
    /// service and are refused there with `UNAUTHENTICATED`; HTTP requests without
    /// one need a bearer token (see [`crate::http_auth`]); certificates from
    /// another CA fail the handshake on either port.
    MutualTls(TlsPem),
    /// No TLS; gRPC identities come from metadata, HTTP requests still need a
    /// bearer token. Local development only.
    InsecurePlaintext,
}

/// Who may call the HTTP port besides holders of a job certificate or the job token.
#[derive(Debug, Clone, Default)]
pub struct HttpAccess {
    /// The token that opens `/metrics` (and nothing else), for a Prometheus that has
    /// neither a job certificate nor the job token.
    pub metrics_token: Option<Token>,
}

/// Running servers. Dropping the handle leaves them running; call
/// [`RunningServer::shutdown`] to stop.
#[derive(Debug)]
pub struct RunningServer {
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// The core, for inspection.
    pub coordinator: Coordinator,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight calls finish (bounded), stops the timer.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }

    /// Resolves when any server task ends (which only happens on errors or
    /// shutdown).
    pub async fn wait(&mut self) {
        let _ = self.tasks.join_next().await;
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: stop too.
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves `core` on the two listeners and starts its round timer; the HTTP port admits
/// job certificates and the job token only.
pub async fn serve(
    core: Coordinator,
    grpc: TcpListener,
    http: TcpListener,
    transport: Transport,
) -> Result<RunningServer, ServerError> {
    serve_with(core, grpc, http, transport, HttpAccess::default()).await
}

/// [`serve`], with `access` saying who else may call the HTTP port.
pub async fn serve_with(
    core: Coordinator,
    grpc: TcpListener,
    http: TcpListener,
    transport: Transport,
    access: HttpAccess,
) -> Result<RunningServer, ServerError> {
    let grpc_addr = grpc.local_addr().map_err(ServerError::Listener)?;
    let http_addr = http.local_addr().map_err(ServerError::Listener)?;
    let (stop, stop_rx) = watch::channel(false);
    let limits = core.wire_limits();
    let max_message = usize::try_from(limits.max_message_bytes).unwrap_or(usize::MAX);

    let mode = match transport {
        Transport::MutualTls(_) => IdentityMode::ClientCertificate,
        Transport::InsecurePlaintext => IdentityMode::InsecureMetadata,
    };
    let svc = AggregatorServer::new(AggregatorService::new(core.clone(), mode))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<AggregatorServer<AggregatorService<Coordinator>>>()
        .await;

    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Large windows let one upload stream fill a fast link.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        // Fewer, larger HTTP/2 frames per 1 MiB chunk.
        .max_frame_size(Some(1 << 20))
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    // Checked before anything is spawned, so bad TLS material leaves nothing running.
    let http_tls = match &transport {
        Transport::MutualTls(pem) => {
            Some(crate::http_auth::tls_config(pem).map_err(ServerError::HttpTls)?)
        }
        Transport::InsecurePlaintext => None,
    };
    if let Transport::MutualTls(pem) = &transport {
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&pem.cert, &pem.key))
            .client_ca_root(Certificate::from_pem(&pem.client_ca))
            .client_auth_optional(true);
        builder = builder.tls_config(tls).map_err(ServerError::Tls)?;
    }
    let router = builder.add_service(health).add_service(svc);

    let mut tasks = JoinSet::new();
    let signal = stopped(stop_rx.clone());
    tasks.spawn(async move {
        let incoming = TcpIncoming::from(grpc).with_nodelay(Some(true));
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    let auth = HttpAuth::new(core.clone(), access.metrics_token);
    let app = crate::http::router(core.clone(), auth).into_make_service_with_connect_info::<Peer>();
    let signal = stopped(stop_rx.clone());
    tasks.spawn(async move {
        let served = match http_tls {
            Some(config) => {
                axum::serve(TlsListener::new(http, config), app)
                    .with_graceful_shutdown(signal)
                    .await
            }
            None => axum::serve(http, app).with_graceful_shutdown(signal).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    let timer = core.clone();
    let signal = stopped(stop_rx);
    tasks.spawn(async move {
        tokio::select! {
            () = timer.run() => {}
            () = signal => {}
        }
    });
    tracing::info!(%grpc_addr, %http_addr, tls = matches!(mode, IdentityMode::ClientCertificate), "aggregator serving");
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        coordinator: core,
        stop,
        tasks,
    })
}
