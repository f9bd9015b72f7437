//! What the benchmark creates: one public member cluster for the aggregators, private
//! member clusters whose worker nodes run participants, one ParticipantPool over them,
//! one PersistentVolume per aggregator and the FederatedJobs. Pure: sizes in, objects out.

use fedsky_e2e::testbed::{MemberConfig, NodeConfig, TestbedConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Hub namespace of the pool, the shared placement and the jobs.
pub const NAMESPACE: &str = "bench";
/// The public member cluster that hosts every aggregator.
pub const PUBLIC_CLUSTER: &str = "aws-eu-central-1";
/// ParticipantPool name.
pub const POOL: &str = "sites";
/// Name of the shared AggregatorPlacement.
pub const PLACEMENT: &str = "shared";
/// Aggregator pods per public node: kwok nodes of the harness admit 110 pods.
pub const AGGREGATORS_PER_NODE: usize = 100;
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

/// The testbed: the public cluster and the private clusters with their nodes.
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
        provider: "aws".into(),
        region: "eu-central-1".into(),
        tier: "public".into(),
        nodes: (0..layout.public_nodes)
            .map(|i| node(format!("agg-{i:03}"), "64", "256Gi", false))
            .collect(),
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
        });
    }
    TestbedConfig { members }
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
        "dataResidency": { "allowedClouds": ["aws"], "allowedRegions": ["eu-central-1"] },
    })
}

/// The AggregatorPlacement that every job references in `shared` mode.
pub fn shared_placement() -> Value {
    json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
        "metadata": { "name": PLACEMENT, "namespace": NAMESPACE },
        "spec": {
            "participants": { "poolRef": { "name": POOL } },
            "candidates": { "clouds": ["aws"], "regions": ["eu-central-1"] },
            "requirements": requirements(),
            "workload": { "modelSizeMB": 10, "roundsPerMonth": 1000, "localComputeSeconds": 30 },
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

    #[test]
    fn the_full_size_splits_into_ten_public_nodes_and_even_workers() {
        let l = layout(&size(1000, 500)).expect("layout");
        assert_eq!(l.public_nodes, 10);
        assert_eq!(l.workers, vec![164, 163, 163]);
        let tb = testbed(&l);
        let nodes: usize = tb.members.iter().map(|m| m.nodes.len()).sum();
        assert_eq!(nodes, 500);
        assert_eq!(tb.members[0].tier, "public");
        assert!(tb.members[1..].iter().all(|m| m.tier == "private"));
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
