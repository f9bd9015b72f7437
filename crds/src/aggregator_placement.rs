//! `AggregatorPlacement`: where the FL aggregator should run, solved for cost and latency.

use crate::common::{CloudProvider, LocalObjectRef};
use crate::conditions::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Chooses the cloud, region and instance type of an FL aggregator that best trade
/// monthly cost against round time for a set of participant regions, under the user's
/// limits. The operator writes the Pareto front and the pick into status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fl.fedsky.dev",
    version = "v1alpha1",
    kind = "AggregatorPlacement",
    doc = "Where an FL aggregator runs: the cloud, region and instance type that best trade monthly cost against round time under the user's limits.",
    plural = "aggregatorplacements",
    shortname = "ap",
    category = "fedsky",
    namespaced,
    status = "AggregatorPlacementStatus",
    printcolumn(name = "Cloud", type_ = "string", json_path = ".status.selected.cloud"),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".status.selected.region"
    ),
    printcolumn(
        name = "Instance",
        type_ = "string",
        json_path = ".status.selected.instanceType"
    ),
    printcolumn(
        name = "Cost/mo",
        type_ = "number",
        json_path = ".status.selected.monthlyCost",
        description = "Predicted monthly cost in USD"
    ),
    printcolumn(
        name = "Round(s)",
        type_ = "number",
        json_path = ".status.selected.roundTimeSeconds",
        description = "Predicted round time in seconds"
    ),
    printcolumn(
        name = "Feasible",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Feasible\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AggregatorPlacementSpec {
    /// Where the participants are: a ParticipantPool or an explicit list of regions.
    pub participants: ParticipantRegions,
    /// Candidate clouds, regions and instance types for the aggregator.
    #[serde(default)]
    pub candidates: Candidates,
    /// Limits and preferences the chosen placement must meet.
    #[serde(default)]
    pub requirements: PlacementRequirements,
    /// Size and pace of the FL workload, which drive traffic, cost and round time.
    #[serde(default)]
    pub workload: WorkloadProfile,
    /// Which solver to use and its settings.
    #[serde(default)]
    pub solver: SolverSpec,
}

/// Participant locations for placement. Exactly one of `poolRef` or `sites` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.poolRef) != has(self.sites)").message("spec.participants: set exactly one of poolRef or sites"))]
pub struct ParticipantRegions {
    /// ParticipantPool whose sites' regions (and flavours) are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_ref: Option<LocalObjectRef>,
    /// Explicit participant sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 64))]
    pub sites: Option<Vec<ParticipantRegion>>,
}

/// One participant site's location.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantRegion {
    /// Site name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Cloud whose network data models the site's region.
    pub cloud: CloudProvider,
    /// Region of the site (for example `eu-central-1`).
    #[schemars(length(min = 1, max = 63))]
    pub region: String,
}

/// Candidate space for the aggregator. Empty lists mean "everything in the catalog".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Candidates {
    /// Clouds to consider; empty means all public clouds in the catalog.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub clouds: Vec<CloudProvider>,
    /// Regions to consider; empty means all regions of the chosen clouds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub regions: Vec<String>,
    /// Instance types to consider (for example `m5.large`); empty means the catalog's set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub instance_types: Vec<String>,
}

/// Limits and preferences for a placement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRequirements {
    /// Largest acceptable monthly cost in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_monthly_cost: Option<f64>,
    /// Largest acceptable predicted round time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub max_round_time_seconds: Option<f64>,
    /// Weight of cost against latency when picking one solution from the Pareto front:
    /// 1 = cheapest, 0 = fastest, 0.5 = balanced (objectives normalised over the front).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub cost_weight: Option<f64>,
    /// Data-residency allow-lists: the aggregator may run only in these clouds/regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_residency: Option<DataResidency>,
}

/// Where model parameters may be processed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataResidency {
    /// Allowed clouds; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub allowed_clouds: Vec<CloudProvider>,
    /// Allowed regions; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_regions: Vec<String>,
}

/// Size and pace of the federated workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProfile {
    /// Size of the model on the wire in megabytes (one direction, one participant).
    #[serde(
        default,
        rename = "modelSizeMB",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0.001, max = 100000.0))]
    pub model_size_mb: Option<f64>,
    /// FL rounds run per month, for monthly egress cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000000))]
    pub rounds_per_month: Option<i64>,
    /// Hours per month the aggregator runs (730 = always on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 744.0))]
    pub hours_per_month: Option<f64>,
    /// Seconds of local training per round on a reference node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 86400.0))]
    pub local_compute_seconds: Option<f64>,
}

/// Solver selection and settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverSpec {
    /// `Auto` (default) enumerates exactly when the space is small and runs NSGA-II
    /// otherwise; `Exact` always enumerates; `NSGA2` always runs the evolutionary solver.
    #[serde(default, rename = "type")]
    pub type_: SolverType,
    /// NSGA-II population size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 4, max = 10000))]
    pub population: Option<i32>,
    /// NSGA-II generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub generations: Option<i32>,
    /// Random seed; the same spec and seed give the same result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seed: Option<i64>,
}

/// Which placement solver runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SolverType {
    // Exact below a size threshold, NSGA-II above.
    #[default]
    Auto,
    // Exhaustive enumeration or decomposition.
    Exact,
    // The NSGA-II evolutionary solver.
    #[serde(rename = "NSGA2")]
    Nsga2,
}

/// Observed state of an AggregatorPlacement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregatorPlacementStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Ready`, `Feasible`, `Reconciling`, `Stalled`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// The placement picked from the front by `costWeight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<PlacementOption>,
    /// Non-dominated placements (bounded), cheapest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub pareto_front: Vec<PlacementOption>,
    /// Why no candidate is feasible: the binding constraint, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infeasible_reason: Option<String>,
    /// Solver that produced the result (`Exact` or `NSGA2`) and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver: Option<String>,
    /// Objective evaluations the solver made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations: Option<i64>,
    /// Wall time of the solve in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solve_time_ms: Option<f64>,
    /// Version of the cloud catalog used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<String>,
    /// Digest of everything the last solve read (spec, pool sites, member cluster regions,
    /// catalog version); the controller re-solves only when it changes, so status never flaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
    /// When the placement was last solved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_solved_time: Option<Time>,
}

/// One placement with its objective values.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementOption {
    /// Cloud of the aggregator.
    pub cloud: String,
    /// Region of the aggregator.
    pub region: String,
    /// Instance type of the aggregator.
    pub instance_type: String,
    /// Predicted monthly cost in US dollars.
    pub monthly_cost: f64,
    /// Predicted round time in seconds (bounded by the slowest participant).
    pub round_time_seconds: f64,
    /// Flavour chosen per site, where sites offer several.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub site_flavours: std::collections::BTreeMap<String, String>,
}
