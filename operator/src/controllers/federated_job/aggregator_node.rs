//! The node the aggregator's pod must run on in the placed member cluster: a node of the
//! placed region and instance type (a required node affinity on the well-known labels),
//! most of that node (resource requests), and, when the scheduler finds no such node, why
//! (from the pods' `PodScheduled` condition). Pure: the instance's size comes from the
//! catalog the placement was solved with, handed in.

use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_placement::catalog::Catalog;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

/// Node label with the cloud region (set by the cloud's node controller on EKS and GKE).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// Node label with the instance (machine) type.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
/// `AggregatorReady` reason while the scheduler cannot place the aggregator's pod.
pub const REASON_UNSCHEDULABLE: &str = "AggregatorUnschedulable";
/// `AggregatorReady` reason while a container's image cannot be had on the node.
pub const REASON_IMAGE_UNAVAILABLE: &str = "AggregatorImageUnavailable";
/// `AggregatorReady` reason while a container cannot be created or keeps crashing.
pub const REASON_CONTAINER_FAILING: &str = "AggregatorContainerFailing";

/// Waiting reasons of a container whose image the node cannot get: nothing changes until
/// the image, its name, the pull secret or the pull policy does.
const IMAGE_WAITING: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "RegistryUnavailable",
];
/// Waiting reasons of a container that the kubelet cannot create or that keeps exiting.
const CONTAINER_WAITING: [&str; 4] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

/// Left for the node's own agents (kube-proxy, the CNI and CSI node plugins, log and
/// metrics agents), whose DaemonSets request a few hundred millicores and MiB on EKS and
/// GKE. Without it the aggregator would fit only on a node running no DaemonSet at all.
const AGENTS_CPU_MILLIS: f64 = 500.0;
const AGENTS_MEMORY_MIB: f64 = 512.0;
/// The kubelet's hard eviction threshold (`memory.available<100Mi`), which allocatable
/// memory excludes.
const EVICTION_MIB: f64 = 100.0;

/// What the aggregator's container requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in MiB; also the memory limit.
    pub memory_mib: u64,
}

/// Where the aggregator's pod must run and how much of the node it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorNode {
    /// The placed region (`topology.kubernetes.io/region`).
    pub region: String,
    /// The placed instance type (`node.kubernetes.io/instance-type`).
    pub instance_type: String,
    /// `None` when the catalog does not list the instance type: the affinity alone then
    /// picks the node.
    pub requests: Option<Requests>,
}

impl AggregatorNode {
    /// The node for the placement's `option`, sized from `catalog` (the operator's
    /// built-in one, which the AggregatorPlacement controller solves with).
    pub fn placed(option: &PlacementOption, catalog: Option<&Catalog>) -> Self {
        let requests = catalog
            .and_then(|c| {
                c.instance_types()
                    .iter()
                    .find(|t| t.cloud == option.cloud && t.name == option.instance_type)
            })
            .map(|t| requests(t.vcpus, t.memory_gib));
        Self {
            region: option.region.clone(),
            instance_type: option.instance_type.clone(),
            requests,
        }
    }

    /// The pod's `affinity`: only nodes of the placed region and instance type, since the
    /// placement's cost and round time hold only there.
    pub fn affinity(&self) -> serde_json::Value {
        json!({
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{
                        "matchExpressions": [
                            { "key": REGION_LABEL, "operator": "In", "values": [self.region] },
                            { "key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [self.instance_type] },
                        ],
                    }],
                },
            },
        })
    }

    /// The container's `resources`: the requests, and a memory limit equal to the memory
    /// request, so that the aggregator never uses memory it was not promised and node
    /// memory pressure evicts others first (the kubelet starts with pods above their
    /// requests). No CPU limit: the fold may use every idle core, as the round time
    /// assumes.
    pub fn resources(&self) -> serde_json::Value {
        match self.requests {
            Some(r) => {
                let memory = format!("{}Mi", r.memory_mib);
                json!({
                    "requests": { "cpu": format!("{}m", r.cpu_millis), "memory": memory },
                    "limits": { "memory": memory },
                })
            }
            None => json!({}),
        }
    }

    /// What the pod needs, in words, for messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "a node with {REGION_LABEL}={} and {INSTANCE_TYPE_LABEL}={}",
            self.region, self.instance_type
        );
        if let Some(r) = self.requests {
            s.push_str(&format!(
                " and {}m CPU and {}Mi memory free",
                r.cpu_millis, r.memory_mib
            ));
        }
        s
    }
}

/// Requests for an instance of `vcpus` and `memory_gib`. The placement prices the whole
/// instance and predicts the round time with the fold on all its vCPUs, so the aggregator
/// asks for the whole node: what the kubelet leaves allocatable on such an instance, so
/// that it fits on a node of exactly that type, less room for the node's agents (at most
/// half of it, for the smallest types).
pub fn requests(vcpus: f64, memory_gib: f64) -> Requests {
    let cpu = allocatable_cpu_millis(vcpus);
    let memory = allocatable_memory_mib(memory_gib * 1024.0);
    let cpu = (cpu - AGENTS_CPU_MILLIS).max(cpu / 2.0);
    let memory = (memory - AGENTS_MEMORY_MIB).max(memory / 2.0);
    Requests {
        // Quantities are whole units; rounding down keeps them within allocatable.
        cpu_millis: cpu.floor() as u64,
        memory_mib: memory.floor() as u64,
    }
}

/// Allocatable CPU: the capacity less the kube-reserved CPU EKS and GKE both set, 6 % of
/// the first core, 1 % of the second, 0.5 % of the third and fourth, 0.25 % of the rest.
pub fn allocatable_cpu_millis(vcpus: f64) -> f64 {
    let millis = vcpus * 1000.0;
    millis
        - tiered(
            millis,
            &[
                (1000.0, 0.06),
                (2000.0, 0.01),
                (4000.0, 0.005),
                (f64::INFINITY, 0.0025),
            ],
        )
}

/// Allocatable memory: the capacity less GKE's kube-reserved memory (255 MiB below 1 GiB,
/// else 25 % of the first 4 GiB, 20 % of the next 4, 10 % of the next 8, 6 % up to
/// 128 GiB, 2 % above) and the eviction threshold. EKS reserves less by default (255 MiB
/// plus 11 MiB per pod the instance admits) on all but the smallest types, where the
/// agents' room covers the difference.
pub fn allocatable_memory_mib(mib: f64) -> f64 {
    let reserved = if mib < 1024.0 {
        255.0
    } else {
        tiered(
            mib,
            &[
                (4096.0, 0.25),
                (8192.0, 0.20),
                (16384.0, 0.10),
                (131_072.0, 0.06),
                (f64::INFINITY, 0.02),
            ],
        )
    };
    (mib - reserved - EVICTION_MIB).max(0.0)
}

/// `amount` charged by tiers of `(upper bound, rate)`, each rate on the part of the amount
/// between the previous bound and its own.
fn tiered(amount: f64, tiers: &[(f64, f64)]) -> f64 {
    let mut lower = 0.0;
    let mut charged = 0.0;
    for &(upper, rate) in tiers {
        if amount > lower {
            charged += (amount.min(upper) - lower) * rate;
        }
        lower = upper;
    }
    charged
}

/// The scheduler's message for the first of `pods` it cannot place (condition
/// `PodScheduled=False` with reason `Unschedulable`) and that pod's name; `None` while
/// every pod is placed or not yet tried. Pods being deleted are left out.
pub fn unschedulable(pods: &[Pod]) -> Option<(String, String)> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| {
            let c = p
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled")?;
            (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then(|| {
                (
                    p.metadata.name.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
        })
}

/// A container of the first of `pods` that cannot start (init containers first, as the
/// kubelet starts them): the condition reason ([`REASON_IMAGE_UNAVAILABLE`] or
/// [`REASON_CONTAINER_FAILING`]) and `pod`, `container`, the kubelet's waiting reason and
/// message. `None` while every container starts or runs. Pods being deleted are left out.
pub fn stuck_container(pods: &[Pod]) -> Option<(&'static str, String)> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| {
            let st = p.status.as_ref()?;
            let statuses = st.init_container_statuses.iter().flatten();
            statuses
                .chain(st.container_statuses.iter().flatten())
                .find_map(|c| {
                    let w = c.state.as_ref()?.waiting.as_ref()?;
                    let why = w.reason.as_deref()?;
                    let reason = if IMAGE_WAITING.contains(&why) {
                        REASON_IMAGE_UNAVAILABLE
                    } else if CONTAINER_WAITING.contains(&why) {
                        REASON_CONTAINER_FAILING
                    } else {
                        return None;
                    };
                    let pod = p.metadata.name.as_deref().unwrap_or_default();
                    let mut m = format!("pod {pod}, container {} ({}): {why}", c.name, c.image);
                    if let Some(detail) = w.message.as_deref().filter(|d| !d.is_empty()) {
                        m.push_str(": ");
                        m.push_str(detail);
                    }
                    Some((reason, m))
                })
        })
}

/// Why the aggregator cannot start in `cluster`, from its `pods`: unschedulable
/// ([`REASON_UNSCHEDULABLE`], with what the pod needs and the scheduler's own message,
/// which names the predicates that failed, the node affinity among them), or else a
/// container that cannot start ([`stuck_container`]).
pub fn blocked(
    pods: &[Pod],
    node: &AggregatorNode,
    cluster: &str,
) -> Option<(&'static str, String)> {
    if let Some((pod, why)) = unschedulable(pods) {
        return Some((
            REASON_UNSCHEDULABLE,
            format!("pod {pod} in {cluster} needs {}: {why}", node.describe()),
        ));
    }
    let (reason, what) = stuck_container(pods)?;
    Some((reason, format!("in {cluster}: {what}")))
}

/// Whether `pod` blocks the aggregator, and how (a change wakes the job).
pub fn block_reason(pod: &Pod) -> Option<&'static str> {
    let pods = std::slice::from_ref(pod);
    if unschedulable(pods).is_some() {
        return Some(REASON_UNSCHEDULABLE);
    }
    stuck_container(pods).map(|(reason, _)| reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(cloud: &str, region: &str, instance_type: &str) -> PlacementOption {
        PlacementOption {
            cloud: cloud.into(),
            region: region.into(),
            instance_type: instance_type.into(),
            ..PlacementOption::default()
        }
    }

    fn catalog() -> &'static Catalog {
        Catalog::builtin().expect("builtin catalog")
    }

    #[test]
    fn the_affinity_requires_the_placed_region_and_instance_type() {
        let node = AggregatorNode::placed(&option("aws", "eu-central-1", "m5.large"), None);
        let affinity: k8s_openapi::api::core::v1::Affinity =
            serde_json::from_value(node.affinity()).expect("affinity");
        let required = affinity
            .node_affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution)
            .expect("required, not preferred");
        assert_eq!(required.node_selector_terms.len(), 1, "one term: AND");
        let exprs: Vec<(String, String, Vec<String>)> = required.node_selector_terms[0]
            .match_expressions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.key, e.operator, e.values.unwrap_or_default()))
            .collect();
        assert_eq!(
            exprs,
            [
                (
                    "topology.kubernetes.io/region".to_string(),
                    "In".to_string(),
                    vec!["eu-central-1".to_string()]
                ),
                (
                    "node.kubernetes.io/instance-type".to_string(),
                    "In".to_string(),
                    vec!["m5.large".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn requests_take_the_instance_less_reservations_and_agents() {
        // m5.large, 2 vCPUs and 8 GiB: 70m and 1843.2 Mi reserved, 100 Mi eviction
        // threshold, then room for the agents.
        let node =
            AggregatorNode::placed(&option("aws", "eu-central-1", "m5.large"), Some(catalog()));
        assert_eq!(
            node.requests,
            Some(Requests {
                cpu_millis: 1930 - 500,
                // 8192 - 1843.2 - 100 - 512, rounded down.
                memory_mib: 5736,
            })
        );
        let r: k8s_openapi::api::core::v1::ResourceRequirements =
            serde_json::from_value(node.resources()).expect("resources");
        let requests = r.requests.expect("requests");
        assert_eq!(requests["cpu"].0, "1430m");
        assert_eq!(requests["memory"].0, "5736Mi");
        let limits = r.limits.expect("limits");
        assert_eq!(limits["memory"].0, "5736Mi", "memory limit = request");
        assert!(!limits.contains_key("cpu"), "no CPU limit");
    }

    #[test]
    fn requests_fit_the_allocatable_of_every_catalog_type() {
        for t in catalog().instance_types() {
            let r = requests(t.vcpus, t.memory_gib);
            let cpu = allocatable_cpu_millis(t.vcpus);
            let mem = allocatable_memory_mib(t.memory_gib * 1024.0);
            assert!(r.cpu_millis > 0 && r.memory_mib > 0, "{}: {r:?}", t.name);
            assert!(r.cpu_millis as f64 <= cpu, "{}: {r:?} > {cpu}m", t.name);
            assert!(r.memory_mib as f64 <= mem, "{}: {r:?} > {mem}Mi", t.name);
        }
        // 4 vCPUs, 16 GiB: 60 + 10 + 2 x 5 millicores, 1024 + 2 x 819.2 MiB reserved.
        assert_eq!(allocatable_cpu_millis(4.0), 3920.0);
        assert_eq!(
            allocatable_memory_mib(16384.0).round(),
            (16384.0 - 1024.0 - 819.2 - 819.2 - 100.0_f64).round()
        );
        assert_eq!(allocatable_memory_mib(512.0), 512.0 - 255.0 - 100.0);
        // The smallest type keeps half of what is allocatable rather than nothing.
        let micro = requests(0.25, 1.0);
        assert_eq!(micro.cpu_millis, 117);
        assert_eq!(micro.memory_mib, 334);
    }

    #[test]
    fn an_instance_type_the_catalog_lacks_gets_the_affinity_but_no_requests() {
        let node =
            AggregatorNode::placed(&option("aws", "eu-central-1", "x9.huge"), Some(catalog()));
        assert_eq!(node.requests, None);
        assert_eq!(node.resources(), json!({}));
        // The same name in another cloud is not the same type.
        let node =
            AggregatorNode::placed(&option("gcp", "europe-west3", "m5.large"), Some(catalog()));
        assert_eq!(node.requests, None);
    }

    fn pod(name: &str, scheduled: Option<(&str, Option<&str>, &str)>) -> Pod {
        let conditions: Vec<serde_json::Value> = scheduled
            .into_iter()
            .map(|(status, reason, message)| {
                json!({ "type": "PodScheduled", "status": status, "reason": reason, "message": message })
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "status": { "phase": "Pending", "conditions": conditions },
        }))
        .expect("pod")
    }

    const AFFINITY_MESSAGE: &str = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";

    #[test]
    fn an_unschedulable_pod_blocks_the_aggregator_with_the_schedulers_message() {
        let node =
            AggregatorNode::placed(&option("aws", "eu-central-1", "c5.xlarge"), Some(catalog()));
        let pods = [
            pod("agg-old", Some(("True", None, ""))),
            pod(
                "agg-new",
                Some(("False", Some("Unschedulable"), AFFINITY_MESSAGE)),
            ),
        ];
        let (reason, message) = blocked(&pods, &node, "aws-eu-central-1").expect("blocked");
        assert_eq!(reason, "AggregatorUnschedulable");
        assert!(message.starts_with("pod agg-new in aws-eu-central-1 needs a node with topology.kubernetes.io/region=eu-central-1 and node.kubernetes.io/instance-type=c5.xlarge and "), "{message}");
        assert!(message.ends_with(AFFINITY_MESSAGE), "{message}");
    }

    #[test]
    fn placed_untried_or_otherwise_pending_pods_block_nothing() {
        let node = AggregatorNode::placed(&option("aws", "eu-central-1", "m5.large"), None);
        for pods in [
            vec![],
            vec![pod("agg", None)],
            vec![pod("agg", Some(("True", None, "")))],
            // A binding in flight, not a verdict of the scheduler.
            vec![pod(
                "agg",
                Some(("False", Some("SchedulerError"), "binding rejected")),
            )],
        ] {
            assert_eq!(blocked(&pods, &node, "c"), None, "{pods:?}");
        }
        // A pod on its way out does not speak for the Deployment.
        let mut leaving = pod(
            "agg",
            Some(("False", Some("Unschedulable"), AFFINITY_MESSAGE)),
        );
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(unschedulable(&[leaving]), None);
    }

    fn waiting(name: &str, init: &[(&str, &str)], main: &[(&str, &str)]) -> Pod {
        let statuses = |cs: &[(&str, &str)]| -> Vec<serde_json::Value> {
            cs.iter()
                .map(|(c, reason)| {
                    let state = if reason.is_empty() {
                        json!({ "running": {} })
                    } else {
                        json!({ "waiting": { "reason": reason, "message": format!("{reason} details") } })
                    };
                    json!({ "name": c, "image": format!("img/{c}:1"), "imageID": "", "ready": false,
                            "restartCount": 0, "state": state })
                })
                .collect()
        };
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "status": { "phase": "Pending",
                        "conditions": [{ "type": "PodScheduled", "status": "True" }],
                        "initContainerStatuses": statuses(init),
                        "containerStatuses": statuses(main) },
        }))
        .expect("pod")
    }

    #[test]
    fn a_container_that_cannot_start_blocks_the_aggregator_with_the_kubelets_reason() {
        let node = AggregatorNode::placed(&option("aws", "eu-central-1", "t3.micro"), None);
        let pods = [waiting(
            "agg",
            &[("init-model", "ErrImageNeverPull")],
            &[("aggregator", "PodInitializing")],
        )];
        let (reason, message) = blocked(&pods, &node, "aws-eu-central-1").expect("blocked");
        assert_eq!(reason, REASON_IMAGE_UNAVAILABLE);
        assert_eq!(
            message,
            "in aws-eu-central-1: pod agg, container init-model (img/init-model:1): \
             ErrImageNeverPull: ErrImageNeverPull details"
        );
        assert_eq!(block_reason(&pods[0]), Some(REASON_IMAGE_UNAVAILABLE));
        let crashing = waiting(
            "agg",
            &[("init-model", "")],
            &[("aggregator", "CrashLoopBackOff")],
        );
        let (reason, message) = blocked(&[crashing], &node, "c").expect("blocked");
        assert_eq!(reason, REASON_CONTAINER_FAILING);
        assert!(message.contains("container aggregator"), "{message}");
        // Starting is not stuck.
        for pod in [
            waiting("agg", &[("init-model", "PodInitializing")], &[]),
            waiting(
                "agg",
                &[("init-model", "")],
                &[("aggregator", "ContainerCreating")],
            ),
            waiting("agg", &[], &[("aggregator", "")]),
        ] {
            assert_eq!(
                blocked(std::slice::from_ref(&pod), &node, "c"),
                None,
                "{pod:?}"
            );
            assert_eq!(block_reason(&pod), None);
        }
    }
}
