//! Real nodes run fedsky's images as containers: a kubelet, containerd and kube-proxy per
//! node, `restricted` Pod Security enforced by the API server, a `local` volume written
//! by uid 65532 through `fsGroup`, and a node whose kubelet dies turning NotReady.

use fedsky_e2e::{ControlPlane, NodeOptions, Options, RealNode, images, volumes, workload};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

const NS: &str = "workloads";

fn node(name: &str, region: &str) -> NodeOptions {
    NodeOptions {
        name: name.into(),
        labels: BTreeMap::from([
            ("topology.kubernetes.io/region".into(), region.into()),
            (
                "node.kubernetes.io/instance-type".into(),
                "lab.small".into(),
            ),
        ]),
        images: vec![images::archive("participant").expect("participant image")],
    }
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("manifest")
}

#[tokio::test(flavor = "multi_thread")]
async fn fedsky_images_run_as_restricted_containers_on_real_nodes() {
    let started = Instant::now();
    let (cp, mut nodes) = tokio::task::spawn_blocking(|| {
        let cp = ControlPlane::start(&Options::real_nodes("nodes")).expect("control plane");
        let nodes: Vec<RealNode> = [("n1", "lab-east"), ("n2", "lab-west")]
            .iter()
            .map(|(n, r)| RealNode::start(&cp, &node(n, r)).expect("node"))
            .collect();
        (cp, nodes)
    })
    .await
    .expect("start");
    eprintln!("control plane and 2 nodes Ready in {:?}", started.elapsed());
    let client = cp.client().await.expect("client");

    // Both nodes registered with their labels and InternalIP on the lab network.
    let listed = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("nodes");
    assert_eq!(listed.items.len(), 2);
    for n in &listed.items {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["node.kubernetes.io/instance-type"], "lab.small");
        let ours = nodes
            .iter()
            .find(|r| Some(r.name()) == n.metadata.name.as_deref())
            .expect("a node we started");
        let ip = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.clone())
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address);
        assert_eq!(ip, Some(ours.address().to_string()));
    }

    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &value(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": NS, "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted" } },
            })),
        )
        .await
        .expect("namespace");
    let image = images::reference("participant").expect("participant reference");

    // The API server enforces `restricted`: a pod running as root is refused.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let root_pod: Pod = value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "as-root" },
        "spec": { "containers": [{ "name": "c", "image": image,
                                   "securityContext": { "runAsUser": 0 } }] },
    }));
    let refused = pods
        .create(&PostParams::default(), &root_pod)
        .await
        .expect_err("restricted refuses root");
    assert!(refused.to_string().contains("PodSecurity"), "{refused}");

    // A local volume on n2 only: the Job's pod must go there and write as uid 65532.
    let dir = volumes::local_volume(&client, &nodes[1], "models-n2", "1Gi")
        .await
        .expect("volume");
    Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &value(serde_json::json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": { "name": "models" },
                "spec": { "accessModes": ["ReadWriteOnce"],
                          "storageClassName": volumes::LOCAL_STORAGE_CLASS,
                          "resources": { "requests": { "storage": "1Gi" } } },
            })),
        )
        .await
        .expect("claim");
    // The participant image writes an initial model (libtorch in the container).
    let args = ["init-model", "--out", "/models/initial.safetensors"].map(String::from);
    let job = workload::restricted_job("init-model", NS, &image, &args, "models", "/models")
        .expect("job");
    let ran = workload::run_to_completion(&client, &job, Duration::from_secs(180))
        .await
        .expect("the init-model Job succeeds");
    eprintln!("init-model container ran in {ran:?}");
    let pod = pods
        .list(&ListParams::default().labels("job-name=init-model"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("the Job's pod");
    assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some("n2"));
    let model = dir.join("initial.safetensors");
    let meta = std::fs::metadata(&model).expect("the container wrote the model");
    assert!(meta.len() > 1000, "model of {} bytes", meta.len());
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65532, 65532),
        "written as 65532 with fsGroup"
    );
    // The API server reaches the kubelet for the container's log.
    pods.logs(&pod.metadata.name.unwrap_or_default(), &Default::default())
        .await
        .expect("logs through the kubelet");

    // A dead kubelet: its Node stops renewing its lease and turns NotReady.
    nodes[0].stop_kubelet();
    let nodes_api = Api::<Node>::all(client.clone());
    wait_for("n1 to turn NotReady", Duration::from_secs(120), || {
        let api = nodes_api.clone();
        async move {
            let n = api.get("n1").await.ok()?;
            let ready = n
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status != "True").then_some(())
        }
    })
    .await;
    drop(nodes);
    drop(cp);
}
