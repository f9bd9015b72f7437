//! End to end over real gRPC with mTLS: a real aggregator on loopback and
//! participants training the small CNN on non-IID synthetic X-rays.

// The torch lock serialises whole tests (each with its own runtime), so
// holding it across awaits blocks nothing but the other tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::await_holding_lock)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fedsky_aggregator::client::{AggregatorClient, ClientConfig, ClientTls};
use fedsky_aggregator::coordinator::{AggregatorPhase, Coordinator, participant_seed};
use fedsky_aggregator::job::{JobConfig, JobConfigExt};
use fedsky_aggregator::metrics::Metrics;
use fedsky_aggregator::server::{RunningServer, TlsPem, Transport, serve};
use fedsky_aggregator::store::{Checkpoints, DirStore};
use fedsky_aggregator::{ParticipantId, UpdateLimits, decode_model};
use fedsky_participant::client::{Backoff, ClientOptions, RunSummary};
use fedsky_participant::data::ImageOptions;
use fedsky_participant::engine::{DataConfig, DataFormat, Engine, EngineHandle, LocalData};
use fedsky_participant::model::{Architecture, InputShape, ModelSpec, Net};
use fedsky_participant::state::{PendingUpdate, StateDir};
use fedsky_participant::synth::{self, SynthConfig};
use fedsky_participant::train::seed_everything;
use fedsky_participant::{FitParams, OptimizerKind, WireDtype, params};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

const TOKEN: &str = "participant-e2e-token-0123456789";
const SIZE: u32 = 32;

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    server: TlsPem,
}

impl Pki {
    fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "fedsky participant test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        sp.distinguished_name.push(DnType::CommonName, "aggregator");
        let cert = sp.signed_by(&key, &issuer).unwrap();
        let ca_pem = ca_cert.pem();
        Self {
            server: TlsPem {
                cert: cert.pem().into_bytes(),
                key: key.serialize_pem().into_bytes(),
                client_ca: ca_pem.clone().into_bytes(),
            },
            ca_pem,
            issuer,
        }
    }

    fn client(&self, endpoint: &str, id: &str) -> ClientConfig {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, id);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let mut c = ClientConfig::mtls(
            endpoint,
            TOKEN,
            ClientTls {
                ca: self.ca_pem.clone().into_bytes(),
                cert: cert.pem().into_bytes(),
                key: key.serialize_pem().into_bytes(),
                domain: Some("localhost".into()),
            },
        );
        c.connect_timeout = Duration::from_secs(2);
        c
    }
}

fn spec(size: u32, num_classes: i64) -> ModelSpec {
    ModelSpec {
        arch: Architecture::SmallCnn,
        input: InputShape::Image {
            channels: 1,
            height: i64::from(size),
            width: i64::from(size),
        },
        num_classes,
    }
}

/// The job's initial model, as the operator would write it with `init-model`.
fn initial_model(spec: &ModelSpec) -> fedsky_aggregator::Model {
    seed_everything(42);
    let net = Net::new(spec, tch::Device::Cpu).unwrap();
    decode_model(
        &params::encode(&net, WireDtype::F32).unwrap(),
        &UpdateLimits::default(),
    )
    .unwrap()
}

async fn start_aggregator(
    job: &str,
    store: &Path,
    pki: &Pki,
    addr: &str,
    spec: &ModelSpec,
) -> RunningServer {
    let job = JobConfig::parse(job).unwrap();
    let core = Coordinator::start(
        job,
        TOKEN.into(),
        Checkpoints::new(Arc::new(DirStore::new(store))),
        Some(initial_model(spec)),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let grpc = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "bind {addr}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(core, grpc, http, Transport::MutualTls(pki.server.clone()))
        .await
        .unwrap()
}

fn engine_handle(root: &Path) -> EngineHandle {
    engine_for(image_config(root, SIZE), spec(SIZE, 3))
}

fn engine_for(config: DataConfig, spec: ModelSpec) -> EngineHandle {
    EngineHandle::spawn(move || {
        let data = LocalData::open(&config)?;
        Engine::new(&spec, tch::Device::Cpu, data, cpu_options())
    })
    .unwrap()
}

fn options(state: Option<StateDir>) -> ClientOptions {
    ClientOptions {
        labels: HashMap::from([("site".to_string(), "test".to_string())]),
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
            factor: 2.0,
        },
        evaluate_each_round: true,
        give_up_after: Some(Duration::from_secs(60)),
        state_dir: state,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sites_raise_accuracy_over_rounds_after_waiting_for_the_aggregator() {
    let _g = torch_lock();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    // Non-IID: every site mostly sees one class (60 %); test splits balanced.
    let ids = ["hospital-eu", "hospital-asia", "hospital-us"];
    for (i, id) in ids.iter().enumerate() {
        let cfg = SynthConfig::skewed(SIZE, 90, 10, i, 0.6, 100 + i as u64);
        synth::write_dataset(&tmp.path().join(id), &cfg).unwrap();
    }
    let pki = Pki::new();
    // Reserve a port, release it, and start the participants first: they
    // must back off and retry until the aggregator appears.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("https://localhost:{port}");
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let client = AggregatorClient::connect_lazy(&pki.client(&endpoint, id)).unwrap();
            let engine = engine_handle(&tmp.path().join(id));
            tokio::spawn(fedsky_participant::run(client, engine, options(None)))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let rounds = 5;
    // Learning rate 0.01, as the case study's job: at 0.02 the non-IID sites
    // pulled the last global model apart now and then (final accuracy 0.66
    // and 0.72 in 2 of 11 runs, one class never predicted); at 0.01 the final
    // accuracy was 0.93-1.00 over 20 runs. Training threads share libtorch's
    // global RNG here, so runs are not bitwise repeatable.
    let job = format!(
        "name: xray-e2e\nseed: 5\nrounds: {{total: {rounds}, minPerRound: 3, maxPerRound: 3, roundTimeoutSeconds: 120, heartbeatTimeoutSeconds: 20}}\ntraining: {{localEpochs: 3, batchSize: 16, learningRate: 0.01, optimizer: sgd}}\n"
    );
    let server = start_aggregator(
        &job,
        &tmp.path().join("store"),
        &pki,
        &format!("127.0.0.1:{port}"),
        &spec(SIZE, 3),
    )
    .await;
    let mut summaries: Vec<RunSummary> = Vec::new();
    for t in tasks {
        summaries.push(t.await.unwrap().expect("participant run"));
    }
    let versions = server.coordinator.versions();
    let acc: BTreeMap<u64, f64> = versions
        .iter()
        .filter_map(|v| v.metrics.get("eval_accuracy").map(|a| (v.version, *a)))
        .collect();
    println!("global model accuracy by version (mean over sites' test splits): {acc:?}");
    for v in &versions {
        println!("version {}: {:?}", v.version, v.metrics);
    }
    println!(
        "{} rounds with 3 participants in {:.1} s",
        rounds,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        server.coordinator.status().phase,
        AggregatorPhase::Completed
    );
    for s in &summaries {
        assert!(
            ids.contains(&s.participant_id.as_str()),
            "identity from the certificate"
        );
        assert_eq!(
            s.rounds.iter().map(|r| r.round).collect::<Vec<_>>(),
            (1..=rounds).collect::<Vec<_>>()
        );
        assert_eq!(
            s.evaluations.keys().copied().collect::<Vec<_>>(),
            (0..=rounds).collect::<Vec<_>>()
        );
        assert!(s.rounds.iter().all(|r| !r.reused));
    }
    assert_eq!(acc.len() as u64, rounds + 1, "every version evaluated");
    let (first, last) = (acc[&0], acc[&rounds]);
    assert!(last >= 0.75, "final accuracy {last}");
    assert!(last > first + 0.3, "accuracy rose from {first} to {last}");
    let train_loss: Vec<f64> = (1..=rounds)
        .map(|v| versions[v as usize].metrics["train_loss"])
        .collect();
    assert!(
        train_loss[rounds as usize - 1] < train_loss[0],
        "{train_loss:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_participant_uploads_its_stored_update() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    for (i, id) in ["site-a", "site-b"].iter().enumerate() {
        synth::write_dataset(
            &tmp.path().join(id),
            &SynthConfig::balanced(SIZE, 10, 3, i as u64),
        )
        .unwrap();
    }
    let pki = Pki::new();
    let job = "name: resume\nseed: 9\nrounds: {total: 1, minPerRound: 2, maxPerRound: 2, roundTimeoutSeconds: 120}\ntraining: {localEpochs: 1, batchSize: 8, learningRate: 0.05, optimizer: sgd}\n";
    let server = start_aggregator(
        job,
        &tmp.path().join("store"),
        &pki,
        "127.0.0.1:0",
        &spec(SIZE, 3),
    )
    .await;
    let endpoint = format!("https://localhost:{}", server.grpc_addr.port());

    // What site-a trained for round 1 before it "crashed": stored in its
    // state directory, exactly as the loop stores it.
    let v0 = server.coordinator.versions()[0].clone();
    let global = server.coordinator.model(Some(0)).await.unwrap();
    let seed = participant_seed(9, 1, &ParticipantId::from("site-a"));
    let handle = engine_handle(&tmp.path().join("site-a"));
    let p = FitParams {
        epochs: 1,
        batch_size: 8,
        learning_rate: 0.05,
        proximal_mu: 0.0,
        seed,
        optimizer: OptimizerKind::Sgd { momentum: 0.9 },
    };
    let trained = handle.fit(global.bytes.to_vec(), p).await.unwrap();
    let state = StateDir::open(tmp.path().join("state-a")).unwrap();
    let meta = PendingUpdate {
        round: 1,
        base_version: 0,
        model_sha256: v0.sha256.clone(),
        seed,
        num_examples: trained.report.examples as u64,
        metrics: trained.report.metrics(),
        update_sha256: hex::encode(Sha256::digest(&trained.bytes)),
    };
    state.save_pending(&meta, &trained.bytes).unwrap();

    let run = |id: &'static str, state: Option<StateDir>| {
        let client = AggregatorClient::connect_lazy(&pki.client(&endpoint, id)).unwrap();
        let engine = engine_handle(&tmp.path().join(id));
        tokio::spawn(fedsky_participant::run(client, engine, options(state)))
    };
    let a = run("site-a", Some(state.clone()));
    let b = run("site-b", None);
    let a = a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(a.rounds.len(), 1);
    assert!(
        a.rounds[0].reused,
        "site-a uploaded the stored update instead of retraining"
    );
    assert!(
        state.load_pending(1, 0, &v0.sha256, seed).is_none(),
        "cleared after the upload"
    );
    assert_eq!(
        server.coordinator.status().phase,
        AggregatorPhase::Completed
    );
    let v1 = &server.coordinator.versions()[1];
    assert_eq!(v1.contributors.len(), 2);
    server.shutdown().await;
}

/// scikit-learn's bundled digits, exported by the repository's script and
/// split non-IID over three sites: the federated model's accuracy on the
/// held-out digits rises over the rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_split_non_iid_over_three_sites_learns_over_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export_digits.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg("--out")
        .arg(tmp.path().join("digits"))
        .args([
            "--sites", "3", "--size", "16", "--share", "0.6", "--seed", "0",
        ])
        .output()
        .expect("running python (set PYTHON to the venv's python with scikit-learn)");
    assert!(
        out.status.success(),
        "{} failed (is scikit-learn installed in the venv?): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let _g = torch_lock();
    let started = Instant::now();
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let spec = spec(16, 10);
    let pki = Pki::new();
    let rounds = 4;
    let job = format!(
        "name: digits\nseed: 3\nrounds: {{total: {rounds}, minPerRound: 3, maxPerRound: 3, roundTimeoutSeconds: 120}}\ntraining: {{localEpochs: 2, batchSize: 32, learningRate: 0.01, optimizer: sgd}}\n"
    );
    let server =
        start_aggregator(&job, &tmp.path().join("store"), &pki, "127.0.0.1:0", &spec).await;
    let endpoint = format!("https://localhost:{}", server.grpc_addr.port());
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let config = DataConfig {
                root: tmp.path().join(format!("digits/site-{i}")),
                format: DataFormat::ImageFolder(ImageOptions {
                    classes: Some(digits.clone()),
                    size: 16,
                    ..ImageOptions::default()
                }),
                val_fraction: 0.1,
                split_seed: 0,
            };
            let id = format!("site-{i}");
            let client = AggregatorClient::connect_lazy(&pki.client(&endpoint, &id)).unwrap();
            tokio::spawn(fedsky_participant::run(
                client,
                engine_for(config, spec.clone()),
                options(None),
            ))
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("participant run");
    }
    let acc: BTreeMap<u64, f64> = server
        .coordinator
        .versions()
        .iter()
        .filter_map(|v| v.metrics.get("eval_accuracy").map(|a| (v.version, *a)))
        .collect();
    println!(
        "digits: accuracy by version {acc:?} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(acc.len() as u64, rounds + 1);
    assert!(acc[&rounds] >= 0.8, "final accuracy {}", acc[&rounds]);
    assert!(acc[&rounds] > acc[&0] + 0.5, "{acc:?}");
    assert!(acc[&2] > acc[&0], "{acc:?}");
    server.shutdown().await;
}

/// Runs an aggregator on a runtime of its own, so dropping that runtime
/// kills it the way a process kill would (connections included).
fn start_in_runtime(
    job: &str,
    store: &Path,
    pki: &Pki,
    addr: &str,
    spec: &ModelSpec,
) -> (tokio::runtime::Runtime, RunningServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = std::thread::scope(|s| {
        s.spawn(|| rt.block_on(start_aggregator(job, store, pki, addr, spec)))
            .join()
            .unwrap()
    });
    (rt, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_reconnect_and_finish_after_the_aggregator_is_killed() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let ids = ["clinic-eu", "clinic-asia", "clinic-us"];
    for (i, id) in ids.iter().enumerate() {
        let cfg = SynthConfig::skewed(SIZE, 45, 5, i, 0.6, 200 + i as u64);
        synth::write_dataset(&tmp.path().join(id), &cfg).unwrap();
    }
    let pki = Pki::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let endpoint = format!("https://localhost:{port}");
    let rounds = 4;
    let job = format!(
        "name: restart\nseed: 8\nrounds: {{total: {rounds}, minPerRound: 3, maxPerRound: 3, roundTimeoutSeconds: 60, heartbeatTimeoutSeconds: 10}}\ntraining: {{localEpochs: 1, batchSize: 16, learningRate: 0.02, optimizer: sgd}}\n"
    );
    let store = tmp.path().join("store");
    let spec = spec(SIZE, 3);
    let (rt1, first) = start_in_runtime(&job, &store, &pki, &addr, &spec);
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let client = AggregatorClient::connect_lazy(&pki.client(&endpoint, id)).unwrap();
            let engine = engine_handle(&tmp.path().join(id));
            tokio::spawn(fedsky_participant::run(client, engine, options(None)))
        })
        .collect();
    let started = Instant::now();
    while first.coordinator.status().completed_rounds < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:#?}",
            first.coordinator.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = first.coordinator.status().completed_rounds;
    drop(first);
    rt1.shutdown_background();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rt2, second) = start_in_runtime(&job, &store, &pki, &addr, &spec);
    let mut summaries = Vec::new();
    for t in tasks {
        summaries.push(t.await.unwrap().expect("participant run"));
    }
    let status = second.coordinator.status();
    println!(
        "killed after round {killed_at}; resumed and completed {} rounds; registrations per participant {:?}",
        status.completed_rounds,
        summaries
            .iter()
            .map(|s| s.registrations)
            .collect::<Vec<_>>()
    );
    assert_eq!(status.phase, AggregatorPhase::Completed);
    assert_eq!(status.completed_rounds, rounds);
    for s in &summaries {
        assert!(
            s.registrations >= 2,
            "{} re-registered after the restart",
            s.participant_id
        );
        assert_eq!(s.rounds.last().map(|r| r.round), Some(rounds));
    }
    let versions = second.coordinator.versions();
    assert_eq!(versions.len() as u64, rounds + 1);
    drop(second);
    rt2.shutdown_background();
}
