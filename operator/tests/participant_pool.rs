//! ParticipantPool controller on real control planes: two member clusters with nodes of
//! different sizes; the pool reports eligible nodes and free resources per site.

mod common;

use common::{apply_json, eventually, fleet};
use fedsky_crds::ParticipantPool;
use fedsky_crds::conditions;
use fedsky_operator::controllers::participant_pool::nodes::pod_usage;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reports_eligible_nodes_per_site() {
    let worker: &[(&str, &str)] = &[("fedsky.dev/fl-worker", "true")];
    let f = fleet(&[
        (
            "hospital-eu",
            "openstack",
            "RegionFrankfurt",
            "private",
            &[
                ("eu-big", worker, "8", "16Gi"),
                ("eu-small", worker, "1", "1Gi"),
            ],
        ),
        (
            "hospital-us",
            "openstack",
            "RegionVirginia",
            "private",
            &[
                ("us-big", worker, "4", "8Gi"),
                ("us-other", &[], "8", "16Gi"),
            ],
        ),
    ])
    .await;
    let ns = "default";
    apply_json(
        &f.hub_client,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1",
            "kind": "ParticipantPool",
            "metadata": { "name": "hospitals", "namespace": ns },
            "spec": {
                "sites": [
                    { "name": "eu", "memberCluster": "hospital-eu", "nodeSelector": { "fedsky.dev/fl-worker": "true" },
                      "dataVolume": { "hostPath": "/data" } },
                    { "name": "us", "memberCluster": "hospital-us", "nodeSelector": { "fedsky.dev/fl-worker": "true" },
                      "dataVolume": { "hostPath": "/data" } },
                    { "name": "asia", "memberCluster": "hospital-asia", "dataVolume": { "hostPath": "/data" } }
                ],
                "minSpec": { "cpu": "2", "memory": "4Gi" }
            }
        }),
    )
    .await;
    let pools: Api<ParticipantPool> = Api::namespaced(f.hub_client.clone(), ns);
    let status = eventually("pool status with both member sites observed", 90, || {
        let pools = pools.clone();
        async move {
            let p = pools.get("hospitals").await.map_err(|e| e.to_string())?;
            let s = p.status.ok_or("no status")?;
            if s.eligible_nodes == Some(2) {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        }
    })
    .await;
    let site = |n: &str| s_site(&status, n);
    assert_eq!(
        site("eu").eligible_nodes,
        1,
        "eu-small is below the minimum spec"
    );
    assert_eq!(
        site("us").eligible_nodes,
        1,
        "us-other does not match the selector"
    );
    assert!(!site("asia").healthy);
    assert!(
        site("asia")
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("hospital-asia")
    );
    let free_cpu = site("eu")
        .free
        .as_ref()
        .and_then(|f| f.cpu.clone())
        .map(|q| q.0);
    assert_eq!(free_cpu.as_deref(), Some("8000m"));
    let ready = conditions::find(&status.conditions, conditions::READY).expect("Ready");
    assert_eq!(ready.status, "False", "asia is missing");

    // Pods bound to eu-big use its resources; they are read in pages, and any page size
    // adds up to the same usage.
    let eu = f
        .members
        .iter()
        .find(|m| m.0 == "hospital-eu")
        .map(|m| m.2.clone())
        .expect("hospital-eu");
    let pods: Api<Pod> = Api::namespaced(eu.clone(), ns);
    for i in 0..5 {
        let pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("user-{i}") },
            "spec": {
                "nodeName": "eu-big",
                "containers": [{ "name": "c", "image": "busybox",
                    "resources": { "requests": { "cpu": "500m", "memory": "1Gi" } } }]
            }
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod created");
    }
    let paged = pod_usage(&eu, "hospital-eu", 2).await.expect("paged usage");
    let whole = pod_usage(&eu, "hospital-eu", 500).await.expect("usage");
    assert_eq!(paged, whole);
    assert_eq!(paged.of("eu-big").cpu_millis, 2500);
    eventually("the pool sees the pods' requests", 60, || {
        let pools = pools.clone();
        async move {
            let p = pools.get("hospitals").await.map_err(|e| e.to_string())?;
            let s = p.status.ok_or("no status")?;
            let cpu = s_site(&s, "eu").free.as_ref().and_then(|f| f.cpu.clone());
            match cpu {
                Some(q) if q.0 == "5500m" => Ok(()),
                other => Err(format!("eu free cpu {other:?}")),
            }
        }
    })
    .await;
    f.operator.abort();
}

fn s_site<'a>(
    s: &'a fedsky_crds::ParticipantPoolStatus,
    name: &str,
) -> &'a fedsky_crds::participant_pool::SiteStatus {
    s.sites
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("site {name} missing in {s:?}"))
}
