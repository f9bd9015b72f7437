//! Side-by-side benchmark: fedsky's streaming FedAvg (validate + fold from
//! safetensors bytes) against Flower's aggregation on the same data, next to
//! this machine's memory bandwidth; plus a 100 MB upload over loopback gRPC
//! and the overhead of an empty round with 10 participants.
//!
//! `cargo bench -p fedsky-aggregator --bench vs_flower`
//!
//! Environment: `FEDSKY_BENCH_CASES` (default
//! `10x1M,50x1M,100x1M,10x10M,50x10M,100x10M,10x25M`), `FEDSKY_BENCH_PYTHON`
//! (default: the workspace `.venv`, which needs `pip install flwr numpy`).
//! Every aggregation case runs in a fresh process, so "cold" is a first touch
//! of memory and peak RSS belongs to that case alone.

use std::process::Command;
use std::time::{Duration, Instant};

use fedsky_aggregator::strategy::FedAvg;
use fedsky_aggregator::{
    Model, ModelView, Strategy, TensorData, UpdateLimits, decode_update, validate_update,
    view_validated,
};
use rayon::prelude::*;

const BIAS: usize = 1024;

fn value(i: usize, seed: u32) -> f32 {
    ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 * 1e-7
}

fn model(params: usize, seed: u32) -> Model {
    let data: Vec<f32> = (0..params).map(|i| value(i, seed)).collect();
    let (w, b) = data.split_at(params - BIAS);
    Model::new([
        (
            "layer.weight",
            vec![params - BIAS],
            TensorData::F32(w.to_vec()),
        ),
        ("layer.bias", vec![BIAS], TensorData::F32(b.to_vec())),
    ])
    .expect("valid bench model")
}

/// Writes update `seed` as safetensors into `buf` (reused: one update in memory).
fn encode_into(buf: &mut Vec<u8>, params: usize, seed: u32) {
    let w = (params - BIAS) * 4;
    let header = format!(
        r#"{{"layer.bias":{{"dtype":"F32","shape":[{BIAS}],"data_offsets":[0,{}]}},"layer.weight":{{"dtype":"F32","shape":[{}],"data_offsets":[{},{}]}}}}"#,
        BIAS * 4,
        params - BIAS,
        BIAS * 4,
        BIAS * 4 + w
    );
    buf.clear();
    buf.extend_from_slice(&(header.len() as u64).to_le_bytes());
    buf.extend_from_slice(header.as_bytes());
    // Bias first (offset 0), then weight, matching the header.
    for i in (params - BIAS)..params {
        buf.extend_from_slice(&value(i, seed).to_le_bytes());
    }
    for i in 0..(params - BIAS) {
        buf.extend_from_slice(&value(i, seed).to_le_bytes());
    }
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One fedsky case (in a child process): prints cold, warm, peak growth.
fn fedsky_case(n: usize, params: usize) {
    let global = model(params, 0);
    let limits = UpdateLimits::for_spec(global.spec());
    let mut buf = Vec::new();
    encode_into(&mut buf, params, 1);
    // Reset the peak-RSS mark so only the aggregation itself is measured.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = proc_status("VmRSS:");
    let mut times = Vec::new();
    for _ in 0..3 {
        let mut t = Duration::ZERO;
        let mut s = FedAvg::new();
        let start = Instant::now();
        s.begin_round(1, &global).expect("begin");
        t += start.elapsed();
        for k in 0..n {
            encode_into(&mut buf, params, k as u32 + 1);
            let start = Instant::now();
            let view = decode_update(&buf, &global, &limits).expect("valid update");
            s.accept(&view, 100 + k as u64).expect("accept");
            t += start.elapsed();
        }
        let start = Instant::now();
        let out = s.finish().expect("finish");
        t += start.elapsed();
        std::hint::black_box(out);
        times.push(t.as_secs_f64());
    }
    let peak = proc_status("VmHWM:").saturating_sub(base);
    println!(
        "{}",
        serde_json::json!({"cold": times[0], "warm": times[1].min(times[2]), "peak_growth": peak})
    );
}

/// One fedsky case with all updates in memory (as Flower gets them):
/// validation of each, then one batched fold over the accumulator.
fn fedsky_batch_case(n: usize, params: usize) {
    let global = model(params, 0);
    let limits = UpdateLimits::for_spec(global.spec());
    let updates: Vec<Vec<u8>> = (0..n)
        .map(|k| {
            let mut b = Vec::new();
            encode_into(&mut b, params, k as u32 + 1);
            b
        })
        .collect();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = proc_status("VmRSS:");
    let (mut validate, mut fold) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let start = Instant::now();
        let headers: Vec<_> = updates
            .iter()
            .map(|b| validate_update(b, &global, &limits).expect("valid update"))
            .collect();
        validate.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let mut s = FedAvg::new();
        s.begin_round(1, &global).expect("begin");
        let views: Vec<ModelView<'_>> = updates
            .iter()
            .zip(&headers)
            .map(|(b, h)| view_validated(b, &global, h))
            .collect();
        let pairs: Vec<(&ModelView<'_>, u64)> = views.iter().zip(100u64..).collect();
        s.accept_batch(&pairs).expect("accept");
        std::hint::black_box(s.finish().expect("finish"));
        fold.push(start.elapsed().as_secs_f64());
    }
    let peak = proc_status("VmHWM:").saturating_sub(base);
    let warm = |v: &[f64]| v[1].min(v[2]);
    println!(
        "{}",
        serde_json::json!({
            "cold": validate[0] + fold[0],
            "warm": warm(&validate) + warm(&fold),
            "validate": warm(&validate),
            "fold": warm(&fold),
            "peak_growth": peak
        })
    );
}

/// STREAM-like copy bandwidth (bytes read + written per second), best of 5.
fn copy_bandwidth() -> f64 {
    let n = 64 << 20;
    let a = vec![1.0f32; n];
    let mut b = vec![0.0f32; n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        b.par_chunks_mut(1 << 16)
            .zip(a.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(start.elapsed().as_secs_f64());
        std::hint::black_box(&b);
    }
    (2 * n * 4) as f64 / best
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    cold: f64,
    warm: f64,
    peak: f64,
    validate: f64,
    fold: f64,
}

fn child(cmd: &mut Command) -> Option<Run> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Run {
        cold: v["cold"].as_f64()?,
        warm: v["warm"].as_f64()?,
        peak: v["peak_growth"].as_f64()?,
        validate: v["validate"].as_f64().unwrap_or(0.0),
        fold: v["fold"].as_f64().unwrap_or(0.0),
    })
}

fn parse_case(c: &str) -> Option<(usize, usize)> {
    let (n, p) = c.split_once('x')?;
    let p = p.trim();
    let mult = match p.chars().last()? {
        'M' => 1 << 20,
        'K' => 1 << 10,
        _ => 1,
    };
    let digits = p.trim_end_matches(['M', 'K']);
    Some((n.trim().parse().ok()?, digits.parse::<usize>().ok()? * mult))
}

fn gbs(bytes: f64, secs: f64) -> String {
    if secs > 0.0 {
        format!("{:.2}", bytes / secs / 1e9)
    } else {
        "-".into()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case-batch") {
        let n = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(10);
        let p = args
            .get(i + 2)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1 << 20);
        fedsky_batch_case(n, p);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let n = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(10);
        let p = args
            .get(i + 2)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1 << 20);
        fedsky_case(n, p);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let python = std::env::var("FEDSKY_BENCH_PYTHON")
        .unwrap_or_else(|_| format!("{}/../.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let script = format!("{}/benches/flower_bench.py", env!("CARGO_MANIFEST_DIR"));
    let cases = std::env::var("FEDSKY_BENCH_CASES")
        .unwrap_or_else(|_| "10x1M,50x1M,100x1M,10x10M,50x10M,100x10M,10x25M".into());

    let bw = copy_bandwidth();
    println!(
        "memory bandwidth (parallel copy, read+write): {:.2} GB/s",
        bw / 1e9
    );
    println!();
    println!(
        "| updates x params | update GB | fedsky cold GB/s | fedsky warm GB/s | warm / copy bw | Flower aggregate() cold / warm GB/s | Flower FedAvg.aggregate_fit cold / warm GB/s | warm speed-up vs Flower's faster | peak growth fedsky / helper / strategy (x model) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut batch_rows = Vec::new();
    for case in cases.split(',') {
        let Some((n, p)) = parse_case(case) else {
            eprintln!("skipping case {case:?} (use NxP, e.g. 10x1M)");
            continue;
        };
        let bytes = (n * p * 4) as f64;
        let model_bytes = (p * 4) as f64;
        let ours = child(
            Command::new(&exe)
                .arg("--case")
                .arg(n.to_string())
                .arg(p.to_string()),
        )
        .unwrap_or_default();
        let flower = |mode: &str| {
            child(
                Command::new(&python)
                    .arg(&script)
                    .arg(mode)
                    .arg(n.to_string())
                    .arg(p.to_string()),
            )
        };
        let helper = flower("helper").unwrap_or_default();
        let strategy = flower("strategy").unwrap_or_default();
        let flower_best = [helper.warm, strategy.warm]
            .into_iter()
            .filter(|t| *t > 0.0)
            .fold(f64::MAX, f64::min);
        println!(
            "| {case} | {:.2} | {} | {} | {:.0} % | {} / {} | {} / {} | {:.1}x | {:.1} / {:.1} / {:.1} |",
            bytes / 1e9,
            gbs(bytes, ours.cold),
            gbs(bytes, ours.warm),
            100.0 * (bytes / ours.warm.max(1e-12)) / bw,
            gbs(bytes, helper.cold),
            gbs(bytes, helper.warm),
            gbs(bytes, strategy.cold),
            gbs(bytes, strategy.warm),
            if flower_best < f64::MAX {
                flower_best / ours.warm.max(1e-12)
            } else {
                0.0
            },
            ours.peak / model_bytes,
            helper.peak / model_bytes,
            strategy.peak / model_bytes,
        );
        let batch = child(
            Command::new(&exe)
                .arg("--case-batch")
                .arg(n.to_string())
                .arg(p.to_string()),
        )
        .unwrap_or_default();
        batch_rows.push(format!(
            "| {case} | {} | {} | {} | {:.0} % | {} | {:.1}x | {:.1} |",
            gbs(bytes, batch.validate),
            gbs(bytes, batch.fold),
            gbs(bytes, batch.warm),
            100.0 * (bytes / batch.fold.max(1e-12)) / bw,
            gbs(bytes, batch.cold),
            if flower_best < f64::MAX {
                flower_best / batch.warm.max(1e-12)
            } else {
                0.0
            },
            batch.peak / model_bytes,
        ));
    }
    println!();
    println!("all updates in memory (as Flower gets them): validate each, then one batched fold");
    println!();
    println!(
        "| updates x params | validate warm GB/s | batched fold warm GB/s | validate+fold warm GB/s | fold / copy bw | validate+fold cold GB/s | warm speed-up vs Flower's faster | peak growth (x model) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in batch_rows {
        println!("{row}");
    }
    #[cfg(feature = "server")]
    grpc::run();
}

#[cfg(feature = "server")]
mod grpc {
    //! Data-plane figures over real gRPC on loopback (plaintext).

    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use fedsky_aggregator::client::{AggregatorClient, ClientConfig, UpdateToSend};
    use fedsky_aggregator::coordinator::Coordinator;
    use fedsky_aggregator::job::JobConfig;
    use fedsky_aggregator::metrics::Metrics;
    use fedsky_aggregator::proto::instruction::Kind;
    use fedsky_aggregator::server::{RunningServer, Transport, serve};
    use fedsky_aggregator::store::{Checkpoints, DirStore};
    use fedsky_aggregator::{Model, TensorData};
    use tokio::net::TcpListener;

    const TOKEN: &str = "bench-token-0123456789";

    async fn start(job: &str, initial: Model, dir: &std::path::Path) -> RunningServer {
        let job = JobConfig::parse(job).expect("job");
        let core = Coordinator::start(
            job,
            TOKEN.into(),
            Checkpoints::new(Arc::new(DirStore::new(dir))),
            Some(initial),
            Arc::new(Metrics::new()),
        )
        .await
        .expect("core");
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        serve(core, grpc, http, Transport::InsecurePlaintext)
            .await
            .expect("serve")
    }

    async fn fit(c: &mut AggregatorClient) -> (u64, u64) {
        loop {
            let i = c.poll_instruction().await.expect("poll");
            if i.kind == Kind::Fit as i32 {
                return (i.round, i.model_version);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn upload_100mb() {
        let dir = tempfile_dir("upload");
        let params = 25 << 20;
        let initial =
            Model::new([("w", vec![params], TensorData::F32(vec![0.5; params]))]).expect("model");
        let bytes = Bytes::from(initial.to_safetensors().expect("encode"));
        let job = "name: bench\nrounds: {total: 1, minPerRound: 1, maxPerRound: 1, roundTimeoutSeconds: 600}\nfoldOrder: arrival\n";
        let server = start(job, initial, &dir).await;
        let endpoint = format!("http://{}", server.grpc_addr);
        let mut c = AggregatorClient::connect(ClientConfig::insecure(&endpoint, TOKEN, "p0"))
            .await
            .expect("connect");
        c.register(HashMap::new()).await.expect("register");
        let (round, version) = fit(&mut c).await;
        let start = Instant::now();
        c.upload_update(UpdateToSend {
            round,
            base_version: version,
            num_examples: 1,
            metrics: HashMap::new(),
            bytes: bytes.clone(),
        })
        .await
        .expect("upload");
        let t = start.elapsed().as_secs_f64();
        println!();
        println!(
            "upload of a {:.0} MB update over loopback gRPC (plaintext, 1 MiB chunks, validated and folded on arrival): {:.3} s = {:.2} GB/s",
            bytes.len() as f64 / 1e6,
            t,
            bytes.len() as f64 / t / 1e9
        );
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn empty_rounds() {
        let dir = tempfile_dir("rounds");
        let rounds = 20u64;
        let initial = Model::new([("w", vec![4], TensorData::F32(vec![0.0; 4]))]).expect("model");
        let bytes = Bytes::from(initial.to_safetensors().expect("encode"));
        let job = format!(
            "name: bench\nrounds: {{total: {rounds}, minPerRound: 10, maxPerRound: 10, roundTimeoutSeconds: 60}}\n"
        );
        let server = start(&job, initial, &dir).await;
        let endpoint = format!("http://{}", server.grpc_addr);
        let mut tasks = Vec::new();
        for k in 0..10 {
            let cfg = ClientConfig::insecure(&endpoint, TOKEN, format!("p{k}"));
            let bytes = bytes.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = AggregatorClient::connect(cfg).await.expect("connect");
                c.register(HashMap::new()).await.expect("register");
                let mut stream = c.instructions().await.expect("stream");
                while let Ok(Some(i)) = stream.message().await {
                    match Kind::try_from(i.kind) {
                        Ok(Kind::Fit) => {
                            let _ = c
                                .upload_update(UpdateToSend {
                                    round: i.round,
                                    base_version: i.model_version,
                                    num_examples: 1,
                                    metrics: HashMap::new(),
                                    bytes: bytes.clone(),
                                })
                                .await;
                        }
                        Ok(Kind::Evaluate) => {
                            let _ = c
                                .report_evaluation(i.model_version, 1, HashMap::new())
                                .await;
                        }
                        Ok(Kind::Done | Kind::Failed) => break,
                        _ => {}
                    }
                }
            }));
        }
        let core = server.coordinator.clone();
        while core.status().round < 1 || core.status().phase == "waiting" {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let start = Instant::now();
        while core.status().phase != "completed" {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let per_round = start.elapsed().as_secs_f64() / rounds as f64;
        for t in tasks {
            let _ = t.await;
        }
        println!(
            "empty round with 10 participants (instruction stream, tiny model, fsynced checkpoint per round): {:.1} ms per round over {rounds} rounds",
            per_round * 1e3
        );
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(what: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fedsky-bench-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    pub fn run() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            upload_100mb().await;
            empty_rounds().await;
        });
    }
}
