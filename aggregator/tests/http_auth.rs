//! The model manager's HTTP port against every kind of caller, on a real server over
//! loopback with an Ed25519 job PKI like the operator's: plaintext, anonymous HTTPS, a
//! wrong token and a certificate from another CA are refused on every route; a job
//! certificate and the job token are admitted on every route, the scrape token on
//! `/metrics` only; and a client trusting the job's CA refuses a server with another
//! CA's certificate, so a man in the middle cannot forge a job's progress.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TOKEN, https_client, initial_model, job, rounds};
use fedsky_aggregator::client::ClientTls;
use fedsky_aggregator::coordinator::Coordinator;
use fedsky_aggregator::http_auth::Token;
use fedsky_aggregator::metrics::Metrics;
use fedsky_aggregator::server::{HttpAccess, RunningServer, TlsPem, Transport, serve_with};
use fedsky_aggregator::store::{Checkpoints, DirStore};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ED25519};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const SCRAPE_TOKEN: &str = "scrape-token-for-prometheus-0123";

/// Every route, each of which answers 200 to an admitted caller right after start
/// (version 0 is the initial model).
const ROUTES: &[&str] = &[
    "/v1/status",
    "/v1/versions",
    "/v1/versions/latest",
    "/v1/versions/0",
    "/v1/versions/latest/model",
    "/metrics",
    "/healthz",
    "/readyz",
];

/// A job PKI as the operator makes it: an Ed25519 CA, server and client leaves.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, format!("fedsky job {name}"));
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let cert = ca.self_signed(&key).unwrap();
        Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(ca, key),
        }
    }

    fn leaf(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server(&self) -> TlsPem {
        let (cert, key) = self.leaf("aggregator", &["localhost", "127.0.0.1"]);
        TlsPem {
            cert: cert.into_bytes(),
            key: key.into_bytes(),
            client_ca: self.ca_pem.clone().into_bytes(),
        }
    }

    fn client(&self, cn: &str) -> ClientTls {
        let (cert, key) = self.leaf(cn, &[]);
        ClientTls {
            ca: self.ca_pem.clone().into_bytes(),
            cert: cert.into_bytes(),
            key: key.into_bytes(),
            domain: Some("localhost".into()),
        }
    }
}

async fn start(transport: Transport, store: &std::path::Path) -> RunningServer {
    let core = Coordinator::start(
        job(&rounds(2, 1, 1, 30.0, 30.0)),
        TOKEN.into(),
        Checkpoints::new(Arc::new(DirStore::new(store))),
        Some(initial_model()),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let access = HttpAccess {
        metrics_token: Some(Token::parse(SCRAPE_TOKEN).unwrap()),
    };
    serve_with(core, grpc, http, transport, access)
        .await
        .unwrap()
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await
}

async fn status_of(client: &reqwest::Client, url: &str, token: Option<&str>) -> u16 {
    get(client, url, token)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:?}"))
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_job_certificate_or_a_token_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ns/job");
    let server = start(Transport::MutualTls(pki.server()), dir.path()).await;
    let port = server.http_addr.port();
    let base = format!("https://localhost:{port}");
    let anonymous = https_client(pki.ca_pem.as_bytes(), None);
    let operator = https_client(pki.ca_pem.as_bytes(), Some(pki.client("fedsky-operator")));
    let participant = https_client(pki.ca_pem.as_bytes(), Some(pki.client("fedsky-p-a-eu-0")));
    let stranger_ca = Pki::new("ns/other");
    let stranger = https_client(
        pki.ca_pem.as_bytes(),
        Some(stranger_ca.client("fedsky-operator")),
    );
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    for route in ROUTES {
        let url = format!("{base}{route}");
        // Plain HTTP on the TLS port: no HTTP answer at all, token or not.
        let plain_url = format!("http://127.0.0.1:{port}{route}");
        assert!(
            get(&plain, &plain_url, Some(TOKEN)).await.is_err(),
            "{route}: plaintext must fail"
        );
        // HTTPS without credentials, with a wrong token, with the token elsewhere.
        let resp = get(&anonymous, &url, None).await.unwrap();
        assert_eq!(resp.status(), 401, "{route}: anonymous");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().is_some(), "{body}");
        for wrong in [
            "wrong-token-0123456789abcdef",
            &TOKEN[1..],
            &format!("{TOKEN}x"),
        ] {
            assert_eq!(
                status_of(&anonymous, &url, Some(wrong)).await,
                401,
                "{route}: {wrong}"
            );
        }
        // A client certificate from another CA fails the handshake.
        assert!(
            get(&stranger, &url, None).await.is_err(),
            "{route}: a foreign certificate must fail the handshake"
        );
        assert!(
            get(&stranger, &url, Some(TOKEN)).await.is_err(),
            "{route}: a foreign certificate fails even with the token"
        );
        // Job certificates (the operator's, a participant's) and the job token.
        assert_eq!(
            status_of(&operator, &url, None).await,
            200,
            "{route}: operator"
        );
        assert_eq!(
            status_of(&participant, &url, None).await,
            200,
            "{route}: participant"
        );
        assert_eq!(
            status_of(&anonymous, &url, Some(TOKEN)).await,
            200,
            "{route}: token"
        );
        // The scrape token opens /metrics and nothing else.
        let want = if *route == "/metrics" { 200 } else { 401 };
        assert_eq!(
            status_of(&anonymous, &url, Some(SCRAPE_TOKEN)).await,
            want,
            "{route}: scrape token"
        );
    }
    // Unknown paths are refused before routing says they do not exist.
    let unknown = format!("{base}/v2/anything");
    assert_eq!(status_of(&anonymous, &unknown, None).await, 401);
    assert_eq!(status_of(&operator, &unknown, None).await, 404);

    // What the operator reads over the channel.
    let status: serde_json::Value = get(&operator, &format!("{base}/v1/status"), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["completedRounds"], 0, "{status}");
    let model = get(&operator, &format!("{base}/v1/versions/latest/model"), None)
        .await
        .unwrap();
    assert_eq!(model.headers()["x-fedsky-version"], "0");
    assert_eq!(
        model.bytes().await.unwrap().as_ref(),
        initial_model().to_safetensors().unwrap().as_slice()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_neither_block_others_nor_keep_the_server_up() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ns/job");
    let server = start(Transport::MutualTls(pki.server()), dir.path()).await;
    let addr = server.http_addr;
    // Peers that connect and never finish a handshake (one sends half a ClientHello).
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    silent[0]
        .write_all(&[0x16, 0x03, 0x01, 0x02])
        .await
        .unwrap();
    let client = https_client(pki.ca_pem.as_bytes(), Some(pki.client("fedsky-operator")));
    let url = format!("https://localhost:{}/healthz", addr.port());
    let answered = tokio::time::timeout(Duration::from_secs(5), get(&client, &url, None)).await;
    assert_eq!(answered.unwrap().unwrap().status(), 200);
    // Shutdown is not held up by them either.
    tokio::time::timeout(Duration::from_secs(8), server.shutdown())
        .await
        .unwrap();
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_cas_certificate_is_refused() {
    // The man in the middle: an aggregator on the same names, certified by its own CA.
    let dir = tempfile::tempdir().unwrap();
    let job_pki = Pki::new("ns/job");
    let mitm_pki = Pki::new("ns/job");
    let mitm = start(Transport::MutualTls(mitm_pki.server()), dir.path()).await;
    let operator = https_client(
        job_pki.ca_pem.as_bytes(),
        Some(job_pki.client("fedsky-operator")),
    );
    for route in ["/v1/status", "/v1/versions"] {
        let url = format!("https://localhost:{}{route}", mitm.http_addr.port());
        let err = get(&operator, &url, None).await.unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{route}: {err:?}");
    }
    mitm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_development_mode_still_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Transport::InsecurePlaintext, dir.path()).await;
    let client = reqwest::Client::new();
    for route in ROUTES {
        let url = format!("http://{}{route}", server.http_addr);
        assert_eq!(status_of(&client, &url, None).await, 401, "{route}");
        assert_eq!(
            status_of(&client, &url, Some("not-the-token-0123456")).await,
            401,
            "{route}"
        );
        assert_eq!(status_of(&client, &url, Some(TOKEN)).await, 200, "{route}");
        let want = if *route == "/metrics" { 200 } else { 401 };
        assert_eq!(
            status_of(&client, &url, Some(SCRAPE_TOKEN)).await,
            want,
            "{route}"
        );
    }
    server.shutdown().await;
}
