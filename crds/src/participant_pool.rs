//! `ParticipantPool`: the data-holding sites a FederatedJob can draw participants from.

use crate::common::ResourceAmounts;
use crate::conditions::Condition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A set of sites (for example hospitals), each a member cluster holding private data,
/// from which FederatedJobs select their participants by real free resources and health.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fl.fedsky.dev",
    version = "v1alpha1",
    kind = "ParticipantPool",
    doc = "Data-holding sites (member clusters with private data) from which FederatedJobs draw participants by real free resources and health.",
    plural = "participantpools",
    shortname = "pp",
    category = "fedsky",
    namespaced,
    status = "ParticipantPoolStatus",
    printcolumn(name = "Sites", type_ = "integer", json_path = ".status.siteCount"),
    printcolumn(
        name = "Eligible",
        type_ = "integer",
        json_path = ".status.eligibleNodes",
        description = "Nodes that meet the minimum spec across all sites"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.selection.policy"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantPoolSpec {
    /// The sites of the pool; names are unique.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 64))]
    pub sites: Vec<Site>,
    /// Minimum resources a node must have free to run a participant of any job using this
    /// pool. A job may require more with `spec.participants.minResources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_spec: Option<ResourceAmounts>,
    /// How participants are picked among eligible nodes.
    #[serde(default)]
    pub selection: SelectionSpec,
}

/// One data-holding site: a member cluster and the nodes in it that may train.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// Name of the site, unique in the pool (for example `hospital-eu`).
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Name of the MemberCluster that runs this site's participants.
    #[schemars(length(min = 1, max = 253))]
    pub member_cluster: String,
    /// Region of the site, used for latency in placement (for example `eu-west-1`). Defaults
    /// to the member cluster's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub region: Option<String>,
    /// Cloud whose latency and prices model this site's region; defaults to the member
    /// cluster's provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::common::CloudProvider>,
    /// Namespace in the member cluster where participant workloads run.
    #[serde(default = "default_site_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Only nodes with all these labels are candidates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub node_selector: BTreeMap<String, String>,
    /// Volume holding the site's private training data, mounted read-only.
    pub data_volume: DataVolume,
    /// Machine flavours the site offers for participants (for private clouds that can
    /// start VMs of several sizes). Placement may choose among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 32))]
    pub flavours: Vec<Flavour>,
}

fn default_site_namespace() -> String {
    "fedsky-participants".to_string()
}

/// Where a site's data lives in its cluster. Exactly one source is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.persistentVolumeClaim) != has(self.hostPath)").message("spec.sites[].dataVolume: set exactly one of persistentVolumeClaim or hostPath"))]
pub struct DataVolume {
    /// Name of a PersistentVolumeClaim in the site's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub persistent_volume_claim: Option<String>,
    /// Absolute path on the node (for single-node sites and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096), pattern(r"^/"))]
    pub host_path: Option<String>,
}

/// A machine size a site can run a participant on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flavour {
    /// Flavour name as the site's cloud knows it (for example `m1.large`).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// vCPUs of the flavour.
    pub cpu: Quantity,
    /// Memory of the flavour.
    pub memory: Quantity,
    /// GPUs of the flavour.
    #[serde(default)]
    #[schemars(range(min = 0, max = 64))]
    pub gpu: i32,
    /// Price per hour in US dollars (0 for owned hardware).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub hourly_cost: f64,
    /// Relative training speed (1.0 = reference CPU node); scales predicted round time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 1000.0))]
    pub relative_speed: Option<f64>,
}

/// How participants are selected among eligible nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectionSpec {
    /// `ResourceAware` (default) filters by minimum spec, readiness and recent failures and
    /// goes round-robin over a circular queue; `RoundRobin` skips the resource filter;
    /// `Random` picks uniformly (the seed system's baseline, kept for experiments).
    #[serde(default)]
    pub policy: SelectionPolicy,
    /// Failures after which a node is skipped until the cooldown passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_failures_per_node: Option<i32>,
    /// Seconds a failed node is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub failure_cooldown_seconds: Option<i32>,
}

/// Participant selection policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SelectionPolicy {
    // Filter by resources and health, then round-robin.
    #[default]
    ResourceAware,
    // Round-robin without the resource filter.
    RoundRobin,
    // Uniformly random.
    Random,
}

/// Observed state of a ParticipantPool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantPoolStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Ready`, `Reconciling`, `Stalled`, `InsufficientCapacity`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// Number of sites in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_count: Option<i32>,
    /// Eligible nodes summed over all sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_nodes: Option<i32>,
    /// Per-site view of eligible nodes and free resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 64))]
    pub sites: Vec<SiteStatus>,
    /// Position of the circular selection queue, so an operator restart resumes fairly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_cursor: Option<i64>,
}

/// Observed state of one site.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    /// Site name, as in the spec.
    pub name: String,
    /// Whether the site's member cluster is reachable and has eligible nodes.
    #[serde(default)]
    pub healthy: bool,
    /// Nodes that are Ready, schedulable, match the selector and meet the minimum spec.
    #[serde(default)]
    pub eligible_nodes: i32,
    /// Free resources summed over eligible nodes (allocatable minus requests of running pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<ResourceAmounts>,
    /// Why the site is unhealthy, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
