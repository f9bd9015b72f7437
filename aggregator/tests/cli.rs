//! The `fedsky-aggregator` binary as a real process: flags, job file,
//! initial model, directory store, `--insecure-plaintext` identities,
//! `/healthz` (the job token still required), `--metrics-token-file`, and a
//! restart that resumes from the store.

#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fedsky_aggregator::client::{AggregatorClient, ClientConfig};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &std::path::Path, grpc: u16, http: u16) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_fedsky-aggregator"))
        .arg("--job")
        .arg(dir.join("job.yaml"))
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .arg("--insecure-plaintext")
        .arg("--initial-model")
        .arg(dir.join("initial.safetensors"))
        .arg("--store-dir")
        .arg(dir.join("store"))
        .arg("--metrics-token-file")
        .arg(dir.join("metrics-token"))
        .env("FEDSKY_JOB_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

const SCRAPE_TOKEN: &str = "cli-scrape-token-0123456789";

/// GET on the plaintext model manager, with `token` as the bearer if given.
async fn get(http: u16, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{http}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn wait_healthy(http: u16) {
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{http}/healthz"))
            .bearer_auth(TOKEN)
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "aggregator did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_a_job_in_plaintext_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.yaml"),
        "name: cli-job\nseed: 5\nrounds: {total: 2, minPerRound: 2, maxPerRound: 2, roundTimeoutSeconds: 20}\nstrategy: {kind: FedAvg}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("initial.safetensors"),
        initial_model().to_safetensors().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("metrics-token"),
        format!("{SCRAPE_TOKEN}\n"),
    )
    .unwrap();
    let (grpc, http) = (free_port(), free_port());
    let proc = spawn(dir.path(), grpc, http);
    wait_healthy(http).await;
    // Plaintext (development) still needs a token on every route; the scrape token
    // opens /metrics only.
    for path in ["/healthz", "/readyz", "/v1/status", "/metrics"] {
        assert_eq!(get(http, path, None).await.status(), 401, "{path}");
    }
    assert_eq!(
        get(http, "/metrics", Some(SCRAPE_TOKEN)).await.status(),
        200
    );
    assert_eq!(
        get(http, "/v1/status", Some(SCRAPE_TOKEN)).await.status(),
        401
    );

    let endpoint = format!("http://127.0.0.1:{grpc}");
    // Plaintext identities come from metadata; the token is still required.
    let mut c = AggregatorClient::connect(ClientConfig::insecure(&endpoint, TOKEN, "cli-a"))
        .await
        .unwrap();
    let reg = c.register(HashMap::new()).await.unwrap();
    assert_eq!(reg.participant_id, "cli-a");
    assert_eq!(reg.job, "cli-job");
    let mut anonymous =
        AggregatorClient::connect(ClientConfig::insecure(&endpoint, TOKEN, "bad id!"))
            .await
            .unwrap();
    let err = anonymous.heartbeat().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");

    let ids = ["cli-a", "cli-b"];
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            tokio::spawn(run_participant(
                ClientConfig::insecure(&endpoint, TOKEN, *id),
                id.to_string(),
                Behaviour::Honest,
                Duration::from_secs(30),
            ))
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), vec![1, 2]);
    }
    let latest = get(http, "/v1/versions/latest/model", Some(TOKEN))
        .await
        .bytes()
        .await
        .unwrap();
    drop(proc);

    // A restarted process finds the finished job in its store.
    let (grpc, http) = (free_port(), free_port());
    let _proc = spawn(dir.path(), grpc, http);
    wait_healthy(http).await;
    let status: serde_json::Value = get(http, "/v1/status", Some(TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["phase"], "completed", "{status}");
    assert_eq!(status["completedRounds"], 2);
    let again = get(http, "/v1/versions/2/model", Some(TOKEN))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(latest, again);
}
