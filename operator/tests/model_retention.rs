//! `spec.modelStore.retain` and the model API end to end, with the process runtime (real
//! aggregator and libtorch participants) and a real hub API server that proxies the
//! aggregated API `models.fedsky.dev` to the operator:
//!
//! - a `Retain` job (the default) succeeds; its latest model is archived in the hub; the
//!   job is deleted; `kubectl fedsky model download` run as a user whose RBAC allows
//!   `get models/content` in the namespace still returns it, with the sha256 of the job's
//!   last status; the same command as a user without that RBAC fails, naming what is
//!   forbidden;
//! - nobody reaches the model API around the API server: without a client certificate,
//!   or with a user's certificate, the TLS handshake fails;
//! - a `Delete` job's model is served while the job exists and gone with it.
//!
//! Ignored by a plain `cargo test`; the Makefile's `process-runtime-test` runs it.

mod common;

use base64::Engine;
use common::processes::{SiteSpec, StopOnDrop, bin, process_settings, xray_job};
use common::{apply_json, eventually};
use fedsky_crds::FederatedJob;
use fedsky_operator::models::ModelApiSettings;
use fedsky_operator::run::Settings;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, PostParams};
use sha2::Digest;
use std::path::Path;

const NS: &str = "default";
const SITES: [SiteSpec<'_>; 2] = [
    ("eu", "xray-eu", "eu-central-1"),
    ("us", "xray-us", "us-east-1"),
];
const SERVICE: &str = "fedsky-model-api";

/// A CA and a serving certificate for `fedsky-model-api.fedsky-system.svc`, the name the
/// API server checks when it dials the APIService's Service.
fn serving_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fedsky-model-api-ca");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec![format!("{SERVICE}.fedsky-system.svc")])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

/// This machine's address on its default route: an APIService endpoint cannot be a
/// loopback address.
fn host_ip() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    s.connect("192.0.2.123:9").expect("a default route");
    s.local_addr().expect("local addr").ip()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The APIService and its selector-less Service, whose endpoint is the operator's port
/// on this machine (the chart points the Service at the operator's pods instead).
async fn register_model_api(hub: &kube::Client, ca_pem: &str, port: u16) {
    let ip = host_ip().to_string();
    apply_json(
        hub,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": SERVICE, "namespace": "fedsky-system" },
            "spec": { "ports": [{ "name": "https", "port": 443, "targetPort": port }] }
        }),
    )
    .await;
    apply_json(
        hub,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": { "name": SERVICE, "namespace": "fedsky-system" },
            "subsets": [{ "addresses": [{ "ip": ip }],
                          "ports": [{ "name": "https", "port": port }] }]
        }),
    )
    .await;
    apply_json(
        hub,
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": SERVICE, "namespace": "fedsky-system",
                          "labels": { "kubernetes.io/service-name": SERVICE } },
            "addressType": "IPv4",
            "endpoints": [{ "addresses": [ip], "conditions": { "ready": true } }],
            "ports": [{ "name": "https", "port": port, "protocol": "TCP" }]
        }),
    )
    .await;
    apply_json(
        hub,
        serde_json::json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": { "name": "v1alpha1.models.fedsky.dev" },
            "spec": {
                "group": "models.fedsky.dev", "version": "v1alpha1",
                "groupPriorityMinimum": 1000, "versionPriority": 15,
                "service": { "namespace": "fedsky-system", "name": SERVICE, "port": 443 },
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            }
        }),
    )
    .await;
    eventually("the model API to be Available", 60, || {
        let hub = hub.clone();
        async move {
            let req = axum::http::Request::get("/apis/models.fedsky.dev/v1alpha1")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            hub.request_text(req).await.map_err(|e| e.to_string())
        }
    })
    .await;
}

/// A kubeconfig for the ServiceAccount `name` in [`NS`], with a token from the API.
async fn user_kubeconfig(f: &common::Fleet, name: &str, dir: &Path) -> std::path::PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(f.hub_client.clone(), NS);
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("sa");
    sas.create(&PostParams::default(), &sa).await.expect("sa");
    let req: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": { "audiences": [], "expirationSeconds": 3600 }
    }))
    .expect("token request");
    let token = sas
        .create_token_request(name, &PostParams::default(), &req)
        .await
        .expect("token")
        .status
        .expect("token status")
        .token;
    let ca = base64::engine::general_purpose::STANDARD.encode(f.hub.ca_pem());
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hub\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context: {{cluster: hub, user: {name}, namespace: {NS}}}\ncurrent-context: {name}\n",
        f.hub.server()
    );
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, yaml).expect("kubeconfig");
    path
}

/// `kubectl fedsky model download JOB -o OUT` as the user of `kubeconfig`.
fn download(kubeconfig: &Path, job: &str, out: &Path) -> std::process::Output {
    std::process::Command::new(bin("FEDSKY_KUBECTL_PLUGIN_BIN"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", NS, "model", "download", job, "-o"])
        .arg(out)
        .output()
        .expect("kubectl-fedsky runs")
}

fn sha256_of(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(
        std::fs::read(path).expect("downloaded file"),
    ))
}

/// Whether the hub serves the job's archived model to its admin.
async fn archived(hub: &kube::Client, job: &str) -> Result<String, String> {
    let req = axum::http::Request::get(format!(
        "/apis/models.fedsky.dev/v1alpha1/namespaces/{NS}/models/{job}"
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    hub.request_text(req).await.map_err(|e| e.to_string())
}

async fn delete_and_wait(jobs: &Api<FederatedJob>, name: &str) {
    jobs.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the job to be gone", 90, || {
        let jobs = jobs.clone();
        async move {
            match jobs.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        }
    })
    .await;
}

/// A TLS client with no certificate, or with `identity`, connecting straight to the
/// operator's port: the handshake (or the first request) must fail.
async fn direct_request_fails(port: u16, ca_pem: &str, identity: Option<reqwest::Identity>) {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .resolve(
            &format!("{SERVICE}.fedsky-system.svc"),
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        );
    if let Some(id) = identity {
        b = b.identity(id);
    }
    let client = b.build().expect("client");
    for path in [
        "/apis/models.fedsky.dev/v1alpha1",
        "/apis/models.fedsky.dev/v1alpha1/namespaces/default/models/xray",
        "/apis/models.fedsky.dev/v1alpha1/namespaces/default/models/xray/content",
    ] {
        let r = client
            .get(format!("https://{SERVICE}.fedsky-system.svc:{port}{path}"))
            .send()
            .await;
        assert!(
            r.is_err(),
            "{path} answered a client the API server did not send: {r:?}"
        );
    }
    // Plaintext is not served either.
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{port}/apis/models.fedsky.dev/v1alpha1"
    ))
    .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plaintext answered: {plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the aggregator, participant and kubectl-fedsky binaries: make process-runtime-test"]
async fn the_model_outlives_its_job_and_is_served_by_rbac() {
    let participant = bin("FEDSKY_PARTICIPANT_BIN");
    let work = tempfile::tempdir().expect("tempdir");
    let state_dir = work.path().join("state");
    let _stop = StopOnDrop(state_dir.clone());
    let (ca_pem, cert_pem, key_pem) = serving_pki();
    let port = free_port();
    let settings = Settings {
        model_api: Some(ModelApiSettings {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], port)),
            cert_pem: cert_pem.into_bytes(),
            key_pem: key_pem.into_bytes(),
            archive_dir: work.path().join("archive"),
        }),
        ..process_settings(&state_dir, work.path(), None)
    };
    let f = common::processes::hospitals_fleet(&participant, work.path(), &SITES, settings).await;
    let hub = f.hub_client.clone();
    register_model_api(&hub, &ca_pem, port).await;
    common::processes::hospitals_and_placement(&hub, NS, &SITES).await;
    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), NS);

    // Users: `reader` may get models and their content here; `outsider` may not.
    let reader = user_kubeconfig(&f, "reader", work.path()).await;
    let outsider = user_kubeconfig(&f, "outsider", work.path()).await;
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "model-reader", "namespace": NS },
            "rules": [
                { "apiGroups": ["models.fedsky.dev"], "resources": ["models", "models/content"],
                  "verbs": ["get"] },
                { "apiGroups": ["fl.fedsky.dev"], "resources": ["federatedjobs"],
                  "verbs": ["get"] }
            ]
        }),
    )
    .await;
    apply_json(
        &hub,
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "model-reader", "namespace": NS },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "model-reader" },
            "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": NS }]
        }),
    )
    .await;

    // The Retain job (the default).
    apply_json(&hub, xray_job("xray", NS, 2, 1, 2)).await;
    let done = common::job_succeeded(&jobs, "xray", "the retained job to succeed", 900).await;
    let latest = done
        .status
        .and_then(|s| s.latest_model)
        .expect("latest model");
    let listed = eventually("the model to be archived", 60, || {
        let hub = hub.clone();
        async move { archived(&hub, "xray").await }
    })
    .await;
    assert!(listed.contains(&latest.sha256), "{listed}");
    delete_and_wait(&jobs, "xray").await;

    let out = work.path().join("xray.safetensors");
    let ok = download(&reader, "xray", &out);
    assert!(
        ok.status.success(),
        "download as reader failed: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        sha256_of(&out),
        latest.sha256,
        "not the model of the last status"
    );

    let denied_out = work.path().join("denied.safetensors");
    let denied = download(&outsider, "xray", &denied_out);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "an outsider downloaded the model");
    assert!(
        stderr.contains("forbidden") || stderr.contains("Forbidden"),
        "{stderr}"
    );
    assert!(!denied_out.exists(), "a refused download left a file");

    // Around the API server: no certificate, or a user's certificate of the hub's CA.
    direct_request_fails(port, &ca_pem, None).await;
    let user_key = rcgen::KeyPair::generate().expect("key");
    let mut user = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    user.distinguished_name
        .push(rcgen::DnType::CommonName, "front-proxy-client");
    let user_cert = user.self_signed(&user_key).expect("self-signed");
    let id = reqwest::Identity::from_pem(
        format!("{}{}", user_cert.pem(), user_key.serialize_pem()).as_bytes(),
    )
    .expect("identity");
    direct_request_fails(port, &ca_pem, Some(id)).await;

    // A Delete job: served while it exists, gone with it.
    let mut job = xray_job("xray-tmp", NS, 1, 1, 2);
    job["spec"]["modelStore"] = serde_json::json!({ "retain": "Delete" });
    apply_json(&hub, job).await;
    common::job_succeeded(&jobs, "xray-tmp", "the Delete job to succeed", 900).await;
    eventually(
        "the Delete job's model to be served while it exists",
        60,
        || {
            let hub = hub.clone();
            async move { archived(&hub, "xray-tmp").await }
        },
    )
    .await;
    delete_and_wait(&jobs, "xray-tmp").await;
    let gone = archived(&hub, "xray-tmp").await;
    assert!(
        gone.as_ref()
            .is_err_and(|e| e.contains("404") || e.contains("not")),
        "{gone:?}"
    );
    f.operator.abort();
}
