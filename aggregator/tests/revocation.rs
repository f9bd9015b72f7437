//! Revoking a participant on a real server over loopback: the operator's certificate
//! sets the participant list over HTTPS; a participant left out is refused with
//! PERMISSION_DENIED on every call, every time, although its certificate and the job
//! token are still valid, while the others carry on; nobody but the operator may set the
//! list; and a certificate of another job's CA does not get past the TLS handshake.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Pki, TOKEN, dir_store, initial_model, job, rounds};
use fedsky_aggregator::ParticipantId;
use fedsky_aggregator::client::{
    AggregatorClient, ClientConfig, ClientError, ClientTls, UpdateToSend,
};
use tonic::Code;

const OPERATOR: &str = "fedsky-operator";

fn update(round: u64) -> UpdateToSend {
    UpdateToSend {
        round,
        base_version: 0,
        num_examples: 10,
        metrics: HashMap::new(),
        bytes: initial_model().to_safetensors().unwrap().into(),
    }
}

#[track_caller]
fn denied<T: std::fmt::Debug>(what: &str, r: Result<T, ClientError>) {
    match r {
        Err(e) => {
            assert_eq!(e.code(), Some(Code::PermissionDenied), "{what}: {e}");
            assert_eq!(e.reason(), Some("permission_denied"), "{what}: {e}");
        }
        Ok(v) => panic!("{what}: expected PERMISSION_DENIED, got {v:?}"),
    }
}

async fn put(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    names: &[&str],
) -> reqwest::Response {
    let mut req = client
        .put(url)
        .json(&serde_json::json!({ "participants": names }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_participant_is_refused_and_the_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    // Two participants are needed before round 1 is sampled; one update closes it.
    let h = common::start(job(&rounds(1, 1, 2, 60.0, 30.0)), dir_store(dir.path())).await;
    let url = format!("{}/v1/participants", h.http);
    let operator = h.pki.https_client(Some(OPERATOR));

    let mut a = h.client("site-a").await;
    let mut b = h.client("site-b").await;
    a.register(HashMap::new()).await.unwrap();
    b.register(HashMap::new()).await.unwrap();
    let mut b_instructions = b.instructions().await.unwrap();
    b_instructions
        .message()
        .await
        .unwrap()
        .expect("b's first instruction");

    // No list yet: anyone with a certificate from the job's CA.
    let open: serde_json::Value = operator
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(open, serde_json::json!({ "participants": null }));

    // The operator replaced b.
    let resp = put(&operator, &url, None, &["site-a", "site-c"]).await;
    assert_eq!(resp.status(), 200);
    let set: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(set["revoked"], serde_json::json!(["site-b"]), "{set}");
    let list: serde_json::Value = operator
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        serde_json::json!({ "participants": ["site-a", "site-c"] })
    );
    assert!(!h.core().is_registered(&ParticipantId::from("site-b")));

    // b's open instruction stream ends with the refusal.
    let ended = tokio::time::timeout(Duration::from_secs(5), b_instructions.message())
        .await
        .expect("the stream ends at once");
    denied("instruction stream", ended.map_err(ClientError::Status));
    for _ in 0..10 {
        denied("register", b.register(HashMap::new()).await);
        denied("heartbeat", b.heartbeat().await);
        denied("upload", b.upload_update(update(1)).await);
        denied("report", b.report_evaluation(0, 10, HashMap::new()).await);
        denied("instructions", b.instructions().await);
    }
    assert_eq!(h.core().metrics().participants_revoked.get(), 1);
    // A name the operator never listed (a participant it has just started, say) is not
    // admitted either, but may retry: it is not revoked.
    let mut d = h.client("site-d").await;
    let early = d.register(HashMap::new()).await.unwrap_err();
    assert_eq!(early.code(), Some(Code::Unavailable), "{early}");
    assert_eq!(early.reason(), Some("not_listed"));

    // a carries on and closes the round alone.
    a.heartbeat().await.unwrap();
    let receipt = a.upload_update(update(1)).await.unwrap();
    assert_eq!(receipt.round, 1);
    h.wait_for("round 1", Duration::from_secs(10), |s| {
        s.completed_rounds == 1
    })
    .await;

    // Only the operator's certificate may set the list: not the job token, not a
    // participant's certificate (not even a listed one), not nobody.
    let anonymous = h.pki.https_client(None);
    let participant = h.pki.https_client(Some("site-a"));
    let everyone = ["site-a", "site-b", "site-c"];
    assert_eq!(
        put(&anonymous, &url, Some(TOKEN), &everyone).await.status(),
        403
    );
    let refused = put(&participant, &url, None, &everyone).await;
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().is_some(), "{body}");
    assert_eq!(put(&anonymous, &url, None, &everyone).await.status(), 401);
    // Reading it is fine for any job credential; nothing changed.
    let after: serde_json::Value = anonymous
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after, list);
    denied(
        "register after refused PUTs",
        b.register(HashMap::new()).await,
    );

    // A malformed list is refused whole.
    let bad = put(&operator, &url, None, &["site a"]).await;
    assert_eq!(bad.status(), 400);
    let not_a_list = operator
        .put(&url)
        .json(&serde_json::json!({ "participants": null }))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_list.status(), 400);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_jobs_ca_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(job(&rounds(1, 1, 2, 60.0, 30.0)), dir_store(dir.path())).await;
    let other = Pki::new().client("site-a");
    // Trusts this job's aggregator, presents the other job's certificate.
    let tls = ClientTls {
        ca: h.pki.ca_pem.clone().into_bytes(),
        ..other
    };
    let mut config = ClientConfig::mtls(h.endpoint.clone(), TOKEN, tls);
    config.connect_timeout = Duration::from_secs(2);
    let refused = match AggregatorClient::connect(config).await {
        // TLS 1.3 sends the client certificate after the client considers the handshake
        // done; the server's alert then fails the first call.
        Ok(mut c) => c.register(HashMap::new()).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let e = refused.expect_err("a foreign certificate must not be admitted");
    assert_ne!(e.code(), Some(Code::Ok), "{e}");
    assert!(!h.core().is_registered(&ParticipantId::from("site-a")));
    h.server.shutdown().await;
}
