//! MemberCluster controller on real control planes: a hub running the operator in-process
//! and a member with a simulated node. The member's API server is frozen and thawed to
//! check that `Ready` goes false with the error and comes back by itself. The operator
//! acts as the chart's ServiceAccount; a Secret outside its namespaces is never asked for.

mod common;

use fedsky_crds::MemberCluster;
use fedsky_crds::conditions;
use fedsky_e2e::{ControlPlane, Options};
use fedsky_operator::run::{Settings, run};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn wait_mc<F: Fn(&MemberCluster) -> bool>(
    api: &Api<MemberCluster>,
    name: &str,
    what: &str,
    secs: u64,
    f: F,
) -> MemberCluster {
    let start = Instant::now();
    loop {
        if let Ok(Some(mc)) = api.get_opt(name).await
            && f(&mc)
        {
            return mc;
        }
        let last = api
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.status);
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; status: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn ready(mc: &MemberCluster) -> Option<bool> {
    mc.status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY))
        .map(|c| c.status == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_cluster_reports_reachability_and_recovers() {
    let hub = common::hub(&[]).await;
    let member = tokio::task::spawn_blocking(|| {
        ControlPlane::start(&Options {
            scheduler: false,
            ..Options::full("member")
        })
        .expect("member starts")
    })
    .await
    .expect("start");
    let hub_client = hub.admin.clone();
    let member_client = member.client().await.expect("member client");
    for i in 0..2 {
        member
            .add_node(
                &member_client,
                &format!("worker-{i}"),
                BTreeMap::new(),
                BTreeMap::from([("cpu".into(), "4".into()), ("memory".into(), "8Gi".into())]),
            )
            .await
            .expect("node");
    }

    let settings = Settings {
        ..Default::default()
    };
    let operator = tokio::spawn(run(hub.operator.clone(), settings));
    let mcs: Api<MemberCluster> = Api::all(hub_client.clone());
    let mc: MemberCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1",
        "kind": "MemberCluster",
        "metadata": { "name": "member-eu" },
        "spec": {
            "provider": "openstack",
            "region": "RegionFrankfurt",
            "tier": "private",
            "probeIntervalSeconds": 5,
            "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": "member-eu-kubeconfig" }
        }
    }))
    .expect("mc");
    mcs.create(&PostParams::default(), &mc)
        .await
        .expect("create mc");

    // No Secret yet: Ready false, Stalled true, naming the Secret.
    let m = wait_mc(&mcs, "member-eu", "KubeconfigSecretMissing", 30, |m| {
        ready(m) == Some(false)
    })
    .await;
    let st = m.status.expect("status");
    let stalled = conditions::find(&st.conditions, conditions::STALLED).expect("Stalled");
    assert_eq!(stalled.status, "True");
    assert!(
        stalled
            .message
            .contains("fedsky-system/member-eu-kubeconfig"),
        "{}",
        stalled.message
    );

    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "member-eu-kubeconfig", "namespace": "fedsky-system" },
        "stringData": { "kubeconfig": member.kubeconfig_yaml() }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(hub_client.clone(), "fedsky-system")
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");

    let m = wait_mc(&mcs, "member-eu", "Ready with 2 Ready nodes", 60, |m| {
        ready(m) == Some(true) && m.status.as_ref().and_then(|s| s.ready_nodes) == Some(2)
    })
    .await;
    let st = m.status.expect("status");
    assert_eq!(st.version.as_deref(), Some("v1.35.4"));
    assert_eq!(st.nodes, Some(2));
    assert_eq!(st.reachable, Some(true));
    assert!(!conditions::is_true(&st.conditions, conditions::STALLED));

    // A hung member: Ready false with the error, then back by itself.
    member.pause("kube-apiserver").expect("pause");
    let m = wait_mc(&mcs, "member-eu", "Ready=False while frozen", 60, |m| {
        ready(m) == Some(false)
    })
    .await;
    let cond = conditions::find(
        &m.status.as_ref().expect("status").conditions,
        conditions::READY,
    )
    .cloned()
    .expect("Ready");
    assert_eq!(cond.reason, "ClusterUnreachable");
    assert!(cond.message.contains("member-eu"), "{}", cond.message);
    member.resume("kube-apiserver").expect("resume");
    wait_mc(&mcs, "member-eu", "Ready again after thaw", 60, |m| {
        ready(m) == Some(true)
    })
    .await;

    // Transitions were recorded as Events on the MemberCluster.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(hub_client.clone());
    let list = events.list(&Default::default()).await.expect("events");
    let reasons: Vec<String> = list
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("member-eu"))
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(reasons.iter().any(|r| r == "Unreachable"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Reachable"), "{reasons:?}");

    // A kubeconfig Secret in a namespace the operator does not read: not Ready, with what
    // to do, and the operator never asked the hub for it.
    let elsewhere: MemberCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
        "metadata": { "name": "member-elsewhere" },
        "spec": { "provider": "openstack", "region": "RegionFrankfurt", "tier": "private",
                  "kubeconfigSecretRef": { "namespace": "default", "name": "member-eu-kubeconfig" } }
    }))
    .expect("mc");
    mcs.create(&PostParams::default(), &elsewhere)
        .await
        .expect("create mc");
    let m = wait_mc(
        &mcs,
        "member-elsewhere",
        "KubeconfigSecretNotReadable",
        30,
        |m| ready(m) == Some(false),
    )
    .await;
    let cond = conditions::find(
        &m.status.as_ref().expect("status").conditions,
        conditions::READY,
    )
    .cloned()
    .expect("Ready");
    assert_eq!(cond.reason, "KubeconfigSecretNotReadable");
    assert!(
        cond.message.contains("default/member-eu-kubeconfig")
            && cond.message.contains("rbac.secretNamespaces"),
        "{}",
        cond.message
    );
    hub.refusals.check();
    operator.abort();
}
