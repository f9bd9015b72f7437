//! Experiment one of issue 8: the seed system's placement experiment, measured. The same
//! three-hospital FederatedJob runs with the aggregator where a naive operator would put
//! it (the first hospital's region, a mid-size instance), where fedsky's cost-first pick
//! puts it, and where its latency-first pick (within the naive cost) puts it. Real control
//! planes, the operator in-process with the process runtime, a real aggregator and libtorch
//! participants; every participant reaches the aggregator through a Toxiproxy path with
//! the catalog's latency and rate for its pair of regions (`--network-emulator`), so the
//! round time depends on where the aggregator sits. A calibration run with every path
//! inside one region measures the local compute the placement model is given. Writes one
//! JSON record per run and the tables of docs/experiments/placement.md.
//!
//! Ignored by a plain `cargo test`; `make experiment-placement` builds the binaries and
//! runs it.

mod common;

use common::processes::{StopOnDrop, bin, process_settings, synth_sized};
use common::report::{env_or, write_atomically, write_tables};
use common::{apply_json, capacity, kubeconfig_secret, system_namespace};
use fedsky_crds::federated_job::JobPhase;
use fedsky_crds::{AggregatorPlacement, FederatedJob};
use fedsky_e2e::toxiproxy::Toxiproxy;
use fedsky_e2e::{ControlPlane, Options};
use fedsky_operator::run::{Settings, run};
use fedsky_operator::runtime::NetworkEmulator;
use fedsky_placement::Catalog;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Public regions with a member cluster the aggregator can run in (all on one control
/// plane: the process runtime runs the aggregator here whichever cluster it is placed in).
const PUBLIC: [(&str, &str); 9] = [
    ("aws", "eu-central-1"),
    ("aws", "us-east-1"),
    ("aws", "us-west-2"),
    ("aws", "ap-northeast-2"),
    ("aws", "ap-southeast-1"),
    ("gcp", "us-west1"),
    ("gcp", "us-central1"),
    ("gcp", "europe-west3"),
    ("gcp", "asia-northeast3"),
];

/// The hospitals: site and the AWS region whose network models it (the seed's Europe,
/// Asia and US hospitals).
const HOSPITALS: [(&str, &str); 3] = [
    ("eu", "eu-central-1"),
    ("asia", "ap-northeast-2"),
    ("us", "us-east-1"),
];

/// The naive placement: the first hospital's region on a mid-size general-purpose
/// instance, as in the seed's baseline.
const NAIVE: (&str, &str, &str) = ("aws", "eu-central-1", "m5.large");

/// Round trips per model transfer of fedsky's protocol on a warm connection (the round's
/// instruction, download request and evaluation report, the upload's way in: 3 per round).
/// Toxiproxy ends TCP on each side locally, so no slow start or handshake adds to them.
const ROUND_TRIPS_PER_TRANSFER: f64 = 1.5;

/// Pixels of the synthetic X-rays: small, so that local compute stays a small share of a
/// round on this machine (ResNet-18's size on the wire does not depend on it).
const IMAGE_SIZE: u32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Variant {
    /// Every path inside one region: measures local compute and protocol overhead.
    Calibration,
    Naive,
    CostFirst,
    LatencyFirst,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Self::Calibration => "calibration (one hospital, inside eu-central-1)",
            Self::Naive => "naive (first hospital's region, m5.large)",
            Self::CostFirst => "cost first (costWeight 1)",
            Self::LatencyFirst => "latency first within the naive cost (costWeight 0)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Calibration => "cal",
            Self::Naive => "naive",
            Self::CostFirst => "cost",
            Self::LatencyFirst => "lat",
        }
    }
}

/// One run, as written to the raw JSONL file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunRecord {
    variant: Variant,
    repetition: u32,
    aggregator: String,
    monthly_cost: f64,
    predicted_round_seconds: f64,
    /// What the model was given.
    model_size_mb: f64,
    local_compute_seconds: f64,
    /// Every round's duration from the job's status (version to version).
    round_seconds: Vec<f64>,
    final_accuracy: Option<f64>,
    outcome: String,
}

impl RunRecord {
    /// Mean round time without the first round (participants connect and warm up in it).
    fn measured(&self) -> f64 {
        mean(self.round_seconds.get(1..).unwrap_or(&[]))
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

const BEGIN: &str = "<!-- results:begin (written by make experiment-placement) -->";

/// The results tables from the records.
fn tables(records: &[RunRecord]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let of = |v: Variant| records.iter().filter(move |r| r.variant == v);
    let Some(cal) = of(Variant::Calibration).next() else {
        return "no calibration run recorded\n".into();
    };
    let naive_time = mean(
        &of(Variant::Naive)
            .map(RunRecord::measured)
            .collect::<Vec<_>>(),
    );
    let naive_cost = of(Variant::Naive)
        .next()
        .map_or(f64::NAN, |r| r.monthly_cost);
    let _ = writeln!(
        s,
        "Model {:.3} MB on the wire; local compute and protocol overhead {:.3} s per round \
         (calibration: one participant alone, in the aggregator's region, mean of rounds \
         2..{}); \
         {ROUND_TRIPS_PER_TRANSFER} round trips per transfer; 720 rounds and 730 aggregator \
         hours a month.\n",
        cal.model_size_mb,
        cal.local_compute_seconds,
        cal.round_seconds.len(),
    );
    s.push_str(
        "| placement | aggregator | predicted round (s) | measured round (s) | measured vs predicted | monthly cost (USD) | cost vs naive | time vs naive (measured) | runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for v in [Variant::Naive, Variant::CostFirst, Variant::LatencyFirst] {
        let runs: Vec<&RunRecord> = of(v).collect();
        let Some(first) = runs.first() else { continue };
        let per_run: Vec<f64> = runs.iter().map(|r| r.measured()).collect();
        let m = mean(&per_run);
        let p = first.predicted_round_seconds;
        let _ = writeln!(
            s,
            "| {} | {} | {p:.3} | {m:.3} ± {:.3} | {:+.1} % | {:.2} | {:+.1} % | {:+.1} % | {} |",
            v.label(),
            first.aggregator,
            sd(&per_run),
            100.0 * (m - p) / p,
            first.monthly_cost,
            100.0 * (first.monthly_cost - naive_cost) / naive_cost,
            100.0 * (m - naive_time) / naive_time,
            runs.len(),
        );
    }
    s.push_str(
        "\nMeasured round = mean over the runs of each run's mean round time (rounds 2..N, from \
         the FederatedJob's status history); ± is the standard deviation across runs.\n",
    );
    s
}

// ---------------------------------------------------------------------------------------
// The testbed and the runs.

struct Testbed {
    _planes: Vec<ControlPlane>,
    hub: kube::Client,
    operator: tokio::task::JoinHandle<Result<(), fedsky_operator::run::RunError>>,
}

fn cluster_name(cloud: &str, region: &str) -> String {
    format!("{cloud}-{region}")
}

/// A hub and two member control planes: one holds every public cluster (one
/// MemberCluster per region, all on the same API server), one every hospital (a node per
/// hospital, picked by a label).
async fn testbed(settings: Settings) -> Testbed {
    let (hub_plane, public, private) = tokio::task::spawn_blocking(|| {
        let hub = ControlPlane::start(&Options::api_only("hub")).expect("hub starts");
        hub.install_fedsky_crds().expect("CRDs install");
        let member = |n: &str| {
            ControlPlane::start(&Options {
                kwok: true,
                ..Options::api_only(n)
            })
            .expect("member starts")
        };
        (hub, member("public"), member("hospitals"))
    })
    .await
    .expect("start");
    let hub = hub_plane.client().await.expect("hub client");
    system_namespace(&hub).await;
    let public_client = public.client().await.expect("public client");
    public
        .add_node(
            &public_client,
            "agg-1",
            BTreeMap::new(),
            capacity("8", "32Gi"),
        )
        .await
        .expect("node");
    let private_client = private.client().await.expect("hospitals client");
    for (site, _) in HOSPITALS {
        let labels = BTreeMap::from([("fedsky.dev/site".to_string(), site.to_string())]);
        private
            .add_node(
                &private_client,
                &format!("{site}-1"),
                labels,
                capacity("8", "16Gi"),
            )
            .await
            .expect("node");
    }
    for (plane, name) in [(&public, "public"), (&private, "hospitals")] {
        kubeconfig_secret(&hub, name, plane).await;
    }
    let member = |name: String, provider: &str, region: &str, tier: &str, secret: &str| {
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
            "metadata": { "name": name },
            "spec": { "provider": provider, "region": region, "tier": tier, "probeIntervalSeconds": 10,
                      "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": secret } }
        })
    };
    for (cloud, region) in PUBLIC {
        let m = member(
            cluster_name(cloud, region),
            cloud,
            region,
            "public",
            "public-kubeconfig",
        );
        apply_json(&hub, m).await;
    }
    for (site, _) in HOSPITALS {
        let m = member(
            format!("hospital-{site}"),
            "openstack",
            "RegionOne",
            "private",
            "hospitals-kubeconfig",
        );
        apply_json(&hub, m).await;
    }
    let operator = tokio::spawn(run(hub.clone(), settings));
    Testbed {
        _planes: vec![public, private, hub_plane],
        hub,
        operator,
    }
}

/// What the placement model is told about the workload.
#[derive(Debug, Clone, Copy)]
struct Workload {
    model_size_mb: f64,
    local_compute_seconds: f64,
}

#[derive(Debug, Clone, Copy)]
struct RunSpec {
    /// `ResNet18` (45 MB, the seed's model size) or `SmallCNN` (0.6 MB).
    architecture: &'static str,
    variant: Variant,
    repetition: u32,
    rounds: u64,
    workload: Workload,
    naive_cost: Option<f64>,
}

fn placement_spec(spec: &RunSpec) -> serde_json::Value {
    let public_regions: Vec<&str> = PUBLIC.iter().map(|(_, r)| *r).collect();
    let (candidates, requirements) = match spec.variant {
        Variant::Calibration | Variant::Naive => (
            serde_json::json!({ "clouds": [NAIVE.0], "regions": [NAIVE.1], "instanceTypes": [NAIVE.2] }),
            serde_json::json!({ "costWeight": 0.5 }),
        ),
        Variant::CostFirst => (
            serde_json::json!({ "clouds": ["aws", "gcp"], "regions": public_regions }),
            serde_json::json!({ "costWeight": 1.0 }),
        ),
        Variant::LatencyFirst => (
            serde_json::json!({ "clouds": ["aws", "gcp"], "regions": public_regions }),
            serde_json::json!({ "costWeight": 0.0, "maxMonthlyCost": spec.naive_cost.expect("naive cost") }),
        ),
    };
    serde_json::json!({
        "participants": { "poolRef": { "name": "hospitals" } },
        "candidates": candidates,
        "requirements": requirements,
        "workload": {
            "modelSizeMB": spec.workload.model_size_mb,
            "roundsPerMonth": 720, "hoursPerMonth": 730,
            "localComputeSeconds": spec.workload.local_compute_seconds,
            "roundTripsPerTransfer": ROUND_TRIPS_PER_TRANSFER
        },
        "solver": { "type": "Exact" }
    })
}

#[allow(clippy::too_many_lines)]
async fn one_run(tb: &Testbed, state_dir: &Path, spec: &RunSpec) -> RunRecord {
    let ns = format!("{}-{}", spec.variant.slug(), spec.repetition);
    let hub = tb.hub.clone();
    let nsobj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("ns");
    Api::<Namespace>::all(hub.clone())
        .create(&PostParams::default(), &nsobj)
        .await
        .expect("namespace");
    // The calibration runs one hospital, in the aggregator's region: one participant
    // alone on this machine computes as a hospital's own node would, which is what the
    // model's local compute means (three participants computing at once on two cores
    // would each take longer than on their own machines).
    let calibration = spec.variant == Variant::Calibration;
    let hospitals = if calibration {
        &HOSPITALS[..1]
    } else {
        &HOSPITALS[..]
    };
    let per_round = hospitals.len();
    let sites: Vec<serde_json::Value> = hospitals
        .iter()
        .map(|(site, region)| {
            let region = if calibration { NAIVE.1 } else { region };
            serde_json::json!({
                "name": site, "memberCluster": format!("hospital-{site}"), "cloud": "aws",
                "region": region, "nodeSelector": { "fedsky.dev/site": site },
                "dataVolume": { "persistentVolumeClaim": format!("xray-{site}") },
            })
        })
        .collect();
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
            "metadata": { "name": "hospitals", "namespace": ns },
            "spec": { "sites": sites, "minSpec": { "cpu": "1", "memory": "1Gi" } }
        }),
    )
    .await;
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
            "metadata": { "name": "xray", "namespace": ns },
            "spec": placement_spec(spec)
        }),
    )
    .await;
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
            "metadata": { "name": "xray", "namespace": ns },
            "spec": {
                "model": { "builtin": { "architecture": spec.architecture, "numClasses": 3, "imageSize": IMAGE_SIZE } },
                "dataset": { "format": "ImageFolder", "path": "xray",
                             "classes": ["Covid", "Normal", "Viral Pneumonia"] },
                "training": { "rounds": spec.rounds, "localEpochs": 1, "batchSize": 32,
                              "learningRate": 0.01, "seed": 7 },
                "participants": { "poolRef": { "name": "hospitals" },
                                  "minPerRound": per_round, "maxPerRound": per_round,
                                  "roundTimeoutSeconds": 120,
                                  "minResources": { "cpu": "1", "memory": "1Gi" } },
                "placement": { "placementRef": { "name": "xray" } }
            }
        }),
    )
    .await;

    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), &ns);
    let placements: Api<AggregatorPlacement> = Api::namespaced(hub.clone(), &ns);
    let deadline = Duration::from_secs(60 + 30 * spec.rounds);
    let start = Instant::now();
    let job = loop {
        let job = jobs.get("xray").await.expect("job");
        let phase = job.status.as_ref().and_then(|s| s.phase);
        if matches!(phase, Some(JobPhase::Succeeded | JobPhase::Failed))
            || start.elapsed() > deadline
        {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let st = job.status.clone().unwrap_or_default();
    let outcome = match st.phase {
        Some(JobPhase::Succeeded) => "Succeeded".to_string(),
        Some(p) if start.elapsed() <= deadline => format!("{p:?}"),
        p => format!("TimedOut ({p:?})"),
    };
    let ap = placements.get("xray").await.expect("placement");
    let selected = ap
        .status
        .and_then(|s| s.selected)
        .expect("the placement was solved");
    // The model's size on the wire: the final version, downloaded.
    let model_size_mb = match &st.latest_model {
        Some(m) => {
            common::aggregator_client(&hub, &ns, "xray")
                .await
                .get(&m.uri)
                .send()
                .await
                .expect("model download")
                .bytes()
                .await
                .expect("model bytes")
                .len() as f64
                / 1e6
        }
        None => f64::NAN,
    };
    let round_seconds: Vec<f64> = st
        .history
        .iter()
        .filter(|h| h.round >= 1)
        .filter_map(|h| h.duration_seconds)
        .collect();
    let rec = RunRecord {
        variant: spec.variant,
        repetition: spec.repetition,
        aggregator: format!(
            "{} {} {}",
            selected.cloud, selected.region, selected.instance_type
        ),
        monthly_cost: selected.monthly_cost,
        predicted_round_seconds: selected.round_time_seconds,
        model_size_mb,
        local_compute_seconds: spec.workload.local_compute_seconds,
        round_seconds,
        final_accuracy: st.latest_model.as_ref().and_then(|m| m.accuracy),
        outcome,
    };
    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete");
    let key = format!("{ns}-xray");
    let gone = Instant::now();
    while state_dir.join(&key).exists() || jobs.get_opt("xray").await.ok().flatten().is_some() {
        assert!(
            gone.elapsed() < Duration::from_secs(120),
            "job {ns}/xray was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "an experiment: make experiment-placement"]
async fn placement_experiment() {
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/experiments");
    let raw_path = docs.join("placement-raw.jsonl");
    let doc_path = docs.join("placement.md");
    if std::env::var_os("EXPERIMENT_TABLES_ONLY").is_some() {
        let records: Vec<RunRecord> = common::report::read_records(&raw_path);
        write_tables(&doc_path, BEGIN, &tables(&records));
        write_tables(&docs.join("../results.md"), BEGIN, &tables(&records));
        return;
    }
    let participant = bin("FEDSKY_PARTICIPANT_BIN");
    let reps: u32 = env_or("EXPERIMENT_RUNS", 3);
    let rounds: u64 = env_or("EXPERIMENT_ROUNDS", 6);
    let images: u32 = env_or("EXPERIMENT_IMAGES", 32);

    let work = tempfile::tempdir().expect("tempdir");
    for (i, (site, _)) in HOSPITALS.iter().enumerate() {
        let out = work.path().join(format!("xray-{site}")).join("xray");
        synth_sized(&participant, &out, i, IMAGE_SIZE, images);
    }
    let toxiproxy = tokio::task::spawn_blocking(Toxiproxy::start)
        .await
        .expect("join")
        .expect("toxiproxy starts");
    let state_dir = work.path().join("state");
    let _stop = StopOnDrop(state_dir.clone());
    let settings = process_settings(
        &state_dir,
        work.path(),
        Some(NetworkEmulator::new(
            &toxiproxy.api(),
            Catalog::builtin().expect("catalog"),
        )),
    );
    let tb = testbed(settings).await;

    let mut records: Vec<RunRecord> = Vec::new();
    let mut raw = String::new();
    let mut keep = |r: RunRecord, records: &mut Vec<RunRecord>| {
        println!(
            "{} #{}: {} on {}, predicted {:.3} s, measured {:.3} s ({} rounds), {:.2} USD/month",
            r.variant.slug(),
            r.repetition,
            r.outcome,
            r.aggregator,
            r.predicted_round_seconds,
            r.measured(),
            r.round_seconds.len(),
            r.monthly_cost
        );
        assert_eq!(r.outcome, "Succeeded", "a run did not finish: {r:?}");
        raw.push_str(&serde_json::to_string(&r).expect("json"));
        raw.push('\n');
        // Written after every run, so an interrupted experiment keeps what it measured.
        write_atomically(&raw_path, raw.as_bytes());
        records.push(r);
    };

    // Calibration: local compute is the round time left when every path is inside one
    // region, less what the model itself predicts for those short paths.
    let architecture = match std::env::var("EXPERIMENT_MODEL").as_deref() {
        Ok("SmallCNN") => "SmallCNN",
        _ => "ResNet18",
    };
    let mut spec = RunSpec {
        architecture,
        variant: Variant::Calibration,
        repetition: 0,
        rounds,
        workload: Workload {
            model_size_mb: 1.0,
            local_compute_seconds: 0.0,
        },
        naive_cost: None,
    };
    let cal = one_run(&tb, &state_dir, &spec).await;
    // Its spec said 0 s of compute (and 1 MB, more than the model: inside one region the
    // transfer part is milliseconds either way).
    let network_only = cal.predicted_round_seconds;
    let size = cal.model_size_mb;
    spec.workload = Workload {
        model_size_mb: size,
        local_compute_seconds: (cal.measured() - network_only).max(0.0),
    };
    let cal = RunRecord {
        model_size_mb: size,
        local_compute_seconds: spec.workload.local_compute_seconds,
        ..cal
    };
    keep(cal, &mut records);

    for rep in 1..=reps {
        let mut naive_cost = None;
        for variant in [Variant::Naive, Variant::CostFirst, Variant::LatencyFirst] {
            let s = RunSpec {
                variant,
                repetition: rep,
                naive_cost,
                ..spec
            };
            let r = one_run(&tb, &state_dir, &s).await;
            if variant == Variant::Naive {
                naive_cost = Some(r.monthly_cost);
            }
            keep(r, &mut records);
        }
    }
    write_tables(&doc_path, BEGIN, &tables(&records));
    write_tables(&docs.join("../results.md"), BEGIN, &tables(&records));
    tb.operator.abort();
    drop(toxiproxy);
}
