//! `spec.tracking.mlflow` end to end with the process runtime (real aggregator and
//! libtorch participants), a real hub API server and a REAL MLflow tracking server (PyPI
//! `mlflow`, its basic-auth app on, so requests without the Secret's credentials are
//! refused): a two-site, three-round job names the server, an experiment, a registered
//! model and a Secret with `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`, and
//! succeeds. Read back through MLflow's REST API:
//!
//! - one run in the experiment, tagged with the job, `FINISHED`, with the job's params;
//! - each metric's history has one value per round, equal to the round in status;
//! - the run's artifact `model/model.safetensors` has the sha256 of `status.latestModel`;
//! - the registered model has a version from that run and artifact.
//!
//! Then `status.tracking` is dropped, as if its write had been lost: the operator finds
//! the run again by its tag and records it as before, with no second run, no round logged
//! twice and no second model version.
//!
//! Ignored by a plain `cargo test`; the Makefile's `process-runtime-test` runs it.

mod common;

use common::processes::{SiteSpec, StopOnDrop, bin, process_settings, xray_job};
use common::{apply_json, eventually};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::MlflowStatus;
use fedsky_e2e::mlflow::{Mlflow, PASSWORD, USERNAME};
use fedsky_operator::run::Settings;
use fedsky_operator::secret_scope::SecretScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use sha2::Digest;
use std::collections::BTreeMap;

const NS: &str = "default";
const SITES: [SiteSpec<'_>; 2] = [
    ("eu", "xray-eu", "eu-central-1"),
    ("us", "xray-us", "us-east-1"),
];
const ROUNDS: i32 = 3;
const EXPERIMENT: &str = "fedsky-e2e";
const MODEL: &str = "xray-cnn";
const METRICS: [&str; 4] = ["loss", "accuracy", "round_time_seconds", "participants"];

/// MLflow's REST API as the test's admin user.
struct Rest {
    http: reqwest::Client,
    uri: String,
}

impl Rest {
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
        let resp = req
            .basic_auth(USERNAME, Some(PASSWORD))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status();
        assert!(
            status.is_success(),
            "{what}: HTTP {status}: {}",
            resp.text().await.unwrap_or_default()
        );
        resp
    }

    async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let req = self
            .http
            .get(format!("{}/api/2.0/mlflow/{endpoint}", self.uri))
            .query(query);
        self.send(req, endpoint).await.json().await.expect("json")
    }

    async fn post(&self, endpoint: &str, body: serde_json::Value) -> serde_json::Value {
        let req = self
            .http
            .post(format!("{}/api/2.0/mlflow/{endpoint}", self.uri))
            .json(&body);
        self.send(req, endpoint).await.json().await.expect("json")
    }

    /// Every run of experiment `id`.
    async fn runs(&self, id: &str) -> Vec<serde_json::Value> {
        let found = self
            .post(
                "runs/search",
                serde_json::json!({ "experiment_ids": [id], "max_results": 100 }),
            )
            .await;
        found["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Metric `key` of run `run` at each step, failing on a step logged twice.
    async fn history(&self, run: &str, key: &str) -> BTreeMap<i64, f64> {
        let got = self
            .get(
                "metrics/get-history",
                &[("run_id", run), ("metric_key", key)],
            )
            .await;
        let mut out = BTreeMap::new();
        for m in got["metrics"].as_array().into_iter().flatten() {
            let step = m["step"].as_i64().unwrap_or_default();
            let value = m["value"].as_f64().expect("a number");
            assert!(
                out.insert(step, value).is_none(),
                "{key} logged twice at step {step}: {got}"
            );
        }
        out
    }

    /// The versions of registered model `name`.
    async fn model_versions(&self, name: &str) -> Vec<serde_json::Value> {
        let filter = format!("name = '{name}'");
        let found = self
            .get("model-versions/search", &[("filter", filter.as_str())])
            .await;
        found["model_versions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Tags or params (`[{key, value}]`) as a map.
fn pairs(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["key"].as_str()?.into(), p["value"].as_str()?.into())))
        .collect()
}

fn tracked(job: &FederatedJob) -> Option<MlflowStatus> {
    job.status.as_ref()?.tracking.as_ref()?.mlflow.clone()
}

/// Waits until the job's run is ended in status, and returns what status records.
async fn run_ended(jobs: &Api<FederatedJob>, name: &str, secs: u64) -> MlflowStatus {
    eventually("the job's MLflow run to be ended", secs, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(name).await.map_err(|e| e.to_string())?;
            match tracked(&j) {
                Some(m) if m.run_status.is_some() => Ok(m),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the aggregator and libtorch participant binaries and mlflow: make process-runtime-test"]
async fn a_jobs_run_metrics_and_model_are_read_back_from_mlflow() {
    let participant = bin("FEDSKY_PARTICIPANT_BIN");
    // The server takes a while to start: alongside the control planes.
    let mlflow = tokio::task::spawn_blocking(Mlflow::start);

    let work = tempfile::tempdir().expect("tempdir");
    let state_dir = work.path().join("state");
    let _stop = StopOnDrop(state_dir.clone());
    // The Secret is in the job's namespace, which the operator may read only when told so
    // (the chart's rbac.secretNamespaces).
    let settings = Settings {
        secrets: SecretScope::new("fedsky-system", [NS.to_string()]),
        ..process_settings(&state_dir, work.path(), None)
    };
    let f = common::processes::hospitals_fleet(&participant, work.path(), &SITES, settings).await;
    let hub = f.hub_client.clone();
    common::processes::hospitals_and_placement(&hub, NS, &SITES).await;
    let mlflow = mlflow.await.expect("join").expect("mlflow starts");
    let rest = Rest {
        http: reqwest::Client::new(),
        uri: mlflow.uri(),
    };
    // The server is protected: without credentials nothing gets through.
    let anonymous = reqwest::get(format!(
        "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}",
        mlflow.uri()
    ))
    .await
    .expect("mlflow answers");
    assert_eq!(anonymous.status().as_u16(), 401);

    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "mlflow-credentials", "namespace": NS },
        "stringData": { "MLFLOW_TRACKING_USERNAME": USERNAME,
                        "MLFLOW_TRACKING_PASSWORD": PASSWORD },
    }))
    .expect("secret");
    Api::<Secret>::namespaced(hub.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let mut job = xray_job("xray", NS, ROUNDS, 1, 2);
    job["spec"]["tracking"] = serde_json::json!({ "mlflow": {
        "trackingUri": mlflow.uri(),
        "experiment": EXPERIMENT,
        "registeredModelName": MODEL,
        "credentialsSecretRef": { "name": "mlflow-credentials" },
    } });
    let started = std::time::Instant::now();
    apply_json(&hub, job).await;
    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), NS);
    let done = common::job_succeeded(&jobs, "xray", "the job to succeed", 900).await;
    eprintln!("job succeeded after {:?}", started.elapsed());
    let m = run_ended(&jobs, "xray", 300).await;
    eprintln!("MLflow run ended after {:?}: {m:?}", started.elapsed());
    let done = jobs.get("xray").await.unwrap_or(done);
    let st = done.status.clone().expect("status");
    let latest = st.latest_model.clone().expect("latest model");
    assert_eq!(latest.version, ROUNDS);
    assert_eq!(m.message, None, "{m:?}");
    assert_eq!(m.run_status.as_deref(), Some("FINISHED"));
    assert_eq!(m.logged_round, Some(ROUNDS));
    assert_eq!(m.registered_model.as_deref(), Some(MODEL));
    let run_id = m.run_id.clone().expect("run id");
    let version = m.model_version.clone().expect("model version");

    // The experiment and its one run, tagged with the job, FINISHED, with the params.
    let experiment = rest
        .get(
            "experiments/get-by-name",
            &[("experiment_name", EXPERIMENT)],
        )
        .await;
    let experiment_id = experiment["experiment"]["experiment_id"]
        .as_str()
        .expect("experiment id")
        .to_string();
    assert_eq!(m.experiment_id.as_deref(), Some(experiment_id.as_str()));
    let runs = rest.runs(&experiment_id).await;
    assert_eq!(runs.len(), 1, "one run: {runs:#?}");
    let run = rest.get("runs/get", &[("run_id", &run_id)]).await["run"].clone();
    assert_eq!(run["info"]["status"], "FINISHED", "{run:#}");
    assert_eq!(run["info"]["run_name"], "default/xray");
    let tags = pairs(&run["data"]["tags"]);
    assert_eq!(tags.get("fedsky.dev/uid"), done.metadata.uid.as_ref());
    assert_eq!(tags.get("fedsky.dev/job").map(String::as_str), Some("xray"));
    assert_eq!(
        tags.get("fedsky.dev/namespace").map(String::as_str),
        Some(NS)
    );
    let params = pairs(&run["data"]["params"]);
    let param = |k: &str| params.get(k).map(String::as_str);
    assert_eq!(param("strategy"), Some("FedAvg"), "{params:#?}");
    assert_eq!(param("rounds"), Some("3"));
    assert_eq!(param("minPerRound"), Some("2"));
    assert_eq!(param("maxPerRound"), Some("2"));
    assert_eq!(param("localEpochs"), Some("1"));
    assert_eq!(param("learningRate"), Some("0.05"));
    assert_eq!(param("model"), Some("SmallCNN"));
    assert_eq!(param("pool"), Some("hospitals"));
    assert_eq!(param("sites"), Some("eu,us"));
    let placement = st.placement.as_ref().expect("placement");
    assert_eq!(param("placement"), Some(placement.summary.as_str()));
    assert_eq!(param("placement.cloud"), Some("aws"));
    assert_eq!(param("placement.region"), Some("eu-central-1"));

    // Every round's metrics, once each, as status has them.
    let mut histories = BTreeMap::new();
    for key in METRICS {
        histories.insert(key, rest.history(&run_id, key).await);
    }
    eprintln!(
        "metric histories: {histories:?}; status history: {:?}",
        st.history
    );
    for r in 1..=i64::from(ROUNDS) {
        assert_eq!(
            histories["participants"].get(&r),
            Some(&2.0),
            "round {r}: {histories:?}"
        );
    }
    for h in &st.history {
        let step = i64::from(h.round);
        let expected = [
            ("loss", h.loss),
            ("accuracy", h.accuracy),
            ("round_time_seconds", h.duration_seconds),
            ("participants", Some(f64::from(h.participants))),
        ];
        for (key, want) in expected {
            assert_eq!(
                histories[key].get(&step).copied(),
                want,
                "{key} of round {step}: {histories:?} vs {:?}",
                st.history
            );
        }
    }
    for r in 1..=i64::from(ROUNDS) {
        assert!(
            histories["accuracy"].contains_key(&r) && histories["loss"].contains_key(&r),
            "round {r} has its evaluation: {histories:?}"
        );
    }
    let rounds_listed: Vec<i64> = st.history.iter().map(|h| i64::from(h.round)).collect();
    let logged: Vec<i64> = histories["participants"].keys().copied().collect();
    assert_eq!(logged, rounds_listed, "one participants value per round");

    // The final model: the run's artifact, with the sha256 status names.
    let listed = rest
        .get("artifacts/list", &[("run_id", &run_id), ("path", "model")])
        .await;
    let files: Vec<&str> = listed["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(files, ["model/model.safetensors"], "{listed:#}");
    let artifact_uri = run["info"]["artifact_uri"]
        .as_str()
        .expect("artifact uri")
        .to_string();
    let proxied = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .expect("served by the tracking server")
        .trim_start_matches('/');
    let model = rest
        .send(
            rest.http.get(format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{proxied}/model/model.safetensors",
                mlflow.uri()
            )),
            "download the artifact",
        )
        .await
        .bytes()
        .await
        .expect("artifact body");
    let digest: String = sha2::Sha256::digest(&model)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, latest.sha256, "the artifact is the final model");

    // The registered model's version points at the run and the artifact.
    rest.get("registered-models/get", &[("name", MODEL)]).await;
    let mv = rest
        .get(
            "model-versions/get",
            &[("name", MODEL), ("version", version.as_str())],
        )
        .await["model_version"]
        .clone();
    assert_eq!(mv["run_id"], run_id.as_str(), "{mv:#}");
    assert_eq!(mv["source"], format!("{artifact_uri}/model").as_str());
    assert_eq!(mv["status"], "READY");
    assert_eq!(rest.model_versions(MODEL).await.len(), 1);

    // Lose the record: the operator finds the same run again, logs nothing twice and
    // registers nothing twice.
    let forget = serde_json::json!({ "status": { "tracking": null } });
    jobs.patch_status("xray", &PatchParams::default(), &Patch::Merge(&forget))
        .await
        .expect("drop status.tracking");
    let again = run_ended(&jobs, "xray", 300).await;
    assert_eq!(again, m, "recorded as before");
    assert_eq!(rest.runs(&experiment_id).await.len(), 1, "no second run");
    for key in METRICS {
        assert_eq!(
            rest.history(&run_id, key).await,
            histories[key],
            "{key} unchanged"
        );
    }
    assert_eq!(
        rest.model_versions(MODEL).await.len(),
        1,
        "no second version"
    );
    eprintln!("mlflow log tail:\n{}", mlflow.log_tail(5));
    f.operator.abort();
}
