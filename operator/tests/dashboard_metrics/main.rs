//! The Grafana dashboard the chart ships (`charts/fedsky/dashboards/fedsky-operator.json`)
//! shows data: every metric its queries name — panel targets and variable queries — is in
//! a live scrape of the operator's `/metrics` or of an aggregator's, taken while a job
//! trains with the process runtime, and every label a query matches on or groups by is on
//! that metric or is a label Prometheus adds to its target (the chart's ServiceMonitor for
//! the operator, the PodMonitor of `terraform/modules/fedsky-member` for aggregators).
//!
//! The live test needs the `fedsky-aggregator` and libtorch `fedsky-participant` binaries,
//! so it is ignored by a plain `cargo test`; `make process-runtime-test` builds both and
//! runs it. The parser's tests and the check against the metrics the operator registers
//! run everywhere.

#[path = "../common/mod.rs"]
mod common;
mod promql;
mod scrape;

use common::processes::{SiteSpec, StopOnDrop, bin, process_settings};
use common::{apply_json, eventually};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::{FederatedJobStatus, JobPhase};
use fedsky_operator::metrics::{JobLabels, JobSample, Metrics};
use fedsky_operator::run::Settings;
use kube::api::{Api, DeleteParams};
use scrape::Scrape;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const DASHBOARD: &str = include_str!("../../../charts/fedsky/dashboards/fedsky-operator.json");
const POD_MONITOR: &str = include_str!("../../../terraform/modules/fedsky-member/monitoring.tf");

/// Labels prometheus-operator gives every target of a ServiceMonitor endpoint.
const SERVICE_MONITOR_LABELS: &[&str] = &[
    "namespace",
    "service",
    "pod",
    "container",
    "endpoint",
    "instance",
    "job",
];
/// Labels prometheus-operator gives every target of a PodMonitor endpoint (the module's
/// relabelings add more).
const POD_MONITOR_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "container",
    "endpoint",
    "instance",
    "job",
];

/// A query of the dashboard.
#[derive(Debug, Clone)]
struct Query {
    /// Panel title and refId, or the variable's name.
    place: String,
    text: String,
    /// A Grafana variable query (`label_values(…)`), not PromQL.
    variable: bool,
}

/// Every query of `dashboard`: panel targets (rows' nested panels included) and query
/// variables.
fn queries(dashboard: &Value) -> Vec<Query> {
    fn panels(list: &Value, out: &mut Vec<Query>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        place: format!(
                            "panel {:?} {}",
                            p["title"].as_str().unwrap_or_default(),
                            t["refId"].as_str().unwrap_or_default()
                        ),
                        text: expr.to_string(),
                        variable: false,
                    });
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let text = v["query"]["query"].as_str().or_else(|| v["query"].as_str());
        if let Some(text) = text {
            out.push(Query {
                place: format!("variable {}", v["name"].as_str().unwrap_or_default()),
                text: text.to_string(),
                variable: true,
            });
        }
    }
    out
}

fn dashboard_queries() -> Vec<Query> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let q = queries(&dashboard);
    assert!(q.len() > 10, "too few queries found: {q:#?}");
    q
}

/// The labels the aggregators' PodMonitor adds: its relabelings' `targetLabel`s.
fn pod_monitor_target_labels() -> BTreeSet<String> {
    let labels: BTreeSet<String> = POD_MONITOR
        .lines()
        .filter_map(|l| {
            let v = l.trim().strip_prefix("targetLabel")?.trim_start();
            let v = v.strip_prefix('=')?.trim();
            Some(v.trim_matches('"').to_string())
        })
        .collect();
    assert!(
        labels.contains("federatedjob"),
        "no targetLabel lines found in monitoring.tf: {labels:?}"
    );
    labels
}

/// A scrape and the labels Prometheus adds to its target.
#[derive(Debug)]
struct Source {
    name: &'static str,
    scrape: Scrape,
    target_labels: BTreeSet<String>,
}

impl Source {
    fn operator(text: &str) -> Self {
        Self {
            name: "operator",
            scrape: Scrape::parse(text),
            target_labels: SERVICE_MONITOR_LABELS
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
        }
    }

    fn aggregator(text: &str) -> Self {
        let mut target_labels: BTreeSet<String> = POD_MONITOR_LABELS
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        target_labels.extend(pod_monitor_target_labels());
        Self {
            name: "aggregator",
            scrape: Scrape::parse(text),
            target_labels,
        }
    }
}

/// Something a query names that no source has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    place: String,
    /// The metric concerned, where there is one.
    metric: Option<String>,
    what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.what)
    }
}

/// What `queries` name that `sources` lack: metrics in no scrape, and labels neither on
/// the metric's samples nor added to its target. (A family listed without samples exists,
/// but its labels are not checked.)
fn problems(queries: &[Query], sources: &[Source]) -> Vec<Problem> {
    let mut out = Vec::new();
    for q in queries {
        let problem = |metric: Option<&str>, what: String| Problem {
            place: q.place.clone(),
            metric: metric.map(str::to_string),
            what,
        };
        let refs = if q.variable {
            promql::grafana_query(&q.text)
        } else {
            promql::refs(&q.text)
        };
        let refs = match refs {
            Ok(r) => r,
            Err(e) => {
                out.push(problem(None, format!("cannot read {:?}: {e}", q.text)));
                continue;
            }
        };
        // The labels a grouping clause may use: those of every metric in the query;
        // `None` once one of them has unknown labels.
        let mut available: Option<BTreeSet<String>> = Some(BTreeSet::new());
        for sel in &refs.selectors {
            let Some((source, family)) = sources
                .iter()
                .find_map(|s| s.scrape.family(&sel.metric).map(|f| (s, f)))
            else {
                let names: Vec<&str> = sources.iter().map(|s| s.name).collect();
                out.push(problem(
                    Some(&sel.metric),
                    format!("{} is in no scrape ({})", sel.metric, names.join(", ")),
                ));
                available = None;
                continue;
            };
            let Some(labels) = &family.labels else {
                available = None;
                continue;
            };
            for l in &sel.labels {
                if !labels.contains(l) && !source.target_labels.contains(l) {
                    out.push(problem(
                        Some(&sel.metric),
                        format!(
                            "{} has no label {l} (its labels: {labels:?}; the {} target's: {:?})",
                            sel.metric, source.name, source.target_labels
                        ),
                    ));
                }
            }
            if let Some(a) = &mut available {
                a.extend(labels.iter().cloned());
                a.extend(source.target_labels.iter().cloned());
            }
        }
        if let Some(available) = available.filter(|_| !refs.selectors.is_empty()) {
            for l in refs.grouping.difference(&available) {
                out.push(problem(
                    None,
                    format!("groups by {l}, which none of its metrics has"),
                ));
            }
        }
    }
    out
}

/// The operator's metrics with every family holding a series: one reconcile, error and
/// busy worker, and a job with every training value.
fn operator_exposition() -> String {
    let m = Metrics::default();
    m.reconciled("federatedjob", "success", Some(Duration::from_millis(3)));
    m.error("federatedjob", "MemberCluster");
    let _busy = m.busy("federatedjob");
    let sample = JobSample {
        rounds_completed: 2,
        round_duration_seconds: Some(3.0),
        round_participants: Some(3),
        model_accuracy: Some(0.7),
        model_loss: Some(0.4),
    };
    let labels = JobLabels {
        federatedjob_namespace: "covid".into(),
        federatedjob: "xray".into(),
    };
    m.job(&labels, "uid", &sample);
    m.encode()
}

#[test]
fn every_query_reads_and_names_operator_metrics_or_aggregator_ones() {
    let sources = [Source::operator(&operator_exposition())];
    let found = problems(&dashboard_queries(), &sources);
    // The aggregator's metrics are checked against a live aggregator in the test below.
    let unexplained: Vec<String> = found
        .iter()
        .filter(|p| {
            !p.metric
                .as_deref()
                .is_some_and(|m| m.starts_with("fedsky_aggregator_"))
        })
        .map(ToString::to_string)
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:#?}");
}

#[test]
fn a_query_naming_a_missing_metric_or_label_fails_the_check() {
    let sources = [Source::operator(&operator_exposition())];
    let mut q = dashboard_queries();
    let before = problems(&q, &sources);
    q.push(Query {
        place: "bogus metric".into(),
        text: r#"sum by (federatedjob) (increase(fedsky_federatedjob_bogus_total{federatedjob=~"$federatedjob"}[1h]))"#.into(),
        variable: false,
    });
    q.push(Query {
        place: "bogus label".into(),
        text: r#"sum(rate(controller_runtime_reconcile_total{exported_namespace="x"}[5m]))"#.into(),
        variable: false,
    });
    q.push(Query {
        place: "bogus grouping".into(),
        text: "sum by (federatedjob_name) (fedsky_federatedjob_model_accuracy)".into(),
        variable: false,
    });
    q.push(Query {
        place: "bogus variable".into(),
        text: "label_values(fedsky_federatedjob_bogus_total, federatedjob)".into(),
        variable: true,
    });
    q.push(Query {
        place: "unreadable".into(),
        text: r#"sum(rate(controller_runtime_reconcile_total{result="error"[5m]))"#.into(),
        variable: false,
    });
    let after = problems(&q, &sources);
    let new: Vec<&Problem> = after.iter().filter(|p| !before.contains(p)).collect();
    let places: Vec<&str> = new.iter().map(|p| p.place.as_str()).collect();
    assert_eq!(
        places,
        [
            "bogus metric",
            "bogus label",
            "bogus grouping",
            "bogus variable",
            "unreadable"
        ],
        "{new:#?}"
    );
    assert_eq!(
        new[0].metric.as_deref(),
        Some("fedsky_federatedjob_bogus_total")
    );
    assert!(new[4].what.starts_with("cannot read"), "{}", new[4]);
}

/// A free loopback port for the operator's `/metrics`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn get(client: &reqwest::Client, url: &str) -> Result<String, String> {
    client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("{url}: {e}"))
}

/// The value of the first sample line of `series` whose labels include `labels`.
fn value<'a>(text: &'a str, series: &str, labels: &str) -> Option<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{series}{{")) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next())
}

const SITES: [SiteSpec<'_>; 2] = [
    ("eu", "xray-eu", "eu-central-1"),
    ("us", "xray-us", "us-east-1"),
];
/// Rounds of the job: more than it gets through before the test has checked it (100 of
/// these small rounds took about 30 s), which needs the operator to have looked at it
/// while it trains (it polls every 5 to 30 s). The test deletes it unfinished.
const ROUNDS: i32 = 300;

async fn status(jobs: &Api<FederatedJob>) -> Result<FederatedJobStatus, String> {
    let job = jobs.get("xray").await.map_err(|e| e.to_string())?;
    Ok(job.status.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the aggregator and libtorch participant binaries: make process-runtime-test"]
async fn every_dashboard_metric_is_in_a_live_scrape() {
    let participant = bin("FEDSKY_PARTICIPANT_BIN");
    let work = tempfile::tempdir().expect("tempdir");
    let state_dir = work.path().join("state");
    let _stop = StopOnDrop(state_dir.clone());
    let port = free_port();
    let settings = Settings {
        metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ..process_settings(&state_dir, work.path(), None)
    };
    let f = common::processes::hospitals_fleet(&participant, work.path(), &SITES, settings).await;
    let hub = f.hub_client.clone();
    // A member cluster whose kubeconfig Secret is missing: the errors-by-category panel's
    // series exist only once a reconcile has failed.
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
            "metadata": { "name": "lost-site" },
            "spec": {
                "provider": "openstack", "region": "RegionTwo", "tier": "private",
                "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": "lost-site-kubeconfig" }
            }
        }),
    )
    .await;
    let ns = "default";
    common::processes::hospitals_and_placement(&hub, ns, &SITES).await;
    apply_json(&hub, common::processes::xray_job("xray", ns, ROUNDS, 1, 2)).await;
    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), ns);
    let running = |st: &FederatedJobStatus| {
        assert_ne!(st.phase, Some(JobPhase::Failed), "{:?}", st.conditions);
        assert_ne!(
            st.phase,
            Some(JobPhase::Succeeded),
            "the job finished before it was checked while it trains: give it more rounds"
        );
    };

    // Once a round is done and evaluated, the status has every value the dashboard shows:
    // rounds, the initial model's evaluation, the round's duration and participants.
    let model_url = eventually("a round completed and evaluated", 900, || {
        let jobs = jobs.clone();
        async move {
            let st = status(&jobs).await?;
            running(&st);
            let evaluated = st.history.iter().any(|h| h.accuracy.is_some())
                && st.history.iter().any(|h| h.duration_seconds.is_some());
            match st.aggregator.and_then(|a| a.model_url) {
                Some(url) if st.phase == Some(JobPhase::Running) && evaluated => Ok(url),
                _ => Err(format!(
                    "{:?} round {:?} history {:?}",
                    st.phase, st.current_round, st.history
                )),
            }
        }
    })
    .await;
    let queries = dashboard_queries();
    let operator_url = format!("http://127.0.0.1:{port}/metrics");
    let aggregator_url = format!("{model_url}/metrics");
    // The operator's /metrics is plain HTTP; the aggregator's needs the job's credentials
    // (here the operator's own client certificate; the PodMonitor uses a scrape token).
    let plain = reqwest::Client::new();
    let aggregator = common::aggregator_client(&hub, ns, "xray").await;
    // The operator exports a status right after writing it: give it a moment.
    let (sources, phase) = eventually("every dashboard query to find its metrics", 60, || {
        let (jobs, operator_url, aggregator_url, queries) =
            (jobs.clone(), &operator_url, &aggregator_url, &queries);
        let (plain, aggregator) = (&plain, &aggregator);
        async move {
            let sources = [
                Source::operator(&get(plain, operator_url).await?),
                Source::aggregator(&get(aggregator, aggregator_url).await?),
            ];
            let phase = status(&jobs).await?.phase;
            let found = problems(queries, &sources);
            if found.is_empty() {
                Ok((sources, phase))
            } else {
                let found: Vec<String> = found.iter().map(ToString::to_string).collect();
                Err(format!("{found:#?}"))
            }
        }
    })
    .await;
    assert_eq!(
        phase,
        Some(JobPhase::Running),
        "scraped while the job trains: give it more rounds"
    );
    eprintln!(
        "{} dashboard queries found their metrics in live scrapes of the operator and the aggregator",
        queries.len()
    );
    // The same check fails on these scrapes for a metric neither exports.
    let mut bogus = queries.clone();
    bogus.push(Query {
        place: "bogus".into(),
        text: "sum(rate(fedsky_aggregator_bogus_total[5m]))".into(),
        variable: false,
    });
    let found = problems(&bogus, &sources);
    assert_eq!(
        found
            .iter()
            .map(|p| (p.place.as_str(), p.metric.as_deref()))
            .collect::<Vec<_>>(),
        [("bogus", Some("fedsky_aggregator_bogus_total"))]
    );

    // The rounds counter is the status's round; deleting the job drops its series.
    let job_labels = r#"federatedjob_namespace="default",federatedjob="xray""#;
    eventually("the rounds counter at the status's round", 60, || {
        let (jobs, operator_url, plain) = (jobs.clone(), &operator_url, &plain);
        async move {
            let text = get(plain, operator_url).await?;
            let round = status(&jobs).await?.current_round.unwrap_or(0).to_string();
            match value(
                &text,
                "fedsky_federatedjob_rounds_completed_total",
                job_labels,
            ) {
                Some(v) if v == round => Ok(()),
                other => Err(format!("counter {other:?}, status round {round}")),
            }
        }
    })
    .await;
    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(
        "the job, its processes and its series to be gone",
        60,
        || {
            let (jobs, operator_url, plain) = (jobs.clone(), &operator_url, &plain);
            let dir = state_dir.join("default-xray");
            async move {
                let text = get(plain, operator_url).await?;
                match jobs.get_opt("xray").await.map_err(|e| e.to_string())? {
                    None if !dir.exists() && !text.contains(job_labels) => Ok(()),
                    other => Err(format!(
                        "job exists {}, dir exists {}",
                        other.is_some(),
                        dir.exists()
                    )),
                }
            }
        },
    )
    .await;
    f.operator.abort();
}
