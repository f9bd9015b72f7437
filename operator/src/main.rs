//! `fedsky-operator`: parse flags, start telemetry, run.

use clap::Parser;
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
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "fedsky-system")]
    lease_namespace: String,
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
    let election = (!args.no_leader_election)
        .then(|| fedsky_operator::run::default_election(args.lease_namespace, identity));
    if args.network_emulator.is_some() && args.runtime != RuntimeKind::Process {
        anyhow::bail!("--network-emulator needs --runtime process");
    }
    let runtime = match args.runtime {
        RuntimeKind::Kubernetes => Runtime::Kubernetes,
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
    let settings = fedsky_operator::run::Settings {
        metrics_addr: args.metrics_addr,
        election,
        runtime: std::sync::Arc::new(runtime),
    };
    fedsky_operator::run::run(client, settings).await?;
    Ok(())
}
