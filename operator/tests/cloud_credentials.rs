//! MemberCluster cloud credentials on a real control plane, checked against a REAL AWS
//! peer: moto's server on loopback with authentication on (`fedsky_e2e::moto`), so a
//! wrong secret is refused by moto's signature check, not by a fake. The cluster's probe
//! interval is an hour, so only the operator's Secret watch can pick up a rotation within
//! the test's time limit. Neither status, Events nor `kubectl get events` may show a
//! secret value.

mod common;

use common::eventually;
use fedsky_crds::MemberCluster;
use fedsky_crds::conditions;
use fedsky_e2e::moto::{Moto, MotoOptions};
use fedsky_e2e::{ControlPlane, Options, kubectl};
use fedsky_operator::run::{Settings, run};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

const WRONG: &str = "wrong-secret-never-shown";

/// An IAM user; prints its key id and secret.
const SETUP: &str = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="fedsky")
iam.put_user_policy(UserName="fedsky", PolicyName="sts", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="fedsky")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

fn credentials(c: &MemberCluster) -> Option<(String, String, String)> {
    let s = c.status.as_ref()?;
    let c = conditions::find(&s.conditions, "CredentialsValid")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn put_secret(hub: &kube::Client, data: serde_json::Value) {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "eu-aws", "namespace": "fedsky-system" },
        "stringData": data,
    }))
    .expect("secret");
    Api::<Secret>::namespaced(hub.clone(), "fedsky-system")
        .patch(
            "eu-aws",
            &PatchParams::apply("fedsky-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply secret");
}

async fn wait_for(
    api: &Api<MemberCluster>,
    what: &str,
    status: &str,
    reason: &str,
) -> (String, String, String) {
    eventually(what, 40, || {
        let api = api.clone();
        async move {
            let mc = api.get("eu").await.map_err(|e| e.to_string())?;
            match credentials(&mc) {
                Some(c) if c.0 == status && c.1 == reason => Ok(c),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_condition_follows_the_secret_without_a_restart() {
    let moto = Moto::start(&MotoOptions::default()).expect("moto");
    let out = moto.python(SETUP).expect("IAM user");
    let mut words = out.split_whitespace();
    let (key_id, secret) = (
        words.next().expect("id").to_string(),
        words.next().expect("secret").to_string(),
    );
    moto.enforce_auth().expect("auth on");

    // The operator acts as the chart's ServiceAccount.
    let hub = common::hub(&[]).await;
    let member = tokio::task::spawn_blocking(|| {
        ControlPlane::start(&Options::api_only("eu")).expect("member")
    })
    .await
    .expect("start");
    let client = hub.admin.clone();
    common::kubeconfig_secret(&client, "eu", &member).await;
    put_secret(
        &client,
        serde_json::json!({
            "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": WRONG,
            "AWS_ENDPOINT_URL": moto.endpoint(),
        }),
    )
    .await;
    common::apply_json(
        &client,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
            "metadata": { "name": "eu" },
            "spec": {
                "provider": "aws", "region": "eu-central-1", "tier": "public",
                "probeIntervalSeconds": 3600,
                "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": "eu-kubeconfig" },
                "credentialsSecretRef": { "namespace": "fedsky-system", "name": "eu-aws" },
            }
        }),
    )
    .await;
    let operator = tokio::spawn(run(hub.operator.clone(), Settings::default()));
    let api: Api<MemberCluster> = Api::all(client.clone());

    // Wrong keys: refused by moto, a clear condition, no crash loop.
    let (_, _, msg) = wait_for(&api, "wrong keys refused", "False", "InvalidCredentials").await;
    assert!(msg.contains("SignatureDoesNotMatch"), "{msg}");
    assert!(msg.contains("GetCallerIdentity"), "{msg}");
    // Reachability is reported independently of the credentials.
    let mc = api.get("eu").await.expect("mc");
    assert!(conditions::is_true(
        &mc.status.expect("status").conditions,
        "Ready"
    ));

    // Rotate to the right keys: picked up through the Secret watch, no restart.
    put_secret(
        &client,
        serde_json::json!({
            "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": moto.endpoint(),
        }),
    )
    .await;
    let (_, _, msg) = wait_for(&api, "rotated keys accepted", "True", "Valid").await;
    assert!(
        msg.contains("arn:aws:iam::123456789012:user/fedsky"),
        "{msg}"
    );
    assert!(msg.contains("without an expiry"), "{msg}");
    assert!(!operator.is_finished(), "the operator keeps running");

    // Session keys that have expired.
    put_secret(
        &client,
        serde_json::json!({
            "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_SESSION_TOKEN": "session-token-never-shown",
            "AWS_SESSION_EXPIRATION": "2020-01-01T00:00:00Z",
            "AWS_ENDPOINT_URL": moto.endpoint(),
        }),
    )
    .await;
    let (_, _, msg) = wait_for(&api, "expired keys", "False", "ExpiredCredentials").await;
    assert!(msg.contains("2020-01-01T00:00:00Z"), "{msg}");

    // The Secret is deleted.
    Api::<Secret>::namespaced(client.clone(), "fedsky-system")
        .delete("eu-aws", &DeleteParams::default())
        .await
        .expect("delete secret");
    let (_, _, msg) = wait_for(&api, "missing secret", "False", "SecretNotFound").await;
    assert!(msg.contains("fedsky-system/eu-aws"), "{msg}");

    // No secret value anywhere the operator writes.
    let status = serde_json::to_string(&api.get("eu").await.expect("mc").status).expect("json");
    let events = tokio::task::spawn_blocking({
        let path = hub.plane.kubeconfig_path().to_path_buf();
        move || kubectl(&path, &["get", "events", "-A", "-o", "yaml"]).expect("kubectl")
    })
    .await
    .expect("join");
    assert!(events.success, "{}", events.stderr);
    for reason in [
        "InvalidCredentials",
        "CredentialsValid",
        "ExpiredCredentials",
        "SecretNotFound",
    ] {
        assert!(
            events.stdout.contains(reason),
            "no {reason} event:\n{}",
            events.stdout
        );
    }
    for leaked in [WRONG, secret.as_str(), "session-token-never-shown"] {
        assert!(!status.contains(leaked), "status shows a secret: {status}");
        assert!(!events.stdout.contains(leaked), "an event shows a secret");
    }
    hub.refusals.check();
    operator.abort();
}
