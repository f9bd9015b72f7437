//! `kubectl fedsky`: a kubectl plugin (the `kubectl-fedsky` binary) that shows a
//! FederatedJob's progress, explains an AggregatorPlacement's pick and downloads
//! retained models.
//!
//! It talks to the API server as the user of the kubeconfig, like kubectl itself: the
//! user's own RBAC decides what it may read, and it carries no credentials of its own.
//! Model downloads go through the hub API server to the operator's aggregated model API
//! (`models.fedsky.dev`), so they are authorised the same way.
//!
//! [`status`] and [`explain`] are pure renderings of the objects; [`cluster`] and
//! [`model`] do the requests.

pub mod cluster;
pub mod error;
pub mod explain;
pub mod model;
pub mod status;
pub mod text;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use error::PluginError;

/// kubectl fedsky: federated learning jobs, placements and models in your cluster.
#[derive(Debug, Parser)]
#[command(name = "kubectl-fedsky", bin_name = "kubectl fedsky", version)]
pub struct PluginCli {
    /// Where to connect.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The flags kubectl users expect; kubectl passes them through to the plugin as given,
/// before or after the subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// `kubectl fedsky ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// A FederatedJob's phase, rounds with an accuracy sparkline, participants per site,
    /// placement with its Pareto front, and latest model.
    Status {
        /// The FederatedJob.
        job: String,
    },
    /// Aggregator placements.
    #[command(subcommand)]
    Placement(PlacementCommand),
    /// Retained global models.
    #[command(subcommand)]
    Model(ModelCommand),
}

/// `kubectl fedsky placement ...`.
#[derive(Debug, Subcommand)]
pub enum PlacementCommand {
    /// An AggregatorPlacement's Pareto front, which option was picked and why, or the
    /// binding constraint when nothing is feasible.
    Explain {
        /// The AggregatorPlacement.
        placement: String,
    },
}

/// `kubectl fedsky model ...`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// The model versions retained for a job.
    List {
        /// The FederatedJob (it may have been deleted since).
        job: String,
    },
    /// Download a model version, checking its sha256; nothing is written under FILE
    /// unless the check passes.
    Download {
        /// The FederatedJob (it may have been deleted since).
        job: String,
        /// The version; default the latest.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
        /// Where to write the safetensors file.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

/// What a command printed: the report for stdout, and warnings for stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginOutput {
    /// The report.
    pub stdout: String,
    /// Warnings (a part of the report that could not be read).
    pub warnings: Vec<String>,
}

/// Runs a parsed command line.
pub async fn run(cli: &PluginCli) -> Result<PluginOutput, PluginError> {
    let cluster = cluster::connect(&cli.global).await?;
    match &cli.command {
        PluginCommand::Status { job } => status_command(&cluster, job).await,
        PluginCommand::Placement(PlacementCommand::Explain { placement }) => {
            let ap = cluster::get_placement(&cluster, placement).await?;
            Ok(PluginOutput {
                stdout: explain::render_explain(&ap),
                warnings: Vec::new(),
            })
        }
        PluginCommand::Model(ModelCommand::List { job }) => {
            let list = model::list(&cluster, job).await?;
            Ok(PluginOutput {
                stdout: model::render_list(&list),
                warnings: Vec::new(),
            })
        }
        PluginCommand::Model(ModelCommand::Download {
            job,
            version,
            output,
        }) => {
            let done = model::download(&cluster, job, *version, output).await?;
            Ok(PluginOutput {
                stdout: model::render_downloaded(job, &done),
                warnings: Vec::new(),
            })
        }
    }
}

/// `status JOB`: the job is required; its placement is shown when it can be read, and
/// when it cannot (not created yet, or the user may read jobs but not placements) the
/// rest of the report is still worth having, so that becomes a warning.
async fn status_command(
    cluster: &cluster::Cluster,
    job: &str,
) -> Result<PluginOutput, PluginError> {
    let fj = cluster::get_job(cluster, job).await?;
    let name = status::placement_name(&fj);
    let (ap, note, warnings) = match cluster::get_placement(cluster, &name).await {
        Ok(ap) => (Some(ap), None, Vec::new()),
        Err(e @ PluginError::Forbidden { .. }) => (
            None,
            Some(format!("AggregatorPlacement {name} not shown: forbidden")),
            vec![e.to_string()],
        ),
        Err(PluginError::NotFound { .. }) => (
            None,
            Some(format!("AggregatorPlacement {name} does not exist yet")),
            Vec::new(),
        ),
        Err(e) => (
            None,
            Some(format!("AggregatorPlacement {name} not shown")),
            vec![e.to_string()],
        ),
    };
    Ok(PluginOutput {
        stdout: status::render_status(&fj, ap.as_ref(), note.as_deref()),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        PluginCli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli = PluginCli::try_parse_from([
            "kubectl-fedsky",
            "--context",
            "hub",
            "model",
            "download",
            "j",
            "-n",
            "team-a",
            "--version",
            "3",
            "-o",
            "m.safetensors",
            "--kubeconfig",
            "/k",
        ])
        .expect("parses");
        assert_eq!(cli.global.namespace.as_deref(), Some("team-a"));
        assert_eq!(cli.global.context.as_deref(), Some("hub"));
        assert_eq!(cli.global.kubeconfig, Some(PathBuf::from("/k")));
        assert!(matches!(
            cli.command,
            PluginCommand::Model(ModelCommand::Download {
                version: Some(3),
                ..
            })
        ));
        assert!(
            PluginCli::try_parse_from([
                "kubectl-fedsky",
                "model",
                "download",
                "j",
                "--version",
                "0",
                "-o",
                "m"
            ])
            .is_err(),
            "versions start at 1"
        );
        assert!(
            PluginCli::try_parse_from(["kubectl-fedsky", "model", "download", "j"]).is_err(),
            "-o is required"
        );
    }
}
