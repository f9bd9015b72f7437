//! The process runtime end to end: a hub and member clusters on real control planes
//! (kwok nodes), the operator placing the job and picking nodes as always, and the
//! aggregator and three participants running as local processes — tch training on
//! non-IID synthetic X-rays, FedAvg on the aggregator — until the job succeeds with
//! accuracy above its start, the model downloadable and its sha256 matching. Deleting the
//! job stops every process and removes its files.
//!
//! Needs the `fedsky-aggregator` and libtorch `fedsky-participant` binaries, so it is
//! ignored by a plain `cargo test`; `make process-runtime-test` (part of `make test`)
//! builds both and runs it.

mod common;

use common::processes::{SiteSpec, StopOnDrop, bin, process_settings};
use common::{apply_json, eventually};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::ParticipantPhase;
use kube::api::{Api, DeleteParams};

const SITES: [SiteSpec<'_>; 3] = [
    ("eu", "xray-eu", "eu-central-1"),
    ("asia", "xray-asia", "ap-northeast-2"),
    ("us", "xray-us", "us-east-1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the aggregator and libtorch participant binaries: make process-runtime-test"]
async fn a_job_trains_end_to_end_as_local_processes() {
    let participant = bin("FEDSKY_PARTICIPANT_BIN");
    let work = tempfile::tempdir().expect("tempdir");
    let state_dir = work.path().join("state");
    let _stop = StopOnDrop(state_dir.clone());
    let settings = process_settings(&state_dir, work.path(), None);
    // One node per site, so the orchestrator's choice is visible in the result.
    let f = common::processes::hospitals_fleet(&participant, work.path(), &SITES, settings).await;
    let hub = f.hub_client.clone();
    let ns = "default";
    common::processes::hospitals_and_placement(&hub, ns, &SITES).await;
    apply_json(&hub, common::processes::xray_job("xray", ns, 4, 2, 3)).await;

    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), ns);
    let job = common::job_succeeded(&jobs, "xray", "the job to succeed", 900).await;
    let st = job.status.expect("status");
    assert_eq!(st.round_progress.as_deref(), Some("4/4"));
    let latest = st.latest_model.expect("latest model");
    // Every version is in the history, the initial model (round 0) first.
    let rounds: Vec<i32> = st.history.iter().map(|h| h.round).collect();
    assert_eq!(rounds, [0, 1, 2, 3, 4], "{:?}", st.history);
    let first = st.history[0]
        .accuracy
        .expect("the participants' evaluation of the initial model");
    let last = latest.accuracy.expect("accuracy of the final model");
    assert!(
        last > first && last > 0.6,
        "accuracy should rise over rounds: initial model {first}, final {last}; history {:?}",
        st.history
    );
    // The final model is downloadable over the operator's channel (the job's mutual TLS)
    // and is what status says.
    let operator = common::aggregator_client(&hub, ns, "xray").await;
    common::download_matches(&operator, &latest.uri, &latest.sha256).await;
    assert!(latest.uri.starts_with("https://"), "{}", latest.uri);
    // Nobody else gets it: not in plaintext, not without credentials.
    let plain = latest.uri.replacen("https://", "http://", 1);
    assert!(
        reqwest::get(&plain).await.is_err(),
        "the model manager answered plain HTTP"
    );
    let (_, base) =
        common::processes::local_aggregator(&state_dir, "default-xray").expect("aggregator files");
    let ca = std::fs::read(state_dir.join("default-xray/aggregator/ca.crt")).expect("CA");
    let anonymous = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .build()
        .expect("client");
    for path in ["/v1/status", "/v1/versions", "/metrics", "/healthz"] {
        let resp = anonymous
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("HTTPS");
        assert_eq!(resp.status(), 401, "{path}");
    }
    // The aggregator admits the job's participants and nobody else: the operator sent it
    // their names (a replaced participant would be refused).
    let listed: serde_json::Value = operator
        .get(format!("{base}/v1/participants"))
        .send()
        .await
        .expect("GET /v1/participants")
        .json()
        .await
        .expect("JSON");
    let mut names: Vec<&str> = st
        .participants
        .iter()
        .filter(|p| p.state != ParticipantPhase::Replaced)
        .map(|p| p.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(listed, serde_json::json!({ "participants": names }));
    // Participants ran where the orchestrator put them: one per worker node.
    let mut nodes: Vec<String> = st
        .participants
        .iter()
        .filter_map(|p| p.node.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes, ["h-1", "h-2", "h-3"]);

    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the job and its processes to be gone", 60, || {
        let jobs = jobs.clone();
        let dir = state_dir.join("default-xray");
        async move {
            match jobs.get_opt("xray").await.map_err(|e| e.to_string())? {
                None if !dir.exists() => Ok(()),
                other => Err(format!(
                    "job {:?}, dir exists {}",
                    other.is_some(),
                    dir.exists()
                )),
            }
        }
    })
    .await;
    f.operator.abort();
}
