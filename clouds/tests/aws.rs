//! AWS against a REAL peer: moto's server on loopback (`fedsky_e2e::moto`) with request
//! authentication on, so unknown keys, bad signatures and stale session tokens are
//! rejected by moto as AWS rejects them. A TCP proxy (`fakes/proxy.rs`) in front of moto
//! injects connection failures and lost answers.
//!
//! moto does not enforce the expiry of session credentials, so "expired" is checked with
//! keys whose `AWS_SESSION_EXPIRATION` has passed (fedsky refuses them before calling);
//! the mapping of AWS's `ExpiredToken` answer is covered by unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;

use aws_sdk_ec2::types::Filter;
use fedsky_clouds::Cloud;
use fedsky_clouds::auth::{self, AuthError};
use fedsky_clouds::credentials::{self, AwsCredentials, Credentials, SecretData};
use fedsky_clouds::provision::aws::AwsProvisioner;
use fedsky_clouds::provision::{JobOwner, Location, Provisioner, VmSpec};
use fedsky_e2e::moto::{Moto, MotoOptions};
use std::sync::atomic::Ordering;

const REGION: &str = "eu-central-1";
const ACCOUNT: &str = "123456789012";

/// An IAM user allowed everything, and a role it (and a web identity) may assume.
const SETUP: &str = r#"
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="fedsky")
allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
iam.put_user_policy(UserName="fedsky", PolicyName="all", PolicyDocument=json.dumps(allow))
key = iam.create_access_key(UserName="fedsky")["AccessKey"]
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:user/fedsky",
                       "Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.example"},
         "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]}]}
iam.create_role(RoleName="fedsky-provisioner", AssumeRolePolicyDocument=json.dumps(trust))
iam.put_role_policy(RoleName="fedsky-provisioner", PolicyName="all", PolicyDocument=json.dumps(allow))
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

struct Aws {
    moto: Moto,
    key_id: String,
    secret: String,
}

fn start() -> Aws {
    let moto = Moto::start(&MotoOptions::default()).expect("moto starts");
    let out = moto.python(SETUP).expect("IAM set-up");
    let mut words = out.split_whitespace();
    let key_id = words.next().expect("key id").to_string();
    let secret = words.next().expect("secret").to_string();
    moto.enforce_auth().expect("auth on");
    Aws {
        moto,
        key_id,
        secret,
    }
}

fn data(pairs: &[(&str, &str)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn aws(d: &SecretData) -> AwsCredentials {
    match credentials::parse(Cloud::Aws, d).expect("parses") {
        Credentials::Aws(a) => a,
        other => panic!("{other:?}"),
    }
}

impl Aws {
    fn keys(&self, endpoint: &str) -> SecretData {
        data(&[
            ("AWS_ACCESS_KEY_ID", &self.key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret),
            ("AWS_ENDPOINT_URL", endpoint),
        ])
    }
}

fn role() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/fedsky-provisioner")
}

fn spec(cidrs: &[&str]) -> VmSpec {
    VmSpec {
        owner: JobOwner {
            namespace: "covid".into(),
            name: "xray".into(),
            uid: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
        },
        location: Location {
            region: REGION.into(),
            zone: None,
        },
        instance_type: "m5.large".into(),
        image: "ami-0123456789abcdef0".into(),
        network: None,
        grpc_port: 50051,
        source_cidrs: cidrs.iter().map(|s| (*s).to_string()).collect(),
        user_data: "#cloud-config\n".into(),
    }
}

/// Instances that are not terminated, and fedsky security groups, in the region — all of
/// them, not only those with the job's tags.
async fn census(p: &AwsProvisioner) -> (Vec<String>, Vec<String>, Vec<(String, i32, Vec<String>)>) {
    let ec2 = p.session().ec2(REGION);
    let out = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .values("shutting-down")
                .build(),
        )
        .send()
        .await
        .expect("describe instances");
    let live: Vec<String> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    let all = ec2.describe_instances().send().await.expect("describe all");
    let terminated: Vec<String> = all
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("terminated"))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    let groups = ec2
        .describe_security_groups()
        .send()
        .await
        .expect("describe groups");
    let fedsky: Vec<(String, i32, Vec<String>)> = groups
        .security_groups()
        .iter()
        .filter(|g| g.group_name().is_some_and(|n| n.starts_with("fedsky-agg-")))
        .flat_map(|g| {
            g.ip_permissions().iter().map(|p| {
                (
                    g.group_id().unwrap_or_default().to_string(),
                    p.from_port().unwrap_or(-1),
                    p.ip_ranges()
                        .iter()
                        .filter_map(|r| r.cidr_ip().map(str::to_string))
                        .collect(),
                )
            })
        })
        .chain(
            groups
                .security_groups()
                .iter()
                .filter(|g| {
                    g.group_name().is_some_and(|n| n.starts_with("fedsky-agg-"))
                        && g.ip_permissions().is_empty()
                })
                .map(|g| (g.group_id().unwrap_or_default().to_string(), -1, vec![])),
        )
        .collect();
    (live, terminated, fedsky)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_validated_by_sts_with_typed_errors() {
    let a = start();
    let ep = a.moto.endpoint();

    let v = auth::validate(&Credentials::Aws(aws(&a.keys(&ep))), Some(REGION))
        .await
        .expect("valid keys");
    assert_eq!(v.identity, format!("arn:aws:iam::{ACCOUNT}:user/fedsky"));
    assert_eq!(v.expires_at, None);

    // A wrong secret: moto checks the signature and refuses it.
    let wrong = data(&[
        ("AWS_ACCESS_KEY_ID", &a.key_id),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ("AWS_ENDPOINT_URL", &ep),
    ]);
    let e = auth::validate(&Credentials::Aws(aws(&wrong)), Some(REGION))
        .await
        .expect_err("wrong secret");
    assert_eq!(e.reason(), "InvalidCredentials", "{e}");
    assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");
    assert!(!e.to_string().contains("not-the-secret"), "{e}");

    // A key moto never issued.
    let unknown = data(&[
        ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN12"),
        ("AWS_SECRET_ACCESS_KEY", "whatever"),
        ("AWS_ENDPOINT_URL", &ep),
    ]);
    let e = auth::validate(&Credentials::Aws(aws(&unknown)), Some(REGION))
        .await
        .expect_err("unknown key");
    assert!(e.to_string().contains("InvalidClientTokenId"), "{e}");

    // Assumed role: the session's ARN and expiry.
    let mut assume = a.keys(&ep);
    assume.insert("AWS_ROLE_ARN".into(), role().into_bytes());
    assume.insert("AWS_ROLE_SESSION_NAME".into(), b"fedsky-test".to_vec());
    let v = auth::validate(&Credentials::Aws(aws(&assume)), Some(REGION))
        .await
        .expect("assumed role");
    assert_eq!(
        v.identity,
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/fedsky-provisioner/fedsky-test")
    );
    assert!(v.expires_at.expect("expiry") > jiff::Timestamp::now());

    // Web identity (IRSA): the token file the kubelet would project. moto answers 500 to
    // unsigned calls once authentication is on, so this one runs on a moto without it.
    let open = Moto::start(&MotoOptions::default()).expect("moto without auth");
    let open_ep = open.endpoint();
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln").expect("token");
    let web = data(&[
        ("AWS_ROLE_ARN", &role()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.to_str().expect("utf-8"),
        ),
        ("AWS_ENDPOINT_URL", &open_ep),
    ]);
    let v = auth::validate(&Credentials::Aws(aws(&web)), Some(REGION))
        .await
        .expect("web identity");
    assert!(
        v.identity.contains(":assumed-role/fedsky-provisioner/"),
        "{}",
        v.identity
    );
    assert!(v.expires_at.is_some());

    // Session keys with a stale session token: moto refuses the token.
    let session = temporary_keys(&a).await;
    let stale = data(&[
        ("AWS_ACCESS_KEY_ID", &session.0),
        ("AWS_SECRET_ACCESS_KEY", &session.1),
        ("AWS_SESSION_TOKEN", "a-token-from-an-older-session"),
        ("AWS_ENDPOINT_URL", &ep),
    ]);
    let e = auth::validate(&Credentials::Aws(aws(&stale)), Some(REGION))
        .await
        .expect_err("stale token");
    assert_eq!(e.reason(), "InvalidCredentials", "{e}");
    // The same session keys, known to have expired.
    let expired = data(&[
        ("AWS_ACCESS_KEY_ID", &session.0),
        ("AWS_SECRET_ACCESS_KEY", &session.1),
        ("AWS_SESSION_TOKEN", &session.2),
        ("AWS_SESSION_EXPIRATION", "2020-01-01T00:00:00Z"),
        ("AWS_ENDPOINT_URL", &ep),
    ]);
    let e = auth::validate(&Credentials::Aws(aws(&expired)), Some(REGION))
        .await
        .expect_err("expired");
    assert!(matches!(e, AuthError::Expired { .. }), "{e}");
    assert_eq!(e.reason(), "ExpiredCredentials");
    // ...and with a current session token they are valid.
    let fresh = data(&[
        ("AWS_ACCESS_KEY_ID", &session.0),
        ("AWS_SECRET_ACCESS_KEY", &session.1),
        ("AWS_SESSION_TOKEN", &session.2),
        ("AWS_ENDPOINT_URL", &ep),
    ]);
    auth::validate(&Credentials::Aws(aws(&fresh)), Some(REGION))
        .await
        .expect("session keys");

    // Nobody listens.
    drop(a);
    let e = auth::validate(
        &Credentials::Aws(aws(&data(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ENDPOINT_URL", &ep),
        ]))),
        Some(REGION),
    )
    .await
    .expect_err("down");
    assert_eq!(e.reason(), "EndpointUnreachable", "{e}");
}

/// Session keys from `AssumeRole` (id, secret, token).
async fn temporary_keys(a: &Aws) -> (String, String, String) {
    let config = aws_sdk_sts::config::Builder::new()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(a.moto.endpoint())
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            &a.key_id, &a.secret, None, None, "test",
        ))
        .build();
    let out = aws_sdk_sts::Client::from_conf(config)
        .assume_role()
        .role_arn(role())
        .role_session_name("temporary")
        .send()
        .await
        .expect("assume role");
    let c = out.credentials().expect("credentials");
    (
        c.access_key_id().to_string(),
        c.secret_access_key().to_string(),
        c.session_token().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_and_one_group_survive_retries_and_cleanup_leaves_none() {
    let a = start();
    let creds = aws(&a.keys(&a.moto.endpoint()));
    let spec = spec(&["203.0.113.0/24"]);

    let p = AwsProvisioner::connect(&creds, REGION)
        .await
        .expect("connect");
    let first = p.ensure(&spec).await.expect("ensure");
    let (live, _, groups) = census(&p).await;
    assert_eq!(live, vec![first.id.clone()]);
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].1, 50051);
    assert_eq!(groups[0].2, ["203.0.113.0/24"]);

    // A crash between RunInstances and the caller's status write: nothing was recorded,
    // a new provisioner runs ensure again and finds the instance by its tags.
    drop(p);
    let p = AwsProvisioner::connect(&creds, REGION)
        .await
        .expect("connect");
    let again = p.ensure(&spec).await.expect("ensure again");
    assert_eq!(again.id, first.id);
    let (live, _, groups) = census(&p).await;
    assert_eq!(live.len(), 1);
    assert_eq!(groups.len(), 1);

    // New CIDRs replace the rule; still only the gRPC port.
    p.ensure(&self::spec(&["198.51.100.0/24", "192.0.2.10/32"]))
        .await
        .expect("new cidrs");
    let (_, _, groups) = census(&p).await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    let mut cidrs = groups[0].2.clone();
    cidrs.sort();
    assert_eq!(cidrs, ["192.0.2.10/32", "198.51.100.0/24"]);

    assert_eq!(
        p.find(&spec.owner, &spec.location)
            .await
            .expect("find")
            .len(),
        1
    );
    let left = p.delete(&spec.owner, &spec.location).await.expect("delete");
    assert!(left.is_clean(), "{left:?}");
    let (live, terminated, groups) = census(&p).await;
    assert!(live.is_empty(), "{live:?}");
    assert_eq!(terminated, vec![first.id.clone()]);
    assert!(groups.is_empty(), "{groups:?}");
    assert!(
        p.delete(&spec.owner, &spec.location)
            .await
            .expect("again")
            .is_clean()
    );

    // After cleanup a new launch gets a new client token and a new instance.
    let next = p.ensure(&spec).await.expect("relaunch");
    assert_ne!(next.id, first.id);
    assert!(
        p.delete(&spec.owner, &spec.location)
            .await
            .expect("cleanup")
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_then_retries_converge_on_one_instance() {
    let a = start();
    let upstream = format!("127.0.0.1:{}", a.moto.port())
        .parse()
        .expect("addr");
    let (proxy, faults) = fakes::proxy::start(upstream).await;
    let creds = aws(&a.keys(&format!("http://{proxy}")));
    let spec = spec(&["203.0.113.0/24"]);
    let p = AwsProvisioner::connect(&creds, REGION)
        .await
        .expect("connect");

    // moto is down for a while: ensure fails as retryable and makes nothing.
    faults.down.store(true, Ordering::SeqCst);
    let e = p.ensure(&spec).await.expect_err("down");
    assert_eq!(e.reason(), "ProvisioningRetrying", "{e}");
    assert!(!e.is_user_error());
    faults.down.store(false, Ordering::SeqCst);

    // One refused request is retried by the SDK within the call.
    faults.refuse.store(1, Ordering::SeqCst);
    let first = p.ensure(&spec).await.expect("ensure through one failure");
    let (live, _, _) = census(&p).await;
    assert_eq!(live, vec![first.id.clone()]);

    // RunInstances reaches moto but its answer is lost. moto (unlike EC2) ignores the
    // client token, so the SDK's retry may launch a duplicate; the next ensure keeps one.
    let left = p.delete(&spec.owner, &spec.location).await.expect("delete");
    assert!(left.is_clean());
    *faults.lose_answer_to.lock().expect("lock") = Some(b"Action=RunInstances".to_vec());
    let _ = p.ensure(&spec).await;
    assert_eq!(faults.lost.load(Ordering::SeqCst), 1);
    let kept = p.ensure(&spec).await.expect("converges");
    let (live, _, groups) = census(&p).await;
    assert_eq!(live, vec![kept.id.clone()], "exactly one live instance");
    assert_eq!(groups.len(), 1);
    assert_eq!(p.ensure(&spec).await.expect("stable").id, kept.id);

    assert!(
        p.delete(&spec.owner, &spec.location)
            .await
            .expect("cleanup")
            .is_clean()
    );
    let (live, _, groups) = census(&p).await;
    assert!(live.is_empty() && groups.is_empty());
}
