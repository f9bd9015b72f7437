//! Rounds over real gRPC with mTLS: a multi-round run, a straggler, a
//! participant vanishing mid-upload, folding in arrival order.

#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use fedsky_aggregator::coordinator::AggregatorPhase;
use fedsky_aggregator::proto;
use fedsky_aggregator::proto::instruction::Kind;
use fedsky_aggregator::{UpdateLimits, decode_model};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_round_run_with_three_participants() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(&format!(
        "{}strategy: {{kind: FedProx, proximalMu: 0.01}}\n",
        rounds(3, 3, 3, 20.0, 5.0)
    ));
    let h = start(job.clone(), dir_store(tmp.path())).await;
    let ids = ["site-a", "site-b", "site-c"];

    // site-a follows the instruction stream to check it carries FedProx's mu.
    let mut watcher = h.client("site-a").await;
    let reg = watcher.register(HashMap::new()).await.unwrap();
    assert_eq!(
        reg.participant_id, "site-a",
        "identity comes from the certificate CN"
    );
    let mut stream = watcher.instructions().await.unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.kind, Kind::Wait as i32, "{first:?}");

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
    let fit = loop {
        let i = stream.message().await.unwrap().unwrap();
        if i.kind == Kind::Fit as i32 {
            break i;
        }
    };
    let hp = fit.hyper_parameters.unwrap();
    assert_eq!(hp.proximal_mu, 0.01);
    assert_eq!((fit.round, fit.model_version, fit.total_rounds), (1, 0, 3));
    drop(stream);

    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), vec![1, 2, 3]);
    }
    let status = h.core().status();
    assert_eq!(status.phase, AggregatorPhase::Completed);
    assert_eq!(status.completed_rounds, 3);

    // The served model is the FedAvg of the simulated updates, bit for bit.
    let served = latest_model(&h).await;
    assert_eq!(served, expected_final(&job, &ids));

    // Model manager: versions 0..=3 with hashes, metrics and contributors.
    let versions: Vec<serde_json::Value> = h.http_get("/v1/versions").await.json().await.unwrap();
    assert_eq!(versions.len(), 4);
    let v3 = &versions[3];
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["contributors"].as_array().unwrap().len(), 3);
    assert!((v3["metrics"]["train_loss"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!(v3["metrics"]["eval_accuracy"].as_f64().is_some(), "{v3}");
    let sha = v3["sha256"].as_str().unwrap().to_string();
    let resp = h.http_get("/v1/versions/3/model").await;
    assert_eq!(resp.headers()["x-fedsky-sha256"].to_str().unwrap(), sha);
    let best: serde_json::Value = h
        .http_get("/v1/versions/best?metric=eval_accuracy")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(best["version"], 3);
    assert_eq!(h.http_get("/v1/versions/9").await.status(), 404);
    assert_eq!(h.http_get("/v1/versions/x").await.status(), 400);
    // An old version downloads over gRPC from the store.
    let v1 = watcher.download_model(Some(1)).await.unwrap();
    assert_eq!(v1.version, 1);
    decode_model(&v1.bytes, &UpdateLimits::default()).unwrap();

    let status: serde_json::Value = h.http_get("/v1/status").await.json().await.unwrap();
    assert_eq!(status["phase"], "completed");
    assert_eq!(status["participants"].as_array().unwrap().len(), 3);
    let metrics = h.http_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("fedsky_aggregator_rounds_total{result=\"completed\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fedsky_aggregator_updates_accepted_total 9"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fedsky_aggregator_aggregation_seconds_count 3"),
        "{metrics}"
    );
    assert_eq!(h.http_get("/healthz").await.status(), 200);

    // gRPC health reports the service as serving.
    let channel = tonic::transport::Endpoint::from_shared(h.endpoint.clone())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&h.pki.ca_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fedsky.v1.Aggregator".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn straggler_is_cut_at_the_deadline_with_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job(&rounds(2, 2, 3, 0.8, 5.0));
    let h = start(job, dir_store(tmp.path())).await;
    let fast: Vec<_> = ["fast-a", "fast-b"]
        .iter()
        .map(|id| {
            tokio::spawn(run_participant(
                h.client_config(id),
                id.to_string(),
                Behaviour::Honest,
                Duration::from_secs(20),
            ))
        })
        .collect();
    // The straggler registers but takes longer than the round timeout.
    let mut slow = h.client("slow").await;
    slow.register(HashMap::new()).await.unwrap();
    let fit = loop {
        let i = slow.poll_instruction().await.unwrap();
        if i.kind == Kind::Fit as i32 {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let model = slow.download_model(Some(fit.model_version)).await.unwrap();
    h.wait_for("round 1 to close", Duration::from_secs(5), |s| {
        s.completed_rounds >= 1
    })
    .await;
    let late = slow
        .upload_update(fedsky_aggregator::client::UpdateToSend {
            round: fit.round,
            base_version: fit.model_version,
            num_examples: 10,
            metrics: HashMap::new(),
            bytes: model.bytes.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Some(Code::FailedPrecondition), "{late}");
    assert!(
        matches!(
            late.reason(),
            Some("late" | "stale_round" | "no_round_open")
        ),
        "{late:?}"
    );
    // Keep the straggler alive (heartbeats) but never on time: the job still ends.
    let slow_task = tokio::spawn(run_participant(
        h.client_config("slow"),
        "slow".into(),
        Behaviour::Slow(Duration::from_millis(1500)),
        Duration::from_secs(20),
    ));
    for t in fast {
        assert_eq!(t.await.unwrap().unwrap(), vec![1, 2]);
    }
    h.wait_for("job completion", Duration::from_secs(10), |s| {
        s.phase == AggregatorPhase::Completed
    })
    .await;
    let versions = h.core().versions();
    let v1 = versions.iter().find(|v| v.version == 1).unwrap();
    assert_eq!(
        v1.contributors
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>(),
        vec!["fast-a", "fast-b"]
    );
    slow_task.abort();
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_vanishing_mid_upload_is_dropped_and_the_round_completes() {
    let tmp = tempfile::tempdir().unwrap();
    // A long deadline: the round must close because the vanished participant
    // is noticed (heartbeat timeout), not because time ran out.
    let job = job(&rounds(1, 2, 3, 60.0, 0.6));
    let h = start(job, dir_store(tmp.path())).await;
    let honest: Vec<_> = ["stay-a", "stay-b"]
        .iter()
        .map(|id| {
            tokio::spawn(run_participant(
                h.client_config(id),
                id.to_string(),
                Behaviour::Honest,
                Duration::from_secs(20),
            ))
        })
        .collect();

    let mut ghost = h.client("ghost").await;
    ghost.register(HashMap::new()).await.unwrap();
    let fit = loop {
        let i = ghost.poll_instruction().await.unwrap();
        if i.kind == Kind::Fit as i32 {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let model = ghost.download_model(Some(fit.model_version)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::UpdateChunk>(4);
    tx.send(proto::UpdateChunk {
        part: Some(proto::update_chunk::Part::Meta(proto::UpdateMeta {
            round: fit.round,
            base_version: fit.model_version,
            num_examples: 5,
            total_bytes: model.bytes.len() as u64,
            metrics: HashMap::new(),
        })),
    })
    .await
    .unwrap();
    tx.send(proto::UpdateChunk {
        part: Some(proto::update_chunk::Part::Data(model.bytes.slice(..20))),
    })
    .await
    .unwrap();
    let mut raw = ghost.clone();
    let upload = tokio::spawn(async move {
        raw.raw()
            .upload_update(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    h.wait_for("ghost's upload to start", Duration::from_secs(5), |s| {
        s.participants
            .iter()
            .any(|p| p.id.0 == "ghost" && p.slot == Some(fedsky_aggregator::Slot::Uploading))
    })
    .await;
    // Vanish: cancel the call mid-stream and go silent.
    // Vanish: the call is abandoned mid-stream and the participant goes
    // silent (no more data, no heartbeats). The sender stays open: closing it
    // would end the stream cleanly, which is a truncated upload instead.
    upload.abort();
    drop(ghost);

    for t in honest {
        assert_eq!(t.await.unwrap().unwrap(), vec![1]);
    }
    let versions = h.core().versions();
    let v1 = versions.iter().find(|v| v.version == 1).unwrap();
    assert_eq!(v1.contributors.len(), 2);
    assert!(!v1.contributors.iter().any(|c| c.0 == "ghost"));
    drop(tx);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_order_folds_pairs_and_the_rest_at_the_close() {
    // Three participants: two updates are folded as a pair, the third when
    // the round closes. Four: the second pair completes the round, so it is
    // folded together with the division. The replaced model is recycled
    // between rounds.
    for ids in [
        &["site-a", "site-b", "site-c"][..],
        &["site-a", "site-b", "site-c", "site-d"][..],
    ] {
        arrival_order_run(ids).await;
    }
}

async fn arrival_order_run(ids: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let n = ids.len();
    let job = job(&format!(
        "{}foldOrder: arrival\n",
        rounds(2, n, n, 20.0, 5.0)
    ));
    let h = start(job.clone(), dir_store(tmp.path())).await;
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
        assert_eq!(t.await.unwrap().unwrap(), vec![1, 2]);
    }
    assert_eq!(h.core().status().phase, AggregatorPhase::Completed);
    let metrics = h.http_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "fedsky_aggregator_updates_accepted_total {}",
            2 * n
        )),
        "{metrics}"
    );
    // Arrival order only changes the last bits of the float sums.
    let limits = UpdateLimits::default();
    let served = decode_model(&latest_model(&h).await, &limits).unwrap();
    let want = decode_model(&expected_final(&job, ids), &limits).unwrap();
    for (g, w) in served.to_flat_f32().iter().zip(want.to_flat_f32()) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{n}: {g} vs {w}");
    }
    h.server.shutdown().await;
}
