//! Killing the operator at random points of its reconciles, 20 times, leaves exactly one
//! aggregator and the right participants with no orphans in member clusters; deleting
//! the job afterwards removes everything.

mod common;

use common::{apply_json, eventually, fleet, label_as_placed};
use fedsky_crds::FederatedJob;
use fedsky_crds::conditions;
use fedsky_operator::run::{Settings, run};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};
use rand::{Rng, SeedableRng};
use std::time::Duration;

const WORKER: &[(&str, &str)] = &[("fedsky.dev/fl-worker", "true")];

async fn count<K>(client: &kube::Client, ns: &str, selector: &str) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    // A failed list must fail the test: counted as 0 it would pass "no orphans".
    Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items.len())
        .unwrap_or_else(|e| panic!("listing {} in {ns}: {e}", K::kind(&Default::default())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_operator_kills_leave_one_aggregator_and_no_orphans() {
    let f = fleet(&[
        (
            "aws-eu-central-1",
            "aws",
            "eu-central-1",
            "public",
            // Room for the requests of any AWS type the placement may choose; labelled
            // with that type once it has chosen.
            &[("agg-1", &[], "16", "64Gi")],
        ),
        (
            "hospital-eu",
            "openstack",
            "RegionFrankfurt",
            "private",
            &[("eu-1", WORKER, "8", "16Gi"), ("eu-2", WORKER, "8", "16Gi")],
        ),
        (
            "hospital-us",
            "openstack",
            "RegionVirginia",
            "private",
            &[("us-1", WORKER, "8", "16Gi"), ("us-2", WORKER, "8", "16Gi")],
        ),
    ])
    .await;
    // The fleet's own operator is the first replica to be killed.
    let mut operator = f.operator;
    let hub = f.hub_client.clone();
    let (aws, eu, us) = (&f.members[0].2, &f.members[1].2, &f.members[2].2);
    apply_json(aws, serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": "model-store" },
        "spec": { "capacity": { "storage": "5Gi" }, "accessModes": ["ReadWriteOnce"], "hostPath": { "path": "/var/lib/fedsky" } }
    }))
    .await;
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
        "metadata": { "name": "hospitals", "namespace": "default" },
        "spec": { "sites": [
            { "name": "eu", "memberCluster": "hospital-eu", "cloud": "aws", "region": "eu-central-1",
              "nodeSelector": { "fedsky.dev/fl-worker": "true" }, "dataVolume": { "hostPath": "/data" } },
            { "name": "us", "memberCluster": "hospital-us", "cloud": "aws", "region": "us-east-1",
              "nodeSelector": { "fedsky.dev/fl-worker": "true" }, "dataVolume": { "hostPath": "/data" } }
        ] }
    }))
    .await;
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": "xray", "namespace": "default" },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3 } },
            "dataset": { "format": "ImageFolder", "path": "covid" },
            "training": { "rounds": 5 },
            "participants": { "poolRef": { "name": "hospitals" }, "minPerRound": 2, "maxPerRound": 3 },
            "placement": { "requirements": { "costWeight": 0.5,
                "dataResidency": { "allowedClouds": ["aws"], "allowedRegions": ["eu-central-1"] } } }
        }
    }))
    .await;

    // Concurrently with the kills, so they still interrupt the aggregator's start.
    let labelled = tokio::spawn(label_as_placed(
        hub.clone(),
        "default",
        "xray",
        aws.clone(),
        "agg-1",
    ));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..1500))).await;
        operator.abort();
        let _ = operator.await;
        let settings = Settings {
            ..Default::default()
        };
        operator = tokio::spawn(run(f.operator_client.clone(), settings));
    }

    labelled.await.expect("node labelled");
    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), "default");
    eventually("ParticipantsReady after the restarts", 180, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            let ok = j
                .status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.conditions, "ParticipantsReady"));
            if ok {
                Ok(())
            } else {
                Err(format!("{:#?}", j.status))
            }
        }
    })
    .await;
    let sel = "fl.fedsky.dev/job=default-xray";
    assert_eq!(
        count::<Deployment>(aws, "fedsky-aggregators", sel).await,
        1,
        "exactly one aggregator"
    );
    assert_eq!(count::<Service>(aws, "fedsky-aggregators", sel).await, 1);
    let participants = count::<Job>(eu, "fedsky-participants", sel).await
        + count::<Job>(us, "fedsky-participants", sel).await;
    assert_eq!(
        participants, 3,
        "exactly maxPerRound participants, no duplicates from interrupted reconciles"
    );

    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("job gone", 60, || {
        let jobs = jobs.clone();
        async move {
            if jobs
                .get_opt("xray")
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                Ok(())
            } else {
                Err("still there".into())
            }
        }
    })
    .await;
    for (c, ns) in [
        (aws, "fedsky-aggregators"),
        (eu, "fedsky-participants"),
        (us, "fedsky-participants"),
    ] {
        assert_eq!(
            count::<Deployment>(c, ns, sel).await + count::<Job>(c, ns, sel).await,
            0,
            "orphans left in {ns}"
        );
    }
    operator.abort();
}
