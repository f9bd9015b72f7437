//! The case study on real containers: a hub whose operator is installed by the chart and
//! runs as a container on a real node, a public cluster for the aggregator and two
//! hospitals' clusters, every pod a real container under `restricted` Pod Security. The
//! participants' synthetic X-rays are written by the participant image itself onto each
//! hospital's volume; the aggregator keeps its model store on a `local` volume that its
//! pod may write only through `fsGroup`; participants dial the aggregator's load-balancer
//! address across clusters with mutual TLS. The job must succeed and its model download
//! must match the sha256 in status.
//!
//! Needs the images of `make test-images` (`FEDSKY_IMAGE_ARCHIVES`); `make tests` builds
//! them first.

mod common;

use common::{apply_json, eventually, kubeconfig_secret};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::JobPhase;
use fedsky_e2e::{
    ControlPlane, NodeOptions, Options, RealNode, helm, images, load_balancer, rbac, volumes,
};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::time::Instant;

/// The participant image's tag is the tag of every image `make test-images` built.
fn tag() -> String {
    let r = images::reference("participant").expect("participant image");
    r.rsplit_once(':')
        .map(|(_, t)| t.to_string())
        .expect("tagged reference")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn archives(names: &[&str]) -> Vec<std::path::PathBuf> {
    names
        .iter()
        .map(|n| images::archive(n).expect("image archive"))
        .collect()
}

/// Namespaces where fedsky's pods run, with `restricted` Pod Security enforced.
async fn restricted_namespace(client: &kube::Client, name: &str) {
    apply_json(
        client,
        serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "labels": { "pod-security.kubernetes.io/enforce": "restricted" } } }),
    )
    .await;
}

/// A Job that writes `site`'s synthetic X-rays (non-IID: mostly class `dominant`) with the
/// participant image onto the claim `claim`, which the training pods then read.
fn synth_job(image: &str, claim: &str, dominant: usize) -> Job {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": format!("synth-{claim}"), "namespace": "fedsky-participants" },
        "spec": { "backoffLimit": 0, "template": { "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": { "runAsNonRoot": true, "fsGroup": 65532,
                                 "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "synth", "image": image, "imagePullPolicy": "Never",
                "args": ["synth", "--size", "32", "--test-per-class", "10", "--train", "90",
                         "--share", "0.6", "--dominant-class", dominant.to_string(),
                         "--seed", (100 + dominant).to_string(), "--out", "/data/xray"],
                "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true, "runAsUser": 65532, "capabilities": { "drop": ["ALL"] },
                    "seccompProfile": { "type": "RuntimeDefault" } },
                "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
            }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }],
        } } },
    }))
    .expect("job")
}

/// A hospital's data: a local volume on its first node, a claim for it, and the synthetic
/// images written into it by a Job that must succeed.
async fn hospital_data(client: &kube::Client, node: &RealNode, claim: &str, dominant: usize) {
    restricted_namespace(client, "fedsky-participants").await;
    volumes::local_volume(client, node, &format!("{claim}-pv"), "1Gi")
        .await
        .expect("volume");
    apply_json(
        client,
        serde_json::json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": claim, "namespace": "fedsky-participants" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } } }),
    )
    .await;
    let image = images::reference("participant").expect("participant image");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "fedsky-participants");
    jobs.create(&PostParams::default(), &synth_job(&image, claim, dominant))
        .await
        .expect("synth job");
    let name = format!("synth-{claim}");
    eventually(&format!("{name} to write the data"), 180, || {
        let (jobs, name) = (jobs.clone(), name.clone());
        async move {
            let st = jobs
                .get(&name)
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            assert_eq!(st.failed.unwrap_or(0), 0, "{name} failed");
            (st.succeeded.unwrap_or(0) > 0)
                .then_some(())
                .ok_or_else(|| format!("{st:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_study_trains_on_real_containers() {
    let started = Instant::now();
    let worker = [("fedsky.dev/fl-worker", "true")];
    let (planes, nodes) = tokio::task::spawn_blocking(move || {
        let planes: Vec<ControlPlane> = ["hub", "aws-eu-central-1", "hospital-eu", "hospital-us"]
            .iter()
            .map(|n| ControlPlane::start(&Options::real_nodes(n)).expect("control plane"))
            .collect();
        let node = |plane: usize, name: &str, l: &[(&str, &str)], imgs: &[&str]| {
            RealNode::start(
                &planes[plane],
                &NodeOptions {
                    name: name.into(),
                    labels: labels(l),
                    images: archives(imgs),
                },
            )
            .expect("node")
        };
        let nodes = vec![
            node(0, "hub-1", &[], &["operator"]),
            // The cloud labels its nodes with their region and instance type; the
            // aggregator's pod requires the placed ones.
            node(
                1,
                "agg-1",
                &[
                    ("topology.kubernetes.io/region", "eu-central-1"),
                    ("node.kubernetes.io/instance-type", "m5.large"),
                ],
                &["aggregator", "participant"],
            ),
            node(2, "eu-1", &worker, &["participant"]),
            node(3, "us-1", &worker, &["participant"]),
        ];
        (planes, nodes)
    })
    .await
    .expect("start");
    eprintln!(
        "4 control planes and 4 nodes Ready in {:?}",
        started.elapsed()
    );
    let clients = futures::future::join_all(planes.iter().map(ControlPlane::client)).await;
    let clients: Vec<kube::Client> = clients.into_iter().map(|c| c.expect("client")).collect();
    let _lb = load_balancer::serve(clients[1].clone(), nodes[1].address());

    // The hub: the chart, its operator a restricted container on hub-1.
    let hub = clients[0].clone();
    restricted_namespace(&hub, rbac::NAMESPACE).await;
    let tag = tag();
    let root = fedsky_e2e::repo_root();
    let set = format!(
        "replicaCount=1,images.pullPolicy=Never,images.operator.tag={tag},images.aggregator.tag={tag},images.participant.tag={tag}"
    );
    let out = helm(
        Some(planes[0].kubeconfig_path()),
        &root,
        &[
            "install",
            rbac::RELEASE,
            "charts/fedsky",
            "--namespace",
            rbac::NAMESPACE,
            "--set",
            &set,
        ],
    )
    .expect("helm");
    assert!(out.success, "helm install: {}{}", out.stdout, out.stderr);

    // Member clusters registered as the example does, their workloads restricted.
    restricted_namespace(&clients[1], "fedsky-aggregators").await;
    // The aggregator's model store: the public cluster's default storage class.
    volumes::local_volume(&clients[1], &nodes[1], "model-store", "5Gi")
        .await
        .expect("model store volume");
    hospital_data(&clients[2], &nodes[2], "xray-eu", 0).await;
    hospital_data(&clients[3], &nodes[3], "xray-us", 1).await;
    for (i, (name, provider, region, tier)) in [
        ("aws-eu-central-1", "aws", "eu-central-1", "public"),
        ("hospital-eu", "openstack", "RegionFrankfurt", "private"),
        ("hospital-us", "openstack", "RegionVirginia", "private"),
    ]
    .into_iter()
    .enumerate()
    {
        let secret = kubeconfig_secret(&hub, name, &planes[i + 1]).await;
        apply_json(&hub, serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
            "metadata": { "name": name },
            "spec": { "provider": provider, "region": region, "tier": tier, "probeIntervalSeconds": 5,
                      "kubeconfigSecretRef": { "namespace": rbac::NAMESPACE, "name": secret } } })).await;
    }

    let ns = "default";
    let site = |name: &str, cluster: &str, region: &str, claim: &str| {
        serde_json::json!({ "name": name, "memberCluster": cluster, "cloud": "aws", "region": region,
            "nodeSelector": { "fedsky.dev/fl-worker": "true" },
            "dataVolume": { "persistentVolumeClaim": claim } })
    };
    apply_json(
        &hub,
        serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
        "metadata": { "name": "hospitals", "namespace": ns },
        "spec": { "sites": [site("eu", "hospital-eu", "eu-central-1", "xray-eu"),
                            site("us", "hospital-us", "us-east-1", "xray-us")],
                  "minSpec": { "cpu": "500m", "memory": "1Gi" } } }),
    )
    .await;
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
        "metadata": { "name": "xray", "namespace": ns },
        "spec": { "participants": { "poolRef": { "name": "hospitals" } },
                  "candidates": { "clouds": ["aws"], "regions": ["eu-central-1"], "instanceTypes": ["m5.large"] },
                  "solver": { "type": "Exact" } } })).await;
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": "xray", "namespace": ns },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3, "imageSize": 32 } },
            "dataset": { "format": "ImageFolder", "path": "xray",
                         "classes": ["Covid", "Normal", "Viral Pneumonia"] },
            "training": { "rounds": 3, "localEpochs": 1, "batchSize": 16, "learningRate": 0.05, "seed": 5 },
            "participants": { "poolRef": { "name": "hospitals" }, "minPerRound": 2, "maxPerRound": 2,
                              "roundTimeoutSeconds": 300 },
            "placement": { "placementRef": { "name": "xray" } } } })).await;
    let applied = Instant::now();

    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), ns);
    let job = eventually("the job to succeed on real containers", 900, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            let st = j.status.clone().unwrap_or_default();
            match st.phase {
                Some(JobPhase::Succeeded) => Ok(j),
                Some(JobPhase::Failed) => panic!("job failed: {:?}", st.conditions),
                _ => Err(format!(
                    "{:?} {:?} {:?}",
                    st.phase, st.round_progress, st.conditions
                )),
            }
        }
    })
    .await;
    eprintln!("job Succeeded {:?} after it was applied", applied.elapsed());
    let st = job.status.expect("status");
    assert_eq!(st.round_progress.as_deref(), Some("3/3"));
    let latest = st.latest_model.expect("latest model");
    // Downloaded from the aggregator's load-balancer address, through kube-proxy on agg-1.
    assert!(
        latest.uri.contains(&nodes[1].address().to_string()),
        "{}",
        latest.uri
    );
    common::download_matches(&latest.uri, &latest.sha256).await;
    let mut ran_on: Vec<String> = st
        .participants
        .iter()
        .filter_map(|p| p.node.clone())
        .collect();
    ran_on.sort();
    ran_on.dedup();
    assert_eq!(ran_on, ["eu-1", "us-1"]);
    // The model store was written through fsGroup by uid 65532.
    let store = nodes[1].dir().join("volumes/model-store");
    let owners: Vec<(u32, u32)> = std::fs::read_dir(&store)
        .expect("model store")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        })
        .collect();
    assert!(
        !owners.is_empty() && owners.iter().all(|o| *o == (65532, 65532)),
        "{owners:?}"
    );
    drop(nodes);
    drop(planes);
}
