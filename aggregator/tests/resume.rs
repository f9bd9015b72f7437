//! Kill the aggregator at a random round, restart it from the model store,
//! finish the job: the final model is bitwise equal to a no-fault run (and
//! to the job computed locally). FedAdam, so optimiser state must survive too.

#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use fedsky_aggregator::coordinator::AggregatorPhase;
use fedsky_aggregator::job::JobConfig;
use rand::{Rng, SeedableRng};

const IDS: [&str; 3] = ["clinic-eu", "clinic-asia", "clinic-us"];
const ROUNDS: u64 = 5;

fn fedadam_job() -> JobConfig {
    job(&format!(
        "{}strategy: {{kind: FedAdam, eta: 0.1, etaL: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.001}}\n",
        rounds(ROUNDS, 3, 3, 20.0, 5.0)
    ))
}

fn spawn_participants(h: &Harness) -> Vec<tokio::task::JoinHandle<Result<Vec<u64>, String>>> {
    IDS.iter()
        .map(|id| {
            tokio::spawn(run_participant(
                h.client_config(id),
                id.to_string(),
                // Slow enough that the kill lands inside a round, not after the job.
                Behaviour::Slow(Duration::from_millis(40)),
                Duration::from_secs(40),
            ))
        })
        .collect()
}

/// Runs an aggregator in its own runtime, so killing it ends every task it
/// spawned (connections included), as a process kill would.
fn start_in_runtime(
    job: JobConfig,
    store: std::path::PathBuf,
    pki: Arc<Pki>,
    addr: String,
) -> (tokio::runtime::Runtime, Harness) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let h = std::thread::scope(|s| {
        s.spawn(|| rt.block_on(start_on(job, dir_store(&store), pki, &addr)))
            .join()
            .unwrap()
    });
    (rt, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_at_a_random_round_is_bitwise_equal_to_no_fault() {
    let job = fedadam_job();
    let expected = expected_final(&job, &IDS);

    // The no-fault run.
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = start(job.clone(), dir_store(clean_dir.path())).await;
    for t in spawn_participants(&clean) {
        assert_eq!(t.await.unwrap().unwrap().len() as u64, ROUNDS);
    }
    let clean_model = latest_model(&clean).await;
    clean.server.shutdown().await;
    assert_eq!(
        clean_model, expected,
        "the no-fault run must equal the local computation"
    );

    // The faulty run: kill after a random number of committed rounds.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let kill_after = rand_chacha::ChaCha8Rng::seed_from_u64(seed).random_range(1..ROUNDS);
    println!("kill seed {seed}: killing after {kill_after} committed rounds");
    let dir = tempfile::tempdir().unwrap();
    let pki = Arc::new(Pki::new());
    let (rt, first) = start_in_runtime(
        job.clone(),
        dir.path().to_path_buf(),
        Arc::clone(&pki),
        "127.0.0.1:0".into(),
    );
    let addr = first.server.grpc_addr.to_string();
    let participants = spawn_participants(&first);
    first
        .wait_for("the kill round", Duration::from_secs(20), |s| {
            s.completed_rounds >= kill_after
        })
        .await;
    // Land somewhere inside the next round.
    tokio::time::sleep(Duration::from_millis(seed % 20)).await;
    let killed_at = first.core().status();
    assert!(
        killed_at.completed_rounds < ROUNDS,
        "killed too late: {killed_at:?}"
    );
    drop(first);
    tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    println!(
        "killed in round {} ({}), {} rounds committed",
        killed_at.round, killed_at.phase, killed_at.completed_rounds
    );

    // Restart on the same address from the same store; participants reconnect.
    let second = start_on(job.clone(), dir_store(dir.path()), pki, &addr).await;
    let resumed = second.core().status().completed_rounds;
    assert!(
        resumed >= killed_at.completed_rounds,
        "resumed from {resumed}"
    );
    for t in participants {
        t.await.unwrap().unwrap();
    }
    second
        .wait_for("completion", Duration::from_secs(10), |s| {
            s.phase == AggregatorPhase::Completed
        })
        .await;
    let resumed_model = latest_model(&second).await;
    assert!(
        resumed_model == clean_model,
        "final model after a restart differs from the no-fault run"
    );
    second.server.shutdown().await;
}
