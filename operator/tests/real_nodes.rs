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
use fedsky_crds::federated_job::{FederatedJobStatus, ParticipantPhase};
use fedsky_e2e::{
    ControlPlane, NodeOptions, Options, RealNode, helm, images, load_balancer, rbac, volumes,
    workload,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

/// A hospital's data, written into claim `claim` by a Job of the participant image that
/// must succeed: on a `local` volume of `node`, or with `shared`, on a volume every node
/// of the hospital reaches (its file share), so a participant can move between nodes.
async fn hospital_data(
    client: &kube::Client,
    node: &RealNode,
    claim: &str,
    dominant: usize,
    shared: bool,
) {
    restricted_namespace(client, "fedsky-participants").await;
    let pv = format!("{claim}-pv");
    let (class, mode) = if shared {
        volumes::shared_volume(client, node.dir(), &pv, "1Gi", SHARE_CLASS)
            .await
            .expect("shared volume");
        (SHARE_CLASS, "ReadWriteMany")
    } else {
        volumes::local_volume(client, node, &pv, "1Gi")
            .await
            .expect("local volume");
        (volumes::LOCAL_STORAGE_CLASS, "ReadWriteOnce")
    };
    apply_json(
        client,
        serde_json::json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": claim, "namespace": "fedsky-participants" },
            "spec": { "accessModes": [mode], "storageClassName": class,
                      "resources": { "requests": { "storage": "1Gi" } } } }),
    )
    .await;
    // Non-IID: mostly class `dominant`.
    let image = images::reference("participant").expect("participant image");
    let args = [
        "synth",
        "--size",
        "32",
        "--test-per-class",
        "10",
        "--train",
        "150",
        "--share",
        "0.6",
        "--dominant-class",
        &dominant.to_string(),
        "--seed",
        &(100 + dominant).to_string(),
        "--out",
        "/data/xray",
    ]
    .map(String::from);
    let job = workload::restricted_job(
        &format!("synth-{claim}"),
        "fedsky-participants",
        &image,
        &args,
        claim,
        "/data",
    )
    .expect("synth job");
    workload::run_to_completion(client, &job, Duration::from_secs(180))
        .await
        .expect("the synthetic data is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_study_trains_on_real_containers() {
    let started = Instant::now();
    let worker = [("fedsky.dev/fl-worker", "true")];
    let (planes, mut nodes) = tokio::task::spawn_blocking(move || {
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
            // The eu hospital's second node: where its participant goes when its node fails.
            node(2, "eu-2", &worker, &["participant"]),
        ];
        (planes, nodes)
    })
    .await
    .expect("start");
    eprintln!(
        "4 control planes and 5 nodes Ready in {:?}",
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
    // The hub's only volumes are the test's local ones: the model archive is an emptyDir.
    let set = format!(
        "replicaCount=1,modelApi.persistence.enabled=false,images.pullPolicy=Never,images.operator.tag={tag},images.aggregator.tag={tag},images.participant.tag={tag}"
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
    // One per run below: a released volume keeps its data and is not bound again.
    for run in 1..=RUNS {
        volumes::local_volume(&clients[1], &nodes[1], &format!("model-store-{run}"), "5Gi")
            .await
            .expect("model store volume");
    }
    hospital_data(&clients[2], &nodes[2], "xray-eu", 0, true).await;
    hospital_data(&clients[3], &nodes[3], "xray-us", 1, false).await;
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
    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), ns);

    // 1. Uninterrupted.
    let applied = Instant::now();
    apply_json(&hub, job_manifest(ns, ROUNDS)).await;
    let job = succeeded(&jobs).await;
    eprintln!(
        "run 1: Succeeded {:?} after it was applied",
        applied.elapsed()
    );
    let st = job.status.expect("status");
    assert_eq!(
        st.round_progress.as_deref(),
        Some(format!("{ROUNDS}/{ROUNDS}").as_str())
    );
    let rounds: Vec<f64> = st
        .history
        .iter()
        .filter_map(|h| h.duration_seconds)
        .collect();
    eprintln!("run 1: round durations {rounds:?} s");
    let latest = st.latest_model.expect("latest model");
    // Downloaded from the aggregator's load-balancer address, through kube-proxy on agg-1.
    assert!(
        latest.uri.contains(&nodes[1].address().to_string()),
        "{}",
        latest.uri
    );
    let operator = common::aggregator_client(&hub, ns, "xray").await;
    common::download_matches(&operator, &latest.uri, &latest.sha256).await;
    let ran_on: Vec<(&str, &str)> = st
        .participants
        .iter()
        .map(|p| (p.site.as_str(), p.node.as_deref().unwrap_or("")))
        .collect();
    assert!(
        ran_on.len() == 2
            && ran_on.contains(&("us", "us-1"))
            && ran_on
                .iter()
                .any(|(s, n)| *s == "eu" && n.starts_with("eu-")),
        "{ran_on:?}"
    );
    // The model store was written through fsGroup by uid 65532.
    // (Which of the volumes the claim bound is the scheduler's choice.)
    let owners: Vec<(u32, u32)> = (1..=RUNS)
        .flat_map(|run| owners(&nodes[1].dir().join(format!("volumes/model-store-{run}"))))
        .collect();
    assert!(
        !owners.is_empty() && owners.iter().all(|o| *o == (65532, 65532)),
        "{owners:?}"
    );
    delete_job(&jobs, &clients[1]).await;

    // 2. The aggregator's pod deleted mid-round: the Deployment starts another, which
    // resumes from the checkpoint on its volume; the final model is the same, bit for bit
    // (updates are folded in participant order, whatever the timing).
    apply_json(&hub, job_manifest(ns, ROUNDS)).await;
    wait_round(&jobs, 1).await;
    let pods: Api<Pod> = Api::namespaced(clients[1].clone(), "fedsky-aggregators");
    let deleted = pods
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("fl.fedsky.dev/role=aggregator"),
        )
        .await
        .expect("delete the aggregator's pod");
    assert!(
        deleted.left().is_some_and(|l| !l.items.is_empty()),
        "no aggregator pod to delete"
    );
    let st = succeeded(&jobs).await.status.expect("status");
    let resumed = st.latest_model.expect("latest model");
    assert_eq!(
        resumed.sha256, latest.sha256,
        "a resumed run must end with the same model"
    );
    let operator = common::aggregator_client(&hub, ns, "xray").await;
    common::download_matches(&operator, &resumed.uri, &resumed.sha256).await;
    delete_job(&jobs, &clients[1]).await;

    // 3. A participant's container killed: its Job fails and another participant takes
    // its place at the same site; the job still succeeds.
    apply_json(&hub, job_manifest(ns, ROUNDS)).await;
    wait_round(&jobs, 1).await;
    let killed = kill_participant_container("eu");
    eprintln!("run 3: killed participant container {killed}");
    let st = succeeded(&jobs).await.status.expect("status");
    let eu: Vec<&str> = st
        .participants
        .iter()
        .filter(|p| p.site == "eu")
        .map(|p| p.name.as_str())
        .collect();
    assert!(
        eu.len() >= 2,
        "the eu participant was not replaced: {:?}",
        st.participants
    );
    delete_job(&jobs, &clients[1]).await;

    // 4. The eu participant's node loses its kubelet: the Node turns NotReady and the
    // participant is replaced on the hospital's other node; the job succeeds.
    apply_json(&hub, job_manifest(ns, NODE_FAILURE_ROUNDS)).await;
    let first = eventually("the eu participant to run", 300, || {
        let jobs = jobs.clone();
        async move {
            let st = status_now(&jobs).await?;
            st.participants
                .iter()
                .find(|p| p.site == "eu" && p.state == ParticipantPhase::Running)
                .and_then(|p| p.node.clone())
                .ok_or_else(|| format!("{:?}", st.participants))
        }
    })
    .await;
    let failed = nodes
        .iter()
        .position(|n| n.name() == first)
        .expect("eu node");
    nodes[failed].stop_kubelet();
    let other = if first == "eu-1" { "eu-2" } else { "eu-1" };
    let st = succeeded(&jobs).await.status.expect("status");
    assert!(
        st.participants
            .iter()
            .any(|p| p.site == "eu" && p.node.as_deref() == Some(other)),
        "the eu participant did not move from {first} to {other}: {:?}",
        st.participants
    );
    drop(nodes);
    drop(planes);
}

const RUNS: usize = 4;
/// Storage class of the hospitals' file shares.
const SHARE_CLASS: &str = "hospital-share";
const ROUNDS: i32 = 3;
/// Long enough (about a minute) for the Node to turn NotReady (16 s without a lease
/// renewal) and the participant to be replaced before the job ends: a kubelet's death
/// does not stop its containers, so the old participant trains on meanwhile.
const NODE_FAILURE_ROUNDS: i32 = 25;
/// Enough local work that a round lasts seconds: the faults below strike mid-round.
const LOCAL_EPOCHS: i32 = 4;

/// The covid-xray job, small: same seed every run, so runs are comparable.
fn job_manifest(ns: &str, rounds: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": "xray", "namespace": ns },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3, "imageSize": 32 } },
            "dataset": { "format": "ImageFolder", "path": "xray",
                         "classes": ["Covid", "Normal", "Viral Pneumonia"] },
            "training": { "rounds": rounds, "localEpochs": LOCAL_EPOCHS, "batchSize": 16, "learningRate": 0.05, "seed": 5 },
            "participants": { "poolRef": { "name": "hospitals" }, "minPerRound": 2, "maxPerRound": 2,
                              "maxReplacements": 3, "roundTimeoutSeconds": 300 },
            "placement": { "placementRef": { "name": "xray" } } } })
}

async fn succeeded(jobs: &Api<FederatedJob>) -> FederatedJob {
    common::job_succeeded(jobs, "xray", "the job to succeed on real containers", 600).await
}

/// The job's status as it stands (empty before the first report).
async fn status_now(jobs: &Api<FederatedJob>) -> Result<FederatedJobStatus, String> {
    let job = jobs.get("xray").await.map_err(|e| e.to_string())?;
    Ok(job.status.unwrap_or_default())
}

/// Waits until `round` rounds are done (the next one is then under way).
async fn wait_round(jobs: &Api<FederatedJob>, round: i32) {
    eventually(&format!("round {round} to complete"), 300, || {
        let jobs = jobs.clone();
        async move {
            let st = status_now(&jobs).await?;
            let done = st.history.iter().map(|h| h.round).max().unwrap_or(0);
            (done >= round)
                .then_some(())
                .ok_or_else(|| format!("{:?}", st.round_progress))
        }
    })
    .await;
}

/// Deletes the job and waits until it is gone and its aggregator with it.
async fn delete_job(jobs: &Api<FederatedJob>, public: &kube::Client) {
    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete job");
    let deployments: Api<Deployment> = Api::namespaced(public.clone(), "fedsky-aggregators");
    eventually("the job and its aggregator to be gone", 120, || {
        let (jobs, deployments) = (jobs.clone(), deployments.clone());
        async move {
            let job = jobs.get_opt("xray").await.map_err(|e| e.to_string())?;
            let left = deployments
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            (job.is_none() && left.items.is_empty())
                .then_some(())
                .ok_or_else(|| format!("job {}, {} deployments", job.is_some(), left.items.len()))
        }
    })
    .await;
}

/// Kills (SIGKILL) the container process of `site`'s running participant (its
/// environment names the site), as the kernel's OOM killer or a crash would; returns its PID.
fn kill_participant_container(site: &str) -> u32 {
    let site_env = format!("FEDSKY_SITE={site}");
    let find = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
                let cmdline = read("cmdline");
                let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
                argv0.ends_with(b"fedsky-participant")
                    && read("environ")
                        .split(|b| *b == 0)
                        .any(|v| v == site_env.as_bytes())
            })
    };
    let start = Instant::now();
    let pid = loop {
        if let Some(pid) = find() {
            break pid;
        }
        assert!(
            start.elapsed().as_secs() < 120,
            "no running participant container of {site}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");
    pid
}

/// Owners (uid, gid) of the files in `dir`.
fn owners(dir: &std::path::Path) -> Vec<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .expect("model store")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| (m.uid(), m.gid()))
        .collect()
}
