//! Free resources of nodes: allocatable minus what non-terminated pods request (GPUs
//! included), and whether a node can take a participant. Pure; unit-tested.

use crate::quantity;
use k8s_openapi::api::core::v1::{Node, Pod};
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

fn from_list(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Resources {
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

/// Requests of a pod as the scheduler counts them: the larger of the sum over containers
/// and the largest init container, plus pod overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let sum = spec
        .containers
        .iter()
        .map(|c| from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref())))
        .fold(Resources::default(), |a, b| a.add(&b));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref())))
        .fold(Resources::default(), |a, b| a.max_each(&b));
    sum.max_each(&init).add(&from_list(spec.overhead.as_ref()))
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

/// Per-node view of the nodes, given all pods of the cluster.
pub fn node_views(
    nodes: &[Node],
    pods: &[Pod],
    selector: &BTreeMap<String, String>,
) -> Vec<NodeView> {
    let mut used: HashMap<&str, Resources> = HashMap::new();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            let e = used.entry(node).or_default();
            *e = e.add(&pod_requests(pod));
        }
    }
    let mut views: Vec<NodeView> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let allocatable = from_list(n.status.as_ref().and_then(|s| s.allocatable.as_ref()));
            let free = allocatable
                .saturating_sub(used.get(name.as_str()).unwrap_or(&Resources::default()));
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

    fn pod(node: &str, cpu: &str, mem: &str, phase: &str) -> Pod {
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

    #[test]
    fn free_is_allocatable_minus_running_requests() {
        let nodes = [node("a", "4", "8Gi", Some("1"), true, false, "eu")];
        let pods = [
            pod("a", "1", "2Gi", "Running"),
            pod("a", "2", "4Gi", "Succeeded"),
        ];
        let v = node_views(&nodes, &pods, &BTreeMap::new());
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
        let names: Vec<_> = node_views(&nodes, &[], &sel)
            .into_iter()
            .filter(|n| eligible(n, &min))
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["ok"]);
        let gpu = Resources { gpus: 1, ..min };
        assert!(
            node_views(&nodes, &[], &sel)
                .iter()
                .all(|n| !eligible(n, &gpu))
        );
    }
}
