//! Several independent control planes at once (a hub and two members), each with
//! controllers, a scheduler and kwok nodes, as the operator's cross-cluster tests need.

use fedsky_e2e::{ControlPlane, Options, TestNamespace};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_two_members_run_pods_on_simulated_nodes() {
    let planes = tokio::task::spawn_blocking(|| {
        ["hub", "member-eu", "member-us"].map(|name| ControlPlane::start(&Options::full(name)))
    })
    .await
    .expect("start task");
    let planes: Vec<ControlPlane> = planes
        .into_iter()
        .map(|p| p.unwrap_or_else(|e| panic!("control plane failed to start: {e}")))
        .collect();

    // Independent: different servers, and an object in one is absent from the others.
    let servers: Vec<&str> = planes.iter().map(ControlPlane::server).collect();
    assert_eq!(
        servers
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );

    for (i, cp) in planes.iter().enumerate().skip(1) {
        let client = cp.client().await.expect("client");
        let labels = BTreeMap::from([("fedsky.dev/fl-worker".to_string(), "true".to_string())]);
        let capacity = BTreeMap::from([
            ("cpu".to_string(), "4".to_string()),
            ("memory".to_string(), "8Gi".to_string()),
        ]);
        let node_name = format!("worker-{i}");
        cp.add_node(&client, &node_name, labels, capacity)
            .await
            .expect("add node");
        let nodes: Api<Node> = Api::all(client.clone());
        wait_for(
            &format!("{node_name} Ready in {}", cp.name()),
            Duration::from_secs(60),
            || {
                let nodes = nodes.clone();
                let node_name = node_name.clone();
                async move { nodes.get(&node_name).await.is_ok_and(|n| node_ready(&n)) }
            },
        )
        .await;

        let ns = TestNamespace::create(&client, "pods-run")
            .await
            .expect("namespace");
        // The pod needs the namespace's default ServiceAccount, which the controller
        // manager creates: proof that it runs.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "participant" },
            "spec": {
                "nodeSelector": { "fedsky.dev/fl-worker": "true" },
                "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }],
                "containers": [{ "name": "train", "image": "fedsky/participant:test",
                                 "resources": { "requests": { "cpu": "1", "memory": "1Gi" } } }]
            }
        }))
        .expect("pod manifest");
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &ns.name);
        wait_for("default ServiceAccount", Duration::from_secs(60), || {
            let sa = sa.clone();
            async move { sa.get("default").await.is_ok() }
        })
        .await;
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        // Scheduled by kube-scheduler onto the kwok node, then Running via kwok.
        wait_for(
            "pod Running on the simulated node",
            Duration::from_secs(90),
            || {
                let pods = pods.clone();
                let node_name = node_name.clone();
                async move {
                    pods.get("participant").await.is_ok_and(|p| {
                        let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                            == Some(node_name.as_str());
                        let running =
                            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                        on_node && running
                    })
                }
            },
        )
        .await;
    }

    // The hub saw none of the members' nodes.
    let hub = planes[0].client().await.expect("hub client");
    let hub_nodes = Api::<Node>::all(hub)
        .list(&Default::default())
        .await
        .expect("list hub nodes");
    assert!(hub_nodes.items.is_empty(), "hub must not see member nodes");
}
