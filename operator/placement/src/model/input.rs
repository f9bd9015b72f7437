//! What a placement is asked for, as plain data (no Kubernetes types): the
//! participant sites, the candidate filter, the user's limits and the
//! workload. Callers convert their own API types into these.

use serde::{Deserialize, Serialize};

/// Everything the placement model needs besides the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementInput {
    /// The participant sites; at least one.
    pub sites: Vec<SiteInput>,
    /// Which aggregator candidates the user allows.
    #[serde(default)]
    pub candidates: CandidateFilter,
    /// Limits and the cost/latency preference.
    #[serde(default)]
    pub requirements: Requirements,
    /// Size and pace of the federated workload.
    #[serde(default)]
    pub workload: Workload,
    /// Constants of the transfer and aggregation time model.
    #[serde(default)]
    pub timing: TimingModel,
}

/// A region reference: `cloud` may be empty, then the name must be unique
/// across the catalog's clouds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionRef {
    /// Cloud of the region (`aws`, `gcp`, `openstack`, ...); empty = any.
    #[serde(default)]
    pub cloud: String,
    /// Region name, e.g. `eu-central-1`.
    pub name: String,
}

impl RegionRef {
    /// A reference to `name` in `cloud`.
    pub fn new(cloud: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            cloud: cloud.into(),
            name: name.into(),
        }
    }

    /// Parses `cloud:name` or a bare `name`.
    pub fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some((cloud, name)) => Self::new(cloud, name),
            None => Self::new("", text),
        }
    }
}

impl std::fmt::Display for RegionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cloud.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}:{}", self.cloud, self.name)
        }
    }
}

/// One participant site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteInput {
    /// Site name, unique among the sites.
    pub name: String,
    /// The catalog region whose network and prices model the site.
    pub region: RegionRef,
    /// Machine flavours the site can train on. Empty means one reference
    /// node (speed 1, no cost); with several the placement picks one.
    #[serde(default)]
    pub flavours: Vec<FlavourInput>,
}

/// A machine size a site can train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlavourInput {
    /// Flavour name, e.g. `m1.large`.
    pub name: String,
    /// Price per hour in USD (0 for owned hardware).
    #[serde(default)]
    pub hourly_usd: f64,
    /// Training speed relative to the reference node (1.0); local compute
    /// time is divided by it.
    #[serde(default = "one")]
    pub relative_speed: f64,
}

fn one() -> f64 {
    1.0
}

/// Allowed aggregator candidates; every empty list allows everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateFilter {
    /// Clouds to consider.
    #[serde(default)]
    pub clouds: Vec<String>,
    /// Regions to consider (`cloud:name` or a bare name).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Instance types to consider, e.g. `m5.large`.
    #[serde(default)]
    pub instance_types: Vec<String>,
}

/// The user's limits and preference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    /// Largest acceptable monthly cost in USD.
    #[serde(default)]
    pub max_monthly_cost: Option<f64>,
    /// Largest acceptable predicted round time in seconds.
    #[serde(default)]
    pub max_round_time_seconds: Option<f64>,
    /// 1 = cheapest, 0 = fastest, over the front's normalised objectives.
    #[serde(default = "half")]
    pub cost_weight: f64,
    /// Data residency: clouds the aggregator may run in (empty = all).
    #[serde(default)]
    pub allowed_clouds: Vec<String>,
    /// Data residency: regions the aggregator may run in (empty = all).
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    /// A standby aggregator that participants fail over to; `None` plans
    /// none.
    #[serde(default)]
    pub standby: Option<StandbyRequirement>,
}

fn half() -> f64 {
    0.5
}

impl Default for Requirements {
    fn default() -> Self {
        Self {
            max_monthly_cost: None,
            max_round_time_seconds: None,
            cost_weight: 0.5,
            allowed_clouds: Vec::new(),
            allowed_regions: Vec::new(),
            standby: None,
        }
    }
}

/// How the standby aggregator waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StandbyMode {
    /// The standby instance runs all month next to the primary and holds the
    /// latest checkpoint, so failover takes over at once.
    #[default]
    Warm,
    /// Only the latest checkpoint is kept in the standby region; the
    /// instance starts on failover and is billed for the hours it runs.
    Cold,
}

/// A second aggregator (cloud, region, instance type) that participants
/// fail over to. It is a candidate like the primary (same filters: the
/// candidate lists, data residency, memory) and, when the round time is
/// limited, its failover round must meet `maxRoundTimeSeconds` too.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StandbyRequirement {
    /// Warm (always on) or cold (started on failover).
    pub mode: StandbyMode,
    /// The standby must be in another region than the primary.
    pub distinct_region: bool,
    /// The standby must be in another cloud than the primary.
    pub distinct_cloud: bool,
    /// Cold only: hours a month the standby instance is expected to run
    /// (failovers and drills); a warm standby runs `hoursPerMonth`.
    pub failover_hours_per_month: f64,
}

impl Default for StandbyRequirement {
    /// Warm, in another region of any cloud, 8 expected failover hours a
    /// month when cold.
    fn default() -> Self {
        Self {
            mode: StandbyMode::Warm,
            distinct_region: true,
            distinct_cloud: false,
            failover_hours_per_month: DEFAULT_FAILOVER_HOURS,
        }
    }
}

/// Expected hours a month a cold standby runs: a working day of failover
/// drills or outages. A guess to be overridden; it only scales the cold
/// standby's instance cost.
pub const DEFAULT_FAILOVER_HOURS: f64 = 8.0;

/// How much memory the aggregation strategy holds, in model copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AggregationMemory {
    /// Streaming weighted mean (FedAvg, FedProx): the global model, the
    /// running sum and one update in flight — 3 copies.
    StreamingMean,
    /// Server optimisers (FedAdam, FedYogi, FedAdagrad): the streaming mean
    /// plus two moment vectors — 5 copies.
    ServerOptimizer,
    /// Robust rules (median, trimmed mean, Krum) that need every update of a
    /// round at once: one copy per participant plus the global model and
    /// the result — `participants + 2` copies.
    AllUpdates,
}

impl AggregationMemory {
    /// Model copies held for `participants` participants.
    pub fn copies(self, participants: usize) -> f64 {
        match self {
            Self::StreamingMean => 3.0,
            Self::ServerOptimizer => 5.0,
            Self::AllUpdates => participants as f64 + 2.0,
        }
    }
}

/// Size and pace of the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Model size on the wire in MB (10^6 bytes), one direction.
    pub model_size_mb: f64,
    /// Rounds per month (egress is paid per round).
    pub rounds_per_month: f64,
    /// Hours per month the aggregator and the participant nodes run.
    pub hours_per_month: f64,
    /// Seconds of local training per round on the reference node.
    pub local_compute_seconds: f64,
    /// Memory the aggregation strategy needs.
    pub memory: AggregationMemory,
    /// Whether uploads from sites are charged at their region's egress
    /// price (true) or are free to the federation, e.g. because the
    /// sites' own networks carry them (false).
    pub charge_site_egress: bool,
}

impl Default for Workload {
    /// A ResNet-18-sized model (45 MB), 720 rounds a month (one an hour),
    /// always on, 30 s of local training, FedAvg.
    fn default() -> Self {
        Self {
            model_size_mb: 45.0,
            rounds_per_month: 720.0,
            hours_per_month: 730.0,
            local_compute_seconds: 30.0,
            memory: AggregationMemory::StreamingMean,
            charge_site_egress: true,
        }
    }
}

/// Constants of the time model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TimingModel {
    /// TCP window of one model stream in MiB: a single stream moves at
    /// most one window per RTT, which is what limits long paths (the
    /// catalog's throughput was measured with many parallel streams).
    pub tcp_window_mib: f64,
    /// Round trips spent per transfer besides the payload (connection
    /// reuse, request and final acknowledgement).
    pub rtts_per_transfer: f64,
    /// Aggregation speed per vCPU in GB/s of updates folded in.
    pub aggregation_gb_per_s_per_vcpu: f64,
    /// Memory the aggregator needs besides the model copies, in GiB
    /// (process, OS, TLS buffers).
    pub base_memory_gib: f64,
}

impl Default for TimingModel {
    fn default() -> Self {
        Self {
            tcp_window_mib: 4.0,
            rtts_per_transfer: 2.0,
            aggregation_gb_per_s_per_vcpu: 0.5,
            base_memory_gib: 0.5,
        }
    }
}
