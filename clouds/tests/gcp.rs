//! GCP: credentials and the aggregator VM against the FAKE Compute Engine and OAuth token
//! endpoint in `fakes/gcp.rs` (no runnable emulator checks signatures or label filters;
//! see `fakes/mod.rs`). The RSA keys are real (made by `openssl`), and the fake verifies
//! the RS256 signature of every assertion with the public key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;

use fedsky_clouds::Cloud;
use fedsky_clouds::auth::{self, AuthError};
use fedsky_clouds::credentials::{self, Credentials, SecretData};
use fedsky_clouds::provision::gcp::GcpProvisioner;
use fedsky_clouds::provision::{InstanceState, JobOwner, Location, Provisioner, VmSpec};

const EMAIL: &str = "fedsky@fedsky-test.iam.gserviceaccount.com";

fn public_key(pem: &str) -> Vec<u8> {
    let der = auth::gcp::pem_body(pem, "PRIVATE KEY").expect("pem");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("rsa");
    use ring::signature::KeyPair;
    pair.public_key().as_ref().to_vec()
}

fn secret(fake: &fakes::gcp::Fake, pem: &str) -> SecretData {
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "fedsky-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": EMAIL,
        "token_uri": fake.token_uri(),
    });
    SecretData::from([
        ("credentials.json".to_string(), key.to_string().into_bytes()),
        (
            "GCP_COMPUTE_ENDPOINT".to_string(),
            fake.compute().into_bytes(),
        ),
    ])
}

fn gcp(data: &SecretData) -> fedsky_clouds::credentials::GcpCredentials {
    match credentials::parse(Cloud::Gcp, data).expect("parses") {
        Credentials::Gcp(g) => g,
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
            region: "europe-west1".into(),
            zone: None,
        },
        instance_type: "e2-standard-2".into(),
        image: "projects/debian-cloud/global/images/family/debian-12".into(),
        network: None,
        grpc_port: 50051,
        source_cidrs: cidrs.iter().map(|s| (*s).to_string()).collect(),
        user_data: "#cloud-config\n".into(),
    }
}

#[tokio::test]
async fn token_exchange_reports_the_service_account_or_a_typed_error() {
    let pem = fakes::rsa_key();
    let fake = fakes::gcp::start("fedsky-test", EMAIL, public_key(&pem)).await;
    let valid = auth::validate(&Credentials::Gcp(gcp(&secret(&fake, &pem))), None)
        .await
        .expect("valid");
    assert_eq!(valid.identity, EMAIL);
    let left = valid.expires_at.expect("expiry").as_second() - jiff::Timestamp::now().as_second();
    assert!((3500..=3600).contains(&left), "{left}");

    // Another key for the same account: the signature does not verify.
    let other = fakes::rsa_key();
    let e = auth::validate(&Credentials::Gcp(gcp(&secret(&fake, &other))), None)
        .await
        .expect_err("wrong key");
    assert_eq!(e.reason(), "InvalidCredentials", "{e}");
    assert!(e.to_string().contains("Invalid JWT Signature"), "{e}");
    assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");

    // Nobody listens: unreachable, not invalid.
    let mut data = secret(&fake, &pem);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    data.insert(
        "GCP_TOKEN_URI".into(),
        format!("http://127.0.0.1:{dead}/token").into_bytes(),
    );
    let e = auth::validate(&Credentials::Gcp(gcp(&data)), None)
        .await
        .expect_err("down");
    assert!(matches!(e, AuthError::Unreachable { .. }), "{e}");
    assert_eq!(e.reason(), "EndpointUnreachable");
}

#[tokio::test]
async fn provisioning_finds_its_instance_again_and_cleans_up() {
    let pem = fakes::rsa_key();
    let fake = fakes::gcp::start("fedsky-test", EMAIL, public_key(&pem)).await;
    let creds = gcp(&secret(&fake, &pem));
    let spec = spec(&["203.0.113.0/24"]);

    let p = GcpProvisioner::connect(&creds).await.expect("connect");
    let first = p.ensure(&spec).await.expect("ensure");
    assert_eq!(first.id, "fedsky-agg-covid-xray-3f2504e0");
    {
        let st = fake.state();
        assert_eq!(st.instances.len(), 1);
        // The region's first zone by name, not the first listed.
        assert!(st.instances.keys().all(|(z, _)| z == "europe-west1-b"));
        let fw = &st.firewalls["fedsky-agg-covid-xray-3f2504e0"];
        assert_eq!(fw["allowed"][0]["ports"][0], "50051");
        assert_eq!(fw["sourceRanges"], serde_json::json!(["203.0.113.0/24"]));
        assert_eq!(fw["targetTags"][0], first.id.as_str());
    }

    // The operator crashed before recording it: a new provisioner finds the same one.
    drop(p);
    let p = GcpProvisioner::connect(&creds).await.expect("connect");
    let again = p.ensure(&spec).await.expect("ensure again");
    assert_eq!(again.id, first.id);
    assert_eq!(again.state, InstanceState::Running);
    assert_eq!(again.address(), Some("34.0.0.1"));
    assert_eq!(fake.state().created, 1);

    // New CIDRs patch the firewall in place.
    let wider = self::spec(&["203.0.113.0/24", "198.51.100.7/32"]);
    p.ensure(&wider).await.expect("ensure wider");
    assert_eq!(
        fake.state().firewalls[&first.id]["sourceRanges"],
        serde_json::json!(["203.0.113.0/24", "198.51.100.7/32"])
    );

    let left = p.delete(&spec.owner, &spec.location).await.expect("delete");
    assert!(left.is_clean(), "{left:?}");
    assert!(fake.state().instances.is_empty());
    assert!(fake.state().firewalls.is_empty());
    assert!(
        p.find(&spec.owner, &spec.location)
            .await
            .expect("find")
            .is_empty()
    );
    // Deleting again is a no-op.
    assert!(
        p.delete(&spec.owner, &spec.location)
            .await
            .expect("again")
            .is_clean()
    );
}

#[tokio::test]
async fn a_lost_insert_answer_and_server_errors_never_make_a_second_instance() {
    let pem = fakes::rsa_key();
    let fake = fakes::gcp::start("fedsky-test", EMAIL, public_key(&pem)).await;
    let creds = gcp(&secret(&fake, &pem));
    let spec = spec(&["203.0.113.0/24"]);
    let p = GcpProvisioner::connect(&creds).await.expect("connect");

    // A 503: the call fails as retryable.
    fake.state().fail_next = 1;
    let e = p.ensure(&spec).await.expect_err("503");
    assert_eq!(e.reason(), "ProvisioningRetrying", "{e}");
    assert!(!e.is_user_error());

    // The insert happens but its answer is lost.
    fake.state().lose_next_insert = true;
    let e = p.ensure(&spec).await.expect_err("lost answer");
    assert_eq!(e.reason(), "ProvisioningRetrying", "{e}");
    assert_eq!(fake.state().instances.len(), 1);

    let i = p.ensure(&spec).await.expect("retry");
    assert_eq!(i.id, "fedsky-agg-covid-xray-3f2504e0");
    assert_eq!(fake.state().instances.len(), 1);
    assert_eq!(fake.state().created, 1);

    // An image that does not exist is the user's to fix.
    let mut bad = self::spec(&["203.0.113.0/24"]);
    bad.owner.uid = "ffffffff-0000-0000-0000-000000000000".into();
    bad.image = "projects/nowhere/global/images/missing".into();
    let e = p.ensure(&bad).await.expect_err("bad image");
    assert_eq!(e.reason(), "ProvisioningRefused", "{e}");
    assert!(e.is_user_error());
    assert!(e.to_string().contains("missing"), "{e}");
}
