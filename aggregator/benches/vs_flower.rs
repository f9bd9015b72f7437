//! Side-by-side benchmark: fedsky's FedAvg (validate + fold from safetensors
//! bytes; the streaming server path and the in-memory round) against
//! Flower's aggregation on the same data, next to this machine's memory
//! bandwidth; plus a 100 MB upload over loopback gRPC and
//! the overhead of an empty round with 10 participants.
//!
//! `cargo bench -p fedsky-aggregator --bench vs_flower`
//!
//! Environment: `FEDSKY_BENCH_CASES` (default
//! `10x1M,50x1M,100x1M,10x10M,50x10M,100x10M,10x25M`), `FEDSKY_BENCH_PYTHON`
//! (default: the workspace `.venv`, which needs `pip install flwr numpy`).
//! Every aggregation case runs in a fresh process, so "cold" is a first touch
//! of memory and peak RSS belongs to that case alone. "Warm" is the best of
//! the further rounds with the same strategy, as a running server has them.

use std::process::Command;
use std::time::{Duration, Instant};

use fedsky_aggregator::in_memory::fedavg_round;
use fedsky_aggregator::strategy::FedAvg;
use fedsky_aggregator::update::DataCheck;
use fedsky_aggregator::{
    Model, ModelView, Strategy, TensorData, UpdateLimits, declared_header_len, parse_update_header,
    validate_update, view_validated,
};
use rayon::prelude::*;

const BIAS: usize = 1024;
/// Bytes per received gRPC chunk (the server's default `chunkBytes`).
const CHUNK: usize = 1 << 20;

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

fn header(params: usize) -> String {
    let w = (params - BIAS) * 4;
    format!(
        r#"{{"layer.bias":{{"dtype":"F32","shape":[{BIAS}],"data_offsets":[0,{}]}},"layer.weight":{{"dtype":"F32","shape":[{}],"data_offsets":[{},{}]}}}}"#,
        BIAS * 4,
        params - BIAS,
        BIAS * 4,
        BIAS * 4 + w
    )
}

/// Data element `j` of update `seed` (bias first, then weight, as the header says).
/// Bytes of one encoded update: length prefix, header, f32 data.
fn encoded_len(params: usize) -> usize {
    8 + header(params).len() + params * 4
}

fn element(j: usize, params: usize, seed: u32) -> f32 {
    if j < BIAS {
        value(params - BIAS + j, seed)
    } else {
        value(j - BIAS, seed)
    }
}

/// Writes update `seed` as safetensors into `buf` (reused: no allocation),
/// calling `on_chunk(received so far)` after every [`CHUNK`] bytes, as a
/// receiving server sees them.
fn receive_into(buf: &mut Vec<u8>, params: usize, seed: u32, mut on_chunk: impl FnMut(&[u8])) {
    let header = header(params);
    buf.clear();
    buf.extend_from_slice(&(header.len() as u64).to_le_bytes());
    buf.extend_from_slice(header.as_bytes());
    let mut j = 0;
    while j < params {
        let room = (CHUNK - buf.len() % CHUNK) / 4;
        let end = (j + room.max(1)).min(params);
        buf.extend((j..end).flat_map(|k| element(k, params, seed).to_le_bytes()));
        j = end;
        on_chunk(buf);
    }
}

fn encode_into(buf: &mut Vec<u8>, params: usize, seed: u32) {
    receive_into(buf, params, seed, |_| {});
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

/// Peak RSS growth since `base`, less the growth of file-backed pages: the
/// first round faults in ~0.5 MB of this executable's code, which is not
/// memory the aggregation holds (and alone put a 1M-parameter case over 3x).
fn peak_growth(base: u64, base_file: u64) -> u64 {
    let code = proc_status("RssFile:").saturating_sub(base_file);
    proc_status("VmHWM:")
        .saturating_sub(base)
        .saturating_sub(code)
}

/// Rounds run per case: the first is cold, the best of the others is "warm".
const ROUNDS: u64 = 5;

fn best_warm(times: &[f64]) -> f64 {
    times.iter().skip(1).copied().fold(f64::MAX, f64::min)
}

/// One fedsky case (in a child process), the server's path: each update is
/// checked chunk by chunk as it "arrives" (the chunk is written untimed, then
/// checked timed, as the gRPC service does), then folded `batch` at a time
/// (the coordinator folds pairs: at most two received updates held, so
/// memory is 3x the model; 1 is one at a time). The finished model is
/// recycled into the next round, as the coordinator recycles the global
/// model it replaces. Prints JSON: cold, warm, peak growth, the copy
/// bandwidth measured in this process, and the split of the warm time.
fn fedsky_case(n: usize, params: usize, batch: usize) {
    let global = model(params, 0);
    let limits = UpdateLimits::for_spec(global.spec());
    let mut probe = CopyProbe::new();
    let mut copies = Vec::new();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = proc_status("VmRSS:");
    let base_file = proc_status("RssFile:");
    let size = encoded_len(params);
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| Vec::with_capacity(size)).collect();
    let mut s = FedAvg::new();
    let mut times = Vec::new();
    let mut parts = Vec::new();
    for round in 1..=ROUNDS {
        copies.push(probe.measure(3));
        let mut t = Duration::ZERO;
        let (mut t_check, mut t_fold) = (Duration::ZERO, Duration::ZERO);
        let start = Instant::now();
        s.begin_round(round, &global).expect("begin");
        t += start.elapsed();
        let mut headers = Vec::new();
        let mut out = None;
        for k in 0..n {
            let slot = k % batch;
            let mut check: Option<DataCheck> = None;
            let buf = &mut bufs[slot];
            receive_into(buf, params, k as u32 + 1, |received| {
                let start = Instant::now();
                if check.is_none() {
                    let len = declared_header_len(received, &limits).expect("prefix");
                    let h = parse_update_header(&received[..8 + len], global.spec(), &limits)
                        .expect("valid header");
                    check = Some(DataCheck::new(h, &limits));
                }
                if let Some(c) = check.as_mut() {
                    c.feed(received, &global).expect("valid data");
                }
                t += start.elapsed();
                t_check += start.elapsed();
            });
            let start = Instant::now();
            let header = check
                .expect("checked")
                .finish(buf, &global)
                .expect("valid update");
            headers.push(header);
            if headers.len() == batch || k + 1 == n {
                let views: Vec<ModelView<'_>> = bufs
                    .iter()
                    .zip(&headers)
                    .map(|(b, h)| view_validated(b, &global, h))
                    .collect();
                let pairs: Vec<(&ModelView<'_>, u64)> = views
                    .iter()
                    .zip((k + 1 - headers.len()) as u64 + 100..)
                    .collect();
                // The last batch is folded and divided in one pass, as the
                // coordinator does when the round closes.
                if k + 1 == n {
                    out = Some(s.finish_with(&pairs).expect("finish"));
                } else {
                    s.accept_batch(&pairs).expect("accept");
                }
                drop(views);
                headers.clear();
            }
            t += start.elapsed();
            t_fold += start.elapsed();
        }
        s.recycle(std::hint::black_box(out.take().expect("finished")));
        times.push(t.as_secs_f64());
        parts.push((t.as_secs_f64(), t_check.as_secs_f64(), t_fold.as_secs_f64()));
    }
    let peak = peak_growth(base, base_file);
    let (warm, bw) = best_warm_with_copy(&times, &copies);
    let split = parts
        .iter()
        .find(|p| p.0 == warm)
        .map_or((0.0, 0.0), |p| (p.1, p.2));
    println!(
        "{}",
        serde_json::json!({
            "cold": times[0], "warm": warm, "peak_growth": peak, "copy_bw": bw,
            "check": split.0, "fold": split.1,
        })
    );
}

/// One fedsky case with all updates in memory (as Flower gets them). With
/// `one_read`, the library's in-memory round ([`fedavg_round`]): layouts
/// checked, then each update read once by a sweep that folds, divides and
/// proves the data finite. Without, the two-pass way: every update
/// validated (a full scan), then one batched fold.
fn fedsky_batch_case(n: usize, params: usize, one_read: bool) {
    let global = model(params, 0);
    let limits = UpdateLimits::for_spec(global.spec());
    let updates: Vec<Vec<u8>> = (0..n)
        .map(|k| {
            // Exactly sized, as the server's receive buffers are. Grown by
            // doubling, 100 MB updates sit 128 MiB apart, and four streams
            // at one power-of-two stride ran a 10 x 25M round 25 % slower.
            let mut b = Vec::with_capacity(encoded_len(params));
            encode_into(&mut b, params, k as u32 + 1);
            b
        })
        .collect();
    let weighted: Vec<(&[u8], u64)> = updates.iter().map(|b| b.as_slice()).zip(100u64..).collect();
    let mut probe = CopyProbe::new();
    let mut copies = Vec::new();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = proc_status("VmRSS:");
    let base_file = proc_status("RssFile:");
    let (mut validate, mut fold, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut s = FedAvg::new();
    for round in 1..=ROUNDS {
        copies.push(probe.measure(3));
        if one_read {
            let start = Instant::now();
            let out = fedavg_round(&mut s, round, &global, &weighted, &limits).expect("round");
            let t = start.elapsed().as_secs_f64();
            assert!(out.rejected.is_empty());
            s.recycle(std::hint::black_box(out.model));
            validate.push(0.0);
            fold.push(t);
            total.push(t);
            continue;
        }
        let start = Instant::now();
        let headers: Vec<_> = updates
            .iter()
            .map(|b| validate_update(b, &global, &limits).expect("valid update"))
            .collect();
        let v = start.elapsed().as_secs_f64();
        let start = Instant::now();
        s.begin_round(round, &global).expect("begin");
        let views: Vec<ModelView<'_>> = updates
            .iter()
            .zip(&headers)
            .map(|(b, h)| view_validated(b, &global, h))
            .collect();
        let pairs: Vec<(&ModelView<'_>, u64)> = views.iter().zip(100u64..).collect();
        s.accept_batch(&pairs).expect("accept");
        let out = s.finish().expect("finish");
        let f = start.elapsed().as_secs_f64();
        s.recycle(std::hint::black_box(out));
        validate.push(v);
        fold.push(f);
        total.push(v + f);
    }
    let peak = peak_growth(base, base_file);
    let (warm, bw) = best_warm_with_copy(&total, &copies);
    println!(
        "{}",
        serde_json::json!({
            "cold": total[0],
            "warm": warm,
            "check": best_warm(&validate),
            "fold": best_warm(&fold),
            "peak_growth": peak,
            "copy_bw": bw,
        })
    );
}

/// STREAM-like copy bandwidth (bytes read + written per second) over two
/// 256 MiB arrays (far larger than any cache), allocated and touched once.
struct CopyProbe {
    a: Vec<f32>,
    b: Vec<f32>,
}

impl CopyProbe {
    /// Both arrays written here, so their pages count in the RSS a case
    /// starts from, not in its peak growth.
    fn new() -> Self {
        let n = 64 << 20;
        Self {
            a: vec![1.0; n],
            b: vec![2.0; n],
        }
    }

    /// Best of `tries` parallel copies.
    fn measure(&mut self, tries: usize) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..tries {
            let start = Instant::now();
            self.b
                .par_chunks_mut(1 << 16)
                .zip(self.a.par_chunks(1 << 16))
                .for_each(|(d, s)| d.copy_from_slice(s));
            best = best.min(start.elapsed().as_secs_f64());
            std::hint::black_box(&self.b);
        }
        (2 * self.a.len() * 4) as f64 / best
    }
}

fn copy_bandwidth() -> f64 {
    CopyProbe::new().measure(5)
}

/// The best warm round and the copy bandwidth measured just before it: the
/// host's bandwidth moves by a third within a minute, so a ratio of numbers
/// taken at different moments says more about the host than the code.
fn best_warm_with_copy(times: &[f64], copies: &[f64]) -> (f64, f64) {
    times.iter().zip(copies).skip(1).fold(
        (f64::MAX, 0.0),
        |best, (&t, &c)| if t < best.0 { (t, c) } else { best },
    )
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    cold: f64,
    warm: f64,
    peak: f64,
    copy_bw: f64,
    check: f64,
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
        copy_bw: v["copy_bw"].as_f64().unwrap_or(0.0),
        check: v["check"].as_f64().unwrap_or(0.0),
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

/// Throughput of `run` as a share of the copy bandwidth measured in its process.
fn pct(bytes: f64, run: &Run) -> String {
    if run.warm > 0.0 && run.copy_bw > 0.0 {
        format!("{:.0} %", 100.0 * bytes / run.warm / run.copy_bw)
    } else {
        "-".into()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    if let Some(i) = args.iter().position(|a| a == "--case-batch") {
        fedsky_batch_case(arg(i + 1, 10), arg(i + 2, 1 << 20), false);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--case-one-read") {
        fedsky_batch_case(arg(i + 1, 10), arg(i + 2, 1 << 20), true);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--case") {
        fedsky_case(arg(i + 1, 10), arg(i + 2, 1 << 20), arg(i + 3, 2).max(1));
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
        "memory bandwidth (parallel copy, read+write, 2 x 256 MiB): {:.2} GB/s at the start",
        bw / 1e9
    );
    println!(
        "Every case runs in its own process, which measures the copy bandwidth (best of 3) right before \
         each of its rounds; \"% of copy\" compares the best warm round with the copy measured just before it \
         (the bandwidth of this shared host moves by a third within a minute)."
    );
    println!(
        "Warm = best of {} rounds after the cold one (fedsky); Flower: best of its warm runs.",
        ROUNDS - 1
    );
    println!(
        "Peak growth = RSS high-water mark over the rounds, less file-backed pages (code run for the first time), both sides."
    );
    println!();
    println!(
        "fedsky server path = the server's default: every update checked chunk by chunk as it arrives, \
         folded two at a time (3x model memory), the finished model recycled into the next round. \
         fedsky in memory = every update already in memory, as Flower gets them, through \
         `in_memory::fedavg_round` (each update read once). Every round starts after a 512 MiB copy, so caches hold nothing of the last round."
    );
    println!();
    println!(
        "| updates x params | update GB | fedsky server path cold / warm GB/s | warm / copy | fedsky in memory, one read: cold / warm GB/s | warm / copy | Flower aggregate() cold / warm GB/s | Flower FedAvg.aggregate_fit cold / warm GB/s | warm speed-up vs Flower's faster: server path / in memory | peak growth fedsky server / in memory / Flower helper / strategy (x model) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut variant_rows = Vec::new();
    for case in cases.split(',') {
        let Some((n, p)) = parse_case(case) else {
            eprintln!("skipping case {case:?} (use NxP, e.g. 10x1M)");
            continue;
        };
        let bytes = (n * p * 4) as f64;
        let model_bytes = (p * 4) as f64;
        let ours_with = |batch: usize| {
            child(
                Command::new(&exe)
                    .arg("--case")
                    .arg(n.to_string())
                    .arg(p.to_string())
                    .arg(batch.to_string()),
            )
            .unwrap_or_default()
        };
        let ours = ours_with(2);
        let in_memory = |flag: &str| {
            child(
                Command::new(&exe)
                    .arg(flag)
                    .arg(n.to_string())
                    .arg(p.to_string()),
            )
            .unwrap_or_default()
        };
        let one_read = in_memory("--case-one-read");
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
        let speedup = |r: &Run| {
            if flower_best < f64::MAX && r.warm > 0.0 {
                format!("{:.1}x", flower_best / r.warm)
            } else {
                "-".into()
            }
        };
        println!(
            "| {case} | {:.2} | {} / {} | {} of {:.2} | {} / {} | {} of {:.2} | {} / {} | {} / {} | {} / {} | {:.1} / {:.1} / {:.1} / {:.1} |",
            bytes / 1e9,
            gbs(bytes, ours.cold),
            gbs(bytes, ours.warm),
            pct(bytes, &ours),
            ours.copy_bw / 1e9,
            gbs(bytes, one_read.cold),
            gbs(bytes, one_read.warm),
            pct(bytes, &one_read),
            one_read.copy_bw / 1e9,
            gbs(bytes, helper.cold),
            gbs(bytes, helper.warm),
            gbs(bytes, strategy.cold),
            gbs(bytes, strategy.warm),
            speedup(&ours),
            speedup(&one_read),
            ours.peak / model_bytes,
            one_read.peak / model_bytes,
            helper.peak / model_bytes,
            strategy.peak / model_bytes,
        );
        let single = ours_with(1);
        let window = ours_with(4);
        let batch = in_memory("--case-batch");
        let cell = |r: &Run| {
            format!(
                "{} ({}, {:.1}x)",
                gbs(bytes, r.warm),
                pct(bytes, r),
                r.peak / model_bytes
            )
        };
        variant_rows.push(format!(
            "| {case} | {} | {} | {} | {} | {} / {} | {} | {} |",
            cell(&single),
            cell(&ours),
            cell(&window),
            cell(&batch),
            gbs(bytes, batch.check),
            gbs(bytes, batch.fold),
            cell(&one_read),
            speedup(&one_read),
        ));
    }
    println!();
    println!(
        "fedsky variants, warm GB/s (share of the copy bandwidth measured in the same process, peak growth x model):"
    );
    println!(
        "one at a time / pairs (default) / four at a time = updates checked as they arrive and folded 1, 2 or 4 per pass \
         over the accumulator; all in memory = every update already received, as Flower gets them: \
         validated (a full scan), then one batched fold; one read = the same data through `in_memory::fedavg_round`: \
         layouts checked, then one sweep per accumulator block folds, divides and proves the data finite."
    );
    println!();
    println!(
        "| updates x params | one at a time | pairs (default) | four at a time | all in memory, validate then fold | validate / fold GB/s | all in memory, one read | one read: speed-up vs Flower's faster |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in variant_rows {
        println!("{row}");
    }
    println!();
    println!(
        "memory bandwidth (parallel copy) at the end: {:.2} GB/s",
        copy_bandwidth() / 1e9
    );
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
    use fedsky_aggregator::coordinator::AggregatorPhase;
    use fedsky_aggregator::coordinator::Coordinator;
    use fedsky_aggregator::job::{JobConfig, JobConfigExt};
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
        let job = "name: bench\nrounds: {total: 3, minPerRound: 1, maxPerRound: 1, roundTimeoutSeconds: 600}\nfoldOrder: arrival\n";
        let server = start(job, initial, &dir).await;
        let endpoint = format!("http://{}", server.grpc_addr);
        let mut c = AggregatorClient::connect(ClientConfig::insecure(&endpoint, TOKEN, "p0"))
            .await
            .expect("connect");
        c.register(HashMap::new()).await.expect("register");
        let mut times = Vec::new();
        for k in 0..3 {
            let (round, version) = fit(&mut c).await;
            if k == 0 {
                // Local training takes at least this long; meanwhile the
                // server maps and touches its first receive buffer.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
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
            times.push(start.elapsed().as_secs_f64());
        }
        let mb = bytes.len() as f64 / 1e6;
        let rate = |t: f64| bytes.len() as f64 / t / 1e9;
        let warm = times[1].min(times[2]);
        println!();
        println!(
            "upload of a {mb:.0} MB update over loopback gRPC (plaintext, 1 MiB chunks; received into a \
             pooled buffer and checked chunk by chunk; the fold runs when the round closes): \
             first upload of the process (after 1 s of \"training\") {:.3} s = {:.2} GB/s, \
             later rounds (best of 2) {warm:.3} s = {:.2} GB/s",
            times[0],
            rate(times[0]),
            rate(warm)
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
        while core.status().round < 1 || core.status().phase == AggregatorPhase::Waiting {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let start = Instant::now();
        while core.status().phase != AggregatorPhase::Completed {
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
