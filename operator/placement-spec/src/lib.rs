//! AggregatorPlacement spec → placement model input, and placement outcome →
//! AggregatorPlacementStatus, as pure functions.
//!
//! This is the one bridge between the API types of `fedsky-crds`
//! (AggregatorPlacement, ParticipantPool, MemberCluster locations) and the
//! pure optimiser `fedsky-placement`, which knows no Kubernetes types. It has
//! no API client and no async runtime.
//!
//! Who uses it: the operator's AggregatorPlacement controller (and the
//! FederatedJob controller for [`cloud_name`]), and the `fedsky placement
//! solve` command of `fedsky-cli`. Both call [`solve_spec`] (the CLI its
//! steps [`to_input`] and [`to_solver`]) and [`to_status`], so the same
//! manifest gives the same answer offline and in the cluster. It sits below
//! both, so the operator does not depend on the CLI.

use std::collections::BTreeMap;

use fedsky_crds::aggregator_placement::{
    AggregatorPlacementSpec, AggregatorPlacementStatus, PlacementOption, SolverSpec, SolverType,
    StandbyMode as ApiStandbyMode, StandbyOption, StandbyRequirements,
};
use fedsky_crds::common::CloudProvider;
use fedsky_crds::federated_job::StrategyType;
use fedsky_crds::participant_pool::ParticipantPoolSpec;
use fedsky_placement::model::{
    AggregationMemory, CandidateFilter, FlavourInput, PlacementPoint, RegionRef, Requirements,
    SiteInput, StandbyMode, StandbyRequirement, TimingModel, Workload,
};
use fedsky_placement::{
    Catalog, ModelError, Nsga2Settings, PlacementInput, PlacementModel, PlacementOutcome,
    PlacementSolver, SolverKind, solve_placement,
};
use thiserror::Error;

/// Most Pareto points written to status (the CRD's bound).
pub const STATUS_FRONT_LIMIT: usize = 32;

/// Condition type set by the placement controller: whether any candidate
/// meets the requirements.
pub const FEASIBLE: &str = "Feasible";

/// What a spec needs from outside itself.
#[derive(Debug, Clone, Default)]
pub struct SpecContext<'a> {
    /// The ParticipantPool named by `spec.participants.poolRef`, with its name.
    pub pool: Option<(&'a str, &'a ParticipantPoolSpec)>,
    /// Member clusters by name, for pool sites that inherit the cluster's
    /// provider and region.
    pub member_clusters: BTreeMap<String, (CloudProvider, String)>,
    /// Aggregation strategy of the job that will use the placement; it sets
    /// the aggregator's memory need. `None` means FedAvg.
    pub strategy: Option<StrategyType>,
}

/// Why a spec cannot be converted into a placement model input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConvertError {
    /// Neither `poolRef` nor `sites` is set.
    #[error("spec.participants: set exactly one of poolRef or sites (neither is set)")]
    NoParticipants,

    /// Both `poolRef` and `sites` are set.
    #[error("spec.participants: set exactly one of poolRef or sites (both are set)")]
    BothParticipants,

    /// `sites` is an empty list.
    #[error("spec.participants.sites is empty: the placement needs at least one site")]
    EmptySites,

    /// `poolRef` names a pool that was not supplied.
    #[error(
        "spec.participants.poolRef names ParticipantPool `{name}`, which was not found{}",
        .given.as_ref().map(|g| format!(" (the pool given is `{g}`)")).unwrap_or_default()
    )]
    PoolNotFound {
        /// The name in `poolRef`.
        name: String,
        /// The name of the pool that was supplied, if any.
        given: Option<String>,
    },

    /// The pool lists no site.
    #[error("ParticipantPool `{pool}` has no sites")]
    EmptyPool {
        /// The pool's name.
        pool: String,
    },

    /// A pool site has no region and its member cluster is unknown.
    #[error(
        "site `{site}` sets no {field} and its MemberCluster `{cluster}` is unknown; set \
         spec.sites[].{field} in the ParticipantPool or supply the MemberCluster"
    )]
    SiteLocationUnknown {
        /// The site.
        site: String,
        /// `region` or `cloud`.
        field: &'static str,
        /// Its member cluster.
        cluster: String,
    },

    /// A solver setting is outside its range.
    #[error("spec.solver.{field} is {value}; expected {expected}")]
    InvalidSolver {
        /// The field.
        field: &'static str,
        /// The value given.
        value: i64,
        /// What it must satisfy.
        expected: &'static str,
    },
}

/// Why a spec could not be solved.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SolveError {
    /// The spec does not convert.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// The input does not model (unknown regions, empty candidate set, ...).
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl SolveError {
    /// CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Convert(_) => "InvalidSpec",
            Self::Model(ModelError::NoCandidates { .. }) => "NoCandidates",
            Self::Model(
                ModelError::UnknownRegion { .. }
                | ModelError::AmbiguousRegion { .. }
                | ModelError::UnknownCloud { .. }
                | ModelError::UnknownInstanceType { .. },
            ) => "UnknownReference",
            Self::Model(_) => "InvalidSpec",
        }
    }
}

/// The cloud's name in the catalog.
pub fn cloud_name(cloud: CloudProvider) -> &'static str {
    match cloud {
        CloudProvider::Aws => "aws",
        CloudProvider::Gcp => "gcp",
        CloudProvider::Openstack => "openstack",
    }
}

/// How much memory a strategy's aggregation holds.
pub fn aggregation_memory(strategy: StrategyType) -> AggregationMemory {
    match strategy {
        StrategyType::FedAvg => AggregationMemory::StreamingMean,
        StrategyType::FedAdam | StrategyType::FedYogi | StrategyType::FedAdagrad => {
            AggregationMemory::ServerOptimizer
        }
        StrategyType::FedMedian
        | StrategyType::TrimmedMean
        | StrategyType::Krum
        | StrategyType::MultiKrum => AggregationMemory::AllUpdates,
    }
}

/// The placement model input of a spec.
pub fn to_input(
    spec: &AggregatorPlacementSpec,
    ctx: &SpecContext<'_>,
) -> Result<PlacementInput, ConvertError> {
    let sites = sites(spec, ctx)?;
    let clouds = |list: &[CloudProvider]| list.iter().map(|c| cloud_name(*c).to_string()).collect();
    let req = &spec.requirements;
    let residency = req.data_residency.clone().unwrap_or_default();
    let defaults = Workload::default();
    let w = &spec.workload;
    Ok(PlacementInput {
        sites,
        candidates: CandidateFilter {
            clouds: clouds(&spec.candidates.clouds),
            regions: spec.candidates.regions.clone(),
            instance_types: spec.candidates.instance_types.clone(),
        },
        requirements: Requirements {
            max_monthly_cost: req.max_monthly_cost,
            max_round_time_seconds: req.max_round_time_seconds,
            cost_weight: req.cost_weight.unwrap_or(0.5),
            allowed_clouds: clouds(&residency.allowed_clouds),
            allowed_regions: residency.allowed_regions,
            standby: req.standby.as_ref().and_then(standby),
        },
        workload: Workload {
            model_size_mb: w.model_size_mb.unwrap_or(defaults.model_size_mb),
            rounds_per_month: w
                .rounds_per_month
                .map_or(defaults.rounds_per_month, |r| r as f64),
            hours_per_month: w.hours_per_month.unwrap_or(defaults.hours_per_month),
            local_compute_seconds: w
                .local_compute_seconds
                .unwrap_or(defaults.local_compute_seconds),
            memory: aggregation_memory(ctx.strategy.unwrap_or_default()),
            charge_site_egress: defaults.charge_site_egress,
        },
        timing: TimingModel {
            rtts_per_transfer: w
                .round_trips_per_transfer
                .unwrap_or(TimingModel::default().rtts_per_transfer),
            ..TimingModel::default()
        },
    })
}

/// The model's standby requirement; `None` when absent or disabled.
fn standby(spec: &StandbyRequirements) -> Option<StandbyRequirement> {
    if spec.enabled == Some(false) {
        return None;
    }
    let defaults = StandbyRequirement::default();
    Some(StandbyRequirement {
        mode: match spec.mode.unwrap_or_default() {
            ApiStandbyMode::Warm => StandbyMode::Warm,
            ApiStandbyMode::Cold => StandbyMode::Cold,
        },
        distinct_region: spec.distinct_region.unwrap_or(defaults.distinct_region),
        distinct_cloud: spec.distinct_cloud.unwrap_or(defaults.distinct_cloud),
        failover_hours_per_month: spec
            .failover_hours_per_month
            .unwrap_or(defaults.failover_hours_per_month),
    })
}

fn sites(
    spec: &AggregatorPlacementSpec,
    ctx: &SpecContext<'_>,
) -> Result<Vec<SiteInput>, ConvertError> {
    let participants = &spec.participants;
    match (&participants.pool_ref, &participants.sites) {
        (None, None) => Err(ConvertError::NoParticipants),
        (Some(_), Some(_)) => Err(ConvertError::BothParticipants),
        (None, Some(sites)) => {
            if sites.is_empty() {
                return Err(ConvertError::EmptySites);
            }
            Ok(sites
                .iter()
                .map(|s| SiteInput {
                    name: s.name.clone(),
                    region: RegionRef::new(cloud_name(s.cloud), s.region.clone()),
                    flavours: Vec::new(),
                })
                .collect())
        }
        (Some(pool_ref), None) => {
            let pool = match ctx.pool {
                Some((name, pool)) if name == pool_ref.name => pool,
                other => {
                    return Err(ConvertError::PoolNotFound {
                        name: pool_ref.name.clone(),
                        given: other.map(|(n, _)| n.to_string()),
                    });
                }
            };
            if pool.sites.is_empty() {
                return Err(ConvertError::EmptyPool {
                    pool: pool_ref.name.clone(),
                });
            }
            pool.sites
                .iter()
                .map(|s| {
                    let cluster = ctx.member_clusters.get(&s.member_cluster);
                    let unknown = |field| ConvertError::SiteLocationUnknown {
                        site: s.name.clone(),
                        field,
                        cluster: s.member_cluster.clone(),
                    };
                    let region = match (&s.region, cluster) {
                        (Some(r), _) => r.clone(),
                        (None, Some((_, r))) => r.clone(),
                        (None, None) => return Err(unknown("region")),
                    };
                    let cloud = match (s.cloud, cluster) {
                        (Some(c), _) => c,
                        (None, Some((c, _))) => *c,
                        (None, None) => return Err(unknown("cloud")),
                    };
                    Ok(SiteInput {
                        name: s.name.clone(),
                        region: RegionRef::new(cloud_name(cloud), region),
                        flavours: s
                            .flavours
                            .iter()
                            .map(|f| FlavourInput {
                                name: f.name.clone(),
                                hourly_usd: f.hourly_cost,
                                relative_speed: f.relative_speed.unwrap_or(1.0),
                            })
                            .collect(),
                    })
                })
                .collect()
        }
    }
}

/// The solver of a spec.
pub fn to_solver(spec: &SolverSpec) -> Result<PlacementSolver, ConvertError> {
    Ok(match spec.type_ {
        SolverType::Auto => PlacementSolver::Auto,
        SolverType::Exact => PlacementSolver::Exact,
        SolverType::Nsga2 => {
            let defaults = Nsga2Settings::default();
            let population = match spec.population {
                None => defaults.population,
                Some(p) if p >= 4 => p as usize,
                Some(p) => {
                    return Err(ConvertError::InvalidSolver {
                        field: "population",
                        value: i64::from(p),
                        expected: "at least 4",
                    });
                }
            };
            let generations = match spec.generations {
                None => defaults.generations,
                Some(g) if g >= 1 => g as usize,
                Some(g) => {
                    return Err(ConvertError::InvalidSolver {
                        field: "generations",
                        value: i64::from(g),
                        expected: "at least 1",
                    });
                }
            };
            let seed = match spec.seed {
                None => defaults.seed,
                Some(s) => u64::try_from(s).map_err(|_| ConvertError::InvalidSolver {
                    field: "seed",
                    value: s,
                    expected: "a number >= 0",
                })?,
            };
            PlacementSolver::Nsga2(Nsga2Settings {
                population,
                generations,
                seed,
                ..defaults
            })
        }
    })
}

/// Converts, models and solves a spec against a catalog.
pub fn solve_spec(
    catalog: &Catalog,
    spec: &AggregatorPlacementSpec,
    ctx: &SpecContext<'_>,
) -> Result<PlacementOutcome, SolveError> {
    let input = to_input(spec, ctx)?;
    let solver = to_solver(&spec.solver)?;
    let model = PlacementModel::build(catalog, &input)?;
    Ok(solve_placement(&model, &solver)?)
}

/// The status fields a solve determines. The caller adds what it owns:
/// `observedGeneration`, conditions (see [`feasible_condition`]) and
/// `lastSolvedTime`.
pub fn to_status(outcome: &PlacementOutcome, front_limit: usize) -> AggregatorPlacementStatus {
    let keep = bounded_indices(outcome.front.len(), front_limit, outcome.selected);
    AggregatorPlacementStatus {
        selected: outcome.selected_point().map(option),
        pareto_front: keep.iter().map(|&i| option(&outcome.front[i])).collect(),
        infeasible_reason: outcome.infeasibility.as_ref().map(|i| i.message.clone()),
        solver: Some(format!(
            "{}: {}",
            solver_name(outcome.solver),
            outcome.reason
        )),
        evaluations: Some(i64::try_from(outcome.evaluations).unwrap_or(i64::MAX)),
        solve_time_ms: Some(outcome.solve_time_ms),
        catalog_version: Some(outcome.catalog_version.clone()),
        ..AggregatorPlacementStatus::default()
    }
}

/// The API's name of a solver: `Exact` or `NSGA2`.
pub fn solver_name(kind: SolverKind) -> &'static str {
    match kind {
        SolverKind::Exact => "Exact",
        SolverKind::Nsga2 => "NSGA2",
    }
}

/// The `Feasible` condition of an outcome: (status, reason, message).
pub fn feasible_condition(outcome: &PlacementOutcome) -> (bool, &'static str, String) {
    match (outcome.selected_point(), &outcome.infeasibility) {
        (Some(p), _) => (
            true,
            "Solved",
            format!(
                "{} {} {}{}: {:.2} USD/month, {:.2} s per round ({} Pareto points)",
                p.cloud,
                p.region,
                p.instance_type,
                p.standby.as_ref().map_or(String::new(), |s| format!(
                    " with standby {} {} {} ({:.2} s per round on failover)",
                    s.cloud, s.region, s.instance_type, s.failover_round_time_seconds
                )),
                p.monthly_cost,
                p.round_time_seconds,
                outcome.front.len()
            ),
        ),
        (None, Some(why)) => (false, "Infeasible", why.message.clone()),
        (None, None) => (false, "Infeasible", "no feasible candidate".into()),
    }
}

fn option(p: &PlacementPoint) -> PlacementOption {
    PlacementOption {
        cloud: p.cloud.clone(),
        region: p.region.clone(),
        instance_type: p.instance_type.clone(),
        monthly_cost: round_to(p.monthly_cost, 4),
        round_time_seconds: round_to(p.round_time_seconds, 4),
        site_flavours: p
            .site_flavours
            .iter()
            .filter(|f| f.chosen)
            .map(|f| (f.site.clone(), f.flavour.clone()))
            .collect(),
        standby: p.standby.as_ref().map(|s| StandbyOption {
            cloud: s.cloud.clone(),
            region: s.region.clone(),
            instance_type: s.instance_type.clone(),
            monthly_cost: round_to(s.monthly_cost, 4),
            failover_round_time_seconds: round_to(s.failover_round_time_seconds, 4),
        }),
    }
}

/// Rounds for status: sub-cent and sub-0.1 ms digits are noise to a reader
/// and would make status diffs of equal solutions look different.
fn round_to(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

/// At most `limit` indices of `0..len`, evenly spread with both ends, and
/// always `must` when given.
pub fn bounded_indices(len: usize, limit: usize, must: Option<usize>) -> Vec<usize> {
    if len <= limit {
        return (0..len).collect();
    }
    if limit == 0 {
        return Vec::new();
    }
    if limit == 1 {
        return vec![must.unwrap_or(0).min(len - 1)];
    }
    let mut keep: Vec<usize> = (0..limit)
        .map(|i| (i * (len - 1) + (limit - 1) / 2) / (limit - 1))
        .collect();
    keep.dedup();
    if let Some(m) = must.filter(|&m| m < len)
        && !keep.contains(&m)
    {
        // Replace the nearest interior index, so both ends stay.
        let nearest = (1..keep.len() - 1)
            .min_by_key(|&j| keep[j].abs_diff(m))
            .unwrap_or(0);
        keep[nearest] = m;
        keep.sort_unstable();
    }
    keep
}

#[cfg(test)]
mod tests;
