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
    /// How to run the aggregator on a VM the operator creates when the placed region has
    /// no Ready public MemberCluster. Absent: jobs wait for a member cluster there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<ProvisioningSpec>,
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
    /// A standby aggregator for participants to fail over to, chosen and priced with the
    /// primary and reported as `status.selected.standby`. The operator plans it; a
    /// FederatedJob does not start it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyRequirements>,
}

/// A second aggregator (cloud, region, instance type) that participants fail over to. It
/// passes the same candidate, data-residency and memory filters as the primary; its cost
/// (instance plus checkpoint replication of one model per round) counts toward the monthly
/// cost and `maxMonthlyCost`, and `maxRoundTimeSeconds` bounds its failover round too.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.distinctCloud) && self.distinctCloud && has(self.distinctRegion) && !self.distinctRegion)").message("requirements.standby.distinctRegion cannot be false when distinctCloud is true: a region of another cloud is always another region"))]
#[x_kube(validation = Rule::new("!has(self.failoverHoursPerMonth) || (has(self.mode) && self.mode == 'Cold')").message("requirements.standby.failoverHoursPerMonth applies only to mode Cold (a Warm standby runs all month)"))]
pub struct StandbyRequirements {
    /// Whether to place a standby; default true, so an empty `standby: {}` asks for one.
    /// Set false to drop the standby but keep its settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `Warm` (default): the standby runs all month and holds the latest checkpoint.
    /// `Cold`: only the checkpoint is kept; the instance starts on failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<StandbyMode>,
    /// The standby must be in another region than the primary (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_region: Option<bool>,
    /// The standby must be in another cloud than the primary (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_cloud: Option<bool>,
    /// `Cold` only: hours a month the standby instance is expected to run (failovers and
    /// drills), for its cost; default 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 744.0))]
    pub failover_hours_per_month: Option<f64>,
}

/// How the standby waits: `Warm` (default) runs all month and holds the latest checkpoint,
/// so failover is immediate; `Cold` keeps only the checkpoint and starts the instance on
/// failover, billed for `failoverHoursPerMonth`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StandbyMode {
    /// Always on next to the primary; failover is immediate.
    #[default]
    Warm,
    /// Started on failover from the replicated checkpoint; billed for the hours it runs.
    Cold,
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
    /// Round trips each model transfer costs besides its bytes (default 2: the request and
    /// the final acknowledgement, as on a WAN connection that TCP slow start also slows).
    /// On a warm connection without slow start, fedsky's protocol spends 1.5 per transfer:
    /// the round's instruction, the download request and the evaluation report, and the
    /// upload's way to the aggregator (3 per round).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 20.0))]
    pub round_trips_per_transfer: Option<f64>,
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
    /// The standby aggregator, when `requirements.standby` asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyOption>,
}

/// The standby aggregator of a placement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandbyOption {
    /// Cloud of the standby.
    pub cloud: String,
    /// Region of the standby.
    pub region: String,
    /// Instance type of the standby.
    pub instance_type: String,
    /// The standby's part of `monthlyCost` in US dollars (instance and checkpoint replication).
    pub monthly_cost: f64,
    /// Predicted round time in seconds with the standby as the aggregator.
    pub failover_round_time_seconds: f64,
}

/// Aggregator VMs: per cloud, the credentials and image to use; who may reach the gRPC
/// port; where the aggregator binary comes from. The operator creates one VM per job,
/// with a firewall (security group) that opens only the gRPC port, and deletes both when
/// the job is deleted. See docs/clouds.md.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningSpec {
    /// Settings per cloud, at most one entry per cloud.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["cloud".into()]))]
    #[schemars(length(min = 1, max = 3))]
    pub clouds: Vec<CloudProvisioning>,
    /// CIDRs allowed to reach the aggregator's gRPC port: the participants' egress
    /// addresses. The VM's firewall admits nothing else.
    #[serde(rename = "allowedSourceCIDRs")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("provisioning.allowedSourceCIDRs: every entry must be a CIDR such as 203.0.113.0/24"))]
    pub allowed_source_cidrs: Vec<String>,
    /// The `fedsky-aggregator` binary the VM downloads; it is installed only if its
    /// SHA-256 matches.
    pub aggregator_binary: BinarySource,
}

/// One cloud's settings for aggregator VMs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudProvisioning {
    /// The cloud these settings apply to.
    pub cloud: CloudProvider,
    /// Secret in the placement's namespace with this cloud's credentials; its keys are
    /// listed in docs/clouds.md. The operator reads Secrets only in namespaces it was
    /// given (chart value `rbac.secretNamespaces`): add the placement's namespace there.
    pub credentials_secret_ref: LocalObjectRef,
    /// Machine image per region, `*` for any region: an AMI id on AWS (AMIs differ per
    /// region), an image URL or family on GCP, an image id on OpenStack.
    #[x_kube(validation = Rule::new("size(self) > 0").message("provisioning.clouds[].images needs at least one entry"))]
    pub images: std::collections::BTreeMap<String, String>,
    /// Subnet id (AWS), network name (GCP) or network id (OpenStack); the default
    /// network when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub network: Option<String>,
}

/// Where a binary comes from and how to check it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinarySource {
    /// `https://` (or `http://`) URL of the binary for the VM's architecture.
    #[schemars(length(min = 8, max = 2048), pattern(r#"^https?://[^\s'"\\]+$"#))]
    pub url: String,
    /// Its SHA-256 in lowercase hex.
    #[schemars(pattern(r"^[a-f0-9]{64}$"))]
    pub sha256: String,
}
