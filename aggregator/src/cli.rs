//! Command line of the `fedsky-aggregator` binary: flags, assembly of the
//! store, coordinator and servers, and shutdown on SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use tokio::net::TcpListener;

use crate::coordinator::{Coordinator, CoreError};
use crate::http_auth::Token;
use crate::job::{JobConfig, JobConfigError, JobConfigExt};
use crate::metrics::Metrics;
use crate::server::{HttpAccess, ServerError, TlsPem, Transport, serve_with};
use crate::store::{Checkpoints, DirStore, GlobalModel, ObjectStore, S3Settings, S3Store};

/// fedsky FL aggregator: gRPC data plane, checkpoints and model manager.
#[derive(Debug, Parser)]
#[command(name = "fedsky-aggregator", version)]
pub struct Args {
    /// Job config (JSON or YAML): rounds, strategy, training, limits, seed.
    #[arg(long, env = "FEDSKY_JOB")]
    pub job: PathBuf,
    /// gRPC listen address (participants).
    #[arg(long, env = "FEDSKY_GRPC_LISTEN", default_value = "0.0.0.0:50051")]
    pub grpc_listen: SocketAddr,
    /// HTTP listen address (model manager, status, /metrics, /healthz). It serves TLS
    /// with the gRPC port's certificate and admits a client certificate from the job's CA
    /// or `Authorization: Bearer <job token>`.
    #[arg(long, env = "FEDSKY_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// Server certificate (PEM).
    #[arg(long, env = "FEDSKY_TLS_CERT", requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "FEDSKY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA that signs participant certificates (PEM).
    #[arg(long, env = "FEDSKY_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Serve gRPC and HTTP without TLS, taking participant identities from metadata; HTTP
    /// still needs the job token (development only).
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plaintext: bool,
    /// File holding the job token (else FEDSKY_JOB_TOKEN, else the job config's `token`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// File holding a token that opens `/metrics` only (`Authorization: Bearer <token>`),
    /// for a Prometheus without the job's credentials. A missing file means no such token
    /// (the operator mounts an optional Secret here); one shorter than 16 characters is
    /// ignored with a warning.
    #[arg(long, env = "FEDSKY_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Initial global model (safetensors); needed unless the store has a checkpoint.
    #[arg(long, env = "FEDSKY_INITIAL_MODEL")]
    pub initial_model: Option<PathBuf>,
    /// Model store directory (a PersistentVolume in the cluster).
    #[arg(long, env = "FEDSKY_STORE_DIR", conflicts_with = "s3_bucket")]
    pub store_dir: Option<PathBuf>,
    /// S3-compatible endpoint URL; credentials from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
    #[arg(long, env = "FEDSKY_S3_ENDPOINT", requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,
    /// S3 bucket.
    #[arg(long, env = "FEDSKY_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "FEDSKY_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
    /// Signing region.
    #[arg(long, env = "FEDSKY_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Use virtual-hosted-style addressing instead of path style.
    #[arg(long)]
    pub s3_virtual_hosted: bool,
    /// Model versions to keep: after each round the versions older than the
    /// newest N are deleted, except the best by eval_accuracy, which is kept
    /// in addition. Unset keeps every version.
    #[arg(long, env = "FEDSKY_KEEP_VERSIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_versions: Option<u32>,
    /// Log as JSON lines.
    #[arg(long, env = "FEDSKY_LOG_JSON")]
    pub log_json: bool,
}

/// Errors of the binary.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The job config is unusable.
    #[error(transparent)]
    Job(#[from] JobConfigError),
    /// Reading a file failed.
    #[error("reading {what} {path} failed")]
    Read {
        /// Which file.
        what: &'static str,
        /// Path.
        path: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A required setting is missing or contradictory.
    #[error("{0}")]
    Usage(String),
    /// The initial model is not valid safetensors.
    #[error("initial model is invalid")]
    InitialModel(#[source] crate::update::UpdateRejection),
    /// The coordinator could not start.
    #[error("aggregator cannot start")]
    Core(#[from] CoreError),
    /// The servers could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A listener could not bind.
    #[error("binding {addr} failed")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Starts the log subscriber (`RUST_LOG` filters, default `info`).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn store(args: &Args) -> Result<Arc<dyn ObjectStore>, CliError> {
    match (&args.store_dir, &args.s3_bucket) {
        (Some(dir), None) => Ok(Arc::new(DirStore::new(dir.clone()))),
        (None, Some(bucket)) => {
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let missing =
                || CliError::Usage("S3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into());
            let endpoint = args
                .s3_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", args.s3_region));
            Ok(Arc::new(S3Store::new(&S3Settings {
                endpoint,
                region: args.s3_region.clone(),
                bucket: bucket.clone(),
                prefix: args.s3_prefix.clone(),
                access_key_id: env("AWS_ACCESS_KEY_ID").ok_or_else(missing)?,
                secret_access_key: env("AWS_SECRET_ACCESS_KEY").ok_or_else(missing)?,
                session_token: env("AWS_SESSION_TOKEN"),
                path_style: !args.s3_virtual_hosted,
            })))
        }
        _ => Err(CliError::Usage(
            "give exactly one model store: --store-dir or --s3-bucket".into(),
        )),
    }
}

fn token(args: &Args, job: &JobConfig) -> Result<String, CliError> {
    let token = match &args.token_file {
        Some(p) => String::from_utf8_lossy(&read("token file", p)?)
            .trim()
            .to_string(),
        None => std::env::var("FEDSKY_JOB_TOKEN")
            .ok()
            .or_else(|| job.token.clone())
            .unwrap_or_default(),
    };
    if token.len() < 16 {
        return Err(CliError::Usage(
            "the job token must have at least 16 characters (--token-file, FEDSKY_JOB_TOKEN or `token` in the job config)".into(),
        ));
    }
    Ok(token)
}

/// The scrape token of `--metrics-token-file`. Monitoring must not stop training: a
/// missing file (the optional Secret is absent) or a token too weak to use leaves
/// `/metrics` to the job's credentials, with a log line; only a file that exists but
/// cannot be read is an error.
fn metrics_token(args: &Args) -> Result<Option<Token>, CliError> {
    let Some(path) = &args.metrics_token_file else {
        return Ok(None);
    };
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no metrics token file: /metrics needs the job's credentials");
            return Ok(None);
        }
        Err(source) => {
            return Err(CliError::Read {
                what: "metrics token file",
                path: path.display().to_string(),
                source,
            });
        }
    };
    match Token::parse(&text) {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "metrics token ignored: /metrics needs the job's credentials");
            Ok(None)
        }
    }
}

/// Runs the aggregator until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> Result<(), CliError> {
    let job = JobConfig::from_file(&args.job)?;
    let token = token(&args, &job)?;
    let transport = match (&args.tls_cert, &args.tls_key, &args.client_ca) {
        (Some(c), Some(k), Some(ca)) => Transport::MutualTls(TlsPem::from_files(c, k, ca)?),
        _ if args.insecure_plaintext => {
            tracing::warn!(
                "serving gRPC and HTTP WITHOUT TLS (--insecure-plaintext): development only"
            );
            Transport::InsecurePlaintext
        }
        _ => {
            return Err(CliError::Usage(
                "give --tls-cert, --tls-key and --client-ca, or --insecure-plaintext for local development".into(),
            ));
        }
    };
    let access = HttpAccess {
        metrics_token: metrics_token(&args)?,
    };
    let initial = match &args.initial_model {
        Some(p) => Some(
            GlobalModel::from_bytes(0, Bytes::from(read("initial model", p)?))
                .map_err(CliError::InitialModel)?,
        ),
        None => None,
    };
    let initial = initial.map(|g| Arc::unwrap_or_clone(g.model));
    let checkpoints = Checkpoints::new(store(&args)?)
        .with_keep_versions(args.keep_versions.and_then(NonZeroU32::new));
    let metrics = Arc::new(Metrics::new());
    let core = Coordinator::start(job, token, checkpoints, initial, metrics).await?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| CliError::Bind { addr, source })
    };
    let grpc = bind(args.grpc_listen).await?;
    let http = bind(args.http_listen).await?;
    let mut server = serve_with(core, grpc, http, transport, access).await?;
    tokio::select! {
        () = shutdown_signal() => tracing::info!("shutting down"),
        () = server.wait() => tracing::error!("a server task ended; shutting down"),
    }
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = [
            "fedsky-aggregator",
            "--job",
            "job.yaml",
            "--store-dir",
            "/data",
        ];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn keep_versions_is_a_positive_count_or_unset() {
        assert_eq!(parse(&[]).expect("parses").keep_versions, None);
        assert_eq!(
            parse(&["--keep-versions", "3"])
                .expect("parses")
                .keep_versions,
            Some(3)
        );
        for bad in ["0", "-1", "two"] {
            let arg = format!("--keep-versions={bad}");
            let err = parse(&[&arg]).expect_err(bad).to_string();
            assert!(err.contains("--keep-versions"), "{err}");
        }
        let err = parse(&["--keep-versions", "0"]).expect_err("0").to_string();
        assert!(err.contains("0 is not in 1.."), "{err}");
    }

    #[test]
    fn a_missing_or_weak_metrics_token_leaves_metrics_to_the_job_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        let arg = format!("--metrics-token-file={}", file.display());
        let with_file = || parse(&[&arg]).expect("parses");
        assert_eq!(
            metrics_token(&parse(&[]).expect("parses")).expect("ok"),
            None
        );
        // The optional Secret is absent: no file.
        assert_eq!(metrics_token(&with_file()).expect("ok"), None);
        std::fs::write(&file, "short\n").expect("write");
        assert_eq!(metrics_token(&with_file()).expect("ok"), None);
        std::fs::write(&file, "scrape-token-0123456789\n").expect("write");
        let token = metrics_token(&with_file()).expect("ok").expect("a token");
        assert!(token.matches("scrape-token-0123456789"));
        // A file that exists but cannot be read (here: a directory) is an error.
        let arg = format!("--metrics-token-file={}", dir.path().display());
        assert!(matches!(
            metrics_token(&parse(&[&arg]).expect("parses")),
            Err(CliError::Read { .. })
        ));
    }
}
