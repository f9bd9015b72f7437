//! Two operator replicas on one hub: only the Lease holder acts, and the standby takes
//! over when the leader stops renewing.

mod common;

use common::eventually;
use fedsky_operator::leader::Election;
use fedsky_operator::run::{Settings, run};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use std::time::Duration;

fn settings(identity: &str) -> Settings {
    Settings {
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        election: Some(Election {
            namespace: "fedsky-system".into(),
            name: "fedsky-operator-leader".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(4),
            renew_every: Duration::from_secs(1),
        }),
        ..Default::default()
    }
}

async fn holder(leases: &Api<Lease>) -> Result<String, String> {
    let l = leases
        .get("fedsky-operator-leader")
        .await
        .map_err(|e| e.to_string())?;
    l.spec
        .and_then(|s| s.holder_identity)
        .ok_or_else(|| "no holder".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_only_after_the_leader_stops() {
    // Both replicas act as the chart's ServiceAccount, whose Lease is in its namespace.
    let hub = common::hub(&[]).await;
    let client = hub.operator.clone();
    let leases: Api<Lease> = Api::namespaced(hub.admin.clone(), "fedsky-system");

    let a = tokio::spawn(run(client.clone(), settings("replica-a")));
    eventually("replica-a leads", 30, || {
        let leases = leases.clone();
        async move {
            holder(&leases)
                .await
                .and_then(|h| if h == "replica-a" { Ok(()) } else { Err(h) })
        }
    })
    .await;
    let b = tokio::spawn(run(client.clone(), settings("replica-b")));
    // Several lease periods later the leader is unchanged: the standby only waits.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(holder(&leases).await.as_deref(), Ok("replica-a"));
    assert!(!b.is_finished(), "the standby keeps waiting");

    a.abort();
    eventually("replica-b takes over", 30, || {
        let leases = leases.clone();
        async move {
            holder(&leases)
                .await
                .and_then(|h| if h == "replica-b" { Ok(()) } else { Err(h) })
        }
    })
    .await;
    let lease = leases.get("fedsky-operator-leader").await.expect("lease");
    assert_eq!(lease.spec.and_then(|s| s.lease_transitions), Some(1));
    hub.refusals.check();
    b.abort();
}
