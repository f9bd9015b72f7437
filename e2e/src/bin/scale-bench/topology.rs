//! What the benchmark creates: one public member cluster for the aggregators, with nodes
//! of the placed region and instance type, private member clusters whose worker nodes run
//! participants, one ParticipantPool over them, one PersistentVolume per aggregator and the
//! FederatedJobs. Pure: sizes in, objects out.

use fedsky_e2e::testbed::{MemberConfig, NodeConfig, TestbedConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Hub namespace of the pool, the shared placement and the jobs.
pub const NAMESPACE: &str = "bench";
/// The public member cluster that hosts every aggregator.
pub const PUBLIC_CLUSTER: &str = "aws-eu-central-1";
/// Cloud and region of the public cluster, the only ones the placement may choose.
const PUBLIC_CLOUD: &str = "aws";
const PUBLIC_REGION: &str = "eu-central-1";
/// The only instance type the shared placement may choose, so that the aggregator nodes'
/// type is fixed before the solve (as in operator/tests/federated_job.rs).
pub const SHARED_INSTANCE_TYPE: &str = "m5.large";
/// ParticipantPool name.
pub const POOL: &str = "sites";
/// Name of the shared AggregatorPlacement.
pub const PLACEMENT: &str = "shared";
/// Name of the AggregatorPlacement solved before the jobs in inline mode, with the spec
/// the operator gives each job's own placement: inline requirements cannot restrict the
/// instance type, so its answer, the same for every job, tells the aggregator nodes' type.
pub const INLINE_PROBE: &str = "inline-probe";
/// Aggregator pods per public node.
pub const AGGREGATORS_PER_NODE: usize = 100;
/// Pods a kwok node of the harness admits (its default `pods` capacity).
const NODE_PODS: usize = 110;
const _: () = assert!(AGGREGATORS_PER_NODE <= NODE_PODS);
/// Node labels that a cloud's node controller sets and that the aggregator's required
/// node affinity selects: the placed region and instance type.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
/// Worker node size: 16 participants of [`PARTICIPANT_CPU`] / [`PARTICIPANT_MEMORY`] fit.
const WORKER_CPU: &str = "16";
const WORKER_MEMORY: &str = "64Gi";
/// Each participant's minimum resources.
const PARTICIPANT_CPU: &str = "1";
const PARTICIPANT_MEMORY: &str = "2Gi";
/// Participants per worker node at the sizes above.
const PARTICIPANTS_PER_WORKER: usize = 16;
/// Regions whose network model places the sites (the catalog knows them).
const SITE_REGIONS: [&str; 5] = [
    "eu-central-1",
    "us-east-1",
    "ap-northeast-2",
    "eu-west-1",
    "us-west-2",
];
/// Label that the pool's sites select worker nodes by.
const WORKER_LABEL: &str = "fedsky.dev/fl-worker";

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// FederatedJobs to apply.
    pub jobs: usize,
    /// Simulated nodes in all member clusters together.
    pub nodes: usize,
    /// Private member clusters (one pool site each).
    pub private_clusters: usize,
    /// `maxPerRound` of every job.
    pub participants: usize,
}

/// Why a size cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    /// Too few nodes for the aggregator nodes plus a worker per private cluster.
    #[error(
        "--nodes {nodes} is too small: {public} public nodes for {jobs} aggregators plus at least one worker in each of {private} private clusters need {needed}"
    )]
    TooFewNodes {
        /// Nodes asked for.
        nodes: usize,
        /// Public nodes the jobs need.
        public: usize,
        /// Jobs asked for.
        jobs: usize,
        /// Private clusters asked for.
        private: usize,
        /// The least number of nodes that works.
        needed: usize,
    },
    /// The workers cannot hold every job's participants at once.
    #[error(
        "{workers} worker nodes hold {slots} participants, fewer than {jobs} jobs x {participants}; raise --nodes or lower --participants"
    )]
    TooFewSlots {
        /// Worker nodes.
        workers: usize,
        /// Participants they hold.
        slots: usize,
        /// Jobs asked for.
        jobs: usize,
        /// Participants per job.
        participants: usize,
    },
    /// Zero of something that must be positive.
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
}

/// Node counts derived from a [`Size`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Nodes of the public cluster (aggregators).
    pub public_nodes: usize,
    /// Worker nodes per private cluster.
    pub workers: Vec<usize>,
}

impl Layout {
    /// All worker nodes.
    pub fn worker_count(&self) -> usize {
        self.workers.iter().sum()
    }
}

/// Splits the nodes: enough public nodes for every aggregator, the rest as workers spread
/// evenly over the private clusters.
pub fn layout(size: &Size) -> Result<Layout, SizeError> {
    for (v, name) in [
        (size.jobs, "jobs"),
        (size.private_clusters, "private-clusters"),
        (size.participants, "participants"),
    ] {
        if v == 0 {
            return Err(SizeError::Zero(name));
        }
    }
    let public_nodes = size.jobs.div_ceil(AGGREGATORS_PER_NODE);
    let needed = public_nodes + size.private_clusters;
    if size.nodes < needed {
        return Err(SizeError::TooFewNodes {
            nodes: size.nodes,
            public: public_nodes,
            jobs: size.jobs,
            private: size.private_clusters,
            needed,
        });
    }
    let total = size.nodes - public_nodes;
    let workers: Vec<usize> = (0..size.private_clusters)
        .map(|i| total / size.private_clusters + usize::from(i < total % size.private_clusters))
        .collect();
    let slots = total * PARTICIPANTS_PER_WORKER;
    if slots < size.jobs * size.participants {
        return Err(SizeError::TooFewSlots {
            workers: total,
            slots,
            jobs: size.jobs,
            participants: size.participants,
        });
    }
    Ok(Layout {
        public_nodes,
        workers,
    })
}

/// Name of the i-th private member cluster (and of its pool site).
pub fn private_cluster(i: usize) -> String {
    format!("site-{i}")
}

/// The testbed: the public cluster, without nodes until the placement has chosen their
/// type (see [`public_nodes`]), and the private clusters with their nodes.
pub fn testbed(layout: &Layout) -> TestbedConfig {
    let node = |name: String, cpu: &str, memory: &str, worker: bool| NodeConfig {
        name,
        cpu: cpu.into(),
        memory: memory.into(),
        gpus: 0,
        labels: if worker {
            BTreeMap::from([(WORKER_LABEL.to_string(), "true".to_string())])
        } else {
            BTreeMap::new()
        },
    };
    let mut members = vec![MemberConfig {
        name: PUBLIC_CLUSTER.into(),
        provider: PUBLIC_CLOUD.into(),
        region: PUBLIC_REGION.into(),
        tier: "public".into(),
        ..MemberConfig::default()
    }];
    for (i, &n) in layout.workers.iter().enumerate() {
        let cluster = private_cluster(i);
        members.push(MemberConfig {
            name: cluster.clone(),
            provider: "openstack".into(),
            region: format!("Region{i}"),
            tier: "private".into(),
            nodes: (0..n)
                .map(|j| {
                    node(
                        format!("{cluster}-w{j:03}"),
                        WORKER_CPU,
                        WORKER_MEMORY,
                        true,
                    )
                })
                .collect(),
            ..MemberConfig::default()
        });
    }
    TestbedConfig {
        members,
        ..TestbedConfig::default()
    }
}

/// The region and instance type the placement chose for the aggregators, with the
/// instance's size from the operator's catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedNode {
    /// Placed region.
    pub region: String,
    /// Placed instance type.
    pub instance_type: String,
    /// The instance's vCPUs.
    pub vcpus: f64,
    /// The instance's memory in GiB.
    pub memory_gib: f64,
    /// The instance's GPUs.
    pub gpus: u32,
}

impl PlacedNode {
    /// The choice in an AggregatorPlacement's `status`, sized from `catalog` (the catalog
    /// the placement was solved with, as JSON). Fails when the choice is not the public
    /// cluster's cloud and region, or the catalog lacks the type.
    pub fn from_status(status: &Value, catalog: &Value) -> Result<Self, String> {
        let selected = &status["selected"];
        let field = |k: &str| {
            selected[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("status.selected.{k} missing in {status}"))
        };
        let (cloud, region, instance_type) =
            (field("cloud")?, field("region")?, field("instanceType")?);
        if cloud != PUBLIC_CLOUD || region != PUBLIC_REGION {
            return Err(format!(
                "the placement chose {cloud}/{region}, not {PUBLIC_CLUSTER}'s {PUBLIC_CLOUD}/{PUBLIC_REGION}"
            ));
        }
        let t = catalog["instanceTypes"]
            .as_array()
            .and_then(|ts| {
                ts.iter()
                    .find(|t| t["cloud"] == cloud.as_str() && t["name"] == instance_type.as_str())
            })
            .ok_or_else(|| format!("the catalog lacks {cloud} instance type {instance_type}"))?;
        let number = |k: &str| {
            t[k].as_f64()
                .filter(|v| *v >= 0.0)
                .ok_or_else(|| format!("catalog type {instance_type}: bad {k}"))
        };
        Ok(Self {
            region,
            vcpus: number("vcpus")?,
            memory_gib: number("memoryGib")?,
            gpus: u32::try_from(t["gpus"].as_u64().unwrap_or(0))
                .map_err(|e| format!("catalog type {instance_type}: gpus: {e}"))?,
            instance_type,
        })
    }
}

/// The public cluster's nodes, `agg-NNN`: labelled with the placed region and instance
/// type as the cloud labels its nodes, so that the aggregators' node affinity admits them,
/// and each with the CPU, memory and GPUs of [`AGGREGATORS_PER_NODE`] such instances. An
/// aggregator requests at most what one instance leaves allocatable, less than its
/// capacity, so that many fit by their requests (and by pods); kwok stands one node in
/// for that many instances to keep the node count small.
pub fn public_nodes(layout: &Layout, placed: &PlacedNode) -> Vec<NodeConfig> {
    // Catalog sizes are whole millicores and MiB; rounding only drops float noise.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (cpu_millis, memory_mib) = (
        (placed.vcpus * 1000.0).round() as u64 * AGGREGATORS_PER_NODE as u64,
        (placed.memory_gib * 1024.0).round() as u64 * AGGREGATORS_PER_NODE as u64,
    );
    let per_node = u32::try_from(AGGREGATORS_PER_NODE).unwrap_or(u32::MAX);
    (0..layout.public_nodes)
        .map(|i| NodeConfig {
            name: format!("agg-{i:03}"),
            cpu: format!("{cpu_millis}m"),
            memory: format!("{memory_mib}Mi"),
            gpus: placed.gpus.saturating_mul(per_node),
            labels: BTreeMap::from([
                (REGION_LABEL.to_string(), placed.region.clone()),
                (
                    INSTANCE_TYPE_LABEL.to_string(),
                    placed.instance_type.clone(),
                ),
            ]),
        })
        .collect()
}

/// The ParticipantPool: one site per private cluster.
pub fn pool(layout: &Layout) -> Value {
    let sites: Vec<Value> = (0..layout.workers.len())
        .map(|i| {
            let name = private_cluster(i);
            json!({
                "name": name, "memberCluster": name,
                "cloud": "aws", "region": SITE_REGIONS[i % SITE_REGIONS.len()],
                "nodeSelector": { WORKER_LABEL: "true" },
                "dataVolume": { "hostPath": "/data/bench" },
            })
        })
        .collect();
    json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
        "metadata": { "name": POOL, "namespace": NAMESPACE },
        "spec": {
            "sites": sites,
            "minSpec": { "cpu": PARTICIPANT_CPU, "memory": PARTICIPANT_MEMORY },
            "selection": { "policy": "ResourceAware", "maxFailuresPerNode": 1, "failureCooldownSeconds": 600 },
        },
    })
}

/// Placement requirements that admit only the public cluster's cloud and region, so
/// every aggregator lands in a member cluster of the testbed.
fn requirements() -> Value {
    json!({
        "costWeight": 0.5,
        "dataResidency": { "allowedClouds": [PUBLIC_CLOUD], "allowedRegions": [PUBLIC_REGION] },
    })
}

/// The AggregatorPlacement that every job references in `shared` mode, restricted to
/// [`SHARED_INSTANCE_TYPE`].
pub fn shared_placement() -> Value {
    json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
        "metadata": { "name": PLACEMENT, "namespace": NAMESPACE },
        "spec": {
            "participants": { "poolRef": { "name": POOL } },
            "candidates": {
                "clouds": [PUBLIC_CLOUD], "regions": [PUBLIC_REGION],
                "instanceTypes": [SHARED_INSTANCE_TYPE],
            },
            "requirements": requirements(),
            "workload": { "modelSizeMB": 10, "roundsPerMonth": 1000, "localComputeSeconds": 30 },
        },
    })
}

/// The AggregatorPlacement [`INLINE_PROBE`]: the spec the operator applies for each
/// inline job (the pool and the requirements, nothing else), without an owner.
pub fn inline_probe_placement() -> Value {
    json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
        "metadata": { "name": INLINE_PROBE, "namespace": NAMESPACE },
        "spec": {
            "participants": { "poolRef": { "name": POOL } },
            "requirements": requirements(),
        },
    })
}

/// How jobs get their aggregator placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlacementMode {
    /// Every job references one AggregatorPlacement, solved once before the jobs come.
    Shared,
    /// Every job carries inline requirements: one AggregatorPlacement and one solve per job.
    Inline,
}

/// Name of the i-th job.
pub fn job_name(i: usize) -> String {
    format!("job-{i:04}")
}

/// The i-th FederatedJob.
pub fn job(i: usize, participants: usize, mode: PlacementMode) -> Value {
    let placement = match mode {
        PlacementMode::Shared => json!({ "placementRef": { "name": PLACEMENT } }),
        PlacementMode::Inline => json!({ "requirements": requirements() }),
    };
    json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": job_name(i), "namespace": NAMESPACE },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3 } },
            "dataset": { "format": "ImageFolder", "path": "xray" },
            "training": { "rounds": 5, "seed": 1 },
            "participants": {
                "poolRef": { "name": POOL },
                "minPerRound": 1, "maxPerRound": participants,
                "minResources": { "cpu": PARTICIPANT_CPU, "memory": PARTICIPANT_MEMORY },
            },
            "placement": placement,
            "modelStore": { "volume": { "size": "1Gi" } },
        },
    })
}

/// The i-th PersistentVolume of the public cluster: kwok clusters have no provisioner, so
/// each aggregator's model-store claim binds to one of these, as it would to a cloud disk.
pub fn model_store_volume(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": format!("model-store-{i:04}") },
        "spec": {
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadWriteOnce"],
            "hostPath": { "path": format!("/var/lib/fedsky/{i}") },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(jobs: usize, nodes: usize) -> Size {
        Size {
            jobs,
            nodes,
            private_clusters: 3,
            participants: 2,
        }
    }

    fn m5_large() -> PlacedNode {
        PlacedNode {
            region: "eu-central-1".into(),
            instance_type: "m5.large".into(),
            vcpus: 2.0,
            memory_gib: 8.0,
            gpus: 0,
        }
    }

    #[test]
    fn the_full_size_splits_into_ten_public_nodes_and_even_workers() {
        let l = layout(&size(1000, 500)).expect("layout");
        assert_eq!(l.public_nodes, 10);
        assert_eq!(l.workers, vec![164, 163, 163]);
        let tb = testbed(&l);
        let nodes: usize = tb.members.iter().map(|m| m.nodes.len()).sum();
        let public = public_nodes(&l, &m5_large());
        assert_eq!(nodes + public.len(), 500);
        assert_eq!(tb.members[0].tier, "public");
        assert!(tb.members[0].nodes.is_empty(), "added once placed");
        assert!(tb.members[1..].iter().all(|m| m.tier == "private"));
    }

    /// Parses a Kubernetes CPU (`m`) or memory (`Mi`) quantity as written here.
    fn quantity(q: &str, unit: &str) -> u64 {
        q.strip_suffix(unit)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{q} is not in {unit}"))
    }

    #[test]
    fn public_nodes_carry_the_placed_labels_and_fit_their_aggregators() {
        let l = layout(&size(250, 40)).expect("layout");
        let nodes = public_nodes(&l, &m5_large());
        assert_eq!(nodes.len(), 3, "250 aggregators, 100 a node");
        assert_eq!(nodes[2].name, "agg-002");
        for n in &nodes {
            assert_eq!(n.labels[REGION_LABEL], "eu-central-1");
            assert_eq!(n.labels[INSTANCE_TYPE_LABEL], "m5.large");
            assert_eq!((n.cpu.as_str(), n.memory.as_str()), ("200000m", "819200Mi"));
            assert_eq!(n.gpus, 0);
            // The operator's requests for m5.large (aggregator_node.rs), 100 of them.
            let (cpu, memory) = (1430, 5736);
            assert!(quantity(&n.cpu, "m") >= cpu * AGGREGATORS_PER_NODE as u64);
            assert!(quantity(&n.memory, "Mi") >= memory * AGGREGATORS_PER_NODE as u64);
        }
        // Fractional sizes stay exact, and GPUs scale too.
        let small = PlacedNode {
            vcpus: 0.25,
            memory_gib: 0.5,
            gpus: 1,
            ..m5_large()
        };
        let n = &public_nodes(&l, &small)[0];
        assert_eq!((n.cpu.as_str(), n.memory.as_str()), ("25000m", "51200Mi"));
        assert_eq!(n.gpus, 100);
    }

    fn catalog() -> Value {
        json!({ "version": "test", "instanceTypes": [
            { "cloud": "gcp", "name": "m5.large", "vcpus": 8.0, "memoryGib": 32.0, "gpus": 0 },
            { "cloud": "aws", "name": "m5.large", "vcpus": 2.0, "memoryGib": 8.0, "gpus": 0 },
        ]})
    }

    fn status(cloud: &str, region: &str, instance_type: &str) -> Value {
        json!({ "selected": { "cloud": cloud, "region": region, "instanceType": instance_type } })
    }

    #[test]
    fn the_placed_node_is_read_from_the_status_and_sized_from_the_catalog() {
        let placed =
            PlacedNode::from_status(&status("aws", "eu-central-1", "m5.large"), &catalog())
                .expect("placed");
        assert_eq!(placed, m5_large());
        let e = PlacedNode::from_status(&status("aws", "us-east-1", "m5.large"), &catalog())
            .expect_err("another region");
        assert!(e.contains("aws/us-east-1"), "{e}");
        let e = PlacedNode::from_status(&status("aws", "eu-central-1", "x9.huge"), &catalog())
            .expect_err("unknown type");
        assert!(e.contains("x9.huge"), "{e}");
        let e = PlacedNode::from_status(&json!({}), &catalog()).expect_err("unsolved");
        assert!(e.contains("cloud"), "{e}");
    }

    #[test]
    fn the_shared_placement_is_pinned_and_the_probe_matches_inline_jobs() {
        let shared = shared_placement();
        assert_eq!(
            shared["spec"]["candidates"]["instanceTypes"],
            json!([SHARED_INSTANCE_TYPE])
        );
        let probe = inline_probe_placement();
        let inline = job(0, 2, PlacementMode::Inline);
        // The operator's own placement for an inline job has just these two fields.
        assert_eq!(
            probe["spec"],
            json!({
                "participants": { "poolRef": inline["spec"]["participants"]["poolRef"] },
                "requirements": inline["spec"]["placement"]["requirements"],
            })
        );
    }

    #[test]
    fn sizes_that_cannot_work_are_refused_with_the_fix() {
        let e = layout(&size(1000, 12)).expect_err("too few nodes");
        assert!(e.to_string().contains("need 13"), "{e}");
        let e = layout(&Size {
            participants: 40,
            ..size(100, 10)
        })
        .expect_err("too few slots");
        assert!(e.to_string().contains("raise --nodes"), "{e}");
        assert_eq!(
            layout(&Size {
                jobs: 0,
                ..size(1, 10)
            }),
            Err(SizeError::Zero("jobs"))
        );
    }

    #[test]
    fn jobs_reference_the_shared_placement_or_carry_requirements() {
        let shared = job(7, 2, PlacementMode::Shared);
        assert_eq!(shared["metadata"]["name"], "job-0007");
        assert_eq!(
            shared["spec"]["placement"]["placementRef"]["name"],
            PLACEMENT
        );
        let inline = job(7, 2, PlacementMode::Inline);
        assert_eq!(
            inline["spec"]["placement"]["requirements"]["dataResidency"]["allowedRegions"][0],
            "eu-central-1"
        );
        assert_eq!(inline["spec"]["participants"]["maxPerRound"], 2);
    }

    #[test]
    fn the_pool_has_one_site_per_private_cluster() {
        let l = layout(&size(10, 8)).expect("layout");
        let p = pool(&l);
        let sites = p["spec"]["sites"].as_array().expect("sites");
        assert_eq!(sites.len(), 3);
        assert_eq!(sites[2]["memberCluster"], "site-2");
    }
}
