//! The S3 model store against a real S3-compatible server (moto) on
//! loopback: object operations, a job checkpointed to S3, a resume from it,
//! and deleting model versions as pruning does.
//!
//! moto is started by `fedsky_e2e::moto`: from `FEDSKY_MOTO_SERVER`, else the
//! workspace's `.venv` (created with `python3 -m venv` + `pip install
//! "moto[server]"` when missing).

#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fedsky_aggregator::coordinator::AggregatorPhase;
use fedsky_aggregator::store::{Checkpoints, ObjectStore, S3Settings, S3Store};
use fedsky_e2e::moto::{Moto, MotoOptions};

fn start_moto() -> Moto {
    Moto::start(&MotoOptions::default()).expect("moto starts")
}

fn settings(port: u16) -> S3Settings {
    S3Settings {
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "us-east-1".into(),
        bucket: "fedsky-models".into(),
        prefix: "jobs/test-job".into(),
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
        path_style: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_checkpoints_a_job_and_resumes_from_it() {
    let moto = start_moto();
    let s3 = S3Store::new(&settings(moto.port()));
    s3.ensure_bucket().await.unwrap();
    s3.ensure_bucket().await.unwrap();

    // Object operations.
    assert_eq!(s3.get("nothing.json").await.unwrap(), None);
    s3.put("a/one.bin", Bytes::from_static(b"1")).await.unwrap();
    s3.put("a/two.bin", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(
        s3.list("a/").await.unwrap(),
        vec!["a/one.bin".to_string(), "a/two.bin".to_string()]
    );
    s3.delete("a/one.bin").await.unwrap();
    assert_eq!(
        s3.get("a/two.bin").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(s3.list("a/").await.unwrap().len(), 1);

    // A two-round job checkpointed to S3.
    let store: Arc<dyn ObjectStore> = Arc::new(s3.clone());
    let job = job(&rounds(2, 2, 2, 20.0, 5.0));
    let h = start(job.clone(), Arc::clone(&store)).await;
    let ids = ["s3-a", "s3-b"];
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            tokio::spawn(run_participant(
                h.client_config(id),
                id.to_string(),
                Behaviour::Honest,
                Duration::from_secs(30),
            ))
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let served = latest_model(&h).await;
    assert_eq!(served, expected_final(&job, &ids));
    h.server.shutdown().await;

    // A new aggregator on the same bucket resumes at the end of the job.
    let resumed = Checkpoints::new(Arc::clone(&store))
        .load()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resumed.record.rounds.completed_rounds, 2);
    assert_eq!(resumed.global.bytes.as_ref(), served.as_slice());
    let again = start(job, Arc::clone(&store)).await;
    assert_eq!(again.core().status().phase, AggregatorPhase::Completed);
    assert_eq!(again.core().versions().len(), 3);
    again.server.shutdown().await;

    // Pruning's deletes (`--keep-versions`) go through the same interface:
    // a version's info and model leave the bucket, nothing else does.
    let ck = Checkpoints::new(Arc::clone(&store));
    assert_eq!(
        ck.stored_versions().await.unwrap(),
        BTreeSet::from([0, 1, 2])
    );
    ck.delete_version(0).await.unwrap();
    ck.delete_version(0).await.unwrap();
    assert_eq!(ck.stored_versions().await.unwrap(), BTreeSet::from([1, 2]));
    let listed: Vec<u64> = ck
        .list_versions()
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed, [1, 2]);
    assert!(store.get("checkpoint.json").await.unwrap().is_some());
    assert_eq!(store.list("a/").await.unwrap().len(), 1);
}
