//! The aggregator honours its placement on a real scheduler: in a public member cluster
//! (kube-apiserver, kube-scheduler, kube-controller-manager and kwok nodes carrying the
//! cloud's region and instance-type labels), the aggregator's pod lands on the node of the
//! placed region and instance type and not on a bigger, emptier one; a placement no node
//! matches leaves the pod Pending and the FederatedJob says why; a matching node added
//! later takes the pod.

mod common;

use common::{apply_json, capacity, eventually, fleet};
use fedsky_crds::FederatedJob;
use fedsky_crds::conditions;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

const REGION: &str = "topology.kubernetes.io/region";
const TYPE: &str = "node.kubernetes.io/instance-type";
const CLUSTER: &str = "aws-eu-central-1";
const NS: &str = "default";

/// An AggregatorPlacement that may only pick `instance_type` in eu-central-1, and a
/// FederatedJob placed by it, both named `name`.
async fn job_on(hub: &kube::Client, name: &str, instance_type: &str) {
    apply_json(hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "participants": { "poolRef": { "name": "sites" } },
            "candidates": { "clouds": ["aws"], "regions": ["eu-central-1"], "instanceTypes": [instance_type] },
            "workload": { "modelSizeMB": 10 },
            "solver": { "type": "Exact" }
        }
    }))
    .await;
    apply_json(hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3 } },
            "dataset": { "format": "ImageFolder", "path": "covid" },
            "training": { "rounds": 1, "seed": 1 },
            "participants": { "poolRef": { "name": "sites" }, "minPerRound": 1, "maxPerRound": 1 },
            "placement": { "placementRef": { "name": name } }
        }
    }))
    .await;
}

/// The aggregator pods of job `name`.
async fn aggregator_pods(member: &kube::Client, name: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(member.clone(), "fedsky-aggregators")
        .list(&ListParams::default().labels(&format!(
            "fl.fedsky.dev/job={NS}-{name},fl.fedsky.dev/role=aggregator"
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_else(|e| panic!("listing the aggregator's pods: {e}"))
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// `AggregatorReady` of job `name`: status, reason and message.
async fn aggregator_ready(
    jobs: &Api<FederatedJob>,
    name: &str,
) -> Result<(String, String, String), String> {
    let j = jobs.get(name).await.map_err(|e| e.to_string())?;
    let st = j.status.ok_or("no status")?;
    let c = conditions::find(&st.conditions, "AggregatorReady")
        .ok_or_else(|| format!("no AggregatorReady: {:#?}", st.conditions))?;
    Ok((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_runs_only_on_a_node_of_the_placed_region_and_instance_type() {
    let started = std::time::Instant::now();
    let f = fleet(&[(
        CLUSTER,
        "aws",
        "eu-central-1",
        "public",
        &[
            // The placed type in the placed region, as big as an m5.large.
            (
                "m5-large",
                &[(REGION, "eu-central-1"), (TYPE, "m5.large")],
                "2",
                "8Gi",
            ),
            // Bigger and emptier: the scheduler's scoring alone would prefer it.
            (
                "m5-4xlarge",
                &[(REGION, "eu-central-1"), (TYPE, "m5.4xlarge")],
                "16",
                "64Gi",
            ),
            // The placed type in another region.
            (
                "m5-large-us",
                &[(REGION, "us-east-1"), (TYPE, "m5.large")],
                "2",
                "8Gi",
            ),
        ],
    )])
    .await;
    let hub = f.hub_client.clone();
    let member = f.members[0].2.clone();
    // kwok clusters have no volume provisioner: a PV per model store, as a cloud cluster's
    // default StorageClass would make.
    for pv in ["store-1", "store-2"] {
        apply_json(
            &member,
            serde_json::json!({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": pv },
                "spec": { "capacity": { "storage": "5Gi" }, "accessModes": ["ReadWriteOnce"],
                          "hostPath": { "path": format!("/var/lib/fedsky/{pv}") } }
            }),
        )
        .await;
    }
    // No node is a worker: no participant starts, which this test does not need.
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
        "metadata": { "name": "sites", "namespace": NS },
        "spec": { "sites": [
            { "name": "eu", "memberCluster": CLUSTER, "cloud": "aws", "region": "eu-central-1",
              "nodeSelector": { "fedsky.dev/fl-worker": "true" }, "dataVolume": { "hostPath": "/data" } }
        ] }
    }))
    .await;
    job_on(&hub, "fits", "m5.large").await;
    // No node of this type anywhere.
    job_on(&hub, "nofit", "c5.xlarge").await;
    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), NS);

    // (a) On the m5.large in eu-central-1, and serving.
    let node = eventually("the aggregator scheduled", 45, || {
        let member = member.clone();
        async move {
            let pods = aggregator_pods(&member, "fits").await;
            pods.first()
                .and_then(node_of)
                .ok_or_else(|| format!("{pods:#?}"))
        }
    })
    .await;
    assert_eq!(
        node, "m5-large",
        "not the bigger node, nor the other region's"
    );
    eventually("fits: AggregatorReady", 30, || {
        let jobs = jobs.clone();
        async move {
            match aggregator_ready(&jobs, "fits").await? {
                (s, ..) if s == "True" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;

    // (b) Pending, and the job says why, naming the affinity.
    let (reason, message) = eventually("nofit: AggregatorUnschedulable", 30, || {
        let jobs = jobs.clone();
        async move {
            match aggregator_ready(&jobs, "nofit").await? {
                (s, r, m) if s == "False" && r == "AggregatorUnschedulable" => Ok((r, m)),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(reason, "AggregatorUnschedulable");
    assert!(
        message.contains("node.kubernetes.io/instance-type=c5.xlarge")
            && message.contains("topology.kubernetes.io/region=eu-central-1"),
        "{message}"
    );
    // The scheduler's own words, from the pod.
    assert!(message.contains("node affinity"), "{message}");
    let pods = aggregator_pods(&member, "nofit").await;
    assert!(
        pods.iter().all(|p| node_of(p).is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")),
        "{pods:#?}"
    );
    let nofit = jobs.get("nofit").await.expect("job");
    assert_eq!(
        nofit
            .status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .and_then(|p| p.member_cluster.as_deref()),
        Some(CLUSTER),
        "the status names where the pending aggregator is"
    );

    // A c5.xlarge joins the cluster: the pod lands there and the job goes on.
    f.members[0]
        .1
        .add_node(
            &member,
            "c5-xlarge",
            [(REGION, "eu-central-1"), (TYPE, "c5.xlarge")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capacity("4", "8Gi"),
        )
        .await
        .expect("node");
    eventually("nofit: AggregatorReady on the new node", 30, || {
        let (jobs, member) = (jobs.clone(), member.clone());
        async move {
            let on = aggregator_pods(&member, "nofit")
                .await
                .first()
                .and_then(node_of);
            match (aggregator_ready(&jobs, "nofit").await?, on.as_deref()) {
                ((s, ..), Some("c5-xlarge")) if s == "True" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    eprintln!("done in {:?}", started.elapsed());
    f.operator.abort();
}
