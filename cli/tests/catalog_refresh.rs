//! `fedsky catalog refresh` against a real EC2 API: moto's server on
//! loopback with request authentication on, so signatures and credentials
//! are checked as AWS checks them. An IAM user allowed `ec2:Describe*` is
//! created with boto3 (moto's own dependency) in the first, unauthenticated
//! requests moto allows; every later request must be signed by a known key.
//!
//! moto is started by `fedsky_e2e::moto` (from the venv named by
//! `FEDSKY_VENV`, else the workspace's `.venv`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fedsky_e2e::moto::{Moto, MotoOptions};
use fedsky_placement::catalog::aws::{Ec2Settings, fetch};
use fedsky_placement::catalog::refresh::RefreshError;
use fedsky_placement::{Catalog, CatalogOverlay};

/// Unauthenticated requests moto allows before it checks signatures: the
/// three IAM calls that make the test user.
const SETUP_REQUESTS: u32 = 3;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto with authentication enforced after the set-up requests.
fn start_moto() -> Moto {
    Moto::start(&MotoOptions {
        auth_after: Some(SETUP_REQUESTS),
    })
    .expect("moto starts")
}

/// Creates an IAM user allowed `ec2:Describe*` and returns its key.
fn create_user(moto: &Moto) -> (String, String) {
    const SCRIPT: &str = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="fedsky-refresh")
iam.put_user_policy(UserName="fedsky-refresh", PolicyName="describe", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="fedsky-refresh")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
    let text = moto.python(SCRIPT).expect("creating the IAM user");
    let mut words = text.split_whitespace();
    let id = words.next().expect("key id").to_string();
    let secret = words.next().expect("secret").to_string();
    (id, secret)
}

/// Runs `fedsky` with only the given AWS variables set.
fn fedsky(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedsky"));
    cmd.args(args).current_dir(workspace());
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_PROFILE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refresh_from_moto_merges_with_the_builtin_catalog_and_rejects_bad_credentials() {
    let moto = start_moto();
    let (id, secret) = create_user(&moto);
    let endpoint = moto.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let overlay_path = dir.path().join("overlay.json");
    let overlay_arg = overlay_path.to_str().unwrap();
    let creds = [
        ("AWS_ACCESS_KEY_ID", id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];

    // The library: regions, instance types and spot prices come back.
    let mut settings = Ec2Settings::new("us-east-1", id.clone(), secret.clone());
    settings.endpoint = Some(endpoint.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let types = ["m5.large".to_string(), "t3.micro".to_string()].into();
    let snapshot = runtime
        .block_on(fetch(&settings, &types, &["eu-central-1".to_string()]))
        .expect("fetch from moto");
    assert!(
        snapshot.regions.iter().any(|r| r == "us-east-1"),
        "{:?}",
        snapshot.regions
    );
    assert!(snapshot.regions.iter().any(|r| r == "eu-central-1"));
    assert!(
        snapshot.instance_types.len() > 100,
        "{}",
        snapshot.instance_types.len()
    );
    let m5 = snapshot
        .instance_types
        .iter()
        .find(|t| t.name == "m5.large")
        .expect("m5.large described");
    assert_eq!((m5.vcpus, m5.memory_mib), (Some(2), Some(8192)));
    assert!(
        snapshot
            .spot_prices
            .iter()
            .any(|p| p.instance_type == "m5.large"
                && p.availability_zone.starts_with("eu-central-1"))
    );
    assert!(
        snapshot
            .spot_prices
            .iter()
            .all(|p| types.contains(&p.instance_type))
    );

    // The command: an overlay file that merges with the built-in catalog.
    let started = Instant::now();
    let (code, out, err) = fedsky(
        &[
            "catalog",
            "refresh",
            "--region",
            "us-east-1",
            "--endpoint",
            &endpoint,
            "-o",
            overlay_arg,
        ],
        &creds,
    );
    eprintln!("refresh with default spot regions: {:?}", started.elapsed());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("for catalog 2026-11"), "{out}");
    assert!(out.contains("catalog types refreshed"), "{out}");
    let text = std::fs::read_to_string(&overlay_path).unwrap();
    let overlay = CatalogOverlay::from_json(&text).expect("overlay parses");
    assert!(
        overlay.version.starts_with("aws-ec2-us-east-1-"),
        "{}",
        overlay.version
    );
    assert!(
        overlay.regions.is_empty(),
        "no network data for new regions"
    );
    let builtin = Catalog::builtin().unwrap();
    let merged = builtin.with_overlay(&overlay).expect("merges");
    assert_eq!(merged.version(), format!("2026-11+{}", overlay.version));
    let find = |c: &Catalog, name: &str| {
        c.instance_types()
            .iter()
            .find(|t| t.cloud == "aws" && t.name == name)
            .cloned()
            .expect("type in catalog")
    };
    let (before, after) = (find(builtin, "m5.large"), find(&merged, "m5.large"));
    // On-demand prices stay; shapes agree; spot prices are moto's.
    assert_eq!(after.hourly_usd, before.hourly_usd);
    assert_eq!((after.vcpus, after.memory_gib), (2.0, 8.0));
    assert_eq!(after.spot_hourly_usd.get("us-east-1"), Some(&0.00001));
    assert_eq!(after.spot_hourly_usd.get("eu-central-1"), Some(&0.00001));
    // Every refreshed price is in a region the catalog knows.
    assert!(overlay.instance_types.iter().all(|t| {
        t.spot_hourly_usd
            .keys()
            .all(|r| builtin.region_id(&format!("aws:{r}")).is_some())
    }));
    // Every AWS type of the catalog is refreshed or named as not described.
    let aws_types = builtin.instance_types().iter().filter(|t| t.cloud == "aws");
    for t in aws_types {
        assert!(
            overlay.instance_types.iter().any(|o| o.name == t.name)
                || out
                    .lines()
                    .any(|l| l.contains("not described in us-east-1") && l.contains(&t.name)),
            "{} neither refreshed nor reported: {out}",
            t.name
        );
    }
    eprintln!("{out}");

    // The overlay is usable where overlays go.
    let (code, out, err) = fedsky(
        &[
            "placement",
            "solve",
            "-f",
            "examples/covid-xray/aggregator-placement.yaml",
            "--pool",
            "examples/covid-xray/participant-pool.yaml",
            "--overlay",
            overlay_arg,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("(catalog 2026-11+{})", overlay.version)),
        "{out}"
    );

    // Without -o the overlay goes to stdout and the summary to stderr.
    let (code, out, err) = fedsky(
        &[
            "catalog",
            "refresh",
            "--region",
            "us-east-1",
            "--endpoint",
            &endpoint,
            "--spot-region",
            "us-east-1",
            "--label",
            "fresh",
        ],
        &creds,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        CatalogOverlay::from_json(&out)
            .expect("JSON on stdout")
            .version,
        "fresh"
    );
    assert!(err.contains("spot prices:"), "{err}");

    // An unknown key and a known key with the wrong secret: AuthFailure.
    for bad in [
        [
            ("AWS_ACCESS_KEY_ID", "AKIAFEDSKYUNKNOWN000"),
            ("AWS_SECRET_ACCESS_KEY", "nope"),
        ],
        [
            ("AWS_ACCESS_KEY_ID", id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", "wrong-secret"),
        ],
    ] {
        let (code, out, err) = fedsky(
            &[
                "catalog",
                "refresh",
                "--region",
                "us-east-1",
                "--endpoint",
                &endpoint,
            ],
            &bad,
        );
        assert_eq!(code, 1, "{out}");
        assert!(err.contains("rejected the credentials"), "{err}");
        assert!(err.contains("DescribeRegions: AuthFailure"), "{err}");
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    }
    let lib_err = runtime
        .block_on(fetch(
            &Ec2Settings {
                secret_access_key: "wrong".into(),
                ..settings
            },
            &types,
            &[],
        ))
        .expect_err("wrong secret");
    assert!(
        matches!(lib_err, RefreshError::Credentials { .. }),
        "{lib_err:?}"
    );

    // No credentials at all: said before any request.
    let (code, _, err) = fedsky(
        &[
            "catalog",
            "refresh",
            "--region",
            "us-east-1",
            "--endpoint",
            &endpoint,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no credentials: set AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    drop(moto);
}

#[test]
fn unreachable_endpoint_is_a_clear_error() {
    // A port nothing listens on: taken from the OS, then released.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (code, out, err) = fedsky(
        &[
            "catalog",
            "refresh",
            "--region",
            "eu-west-1",
            "--endpoint",
            &endpoint,
            "--max-attempts",
            "2",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAFEDSKYTEST000000"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!(
            "cannot reach the EC2 API at {endpoint} (DescribeRegions in eu-west-1)"
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connect"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // Not a URL: refused before any request.
    let (code, _, err) = fedsky(
        &[
            "catalog",
            "refresh",
            "--region",
            "eu-west-1",
            "--endpoint",
            "127.0.0.1:1",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
}
