//! `fedsky-operator`: parse flags, start telemetry, run.

use anyhow::Context as _;
use clap::Parser;
use fedsky_operator::images::{Images, PullPolicy};
use fedsky_operator::runtime::{ProcessRuntime, ProcessSettings, Runtime};

/// The fedsky operator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "FEDSKY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Disable leader election (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// The operator's own namespace: its leader-election Lease and each job's token and CA
    /// Secrets live here, and MemberClusters may reference Secrets here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "fedsky-system")]
    namespace: String,
    /// Further namespaces, comma-separated, whose Secrets MemberClusters may reference
    /// (kubeconfigs, cloud credentials); the operator reads no Secret elsewhere.
    #[arg(long, env = "FEDSKY_SECRET_NAMESPACES", value_delimiter = ',')]
    secret_namespaces: Vec<String>,
    /// Identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Where aggregators and participants run: `kubernetes` (pods in member clusters) or
    /// `process` (local processes on this machine, for single-machine use and tests).
    #[arg(long, env = "FEDSKY_RUNTIME", value_enum, default_value_t = RuntimeKind::Kubernetes)]
    runtime: RuntimeKind,
    /// Process runtime: directory for job state, logs and model stores.
    #[arg(long, default_value = "fedsky-processes")]
    process_state_dir: std::path::PathBuf,
    /// Process runtime: the aggregator binary (default: next to this binary, else PATH).
    #[arg(long)]
    aggregator_bin: Option<std::path::PathBuf>,
    /// Process runtime: the participant binary (default: next to this binary, else PATH).
    #[arg(long)]
    participant_bin: Option<std::path::PathBuf>,
    /// Process runtime: data volumes given as PersistentVolumeClaims are read from
    /// `<dir>/<claim name>`.
    #[arg(long)]
    process_data_root: Option<std::path::PathBuf>,
    /// Process runtime: CPU threads per participant.
    #[arg(long, default_value_t = 1)]
    participant_threads: usize,
    /// Process runtime: emulate the regions' network. Each participant dials its
    /// aggregator through a proxy of the Toxiproxy server whose API is at this URL (for
    /// example http://127.0.0.1:8474), with the latency and bandwidth between its site's
    /// region and the aggregator's placement from the catalog.
    #[arg(long)]
    network_emulator: Option<String>,
    /// Kubernetes runtime: the aggregator's image (default: this release's
    /// ghcr.io/fedsky/fedsky-aggregator). A FederatedJob's spec.images overrides it.
    #[arg(long, env = "FEDSKY_AGGREGATOR_IMAGE")]
    aggregator_image: Option<String>,
    /// Kubernetes runtime: the participants' image, which also writes the initial model
    /// (default: this release's ghcr.io/fedsky/fedsky-participant).
    #[arg(long, env = "FEDSKY_PARTICIPANT_IMAGE")]
    participant_image: Option<String>,
    /// Kubernetes runtime: imagePullPolicy of the containers (default: Kubernetes' own).
    #[arg(long, env = "FEDSKY_IMAGE_PULL_POLICY", value_enum)]
    image_pull_policy: Option<PullPolicy>,
    /// Kubernetes runtime: imagePullSecrets of the pods, comma-separated; each Secret must
    /// exist in the namespaces where fedsky runs pods in every member cluster.
    #[arg(long, env = "FEDSKY_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    image_pull_secrets: Vec<String>,
    /// Address of the model API (`models.fedsky.dev`, an aggregated API the hub's API
    /// server proxies to); unset serves no model API and archives no model.
    #[arg(long, env = "FEDSKY_MODEL_API_ADDR", requires_all = ["model_api_cert", "model_api_key", "model_archive_dir"])]
    model_api_addr: Option<std::net::SocketAddr>,
    /// The model API's serving certificate (PEM), signed by the APIService's caBundle.
    #[arg(long, env = "FEDSKY_MODEL_API_CERT")]
    model_api_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "FEDSKY_MODEL_API_KEY")]
    model_api_key: Option<std::path::PathBuf>,
    /// Directory of the model archive, on a volume that outlives the pod.
    #[arg(long, env = "FEDSKY_MODEL_ARCHIVE_DIR")]
    model_archive_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeKind {
    Kubernetes,
    Process,
}

/// `name` next to the running binary if it is there, else `name` (looked up in PATH).
fn sibling(name: &str) -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| name.into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    fedsky_operator::telemetry::init(args.log_json);
    let client = kube::Client::try_default().await?;
    let identity = args
        .identity
        .unwrap_or_else(|| format!("fedsky-operator-{}", std::process::id()));
    let secrets =
        fedsky_operator::secret_scope::SecretScope::new(&args.namespace, args.secret_namespaces);
    let election = (!args.no_leader_election)
        .then(|| fedsky_operator::run::default_election(args.namespace, identity));
    if args.network_emulator.is_some() && args.runtime != RuntimeKind::Process {
        anyhow::bail!("--network-emulator needs --runtime process");
    }
    let runtime = match args.runtime {
        RuntimeKind::Kubernetes => {
            let defaults = Images::default();
            Runtime::Kubernetes(Images {
                aggregator: args.aggregator_image.unwrap_or(defaults.aggregator),
                participant: args.participant_image.unwrap_or(defaults.participant),
                pull_policy: args.image_pull_policy,
                pull_secrets: args.image_pull_secrets,
            })
        }
        RuntimeKind::Process => {
            let state_dir = std::path::absolute(&args.process_state_dir)?;
            std::fs::create_dir_all(&state_dir)?;
            tracing::info!(state_dir = %state_dir.display(), "running workloads as local processes");
            Runtime::Process(ProcessRuntime::new(ProcessSettings {
                state_dir,
                aggregator_bin: args
                    .aggregator_bin
                    .unwrap_or_else(|| sibling("fedsky-aggregator")),
                participant_bin: args
                    .participant_bin
                    .unwrap_or_else(|| sibling("fedsky-participant")),
                data_root: args
                    .process_data_root
                    .map(std::path::absolute)
                    .transpose()?,
                participant_threads: args.participant_threads,
                network: match &args.network_emulator {
                    Some(api) => Some(fedsky_operator::runtime::NetworkEmulator::new(
                        api,
                        fedsky_placement::Catalog::builtin()?,
                    )),
                    None => None,
                },
            }))
        }
    };
    let model_api = match (
        args.model_api_addr,
        args.model_api_cert,
        args.model_api_key,
        args.model_archive_dir,
    ) {
        (Some(listen), Some(cert), Some(key), Some(dir)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))
            };
            Some(fedsky_operator::models::ModelApiSettings {
                listen,
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
                archive_dir: dir,
            })
        }
        _ => None,
    };
    let settings = fedsky_operator::run::Settings {
        metrics_addr: args.metrics_addr,
        election,
        runtime: std::sync::Arc::new(runtime),
        secrets,
        model_api,
    };
    fedsky_operator::run::run(client, settings).await?;
    Ok(())
}
