//! `fedsky-operator`: parse flags, start telemetry, run.

use clap::Parser;

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
    let settings = fedsky_operator::run::Settings {
        metrics_addr: args.metrics_addr,
        election,
    };
    fedsky_operator::run::run(client, settings).await?;
    Ok(())
}
