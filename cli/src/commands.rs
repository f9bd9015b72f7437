//! The commands behind `fedsky`'s arguments.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use fedsky_crds::federated_job::StrategyType;
use fedsky_placement::{Catalog, CatalogError, CatalogOverlay, PlacementModel, solve_placement};
use fedsky_placement_spec::{
    ConvertError, STATUS_FRONT_LIMIT, SolveError, SpecContext, to_input, to_solver, to_status,
};
use thiserror::Error;

use crate::catalog::RefreshArgs;
use crate::manifest::{ManifestError, Manifests};
use crate::render::{SolveReport, text};

/// fedsky: federated learning across clusters.
#[derive(Debug, Parser)]
#[command(name = "fedsky", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Aggregator placement.
    #[command(subcommand)]
    Placement(PlacementCommand),
    /// The cloud catalog placement prices and times candidates with.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

/// `fedsky catalog ...`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Read regions, instance types and current spot prices from the EC2
    /// API and write them as a catalog overlay (JSON) for `--overlay`.
    Refresh(RefreshArgs),
}

/// `fedsky placement ...`.
#[derive(Debug, Subcommand)]
pub enum PlacementCommand {
    /// Solve an AggregatorPlacement manifest offline: the chosen placement,
    /// its cost and round time, the Pareto front, the solver and why.
    Solve(SolveArgs),
}

/// Arguments of `fedsky placement solve`.
#[derive(Debug, Args)]
pub struct SolveArgs {
    /// YAML file with the AggregatorPlacement (it may also hold the
    /// ParticipantPool and MemberClusters).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// YAML file with the ParticipantPool named by spec.participants.poolRef
    /// (it may also hold MemberClusters).
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// YAML file with MemberClusters, for pool sites that inherit their region.
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Which AggregatorPlacement to solve when the file holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Catalog file (JSON or YAML) instead of the built-in one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Catalog overlay (JSON or YAML), e.g. private sites and their latency.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Aggregation strategy of the job, which sets the aggregator's memory need.
    #[arg(long, value_enum, default_value_t = Strategy::FedAvg)]
    pub strategy: Strategy,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Most Pareto points to print in the table.
    #[arg(long, default_value_t = 20)]
    pub front_limit: usize,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A human-readable report.
    Table,
    /// The full result and the status as JSON.
    Json,
    /// The full result and the status as YAML.
    Yaml,
}

/// Aggregation strategies, as FederatedJob's `spec.strategy.type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "verbatim")]
#[allow(missing_docs, clippy::enum_variant_names)]
pub enum Strategy {
    FedAvg,
    FedAdam,
    FedYogi,
    FedAdagrad,
    FedMedian,
    TrimmedMean,
    Krum,
    MultiKrum,
}

impl From<Strategy> for StrategyType {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::FedAvg => Self::FedAvg,
            Strategy::FedAdam => Self::FedAdam,
            Strategy::FedYogi => Self::FedYogi,
            Strategy::FedAdagrad => Self::FedAdagrad,
            Strategy::FedMedian => Self::FedMedian,
            Strategy::TrimmedMean => Self::TrimmedMean,
            Strategy::Krum => Self::Krum,
            Strategy::MultiKrum => Self::MultiKrum,
        }
    }
}

/// What a command printed and whether the placement is feasible.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutput {
    /// Text for stdout.
    pub output: String,
    /// False when the solve found nothing that meets the requirements.
    pub feasible: bool,
    /// Text for stderr (a summary, when stdout carries data).
    pub notes: String,
}

/// Why a command failed.
#[derive(Debug, Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest is malformed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The catalog or overlay is malformed or inconsistent.
    #[error("{path}: {source}")]
    Catalog {
        /// The file (or `built-in catalog`).
        path: String,
        /// What is wrong with it.
        #[source]
        source: CatalogError,
    },
    /// The file holds no AggregatorPlacement.
    #[error("{path} holds no AggregatorPlacement")]
    NoPlacement {
        /// The file.
        path: PathBuf,
    },
    /// The file holds several and `--name` does not pick one.
    #[error("{path} holds AggregatorPlacements {names}; pick one with --name")]
    AmbiguousPlacement {
        /// The file.
        path: PathBuf,
        /// Their names.
        names: String,
    },
    /// `--name` matches none.
    #[error("{path} holds no AggregatorPlacement named `{name}`")]
    PlacementNotFound {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// The spec cannot be solved.
    #[error(transparent)]
    Solve(#[from] SolveError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime for the EC2 calls could not start.
    #[error("cannot start the async runtime: {source}")]
    Runtime {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The catalog refresh from the EC2 API failed.
    #[error("catalog refresh failed: {source}")]
    Refresh {
        /// What failed, naming the endpoint and the call.
        #[source]
        source: fedsky_placement::catalog::refresh::RefreshError,
    },
    /// The result could not be serialised.
    #[error("cannot write the result as {format}: {message}")]
    Serialize {
        /// `json` or `yaml`.
        format: &'static str,
        /// The serialiser's message.
        message: String,
    },
}

impl From<ConvertError> for CliError {
    fn from(e: ConvertError) -> Self {
        Self::Solve(SolveError::Convert(e))
    }
}

impl From<fedsky_placement::ModelError> for CliError {
    fn from(e: fedsky_placement::ModelError) -> Self {
        Self::Solve(SolveError::Model(e))
    }
}

/// Runs the parsed command line.
pub fn run(cli: &Cli) -> Result<CommandOutput, CliError> {
    match &cli.command {
        Command::Placement(PlacementCommand::Solve(args)) => solve(args),
        Command::Catalog(CatalogCommand::Refresh(args)) => crate::catalog::refresh(args),
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn is_json(path: &Path, text: &str) -> bool {
    path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{')
}

/// Loads the catalog: a file or the built-in one, then the overlay.
pub fn load_catalog(catalog: Option<&Path>, overlay: Option<&Path>) -> Result<Catalog, CliError> {
    let base = match catalog {
        Some(path) => {
            let text = read(path)?;
            let parsed = if is_json(path, &text) {
                Catalog::from_json(&text)
            } else {
                Catalog::from_yaml(&text)
            };
            parsed.map_err(|source| CliError::Catalog {
                path: path.display().to_string(),
                source,
            })?
        }
        None => Catalog::builtin()
            .map_err(|source| CliError::Catalog {
                path: "built-in catalog".into(),
                source,
            })?
            .clone(),
    };
    let Some(path) = overlay else {
        return Ok(base);
    };
    let text = read(path)?;
    let catalog_error = |source| CliError::Catalog {
        path: path.display().to_string(),
        source,
    };
    let overlay = if is_json(path, &text) {
        CatalogOverlay::from_json(&text)
    } else {
        CatalogOverlay::from_yaml(&text)
    }
    .map_err(catalog_error)?;
    base.with_overlay(&overlay).map_err(catalog_error)
}

/// `fedsky placement solve`.
pub fn solve(args: &SolveArgs) -> Result<CommandOutput, CliError> {
    let mut manifests = Manifests::default();
    manifests.add_yaml(&args.file.display().to_string(), &read(&args.file)?)?;
    for path in [&args.pool, &args.clusters].into_iter().flatten() {
        manifests.add_yaml(&path.display().to_string(), &read(path)?)?;
    }
    let placement = match (&args.name, manifests.placements.as_slice()) {
        (_, []) => {
            return Err(CliError::NoPlacement {
                path: args.file.clone(),
            });
        }
        (None, [one]) => one,
        (None, many) => {
            return Err(CliError::AmbiguousPlacement {
                path: args.file.clone(),
                names: many
                    .iter()
                    .map(|p| p.metadata.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        (Some(name), all) => all
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| CliError::PlacementNotFound {
                path: args.file.clone(),
                name: name.clone(),
            })?,
    };
    let catalog = load_catalog(args.catalog.as_deref(), args.overlay.as_deref())?;

    let spec = &placement.spec;
    let wanted = spec.participants.pool_ref.as_ref().map(|r| r.name.as_str());
    let pool = manifests
        .pools
        .iter()
        .find(|p| wanted.is_some() && p.metadata.name.as_deref() == wanted)
        .or_else(|| manifests.pools.first());
    let ctx = SpecContext {
        pool: pool.map(|p| (p.metadata.name.as_deref().unwrap_or_default(), &p.spec)),
        member_clusters: manifests.cluster_locations(),
        strategy: Some(args.strategy.into()),
    };
    // The same steps as `fedsky_placement_spec::solve_spec`, kept apart so the model's
    // candidate counts can be printed.
    let input = to_input(spec, &ctx)?;
    let solver = to_solver(&spec.solver)?;
    let model = PlacementModel::build(&catalog, &input)?;
    let outcome = solve_placement(&model, &solver).map_err(SolveError::Model)?;
    let status = to_status(&outcome, STATUS_FRONT_LIMIT);
    let name = format!(
        "{}/{}",
        placement.metadata.namespace.as_deref().unwrap_or("default"),
        placement.metadata.name.as_deref().unwrap_or("")
    );
    let report = SolveReport {
        placement: name.clone(),
        candidate_counts: model.counts(),
        outcome: &outcome,
        status: &status,
    };
    let output = match args.output {
        Output::Table => text(
            &name,
            &outcome,
            model.counts(),
            input.requirements.cost_weight,
            args.front_limit,
        ),
        Output::Json => serde_json::to_string_pretty(&report)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Serialize {
                format: "json",
                message: e.to_string(),
            })?,
        Output::Yaml => serde_yaml::to_string(&report).map_err(|e| CliError::Serialize {
            format: "yaml",
            message: e.to_string(),
        })?,
    };
    Ok(CommandOutput {
        output,
        feasible: outcome.selected.is_some(),
        notes: String::new(),
    })
}
