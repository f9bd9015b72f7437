//! `scale-bench`: the fedsky operator at scale on the testbed.
//!
//! Starts a hub and member control planes with simulated nodes (kwok), runs the
//! `fedsky-operator` binary as its own process against the hub, applies FederatedJobs in
//! a burst or at a steady rate, and reports the operator's memory (sampled from
//! `/proc/<pid>/status`) and how long each job took from apply to `Placed` and to
//! `AggregatorReady`, timed by watches to the millisecond (`make bench-operator`).
//!
//! The aggregators require nodes of the placed region and instance type, so the public
//! cluster gets its nodes once the placement is solved, before any job: in shared mode
//! the one placement is restricted to one instance type; in inline mode, whose
//! requirements cannot restrict it, a probe placement with the jobs' spec tells the type.

mod probe;
mod stats;
mod timeline;
mod topology;

use anyhow::{Context as _, bail};
use clap::Parser;
use fedsky_e2e::testbed::Testbed;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use probe::Sample;
use serde_json::Value;
use stats::{LATENCY_HEADER, latency_row, mb, mb_value, median, summarize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timeline::{JobTimes, Timeline, between, condition_true, fedsky};
use topology::{NAMESPACE, PlacedNode, PlacementMode, Size};

/// The acceptance targets: resident memory below 150 MB, p99 apply→Placed below 2 s.
const RSS_TARGET_MB: f64 = 150.0;
const PLACED_P99_TARGET: Duration = Duration::from_secs(2);

/// The fedsky operator at scale: memory and apply→Placed/AggregatorReady latency.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// FederatedJobs to apply.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Simulated nodes over all member clusters (aggregator nodes plus workers).
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    /// Private member clusters, one pool site each.
    #[arg(long, default_value_t = 3)]
    private_clusters: usize,
    /// Participants per job (`maxPerRound`).
    #[arg(long, default_value_t = 2)]
    participants: usize,
    /// Jobs per second; 0 applies them all at once (a burst).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Create requests in flight during a burst.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// `shared`: every job references one AggregatorPlacement, solved before the jobs
    /// come; `inline`: every job carries requirements, so every job is one more solve.
    #[arg(long, value_enum, default_value_t = PlacementMode::Shared)]
    placement: PlacementMode,
    /// Seconds to keep sampling after every job is AggregatorReady (steady-state memory).
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
    /// Give up on jobs that have not reached AggregatorReady after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// The operator binary (default: `fedsky-operator` next to this binary).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Keep the operator's log, the hub kubeconfig and the RSS samples here (default: a
    /// temporary directory, removed at the end).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Exit non-zero when a target is missed or a job never got ready.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let size = Size {
        jobs: args.jobs,
        nodes: args.nodes,
        private_clusters: args.private_clusters,
        participants: args.participants,
    };
    let layout = topology::layout(&size)?;
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a non-negative number of jobs per second");
    }
    let operator_bin = args
        .operator
        .clone()
        .unwrap_or_else(|| sibling("fedsky-operator"));
    if !operator_bin.is_file() {
        bail!(
            "operator binary {} not found; build it with `cargo build --release -p fedsky-operator` or pass --operator",
            operator_bin.display()
        );
    }
    let tmp;
    let out_dir = match &args.out_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("fedsky-scale-bench-")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let clock = Instant::now();
    let say = |msg: &str| eprintln!("[{:>6.1} s] {msg}", clock.elapsed().as_secs_f64());

    say(&format!(
        "starting the hub and {} member clusters with {} nodes",
        layout.workers.len() + 1,
        size.nodes
    ));
    let testbed = Testbed::start(&topology::testbed(&layout)).await?;
    let hub = testbed.hub.client().await?;
    let public = testbed.members[0].1.client().await?;
    create_volumes(&public, size.jobs).await?;

    let kubeconfig = out_dir.join("hub.kubeconfig");
    write_atomically(&kubeconfig, testbed.hub.kubeconfig_yaml())?;
    let metrics_addr = free_loopback_addr()?;
    let log_path = out_dir.join("operator.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut operator = tokio::process::Command::new(&operator_bin)
        .args(["--no-leader-election", "--metrics-addr"])
        .arg(metrics_addr.to_string())
        .env("KUBECONFIG", &kubeconfig)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", operator_bin.display()))?;
    let pid = operator
        .id()
        .context("the operator exited as soon as it started")?;
    say(&format!(
        "operator pid {pid} running, log {}",
        log_path.display()
    ));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = tokio::spawn(sample_forever(pid, samples.clone()));

    set_up_hub(&hub, &layout, args.placement).await?;
    say("waiting for member clusters, the pool and the placement");
    let solved = wait_ready(&hub, &layout, args.placement, &mut operator).await?;
    let catalog = load_catalog(solved["catalogVersion"].as_str().unwrap_or_default())?;
    let placed = PlacedNode::from_status(&solved, &catalog).map_err(anyhow::Error::msg)?;
    say(&format!(
        "placed on {} in {}; adding {} aggregator nodes of that type",
        placed.instance_type, placed.region, layout.public_nodes
    ));
    add_public_nodes(
        &testbed.members[0].1,
        &public,
        &topology::public_nodes(&layout, &placed),
    )
    .await?;
    if args.placement == PlacementMode::Inline {
        // Its answer is all it was for; the jobs meet the hub as before.
        Api::<DynamicObject>::namespaced_with(
            hub.clone(),
            NAMESPACE,
            &fedsky("AggregatorPlacement", "aggregatorplacements"),
        )
        .delete(topology::INLINE_PROBE, &DeleteParams::default())
        .await
        .context("deleting the probe placement")?;
    }
    let idle = probe::sample(pid)?;
    say(&format!(
        "ready; operator RSS {} before any job",
        mb(idle.rss_kib)
    ));

    let timeline = Timeline::default();
    let watchers = [
        tokio::spawn(timeline::watch_jobs(
            hub.clone(),
            NAMESPACE.into(),
            timeline.clone(),
        )),
        tokio::spawn(timeline::watch_deployments(
            public.clone(),
            NAMESPACE.into(),
            timeline.clone(),
        )),
    ];
    // Let both watches finish their initial list before the first job exists.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mode = if args.rate > 0.0 {
        format!("steady, {} jobs/s", args.rate)
    } else {
        format!("burst, {} create requests in flight", args.concurrency)
    };
    say(&format!("applying {} jobs ({mode})", size.jobs));
    let apply_start = Instant::now();
    let start_sample = probe::sample(pid)?;
    apply_jobs(&hub, &size, &args, &timeline).await?;
    let apply_took = apply_start.elapsed();
    say(&format!("applied in {:.1} s", apply_took.as_secs_f64()));

    let deadline = apply_start + Duration::from_secs(args.timeout_secs);
    let mut last_report = Instant::now();
    loop {
        let placed = timeline.count(|t| t.placed);
        let ready = timeline.count(|t| t.aggregator_ready);
        if ready >= size.jobs {
            break;
        }
        if let Some(status) = operator.try_wait()? {
            bail!(
                "the operator exited ({status}) during the run; see {}",
                log_path.display()
            );
        }
        if Instant::now() > deadline {
            say(&format!(
                "timed out: {ready}/{} AggregatorReady after {} s",
                size.jobs, args.timeout_secs
            ));
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let rss = latest(&samples).map_or(0, |s| s.rss_kib);
            say(&format!(
                "Placed {placed}/{n}, AggregatorReady {ready}/{n}, operator RSS {}",
                mb(rss),
                n = size.jobs
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = Instant::now();
    say(&format!(
        "settling {} s for steady-state memory",
        args.settle_secs
    ));
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let end_sample = probe::sample(pid)?;
    let metrics = probe::scrape(metrics_addr).unwrap_or_else(|e| {
        say(&format!("no metrics: {e}"));
        String::new()
    });
    std::fs::write(out_dir.join("metrics.txt"), &metrics)?;

    sampler.abort();
    watchers.iter().for_each(tokio::task::JoinHandle::abort);
    operator.kill().await.ok();
    let on_nodes = placed_on(&hub, &placed)
        .await
        .inspect_err(|e| say(&format!("could not list the jobs' placements: {e}")))
        .ok();
    let samples = samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    write_samples(&out_dir.join("rss.csv"), &samples, clock)?;
    write_times(&out_dir.join("jobs.csv"), &timeline.snapshot(), clock)?;

    let report = Report {
        args: &args,
        layout: &layout,
        placed: &placed,
        on_nodes,
        mode: &mode,
        apply_took,
        times: timeline.snapshot(),
        idle,
        start_sample,
        end_sample,
        samples: &samples,
        settle_from: done,
        metrics: &metrics,
    };
    let (text, met) = report.render();
    println!("{text}");
    std::fs::write(out_dir.join("report.md"), &text)?;
    drop(testbed);
    if args.check && !met {
        bail!("a target was missed or a job never became AggregatorReady");
    }
    Ok(())
}

/// `name` next to the running binary (both come from the same target directory).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| name.into())
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A loopback address with a port that was free a moment ago, for the operator's
/// metrics (it cannot tell us the port it picks for `:0`).
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

async fn create_volumes(public: &kube::Client, n: usize) -> anyhow::Result<()> {
    let api: Api<PersistentVolume> = Api::all(public.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let pv: PersistentVolume = serde_json::from_value(topology::model_store_volume(i))?;
                api.create(&PostParams::default(), &pv).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

/// The catalog the placement was solved with: the operator's built-in one, which is in
/// the repository's `operator/catalog/`, found by its `version`.
fn load_catalog(version: &str) -> anyhow::Result<Value> {
    let dir = fedsky_e2e::repo_root().join("operator/catalog");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let catalog: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if catalog["version"] == version {
            return Ok(catalog);
        }
    }
    bail!(
        "the placement was solved with catalog {version:?}, which is not in {}",
        dir.display()
    )
}

/// Registers the public cluster's nodes and waits until kwok has made them all Ready, so
/// that the first aggregator finds them in the scheduler.
async fn add_public_nodes(
    plane: &fedsky_e2e::ControlPlane,
    public: &kube::Client,
    nodes: &[fedsky_e2e::testbed::NodeConfig],
) -> anyhow::Result<()> {
    for n in nodes {
        let mut capacity = std::collections::BTreeMap::from([
            ("cpu".to_string(), n.cpu.clone()),
            ("memory".to_string(), n.memory.clone()),
        ]);
        if n.gpus > 0 {
            capacity.insert("nvidia.com/gpu".into(), n.gpus.to_string());
        }
        plane
            .add_node(public, &n.name, n.labels.clone(), capacity)
            .await?;
    }
    let api: Api<Node> = Api::all(public.clone());
    let start = Instant::now();
    loop {
        let ready = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= nodes.len() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{ready}/{} aggregator nodes Ready after 60 s", nodes.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Jobs whose chosen placement is the aggregator nodes' region and instance type: every
/// job, unless an inline placement answered otherwise than the probe.
async fn placed_on(hub: &kube::Client, placed: &PlacedNode) -> anyhow::Result<usize> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(hub.clone(), NAMESPACE, &timeline::federated_jobs());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|j| {
            let o = &j.data["status"]["placement"]["option"];
            o["region"] == placed.region.as_str()
                && o["instanceType"] == placed.instance_type.as_str()
        })
        .count())
}

async fn create(
    client: &kube::Client,
    value: Value,
    kind: &str,
    plural: &str,
) -> anyhow::Result<()> {
    let obj: DynamicObject = serde_json::from_value(value)?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NAMESPACE, &fedsky(kind, plural));
    api.create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating {kind}"))?;
    Ok(())
}

async fn set_up_hub(
    hub: &kube::Client,
    layout: &topology::Layout,
    placement: PlacementMode,
) -> anyhow::Result<()> {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(hub.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    create(
        hub,
        topology::pool(layout),
        "ParticipantPool",
        "participantpools",
    )
    .await?;
    let placement = match placement {
        PlacementMode::Shared => topology::shared_placement(),
        PlacementMode::Inline => topology::inline_probe_placement(),
    };
    create(
        hub,
        placement,
        "AggregatorPlacement",
        "aggregatorplacements",
    )
    .await
}

/// Waits until every MemberCluster is Ready, the pool sees every worker and the
/// placement (shared mode: the jobs'; inline mode: the probe) is solved, so that the jobs
/// meet a warmed-up operator. Returns the placement's `status`.
async fn wait_ready(
    hub: &kube::Client,
    layout: &topology::Layout,
    placement: PlacementMode,
    operator: &mut tokio::process::Child,
) -> anyhow::Result<Value> {
    let placement_name = match placement {
        PlacementMode::Shared => topology::PLACEMENT,
        PlacementMode::Inline => topology::INLINE_PROBE,
    };
    let start = Instant::now();
    let clusters: Api<DynamicObject> =
        Api::all_with(hub.clone(), &fedsky("MemberCluster", "memberclusters"));
    let pools: Api<DynamicObject> = Api::namespaced_with(
        hub.clone(),
        NAMESPACE,
        &fedsky("ParticipantPool", "participantpools"),
    );
    let placements: Api<DynamicObject> = Api::namespaced_with(
        hub.clone(),
        NAMESPACE,
        &fedsky("AggregatorPlacement", "aggregatorplacements"),
    );
    let want_workers = i64::try_from(layout.worker_count())?;
    loop {
        if let Some(status) = operator.try_wait()? {
            bail!("the operator exited ({status}) while starting");
        }
        let mcs = clusters.list(&ListParams::default()).await?.items;
        let clusters_ready = mcs.len() == layout.workers.len() + 1
            && mcs.iter().all(|mc| condition_true(&mc.data, "Ready"));
        let pool = pools.get_opt(topology::POOL).await?;
        let eligible = pool
            .as_ref()
            .and_then(|p| p.data["status"]["eligibleNodes"].as_i64())
            .unwrap_or(0);
        let status = placements
            .get_opt(placement_name)
            .await?
            .map(|ap| ap.data["status"].clone())
            .unwrap_or_default();
        let placed = !status["selected"].is_null();
        if let Some(c) = status["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "Feasible" && c["status"] == "False")
        }) {
            bail!(
                "AggregatorPlacement {placement_name} is infeasible: {}",
                c["message"]
            );
        }
        if clusters_ready && eligible == want_workers && placed {
            return Ok(status);
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!(
                "not ready after 300 s: member clusters ready {clusters_ready}, pool sees {eligible}/{want_workers} eligible workers, placement solved {placed}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn apply_jobs(
    hub: &kube::Client,
    size: &Size,
    args: &Args,
    timeline: &Timeline,
) -> anyhow::Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(hub.clone(), NAMESPACE, &timeline::federated_jobs());
    let one = |i: usize| {
        let api = api.clone();
        let timeline = timeline.clone();
        let value = topology::job(i, size.participants, args.placement);
        async move {
            let obj: DynamicObject = serde_json::from_value(value)?;
            let name = topology::job_name(i);
            timeline.update(&name, |t| t.applied = Some(Instant::now()));
            api.create(&PostParams::default(), &obj)
                .await
                .with_context(|| format!("creating FederatedJob {name}"))?;
            timeline.update(&name, |t| t.created = Some(Instant::now()));
            Ok::<_, anyhow::Error>(())
        }
    };
    if args.rate > 0.0 {
        // A steady rate: one create per tick, each in its own task so a slow answer does
        // not delay the next job.
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..size.jobs {
            tick.tick().await;
            tasks.spawn(one(i));
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(())
    } else {
        futures::stream::iter(0..size.jobs)
            .map(one)
            .buffer_unordered(args.concurrency.max(1))
            .try_collect::<()>()
            .await
    }
}

async fn sample_forever(pid: u32, samples: Arc<Mutex<Vec<Sample>>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Ok(s) = probe::sample(pid) else { return };
        samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(s);
    }
}

fn latest(samples: &Arc<Mutex<Vec<Sample>>>) -> Option<Sample> {
    samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .last()
        .copied()
}

fn write_samples(path: &Path, samples: &[Sample], clock: Instant) -> anyhow::Result<()> {
    let mut text = String::from("seconds,rss_kib,cpu_ticks\n");
    for s in samples {
        text.push_str(&format!(
            "{:.2},{},{}\n",
            s.at.saturating_duration_since(clock).as_secs_f64(),
            s.rss_kib,
            s.cpu_ticks
        ));
    }
    write_atomically(path, &text)
}

/// Each job's stages in seconds from the start, in apply order: where in a burst the slow
/// ones were.
fn write_times(
    path: &Path,
    times: &std::collections::HashMap<String, JobTimes>,
    clock: Instant,
) -> anyhow::Result<()> {
    let at = |t: Option<Instant>| {
        t.map(|t| format!("{:.3}", t.saturating_duration_since(clock).as_secs_f64()))
            .unwrap_or_default()
    };
    let mut rows: Vec<(&String, &JobTimes)> = times.iter().collect();
    rows.sort_by_key(|(name, t)| (t.applied, name.as_str()));
    let mut text = String::from(
        "job,applied,created,placed,deployment_seen,deployment_available,aggregator_ready\n",
    );
    for (name, t) in rows {
        text.push_str(&format!(
            "{name},{},{},{},{},{},{}\n",
            at(t.applied),
            at(t.created),
            at(t.placed),
            at(t.deployment_seen),
            at(t.deployment_available),
            at(t.aggregator_ready)
        ));
    }
    write_atomically(path, &text)
}

/// Everything the printed report is made of.
struct Report<'a> {
    args: &'a Args,
    layout: &'a topology::Layout,
    placed: &'a PlacedNode,
    /// Jobs placed on the aggregator nodes' region and instance type, where known.
    on_nodes: Option<usize>,
    mode: &'a str,
    apply_took: Duration,
    times: std::collections::HashMap<String, JobTimes>,
    idle: Sample,
    start_sample: Sample,
    end_sample: Sample,
    samples: &'a [Sample],
    settle_from: Instant,
    metrics: &'a str,
}

impl Report<'_> {
    /// The report as Markdown, and whether every target was met.
    fn render(&self) -> (String, bool) {
        let a = self.args;
        let n = a.jobs;
        let stage = |f: &dyn Fn(&JobTimes) -> Option<Duration>| {
            summarize(self.times.values().filter_map(f).collect())
        };
        let placed = stage(&|t| between(t.applied, t.placed));
        let ready = stage(&|t| between(t.applied, t.aggregator_ready));
        let created = stage(&|t| between(t.applied, t.created));
        let seen = stage(&|t| between(t.applied, t.deployment_seen));
        let available = stage(&|t| between(t.applied, t.deployment_available));
        let noticed = stage(&|t| between(t.deployment_available, t.aggregator_ready));
        let placed_to_seen = stage(&|t| between(t.placed, t.deployment_seen));

        let run: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at >= self.start_sample.at)
            .collect();
        let peak = run.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let steady = median(
            self.samples
                .iter()
                .filter(|s| s.at >= self.settle_from)
                .map(|s| s.rss_kib)
                .collect(),
        )
        .unwrap_or(0);
        let cpu = probe::cpu_seconds(&self.start_sample, &self.end_sample);
        let wall = self
            .end_sample
            .at
            .saturating_duration_since(self.start_sample.at)
            .as_secs_f64();

        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "## fedsky operator scale benchmark: {n} FederatedJobs, {} nodes\n",
            a.nodes
        ));
        line(format!(
            "- clusters: hub + `{}` ({} aggregator nodes) + {} private clusters ({} worker nodes: {})",
            topology::PUBLIC_CLUSTER,
            self.layout.public_nodes,
            self.layout.workers.len(),
            self.layout.worker_count(),
            self.layout
                .workers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("/")
        ));
        let p = self.placed;
        line(format!(
            "- aggregator nodes: labelled `{}={}` and `{}={}` as the cloud labels them, which the aggregators' node affinity requires; each has {} such instances' CPU and memory, so {} aggregators fit by their requests; {}",
            topology::REGION_LABEL,
            p.region,
            topology::INSTANCE_TYPE_LABEL,
            p.instance_type,
            topology::AGGREGATORS_PER_NODE,
            topology::AGGREGATORS_PER_NODE,
            match a.placement {
                PlacementMode::Shared => format!(
                    "the shared placement may choose only `{}`",
                    topology::SHARED_INSTANCE_TYPE
                ),
                PlacementMode::Inline => format!(
                    "inline requirements cannot restrict the instance type, so the type is the answer of a probe AggregatorPlacement with the jobs' spec (`{}`), solved and deleted before the jobs",
                    topology::INLINE_PROBE
                ),
            }
        ));
        line(format!(
            "- jobs: {} participants each, placement `{}`, applied {} in {:.1} s; placed on the aggregator nodes' region and type: {}/{n}",
            a.participants,
            match a.placement {
                PlacementMode::Shared => "shared (one AggregatorPlacement, solved before the jobs)",
                PlacementMode::Inline => "inline (one AggregatorPlacement and solve per job)",
            },
            self.mode,
            self.apply_took.as_secs_f64(),
            self.on_nodes
                .map_or_else(|| "unknown".to_string(), |k| k.to_string())
        ));
        line(String::new());
        line(LATENCY_HEADER.into());
        for (what, s) in [
            ("apply → created (hub answered)", &created),
            ("apply → `Placed`", &placed),
            ("apply → `AggregatorReady`", &ready),
            ("apply → aggregator Deployment in the member", &seen),
            (
                "apply → Deployment available (member's controllers, kwok)",
                &available,
            ),
            ("`Placed` → Deployment in the member", &placed_to_seen),
            (
                "Deployment available → `AggregatorReady` (operator notices)",
                &noticed,
            ),
        ] {
            line(latency_row(what, n, s.as_ref()));
        }
        line(String::new());
        line("| operator process | value |\n| --- | ---: |".into());
        line(format!(
            "| RSS before the jobs (clusters, pool, placement) | {} |",
            mb(self.idle.rss_kib)
        ));
        line(format!("| RSS peak during the run | {} |", mb(peak)));
        line(format!(
            "| RSS steady state (median over the {} s settle period at the end) | {} |",
            a.settle_secs,
            mb(steady)
        ));
        line(format!(
            "| CPU time from the first apply to the end | {cpu:.1} s over {wall:.0} s ({:.2} cores) |",
            cpu / wall.max(1e-9)
        ));
        let totals = probe::by_labels(
            self.metrics,
            "controller_runtime_reconcile_total",
            &["controller", "result"],
        );
        let time_sum = probe::by_labels(
            self.metrics,
            "controller_runtime_reconcile_time_seconds_sum",
            &["controller"],
        );
        let time_count = probe::by_labels(
            self.metrics,
            "controller_runtime_reconcile_time_seconds_count",
            &["controller"],
        );
        for (k, v) in &totals {
            line(format!("| reconciles `{}` {} | {v} |", k[0], k[1]));
        }
        for (k, sum) in &time_sum {
            if let Some(count) = time_count.get(k).filter(|c| **c > 0.0) {
                line(format!(
                    "| mean reconcile time `{}` | {:.1} ms |",
                    k[0],
                    sum / count * 1000.0
                ));
            }
        }
        let errors = probe::by_labels(
            self.metrics,
            "controller_runtime_reconcile_errors_total",
            &["controller", "category"],
        );
        for (k, v) in &errors {
            line(format!("| reconcile errors `{}` {} | {v} |", k[0], k[1]));
        }
        let rss_ok = mb_value(peak) < RSS_TARGET_MB;
        let placed_ok = placed
            .as_ref()
            .is_some_and(|s| s.reached == n && s.p99 < PLACED_P99_TARGET);
        let all_ready = ready.as_ref().is_some_and(|s| s.reached == n);
        line(String::new());
        line(format!(
            "Targets: peak RSS < {RSS_TARGET_MB} MB: {}; p99 apply → `Placed` < {} s: {}; every job AggregatorReady: {}",
            verdict(rss_ok),
            PLACED_P99_TARGET.as_secs(),
            verdict(placed_ok),
            verdict(all_ready)
        ));
        (out, rss_ok && placed_ok && all_ready)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_catalogs_are_found_by_version_and_size_the_pinned_type() {
        let dir = fedsky_e2e::repo_root().join("operator/catalog");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("catalog dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let version = serde_json::from_str::<Value>(&text).expect("json")["version"]
                .as_str()
                .expect("version")
                .to_string();
            let catalog = load_catalog(&version).expect("found by version");
            let status = serde_json::json!({ "selected": {
                "cloud": "aws", "region": "eu-central-1",
                "instanceType": topology::SHARED_INSTANCE_TYPE,
            }});
            let placed = PlacedNode::from_status(&status, &catalog).expect("pinned type");
            assert!(placed.vcpus > 0.0 && placed.memory_gib > 0.0, "{placed:?}");
            n += 1;
        }
        assert!(n >= 1, "no catalog in {}", dir.display());
        assert!(load_catalog("no-such-version").is_err());
    }
}
