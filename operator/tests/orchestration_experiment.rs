//! Experiment two of issue 8 (issue 4, acceptance item 2): participant selection under
//! injected resource failures, the `Random` baseline against the resource-aware
//! orchestrator. Real control planes (a hub, an aggregator cluster and one cluster per
//! hospital, kwok nodes of different sizes), the operator in-process with the process
//! runtime, a real aggregator and libtorch participants. Every run gets the same failure
//! schedule on the same nodes (see `Faults`); what differs is where each policy puts
//! participants and whether failed ones are replaced. Writes one JSON record per run and
//! the tables of docs/experiments/orchestration.md.
//!
//! Ignored by a plain `cargo test` (it needs both binaries and runs for tens of
//! minutes); `make experiment-orchestration` builds them and runs it.

mod common;

use common::processes::{StopOnDrop, bin, kill_group, process_settings, synth};
use common::report::{self, env_or, write_atomically};
use common::{apply_json, capacity, kubeconfig_secret, system_namespace};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::JobPhase;
use fedsky_e2e::{ControlPlane, Options};
use fedsky_operator::run::{Settings, run};
use fedsky_operator::runtime::Runtime;
use fedsky_operator::runtime::process::ProcState;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, DeleteParams, PostParams};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One run's outcome, as written to the raw JSONL file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct RunRecord {
    run: u32,
    policy: String,
    seed: u64,
    /// `Succeeded`, `Failed` or `TimedOut`.
    outcome: String,
    /// The operator's reason when the job failed.
    reason: Option<String>,
    rounds_completed: u64,
    rounds: u64,
    seconds: f64,
    /// Participants started (initial and replacements).
    started: u32,
    /// Participants that stopped before the job ended (killed, OOM, node NotReady, exit ≠ 0).
    failed: u32,
    /// Replacements the operator started.
    replacements: u32,
    /// Failed participants whose part no replacement took over: failed − replacements.
    dropped: u32,
    /// Every participant: name, node, how it ended.
    participants: Vec<ParticipantRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ParticipantRecord {
    name: String,
    node: String,
    /// `completed`, `running at the end`, or the failure.
    end: String,
}

impl RunRecord {
    fn succeeded(&self) -> bool {
        self.outcome == "Succeeded" && self.rounds_completed == self.rounds
    }
}

/// Per-policy aggregates.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    policy: String,
    runs: usize,
    started: u32,
    dropped: u32,
    /// Pooled: all drop-outs / all participants started.
    dropout_rate: f64,
    /// Mean over runs of each run's drop-out rate.
    mean_run_dropout_rate: f64,
    mean_dropped_per_run: f64,
    succeeded: usize,
    success_rate: f64,
    replacements: u32,
}

fn summarise(records: &[RunRecord]) -> Vec<Summary> {
    let mut policies: Vec<&str> = Vec::new();
    for r in records {
        if !policies.contains(&r.policy.as_str()) {
            policies.push(&r.policy);
        }
    }
    policies
        .into_iter()
        .map(|p| {
            let rs: Vec<&RunRecord> = records.iter().filter(|r| r.policy == p).collect();
            let n = rs.len().max(1) as f64;
            let started: u32 = rs.iter().map(|r| r.started).sum();
            let dropped: u32 = rs.iter().map(|r| r.dropped).sum();
            let succeeded = rs.iter().filter(|r| r.succeeded()).count();
            Summary {
                policy: p.to_string(),
                runs: rs.len(),
                started,
                dropped,
                dropout_rate: f64::from(dropped) / f64::from(started.max(1)),
                mean_run_dropout_rate: rs
                    .iter()
                    .map(|r| f64::from(r.dropped) / f64::from(r.started.max(1)))
                    .sum::<f64>()
                    / n,
                mean_dropped_per_run: f64::from(dropped) / n,
                succeeded,
                success_rate: succeeded as f64 / n,
                replacements: rs.iter().map(|r| r.replacements).sum(),
            }
        })
        .collect()
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// The Markdown tables: per policy, then per run.
fn tables(records: &[RunRecord]) -> String {
    let mut s = String::from(
        "| selection | runs | participants started | drop-outs | drop-out rate (pooled) | drop-out rate (mean per run) | drop-outs per run | replacements | FL success rate |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for x in summarise(records) {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {} ({}/{}) |\n",
            x.policy,
            x.runs,
            x.started,
            x.dropped,
            pct(x.dropout_rate),
            pct(x.mean_run_dropout_rate),
            x.mean_dropped_per_run,
            x.replacements,
            pct(x.success_rate),
            x.succeeded,
            x.runs
        ));
    }
    s.push_str(
        "\nPer run (participants as `node: end`):\n\n\
         | run | selection | seed | outcome | rounds | s | started | failed | replaced | dropped | participants |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in records {
        let outcome = match &r.reason {
            Some(why) => format!("{} ({why})", r.outcome),
            None => r.outcome.clone(),
        };
        let parts: Vec<String> = r
            .participants
            .iter()
            .map(|p| format!("{}: {}", p.node, p.end))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {}/{} | {:.0} | {} | {} | {} | {} | {} |\n",
            r.run,
            r.policy,
            r.seed,
            outcome,
            r.rounds_completed,
            r.rounds,
            r.seconds,
            r.started,
            r.failed,
            r.replacements,
            r.dropped,
            parts.join("; ")
        ));
    }
    s
}

const BEGIN: &str = "<!-- results:begin (written by make experiment-orchestration) -->";

#[cfg(test)]
mod pure {
    use super::*;

    fn rec(policy: &str, outcome: &str, started: u32, failed: u32, replaced: u32) -> RunRecord {
        RunRecord {
            run: 1,
            policy: policy.into(),
            seed: 1,
            outcome: outcome.into(),
            reason: None,
            rounds_completed: if outcome == "Succeeded" { 3 } else { 1 },
            rounds: 3,
            seconds: 10.0,
            started,
            failed,
            replacements: replaced,
            dropped: failed.saturating_sub(replaced),
            participants: Vec::new(),
        }
    }

    #[test]
    fn summary_pools_and_averages_per_policy() {
        let rs = [
            rec("Random", "Failed", 3, 2, 0),
            rec("Random", "Succeeded", 3, 0, 0),
            rec("ResourceAware", "Succeeded", 5, 2, 2),
        ];
        let s = summarise(&rs);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].started, s[0].dropped, s[0].succeeded), (6, 2, 1));
        assert!((s[0].dropout_rate - 2.0 / 6.0).abs() < 1e-9);
        assert!((s[0].mean_run_dropout_rate - (2.0 / 3.0) / 2.0).abs() < 1e-9);
        assert!((s[0].success_rate - 0.5).abs() < 1e-9);
        assert_eq!((s[1].dropped, s[1].replacements), (0, 2));
        let t = tables(&rs);
        assert!(
            t.contains("| Random | 2 | 6 | 2 | 33 % | 33 % | 1.00 | 0 | 50 % (1/2) |"),
            "{t}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The testbed and the runs.

/// Nodes: name, cpu, memory. Per hospital cluster: three nodes big enough for the job's
/// 4Gi, and one that is not (too small in memory, or NotReady from the start).
/// A node: name, cpu, memory.
type NodeDef = (&'static str, &'static str, &'static str);

/// A hospital: site, region, nodes (one member cluster).
type Hospital = (&'static str, &'static str, &'static [NodeDef]);

const HOSPITALS: [Hospital; 3] = [
    (
        "asia",
        "ap-northeast-2",
        &[
            ("asia-1", "8", "16Gi"),
            ("asia-2", "8", "16Gi"),
            ("asia-3", "8", "16Gi"),
            ("asia-down", "8", "16Gi"),
        ],
    ),
    (
        "eu",
        "eu-central-1",
        &[
            ("eu-1", "8", "16Gi"),
            ("eu-2", "8", "16Gi"),
            ("eu-3", "8", "16Gi"),
            ("eu-small", "2", "1Gi"),
        ],
    ),
    (
        "us",
        "us-east-1",
        &[
            ("us-1", "8", "16Gi"),
            ("us-2", "8", "16Gi"),
            ("us-3", "8", "16Gi"),
            ("us-small", "2", "1Gi"),
        ],
    ),
];

/// The failure schedule, the same in every run.
struct Faults;

impl Faults {
    /// NotReady for the whole experiment (a dead node still listed in its cluster).
    const DEAD_FROM_START: &'static str = "asia-down";
    /// Allocatable memory below the job's request: a participant there is SIGKILLed
    /// this long after it starts, as the kernel's OOM killer would.
    const SMALL: [&'static str; 2] = ["eu-small", "us-small"];
    const OOM_AFTER: Duration = Duration::from_secs(3);
    /// When round 1 opens, the participant on this node is SIGKILLed (a crash).
    const CRASH_NODE: &'static str = "eu-1";
    /// When round 2 opens (one round completed), this node goes NotReady and its
    /// processes die with it.
    const NOT_READY_NODE: &'static str = "us-1";
}

fn cluster_of(node: &str) -> &'static str {
    match node.split('-').next() {
        Some("asia") => "hospital-asia",
        Some("eu") => "hospital-eu",
        _ => "hospital-us",
    }
}

struct Testbed {
    _planes: Vec<ControlPlane>,
    hub: kube::Client,
    members: BTreeMap<String, kube::Client>,
    runtime: Arc<Runtime>,
    operator: tokio::task::JoinHandle<Result<(), fedsky_operator::run::RunError>>,
}

/// Starts the hub and members (API server, etcd and kwok: no pods run here, the process
/// runtime stands in for them), registers the nodes and runs the operator.
async fn testbed(settings: Settings) -> Testbed {
    let mut members: Vec<(&str, &str, &str, Vec<NodeDef>)> = vec![(
        "aggregators",
        "aws",
        "eu-central-1",
        vec![("agg-1", "8", "16Gi")],
    )];
    for (_, _, nodes) in HOSPITALS {
        let name = cluster_of(nodes[0].0);
        members.push((name, "openstack", "RegionOne", nodes.to_vec()));
    }
    let names: Vec<String> = members.iter().map(|m| m.0.to_string()).collect();
    let (hub_plane, planes) = tokio::task::spawn_blocking(move || {
        let hub = ControlPlane::start(&Options::api_only("hub")).expect("hub starts");
        hub.install_fedsky_crds().expect("CRDs install");
        let planes: Vec<ControlPlane> = names
            .iter()
            .map(|n| {
                let opts = Options {
                    kwok: true,
                    ..Options::api_only(n)
                };
                ControlPlane::start(&opts).expect("member starts")
            })
            .collect();
        (hub, planes)
    })
    .await
    .expect("start");
    let hub = hub_plane.client().await.expect("hub client");
    system_namespace(&hub).await;
    let mut clients = BTreeMap::new();
    for ((name, provider, region, nodes), plane) in members.iter().zip(&planes) {
        let client = plane.client().await.expect("member client");
        for (node, cpu, mem) in nodes {
            plane
                .add_node(&client, node, BTreeMap::new(), capacity(cpu, mem))
                .await
                .expect("node");
        }
        let secret = kubeconfig_secret(&hub, name, plane).await;
        apply_json(
            &hub,
            serde_json::json!({
                "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
                "metadata": { "name": name },
                "spec": {
                    "provider": provider, "region": region, "probeIntervalSeconds": 5,
                    // The aggregator's cluster is public (placement requires it).
                    "tier": if *name == "aggregators" { "public" } else { "private" },
                    "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": secret }
                }
            }),
        )
        .await;
        clients.insert(name.to_string(), client);
    }
    let runtime = settings.runtime.clone();
    let operator = tokio::spawn(run(hub.clone(), settings));
    let mut planes = planes;
    planes.push(hub_plane);
    Testbed {
        _planes: planes,
        hub,
        members: clients,
        runtime,
        operator,
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Makes a node NotReady, or Ready again. kwok keeps reporting the nodes it manages
/// Ready (removing its annotation does not stop it), so the node is registered again
/// without kwok's annotation and with `Ready: False`, as a node whose kubelet stopped
/// looks; for Ready it is registered again with the annotation and kwok takes it back.
async fn set_ready(tb: &Testbed, node: &str, ready: bool) {
    let nodes: Api<Node> = Api::all(tb.members[cluster_of(node)].clone());
    let old = nodes.get(node).await.expect("node");
    let cap = old
        .status
        .as_ref()
        .and_then(|s| s.capacity.clone())
        .unwrap_or_default();
    nodes
        .delete(node, &DeleteParams::default())
        .await
        .expect("delete node");
    let start = Instant::now();
    while nodes.get_opt(node).await.expect("get node").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node {node} not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut spec = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": node, "labels": old.metadata.labels.clone().unwrap_or_default() },
        "spec": {},
        "status": { "capacity": cap, "allocatable": cap },
    });
    if ready {
        spec["metadata"]["annotations"] = serde_json::json!({"kwok.x-k8s.io/node": "fake"});
    } else {
        spec["status"]["conditions"] = serde_json::json!([{
            "type": "Ready", "status": "False", "reason": "KubeletStopped",
            "message": "injected by the orchestration experiment",
            "lastHeartbeatTime": now, "lastTransitionTime": now }]);
    }
    let obj: Node = serde_json::from_value(spec).expect("node manifest");
    nodes
        .create(&PostParams::default(), &obj)
        .await
        .expect("create node");
    loop {
        let n = nodes.get(node).await.expect("node");
        if node_ready(&n) == ready {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "node {node} did not become ready={ready}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What the harness saw of one participant.
struct Track {
    node: String,
    first_seen: Instant,
    /// Set when it ended: how.
    end: Option<String>,
}

async fn aggregator_status(state_dir: &Path, key: &str) -> Option<serde_json::Value> {
    let (http, base) = common::processes::local_aggregator(state_dir, key)?;
    http.get(format!("{base}/v1/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[allow(clippy::too_many_lines)]
async fn one_run(
    tb: &Testbed,
    state_dir: &Path,
    run_no: u32,
    policy: &str,
    seed: u64,
    rounds: u64,
    deadline: Duration,
) -> RunRecord {
    let rt = tb.runtime.process().expect("process runtime");
    let ns = format!(
        "r{run_no}-{}",
        if policy == "Random" { "rnd" } else { "orc" }
    );
    let key = format!("{ns}-xray");
    let hub = tb.hub.clone();
    let nsobj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("ns");
    Api::<Namespace>::all(hub.clone())
        .create(&PostParams::default(), &nsobj)
        .await
        .expect("namespace");
    let sites: Vec<serde_json::Value> = HOSPITALS
        .iter()
        .map(|(site, region, nodes)| {
            serde_json::json!({
                "name": site, "memberCluster": cluster_of(nodes[0].0), "cloud": "aws",
                "region": region, "dataVolume": { "persistentVolumeClaim": format!("xray-{site}") },
            })
        })
        .collect();
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
            "metadata": { "name": "hospitals", "namespace": ns },
            "spec": { "sites": sites, "minSpec": { "cpu": "1", "memory": "1Gi" },
                      "selection": { "policy": policy } }
        }),
    )
    .await;
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
            "metadata": { "name": "xray", "namespace": ns },
            "spec": {
                "participants": { "poolRef": { "name": "hospitals" } },
                "candidates": { "clouds": ["aws"], "regions": ["eu-central-1"] },
                "solver": { "type": "Exact" }
            }
        }),
    )
    .await;
    // The baseline has no replacement mechanism (the seed system's did not): budget 0.
    let max_replacements = if policy == "Random" { 0 } else { 5 };
    let start = Instant::now();
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
            "metadata": { "name": "xray", "namespace": ns },
            "spec": {
                "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3, "imageSize": 32 } },
                "dataset": { "format": "ImageFolder", "path": "xray",
                             "classes": ["Covid", "Normal", "Viral Pneumonia"] },
                "training": { "rounds": rounds, "localEpochs": 1, "batchSize": 16,
                              "learningRate": 0.05, "seed": seed },
                "participants": { "poolRef": { "name": "hospitals" },
                                  "minPerRound": 3, "maxPerRound": 3, "roundTimeoutSeconds": 120,
                                  "minResources": { "cpu": "1", "memory": "4Gi" },
                                  "maxReplacements": max_replacements },
                "placement": { "placementRef": { "name": "xray" } }
            }
        }),
    )
    .await;

    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), &ns);
    let mut tracks: BTreeMap<String, Track> = BTreeMap::new();
    let mut dead: BTreeSet<String> = BTreeSet::from([Faults::DEAD_FROM_START.to_string()]);
    let (mut crashed, mut not_ready) = (false, false);
    let (outcome, reason, done, replacements) = loop {
        let job = jobs.get("xray").await.expect("job");
        let st = job.status.clone().unwrap_or_default();
        // Participants as the runtime's files show them.
        let procs = rt.participants(&key);
        // Keyed by name and node: a replacement can take the name of the participant it
        // replaces (the operator numbers a site's participants from those it still sees).
        for p in &procs {
            let id = format!("{}@{}", p.name, p.meta.node);
            let t = tracks.entry(id).or_insert_with(|| Track {
                node: p.meta.node.clone(),
                first_seen: Instant::now(),
                end: None,
            });
            if t.end.is_none() {
                match p.state {
                    ProcState::Exited(0) => t.end = Some("completed".into()),
                    ProcState::Exited(c) => t.end = Some(format!("exited {c}")),
                    ProcState::Lost => t.end = Some("lost".into()),
                    _ => {}
                }
            }
        }
        for (id, t) in &mut tracks {
            let gone = !procs
                .iter()
                .any(|p| id == &format!("{}@{}", p.name, p.meta.node));
            if t.end.is_none() && gone {
                t.end = Some("removed by the operator".into());
            }
        }
        // Injections.
        let agg = aggregator_status(state_dir, &key).await;
        let phase = agg
            .as_ref()
            .and_then(|a| a["phase"].as_str().map(str::to_string));
        let round = agg.as_ref().and_then(|a| a["round"].as_u64()).unwrap_or(0);
        let completed = agg
            .as_ref()
            .and_then(|a| a["completedRounds"].as_u64())
            .unwrap_or(0);
        let collecting = phase.as_deref() == Some("collecting");
        let mut kill = |node_pred: &dyn Fn(&Track) -> bool, why: &str| {
            for p in procs.iter().filter(|p| p.state == ProcState::Running) {
                let id = format!("{}@{}", p.name, p.meta.node);
                let t = tracks.get_mut(&id).expect("tracked");
                if t.end.is_none()
                    && node_pred(t)
                    && let Some(pid) = rt.participant_pid(&key, &p.name)
                {
                    kill_group(pid);
                    t.end = Some(why.to_string());
                }
            }
        };
        if !crashed && collecting && round >= 1 {
            crashed = true;
            kill(&|t| t.node == Faults::CRASH_NODE, "killed (crash)");
        }
        if !not_ready && completed >= 1 {
            not_ready = true;
            set_ready(tb, Faults::NOT_READY_NODE, false).await;
            dead.insert(Faults::NOT_READY_NODE.to_string());
        }
        kill(&|t| dead.contains(&t.node), "node NotReady");
        kill(
            &|t| {
                Faults::SMALL.contains(&t.node.as_str())
                    && t.first_seen.elapsed() >= Faults::OOM_AFTER
            },
            "OOM-killed",
        );
        let replacements = u32::try_from(st.replacements.unwrap_or(0)).unwrap_or(0);
        let done = st.current_round.unwrap_or(0);
        let done = u64::try_from(done).unwrap_or(0);
        match st.phase {
            Some(JobPhase::Succeeded) => break ("Succeeded", None, done, replacements),
            Some(JobPhase::Failed) => {
                let why = st
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Failed")
                    .map(|c| c.reason.clone());
                break ("Failed", why, done, replacements);
            }
            _ if start.elapsed() > deadline => {
                break (
                    "TimedOut",
                    Some(format!("{:?}", st.phase)),
                    done,
                    replacements,
                );
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let seconds = start.elapsed().as_secs_f64();
    // Those still running finished with the job (or were stopped by its end).
    let participants: Vec<ParticipantRecord> = tracks
        .iter()
        .map(|(id, t)| ParticipantRecord {
            name: id.split('@').next().unwrap_or(id).to_string(),
            node: t.node.clone(),
            end: t.end.clone().unwrap_or_else(|| "running at the end".into()),
        })
        .collect();
    let failed = participants
        .iter()
        .filter(|p| p.end != "completed" && p.end != "running at the end")
        .count();
    let failed = u32::try_from(failed).unwrap_or(u32::MAX);
    let started = u32::try_from(participants.len()).unwrap_or(u32::MAX);
    let rec = RunRecord {
        run: run_no,
        policy: policy.to_string(),
        seed,
        outcome: outcome.to_string(),
        reason,
        rounds_completed: done,
        rounds,
        seconds,
        started,
        failed,
        replacements,
        dropped: failed.saturating_sub(replacements),
        participants,
    };
    // Clean up: the finalizer stops the job's processes and removes its files.
    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = Instant::now();
    while state_dir.join(&key).exists() || jobs.get_opt("xray").await.ok().flatten().is_some() {
        assert!(
            gone.elapsed() < Duration::from_secs(120),
            "job {ns}/xray was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if not_ready {
        set_ready(tb, Faults::NOT_READY_NODE, true).await;
    }
    rec
}

/// Writes the tables into the experiment's page and the summary into the results page.
fn write_tables(doc_path: &Path, records: &[RunRecord]) {
    let all = tables(records);
    report::write_tables(doc_path, BEGIN, &all);
    let summary = all.split("\nPer run").next().unwrap_or(&all);
    let results = doc_path.with_file_name("../results.md");
    report::write_tables(&results, BEGIN, summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "an experiment: make experiment-orchestration"]
async fn orchestration_experiment() {
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/experiments");
    let raw_path = docs.join("orchestration-raw.jsonl");
    let doc_path = docs.join("orchestration.md");
    // EXPERIMENT_TABLES_ONLY=1: the tables from the records already written (for
    // example by an interrupted run), without running anything.
    if std::env::var_os("EXPERIMENT_TABLES_ONLY").is_some() {
        let records: Vec<RunRecord> = common::report::read_records(&raw_path);
        write_tables(&doc_path, &records);
        return;
    }
    let participant = bin("FEDSKY_PARTICIPANT_BIN");
    let runs: u32 = env_or("EXPERIMENT_RUNS", 10);
    let rounds: u64 = env_or("EXPERIMENT_ROUNDS", 3);
    let deadline = Duration::from_secs(env_or("EXPERIMENT_RUN_TIMEOUT", 420));
    // EXPERIMENT_MAX_MINUTES: start no new pair of runs after this long (0: no limit).
    let budget = Duration::from_secs(60 * env_or("EXPERIMENT_MAX_MINUTES", 0u64));
    let began = Instant::now();

    let work = tempfile::tempdir().expect("tempdir");
    for (i, (site, _, _)) in HOSPITALS.iter().enumerate() {
        synth(
            &participant,
            &work.path().join(format!("xray-{site}")).join("xray"),
            i,
        );
    }
    let state_dir = work.path().join("state");
    let _stop = StopOnDrop(state_dir.clone());
    let settings = process_settings(&state_dir, work.path(), None);
    let tb = testbed(settings).await;
    set_ready(&tb, Faults::DEAD_FROM_START, false).await;

    let mut records = Vec::new();
    let mut raw = String::new();
    for i in 0..runs {
        if !budget.is_zero() && began.elapsed() > budget {
            println!("stopping after {i} runs per policy: EXPERIMENT_MAX_MINUTES reached");
            break;
        }
        let seed = 1000 + u64::from(i);
        // Alternate, so drift in the machine's load hits both policies alike.
        for policy in ["Random", "ResourceAware"] {
            let run_no = u32::try_from(records.len()).unwrap_or(0) + 1;
            let r = one_run(&tb, &state_dir, run_no, policy, seed, rounds, deadline).await;
            println!(
                "run {run_no} {policy} seed {seed}: {} {}/{} in {:.0} s, started {} failed {} replaced {} dropped {}",
                r.outcome,
                r.rounds_completed,
                r.rounds,
                r.seconds,
                r.started,
                r.failed,
                r.replacements,
                r.dropped
            );
            raw.push_str(&serde_json::to_string(&r).expect("json"));
            raw.push('\n');
            records.push(r);
            // Written after every run, so an interrupted experiment keeps what it measured.
            write_atomically(&raw_path, raw.as_bytes());
        }
    }
    write_tables(&doc_path, &records);
    tb.operator.abort();
}
