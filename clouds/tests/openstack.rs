//! OpenStack: the application credential and the aggregator server against the FAKE
//! Keystone + Nova + Neutron in `fakes/openstack.rs`, built from the API reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;

use fedsky_clouds::Cloud;
use fedsky_clouds::auth::{self, AuthError};
use fedsky_clouds::credentials::{self, Credentials, OpenStackCredentials, SecretData};
use fedsky_clouds::provision::openstack::OpenStackProvisioner;
use fedsky_clouds::provision::{InstanceState, JobOwner, Location, Provisioner, VmSpec};

fn creds(auth_url: &str, secret: &str) -> OpenStackCredentials {
    let data = SecretData::from([
        ("OS_AUTH_URL".to_string(), auth_url.as_bytes().to_vec()),
        ("OS_APPLICATION_CREDENTIAL_ID".to_string(), b"ac-1".to_vec()),
        (
            "OS_APPLICATION_CREDENTIAL_SECRET".to_string(),
            secret.as_bytes().to_vec(),
        ),
        ("OS_REGION_NAME".to_string(), b"RegionOne".to_vec()),
    ]);
    match credentials::parse(Cloud::OpenStack, &data).expect("parses") {
        Credentials::OpenStack(o) => o,
        other => panic!("{other:?}"),
    }
}

fn spec(cidrs: &[&str]) -> VmSpec {
    VmSpec {
        owner: JobOwner {
            namespace: "covid".into(),
            name: "xray".into(),
            uid: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
        },
        location: Location {
            region: "RegionOne".into(),
            zone: None,
        },
        instance_type: "m1.large".into(),
        image: "ubuntu-24.04".into(),
        network: None,
        grpc_port: 50051,
        source_cidrs: cidrs.iter().map(|s| (*s).to_string()).collect(),
        user_data: "#cloud-config\n".into(),
    }
}

fn ingress(fake: &fakes::openstack::Fake) -> Vec<String> {
    let st = fake.state();
    let mut cidrs: Vec<String> = st
        .groups
        .values()
        .flat_map(|g| {
            g["security_group_rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|r| r["direction"] == "ingress")
        .map(|r| {
            assert_eq!(r["port_range_min"], 50051);
            assert_eq!(r["port_range_max"], 50051);
            assert_eq!(r["protocol"], "tcp");
            r["remote_ip_prefix"].as_str().unwrap().to_string()
        })
        .collect();
    cidrs.sort();
    cidrs
}

#[tokio::test]
async fn keystone_token_reports_user_project_and_expiry() {
    let fake = fakes::openstack::start("ac-1", "s3cr3t").await;
    let v = auth::validate(
        &Credentials::OpenStack(creds(&fake.auth_url(), "s3cr3t")),
        None,
    )
    .await
    .expect("valid");
    assert_eq!(v.identity, "user fedsky in project hospital-eu");
    let left = v.expires_at.expect("expiry").as_second() - jiff::Timestamp::now().as_second();
    assert!((3500..=3600).contains(&left), "{left}");

    let e = auth::validate(
        &Credentials::OpenStack(creds(&fake.auth_url(), "wrong")),
        None,
    )
    .await
    .expect_err("wrong secret");
    assert_eq!(e.reason(), "InvalidCredentials", "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");

    let e = auth::validate(
        &Credentials::OpenStack(creds("http://127.0.0.1:9/identity", "s3cr3t")),
        None,
    )
    .await
    .expect_err("down");
    assert!(matches!(e, AuthError::Unreachable { .. }), "{e}");
}

#[tokio::test]
async fn provisioning_finds_its_server_again_and_cleans_up() {
    let fake = fakes::openstack::start("ac-1", "s3cr3t").await;
    let c = creds(&fake.auth_url(), "s3cr3t");
    let spec = spec(&["203.0.113.0/24"]);

    let p = OpenStackProvisioner::connect(&c).await.expect("connect");
    let first = p.ensure(&spec).await.expect("ensure");
    assert_eq!(fake.state().servers.len(), 1);
    assert_eq!(fake.state().groups.len(), 1);
    assert_eq!(ingress(&fake), ["203.0.113.0/24"]);
    {
        let st = fake.state();
        let srv = &st.servers[&first.id];
        assert_eq!(srv["metadata"]["fedsky:job"], "covid/xray");
        assert_eq!(srv["flavor"]["id"], "3");
    }

    // A crash before the caller recorded it: a fresh provisioner finds the same server.
    drop(p);
    let p = OpenStackProvisioner::connect(&c).await.expect("connect");
    let again = p.ensure(&spec).await.expect("ensure again");
    assert_eq!(again.id, first.id);
    assert_eq!(again.state, InstanceState::Running);
    assert_eq!(again.address(), Some("10.0.0.1"));
    assert_eq!(fake.state().created, 1);

    // Rules follow the CIDRs.
    p.ensure(&self::spec(&["198.51.100.0/24"]))
        .await
        .expect("narrower");
    assert_eq!(ingress(&fake), ["198.51.100.0/24"]);

    let left = p.delete(&spec.owner, &spec.location).await.expect("delete");
    assert!(left.is_clean(), "{left:?}");
    assert!(fake.state().servers.is_empty());
    assert!(fake.state().groups.is_empty());
}

#[tokio::test]
async fn failures_then_retries_leave_exactly_one_server() {
    let fake = fakes::openstack::start("ac-1", "s3cr3t").await;
    let c = creds(&fake.auth_url(), "s3cr3t");
    let spec = spec(&["203.0.113.0/24"]);
    let p = OpenStackProvisioner::connect(&c).await.expect("connect");

    fake.state().fail_next = 1;
    let e = p.ensure(&spec).await.expect_err("503");
    assert_eq!(e.reason(), "ProvisioningRetrying", "{e}");

    // Nova makes the server but the answer is lost.
    fake.state().lose_next_create = true;
    let e = p.ensure(&spec).await.expect_err("lost");
    assert_eq!(e.reason(), "ProvisioningRetrying", "{e}");
    assert_eq!(fake.state().servers.len(), 1);
    p.ensure(&spec).await.expect("retry");
    assert_eq!(fake.state().servers.len(), 1);
    assert_eq!(fake.state().created, 1);

    // A flavour the project does not offer is the user's to fix.
    let mut bad = self::spec(&["203.0.113.0/24"]);
    bad.owner.uid = "ffffffff-0000-0000-0000-000000000000".into();
    bad.instance_type = "m1.huge".into();
    let e = p.ensure(&bad).await.expect_err("flavour");
    assert_eq!(e.reason(), "ProvisioningRefused", "{e}");
    assert!(e.to_string().contains("m1.huge"), "{e}");

    // A group in use is not deleted until its server is gone.
    let left = p.delete(&spec.owner, &spec.location).await.expect("delete");
    assert!(left.is_clean(), "{left:?}");
}
