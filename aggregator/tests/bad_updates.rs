//! Every kind of bad update or call is refused with a precise gRPC code and
//! reason, is counted, and the round completes with the good participants.

#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fedsky_aggregator::client::{AggregatorClient, ClientError, UpdateToSend};
use fedsky_aggregator::proto;
use fedsky_aggregator::proto::instruction::Kind;
use fedsky_aggregator::{Model, TensorData, UpdateLimits, decode_model};
use half::f16;
use tonic::Code;

fn meta(round: u64, base: u64, total: u64) -> proto::UpdateChunk {
    proto::UpdateChunk {
        part: Some(proto::update_chunk::Part::Meta(proto::UpdateMeta {
            round,
            base_version: base,
            num_examples: 10,
            total_bytes: total,
            metrics: HashMap::new(),
        })),
    }
}

fn data(b: impl Into<Bytes>) -> proto::UpdateChunk {
    proto::UpdateChunk {
        part: Some(proto::update_chunk::Part::Data(b.into())),
    }
}

fn send(ins: &proto::Instruction, bytes: Vec<u8>) -> UpdateToSend {
    UpdateToSend {
        round: ins.round,
        base_version: ins.model_version,
        num_examples: 10,
        metrics: HashMap::new(),
        bytes: Bytes::from(bytes),
    }
}

fn expect(err: ClientError, code: Code, reason: &str, what: &str) {
    assert_eq!(err.code(), Some(code), "{what}: {err}");
    assert_eq!(err.reason(), Some(reason), "{what}: {err}");
}

async fn fit(c: &mut AggregatorClient) -> (proto::Instruction, Model) {
    loop {
        let i = c.poll_instruction().await.unwrap();
        if i.kind == Kind::Fit as i32 {
            let m = c.download_model(Some(i.model_version)).await.unwrap();
            return (i, decode_model(&m.bytes, &UpdateLimits::default()).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn with_weight(global: &Model, w: TensorData, shape: Vec<usize>) -> Vec<u8> {
    Model::new([
        ("layer.weight", shape, w),
        (
            "layer.bias",
            vec![4],
            global.tensor("layer.bias").unwrap().clone(),
        ),
    ])
    .unwrap()
    .to_safetensors()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_updates_are_refused_precisely_and_the_round_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = [
        "nan",
        "shape",
        "dtype",
        "truncated",
        "lying-prefix",
        "lying-size",
        "big-message",
    ];
    let good = ["good-a", "good-b"];
    let n = bad.len() + good.len();
    let job = job(&format!(
        "{}limits: {{maxMessageBytes: 65536, chunkBytes: 16384}}\n",
        rounds(1, 2, n, 30.0, 10.0)
    ));
    let h = start(job, dir_store(tmp.path())).await;
    let mut clients = HashMap::new();
    for id in bad.iter().chain(&good) {
        let mut c = h.client(id).await;
        c.register(HashMap::new()).await.unwrap();
        clients.insert(*id, c);
    }
    let mut fits = HashMap::new();
    for id in bad.iter().chain(&good) {
        let c = clients.get_mut(id).unwrap();
        fits.insert(*id, fit(c).await);
    }
    let (ins, global) = fits["good-a"].clone();
    let honest = train(&global, 1).to_safetensors().unwrap();

    // --- Refusals before any content: the participant keeps its slot. ---
    let a = clients.get_mut("good-a").unwrap();
    let mut stale = send(&ins, honest.clone());
    stale.round = 7;
    expect(
        a.upload_update(stale).await.unwrap_err(),
        Code::FailedPrecondition,
        "stale_round",
        "stale round",
    );
    let mut old_base = send(&ins, honest.clone());
    old_base.base_version = 5;
    expect(
        a.upload_update(old_base).await.unwrap_err(),
        Code::FailedPrecondition,
        "stale_base",
        "stale base",
    );
    let oversized = a
        .upload_chunks(vec![meta(ins.round, 0, 1 << 40), data(vec![0u8; 8])])
        .await
        .unwrap_err();
    expect(
        oversized,
        Code::ResourceExhausted,
        "oversized",
        "declared oversized",
    );
    let mut zero = send(&ins, honest.clone());
    zero.num_examples = 0;
    expect(
        a.upload_update(zero).await.unwrap_err(),
        Code::InvalidArgument,
        "zero_examples",
        "zero examples",
    );

    // Unknown participant: a valid certificate, never registered.
    let mut stranger = h.client("stranger").await;
    expect(
        stranger
            .upload_update(send(&ins, honest.clone()))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
        "unknown_participant",
        "unknown participant",
    );
    // Wrong job token.
    let mut cfg = h.client_config("good-a");
    cfg.token = "wrong-token-wrong-token".into();
    let mut wrong = AggregatorClient::connect(cfg).await.unwrap();
    expect(
        wrong.heartbeat().await.unwrap_err(),
        Code::Unauthenticated,
        "bad_token",
        "bad token",
    );
    // mTLS without a client certificate.
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
    let mut anon = proto::aggregator_client::AggregatorClient::new(channel);
    let mut req = tonic::Request::new(proto::RegisterRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let err = ClientError::from(anon.register(req).await.unwrap_err());
    expect(
        err,
        Code::Unauthenticated,
        "no_client_certificate",
        "missing client certificate",
    );

    // --- Content rejections: each uses up that participant's slot. ---
    let c = clients.get_mut("nan").unwrap();
    let (ins, global) = &fits["nan"];
    let mut flat = global.to_flat_f32();
    flat[3] = f32::NAN;
    let nan = Model::from_flat_f32(global.spec_arc(), &flat)
        .unwrap()
        .to_safetensors()
        .unwrap();
    expect(
        c.upload_update(send(ins, nan)).await.unwrap_err(),
        Code::InvalidArgument,
        "non_finite",
        "NaN",
    );

    let c = clients.get_mut("shape").unwrap();
    let (ins, global) = &fits["shape"];
    let w = global.tensor("layer.weight").unwrap().clone();
    let transposed = with_weight(global, w, vec![8, 4]);
    expect(
        c.upload_update(send(ins, transposed)).await.unwrap_err(),
        Code::InvalidArgument,
        "shape_mismatch",
        "wrong shape",
    );

    let c = clients.get_mut("dtype").unwrap();
    let (ins, global) = &fits["dtype"];
    let half = TensorData::F16(vec![f16::from_f32(0.5); 32]);
    expect(
        c.upload_update(send(ins, with_weight(global, half, vec![4, 8])))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "dtype_mismatch",
        "wrong dtype",
    );

    // Header promises all tensors, the stream ends early.
    let c = clients.get_mut("truncated").unwrap();
    let (ins, global) = &fits["truncated"];
    let full = train(global, 2).to_safetensors().unwrap();
    let err = c
        .upload_chunks(vec![
            meta(ins.round, ins.model_version, full.len() as u64),
            data(full[..full.len() - 10].to_vec()),
        ])
        .await
        .unwrap_err();
    expect(err, Code::InvalidArgument, "truncated", "truncated body");
    // A short stream may be a broken link: the slot stays open for a retry.
    c.upload_update(send(ins, full)).await.unwrap();

    // The 8-byte prefix claims a 1 TiB header: refused before it is read.
    let c = clients.get_mut("lying-prefix").unwrap();
    let (ins, _) = &fits["lying-prefix"];
    let mut lie = (1u64 << 40).to_le_bytes().to_vec();
    lie.extend_from_slice(b"{\"a\":");
    let err = c
        .upload_chunks(vec![meta(ins.round, ins.model_version, 200), data(lie)])
        .await
        .unwrap_err();
    expect(
        err,
        Code::ResourceExhausted,
        "header_invalid",
        "lying header length",
    );

    // The declared size disagrees with what the header implies.
    let c = clients.get_mut("lying-size").unwrap();
    let (ins, global) = &fits["lying-size"];
    let body = train(global, 3).to_safetensors().unwrap();
    let err = c
        .upload_chunks(vec![
            meta(ins.round, ins.model_version, body.len() as u64 + 100),
            data(body),
        ])
        .await
        .unwrap_err();
    expect(
        err,
        Code::InvalidArgument,
        "header_invalid",
        "lying declared size",
    );

    // One gRPC message over maxMessageBytes.
    let c = clients.get_mut("big-message").unwrap();
    let (ins, _) = &fits["big-message"];
    let err = c
        .upload_chunks(vec![
            meta(ins.round, ins.model_version, 60_000),
            data(vec![0u8; 100_000]),
        ])
        .await
        .unwrap_err();
    expect(
        err,
        Code::ResourceExhausted,
        "message_too_large",
        "oversized message",
    );

    // --- The good participants complete the round. ---
    for id in good {
        let c = clients.get_mut(id).unwrap();
        let (ins, global) = &fits[id];
        let body = train(global, 4).to_safetensors().unwrap();
        c.upload_update(send(ins, body.clone())).await.unwrap();
        if id == "good-a" {
            // A second upload in the same round is a duplicate.
            expect(
                c.upload_update(send(ins, body)).await.unwrap_err(),
                Code::AlreadyExists,
                "duplicate",
                "duplicate",
            );
        }
    }
    h.wait_for("round 1", Duration::from_secs(10), |s| {
        s.completed_rounds == 1
    })
    .await;
    let v1 = h
        .core()
        .versions()
        .into_iter()
        .find(|v| v.version == 1)
        .unwrap();
    assert_eq!(
        v1.contributors
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>(),
        vec!["good-a", "good-b", "truncated"]
    );

    let m = h.core().metrics();
    for reason in [
        "stale_round",
        "stale_base",
        "oversized",
        "zero_examples",
        "unknown_participant",
        "unauthenticated",
        "non_finite",
        "shape_mismatch",
        "dtype_mismatch",
        "truncated",
        "message_too_large",
        "duplicate",
    ] {
        assert!(m.rejected(reason) >= 1, "{reason} not counted");
    }
    assert_eq!(m.rejected("header_invalid"), 2);
    let text = h.http_get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("fedsky_aggregator_updates_rejected_total{reason=\"non_finite\"} 1"),
        "{text}"
    );
    h.server.shutdown().await;
}
