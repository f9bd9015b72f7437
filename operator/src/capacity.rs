//! Free resources of nodes: allocatable minus what non-terminated pods request (GPUs
//! included), and whether a node can take a participant. Pure; unit-tested.

use crate::quantity;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Resource amounts in integer units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// `nvidia.com/gpu` count.
    pub gpus: u64,
}

impl Resources {
    /// Whether every amount of `self` is at least `need`'s.
    pub fn covers(&self, need: &Resources) -> bool {
        self.cpu_millis >= need.cpu_millis
            && self.memory_bytes >= need.memory_bytes
            && self.gpus >= need.gpus
    }

    /// Element-wise `self - other`, floored at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    /// Element-wise sum.
    pub fn add(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis + other.cpu_millis,
            memory_bytes: self.memory_bytes + other.memory_bytes,
            gpus: self.gpus + other.gpus,
        }
    }

    /// Element-wise maximum.
    pub fn max_each(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            gpus: self.gpus.max(other.gpus),
        }
    }

    /// From the API's `cpu` / `memory` quantities and GPU count; malformed quantities
    /// count as zero (the API server already validated them as quantities).
    pub fn from_amounts(a: &fedsky_crds::common::ResourceAmounts) -> Resources {
        Resources {
            cpu_millis: a
                .cpu
                .as_ref()
                .and_then(|q| quantity::millicores(&q.0).ok())
                .unwrap_or(0),
            memory_bytes: a
                .memory
                .as_ref()
                .and_then(|q| quantity::bytes(&q.0).ok())
                .unwrap_or(0),
            gpus: a.gpu.and_then(|g| u64::try_from(g).ok()).unwrap_or(0),
        }
    }

    /// As API amounts (`cpu` in millicores, `memory` in bytes).
    pub fn to_amounts(&self) -> fedsky_crds::common::ResourceAmounts {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        fedsky_crds::common::ResourceAmounts {
            cpu: Some(Quantity(format!("{}m", self.cpu_millis))),
            memory: Some(Quantity(self.memory_bytes.to_string())),
            gpu: Some(i32::try_from(self.gpus).unwrap_or(i32::MAX)),
        }
    }
}

const GPU: &str = "nvidia.com/gpu";

fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let get = |k: &str| list.and_then(|m| m.get(k)).map(|q| q.0.as_str());
    Resources {
        cpu_millis: get("cpu")
            .and_then(|q| quantity::millicores(q).ok())
            .unwrap_or(0),
        memory_bytes: get("memory")
            .and_then(|q| quantity::bytes(q).ok())
            .unwrap_or(0),
        gpus: get(GPU).and_then(|q| quantity::bytes(q).ok()).unwrap_or(0),
    }
}

/// The part of a Pod that its resource requests depend on. Pods are read in this form
/// because a member cluster holds thousands of them (every participant of every job): as
/// full `Pod` objects one listing of a site held ~25 MB (measured with heaptrack at 1,000
/// jobs); everything else in the JSON is skipped while parsing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodUsage {
    #[serde(default)]
    spec: Option<PodSpecUsage>,
    #[serde(default)]
    status: Option<PodPhase>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecUsage {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerUsage>,
    #[serde(default)]
    init_containers: Vec<ContainerUsage>,
    #[serde(default)]
    overhead: Option<BTreeMap<String, Quantity>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ContainerUsage {
    #[serde(default)]
    resources: Option<RequestsOnly>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RequestsOnly {
    #[serde(default)]
    requests: Option<BTreeMap<String, Quantity>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PodPhase {
    #[serde(default)]
    phase: Option<String>,
}

impl PodUsage {
    /// Requests as the scheduler counts them: the larger of the sum over containers and
    /// the largest init container, plus pod overhead.
    pub fn requests(&self) -> Resources {
        let Some(spec) = &self.spec else {
            return Resources::default();
        };
        let requests =
            |c: &ContainerUsage| from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        let sum = spec
            .containers
            .iter()
            .map(requests)
            .fold(Resources::default(), |a, b| a.add(&b));
        let init = spec
            .init_containers
            .iter()
            .map(requests)
            .fold(Resources::default(), |a, b| a.max_each(&b));
        sum.max_each(&init).add(&from_list(spec.overhead.as_ref()))
    }
}

/// Requests of non-terminated pods per node, added to as pages of pods are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage(HashMap<String, Resources>);

impl NodeUsage {
    /// Adds the pods' requests to the nodes they are bound to.
    pub fn add(&mut self, pods: &[PodUsage]) {
        for pod in pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                let requests = pod.requests();
                let e = self.0.entry(node.to_owned()).or_default();
                *e = e.add(&requests);
            }
        }
    }

    /// What the pods bound to `node` request.
    pub fn of(&self, node: &str) -> Resources {
        self.0.get(node).copied().unwrap_or_default()
    }
}

/// One node as a participant candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Ready condition true.
    pub ready: bool,
    /// Not cordoned.
    pub schedulable: bool,
    /// Labels match the site's node selector.
    pub matches_selector: bool,
    /// Allocatable minus requests of non-terminated pods bound to it.
    pub free: Resources,
}

/// Per-node view of the nodes, given what the cluster's pods request of each.
pub fn node_views(
    nodes: &[Node],
    used: &NodeUsage,
    selector: &BTreeMap<String, String>,
) -> Vec<NodeView> {
    let mut views: Vec<NodeView> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let allocatable = from_list(n.status.as_ref().and_then(|s| s.allocatable.as_ref()));
            let free = allocatable.saturating_sub(&used.of(&name));
            NodeView {
                ready: crate::controllers::member_cluster::status::node_is_ready(n),
                schedulable: !n
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false),
                matches_selector: selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
                free,
                name,
            }
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

/// Whether a node can run a participant needing `min`.
pub fn eligible(node: &NodeView, min: &Resources) -> bool {
    node.ready && node.schedulable && node.matches_selector && node.free.covers(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        name: &str,
        cpu: &str,
        mem: &str,
        gpu: Option<&str>,
        ready: bool,
        cordoned: bool,
        zone: &str,
    ) -> Node {
        let mut alloc = serde_json::json!({ "cpu": cpu, "memory": mem });
        if let Some(g) = gpu {
            alloc[GPU] = serde_json::json!(g);
        }
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "zone": zone } },
            "spec": { "unschedulable": cordoned },
            "status": {
                "allocatable": alloc,
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }]
            }
        }))
        .expect("node")
    }

    fn pod(node: &str, cpu: &str, mem: &str, phase: &str) -> PodUsage {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("p-{node}-{cpu}") },
            "spec": {
                "nodeName": node,
                "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu, "memory": mem } } }],
                "initContainers": [{ "name": "i", "resources": { "requests": { "cpu": "3", "memory": "1Mi" } } }]
            },
            "status": { "phase": phase }
        }))
        .expect("pod")
    }

    fn usage(pods: &[PodUsage]) -> NodeUsage {
        let mut used = NodeUsage::default();
        used.add(pods);
        used
    }

    #[test]
    fn free_is_allocatable_minus_running_requests() {
        let nodes = [node("a", "4", "8Gi", Some("1"), true, false, "eu")];
        let pods = [
            pod("a", "1", "2Gi", "Running"),
            pod("a", "2", "4Gi", "Succeeded"),
        ];
        let v = node_views(&nodes, &usage(&pods), &BTreeMap::new());
        // The init container (3 CPU) dominates the pod's 1 CPU of containers.
        assert_eq!(
            v[0].free,
            Resources {
                cpu_millis: 1000,
                memory_bytes: 6 << 30,
                gpus: 1
            }
        );
    }

    #[test]
    fn usage_read_in_pages_equals_usage_read_at_once() {
        let pods = [
            pod("a", "1", "1Gi", "Running"),
            pod("b", "500m", "1Gi", "Pending"),
            pod("a", "250m", "1Gi", "Running"),
        ];
        let mut paged = NodeUsage::default();
        paged.add(&pods[..1]);
        paged.add(&pods[1..]);
        assert_eq!(paged, usage(&pods));
        // Init containers (3 CPU) dominate both of a's pods.
        assert_eq!(usage(&pods).of("a").cpu_millis, 6000);
    }

    #[test]
    fn a_full_pod_reads_as_its_requests_and_overhead() {
        // What a member API server sends: fields the usage does not need are skipped.
        let pod: PodUsage = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "managedFields": [{ "manager": "kubectl", "fieldsV1": { "f:spec": {} } }]
            },
            "spec": {
                "nodeName": "a",
                "overhead": { "cpu": "100m" },
                "volumes": [{ "name": "data", "emptyDir": {} }],
                "containers": [
                    {
                        "name": "c",
                        "image": "x",
                        "env": [{ "name": "A", "value": "1" }],
                        "resources": {
                            "requests": { "cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1" },
                            "limits": { "cpu": "2" }
                        }
                    },
                    { "name": "sidecar" }
                ]
            },
            "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] }
        }))
        .expect("a pod");
        assert_eq!(
            pod.requests(),
            Resources {
                cpu_millis: 1100,
                memory_bytes: 1 << 30,
                gpus: 1
            }
        );
        // Unbound pods use no node's resources.
        let mut used = NodeUsage::default();
        used.add(&[PodUsage::default(), pod]);
        assert_eq!(used.of("a").gpus, 1);
        assert_eq!(used.0.len(), 1);
    }

    #[test]
    fn eligibility_checks_ready_cordon_selector_and_spec() {
        let nodes = [
            node("ok", "4", "8Gi", None, true, false, "eu"),
            node("notready", "4", "8Gi", None, false, false, "eu"),
            node("cordoned", "4", "8Gi", None, true, true, "eu"),
            node("elsewhere", "4", "8Gi", None, true, false, "us"),
            node("small", "1", "1Gi", None, true, false, "eu"),
        ];
        let sel = BTreeMap::from([("zone".to_string(), "eu".to_string())]);
        let min = Resources {
            cpu_millis: 2000,
            memory_bytes: 4 << 30,
            gpus: 0,
        };
        let names: Vec<_> = node_views(&nodes, &NodeUsage::default(), &sel)
            .into_iter()
            .filter(|n| eligible(n, &min))
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["ok"]);
        let gpu = Resources { gpus: 1, ..min };
        assert!(
            node_views(&nodes, &NodeUsage::default(), &sel)
                .iter()
                .all(|n| !eligible(n, &gpu))
        );
    }
}
