//! Shared test harness: a PKI made with rcgen, a real aggregator on
//! 127.0.0.1:0, and simulated participants doing deterministic fake training
//! over real gRPC.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedsky_aggregator::client::{
    AggregatorClient, ClientConfig, ClientError, ClientTls, UpdateToSend,
};
use fedsky_aggregator::coordinator::{Coordinator, participant_seed};
use fedsky_aggregator::job::{JobConfig, JobConfigExt};
use fedsky_aggregator::metrics::Metrics;
use fedsky_aggregator::proto::instruction::Kind;
use fedsky_aggregator::server::{RunningServer, TlsPem, Transport, serve};
use fedsky_aggregator::store::{Checkpoints, DirStore, ObjectStore};
use fedsky_aggregator::{
    AnyStrategy, Model, ParticipantId, Strategy, TensorData, UpdateLimits, decode_model,
    decode_update,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;

pub const TOKEN: &str = "test-job-token-0123456789";

/// A CA, a server certificate for 127.0.0.1/localhost, and client certificates.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    pub server: TlsPem,
}

impl Pki {
    pub fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "fedsky test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut sp =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        sp.distinguished_name.push(DnType::CommonName, "aggregator");
        let server_cert = sp.signed_by(&server_key, &issuer).unwrap();
        let ca_pem = ca_cert.pem();
        Self {
            server: TlsPem {
                cert: server_cert.pem().into_bytes(),
                key: server_key.serialize_pem().into_bytes(),
                client_ca: ca_pem.clone().into_bytes(),
            },
            ca_pem,
            issuer,
        }
    }

    /// An HTTPS client of the model manager that trusts only this CA and, with `id`,
    /// presents a client certificate of that CN.
    pub fn https_client(&self, id: Option<&str>) -> reqwest::Client {
        https_client(self.ca_pem.as_bytes(), id.map(|id| self.client(id)))
    }

    /// Client TLS material whose certificate CN is `id`.
    pub fn client(&self, id: &str) -> ClientTls {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, id);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        ClientTls {
            ca: self.ca_pem.clone().into_bytes(),
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
            domain: Some("localhost".into()),
        }
    }
}

/// An HTTPS client that trusts only `ca` (no public roots) and presents `identity`'s
/// certificate if given.
pub fn https_client(ca: &[u8], identity: Option<ClientTls>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some(id) = identity {
        let mut pem = id.cert;
        pem.extend_from_slice(&id.key);
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// The initial model: two small f32 tensors.
pub fn initial_model() -> Model {
    Model::new([
        (
            "layer.weight",
            vec![4, 8],
            TensorData::F32((0..32).map(|i| i as f32 * 0.01).collect()),
        ),
        ("layer.bias", vec![4], TensorData::F32(vec![0.0; 4])),
    ])
    .unwrap()
}

/// A job config in YAML.
pub fn job(extra: &str) -> JobConfig {
    JobConfig::parse(&format!("name: test-job\nseed: 11\n{extra}")).unwrap()
}

pub fn rounds(total: u64, min: usize, max: usize, timeout_s: f64, heartbeat_s: f64) -> String {
    format!(
        "rounds: {{total: {total}, minPerRound: {min}, maxPerRound: {max}, roundTimeoutSeconds: {timeout_s}, heartbeatTimeoutSeconds: {heartbeat_s}}}\n"
    )
}

/// A running aggregator with its PKI.
pub struct Harness {
    pub server: RunningServer,
    pub pki: Arc<Pki>,
    pub endpoint: String,
    /// Base URL of the model manager (HTTPS).
    pub http: String,
    /// A client of it with a job certificate, as the operator reads it.
    pub https: reqwest::Client,
}

impl Harness {
    pub fn core(&self) -> &Coordinator {
        &self.server.coordinator
    }

    /// Client config for participant `id` over mTLS.
    pub fn client_config(&self, id: &str) -> ClientConfig {
        let mut c = ClientConfig::mtls(self.endpoint.clone(), TOKEN, self.pki.client(id));
        c.connect_timeout = Duration::from_secs(2);
        c
    }

    pub async fn client(&self, id: &str) -> AggregatorClient {
        AggregatorClient::connect(self.client_config(id))
            .await
            .unwrap()
    }

    /// Waits until `pred(status)` or panics after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&fedsky_aggregator::coordinator::StatusView) -> bool,
    ) {
        let start = Instant::now();
        loop {
            let s = self.core().status();
            if pred(&s) {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; status: {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// GET on the model manager with a job certificate.
    pub async fn http_get(&self, path: &str) -> reqwest::Response {
        self.https
            .get(format!("{}{path}", self.http))
            .send()
            .await
            .unwrap()
    }
}

/// Starts an aggregator over mTLS on fresh loopback ports.
pub async fn start(job: JobConfig, store: Arc<dyn ObjectStore>) -> Harness {
    start_on(job, store, Arc::new(Pki::new()), "127.0.0.1:0").await
}

pub async fn start_on(
    job: JobConfig,
    store: Arc<dyn ObjectStore>,
    pki: Arc<Pki>,
    grpc_addr: &str,
) -> Harness {
    let core = Coordinator::start(
        job,
        TOKEN.into(),
        Checkpoints::new(store),
        Some(initial_model()),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let grpc = bind_retry(grpc_addr).await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve(core, grpc, http, Transport::MutualTls(pki.server.clone()))
        .await
        .unwrap();
    let endpoint = format!("https://localhost:{}", server.grpc_addr.port());
    let http = format!("https://localhost:{}", server.http_addr.port());
    let https = pki.https_client(Some("model-reader"));
    Harness {
        server,
        pki,
        endpoint,
        http,
        https,
    }
}

/// Binds, retrying while a killed server's socket is still being released.
pub async fn bind_retry(addr: &str) -> TcpListener {
    let start = Instant::now();
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("binding {addr}: {e}"),
        }
    }
}

pub fn dir_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    Arc::new(DirStore::new(dir))
}

/// Examples each simulated participant claims (distinct, so weights matter).
pub fn examples(id: &str) -> u64 {
    100 + id.bytes().map(u64::from).sum::<u64>() % 50
}

/// Deterministic fake training: global + f(seed), f small and seeded.
pub fn train(global: &Model, seed: u64) -> Model {
    let mut flat = global.to_flat_f32();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for x in &mut flat {
        *x += rng.random_range(-0.05f32..0.05);
    }
    Model::from_flat_f32(global.spec_arc(), &flat).unwrap()
}

/// The job run locally with the same strategy, participants and seeds:
/// what a correct aggregator must produce, bit for bit.
pub fn expected_final(job: &JobConfig, ids: &[&str]) -> Vec<u8> {
    let mut global = initial_model();
    let mut strategy = AnyStrategy::from_config(&job.strategy).unwrap();
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort();
    for round in 1..=job.rounds.total {
        strategy.begin_round(round, &global).unwrap();
        for id in &sorted {
            let seed = participant_seed(job.seed, round, &ParticipantId::from(*id));
            let bytes = train(&global, seed).to_safetensors().unwrap();
            let view = decode_update(&bytes, &global, &UpdateLimits::default()).unwrap();
            strategy.accept(&view, examples(id)).unwrap();
        }
        global = strategy.finish().unwrap();
    }
    global.to_safetensors().unwrap()
}

/// How a simulated participant behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Sleeps this long before each upload.
    Slow(Duration),
}

/// Runs a well-behaved participant until DONE, re-registering and retrying
/// through aggregator restarts. Returns the rounds it uploaded for.
pub async fn run_participant(
    config: ClientConfig,
    id: String,
    behaviour: Behaviour,
    give_up: Duration,
) -> Result<Vec<u64>, String> {
    let start = Instant::now();
    let mut client = AggregatorClient::connect_lazy(&config).map_err(|e| e.to_string())?;
    let mut uploaded = Vec::new();
    let mut registered = false;
    let mut last_beat = Instant::now() - Duration::from_secs(60);
    loop {
        if start.elapsed() > give_up {
            return Err(format!(
                "{id} gave up after {give_up:?}; uploaded {uploaded:?}"
            ));
        }
        if !registered {
            match client.register(HashMap::new()).await {
                Ok(_) => registered = true,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        if last_beat.elapsed() > Duration::from_millis(100) {
            if let Err(e) = client.heartbeat().await {
                registered = !is_unknown(&e) && registered;
            }
            last_beat = Instant::now();
        }
        let ins = match client.poll_instruction().await {
            Ok(i) => i,
            Err(e) => {
                if is_unknown(&e) {
                    registered = false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        match Kind::try_from(ins.kind).unwrap_or(Kind::Wait) {
            Kind::Fit => {
                if let Behaviour::Slow(d) = behaviour {
                    tokio::time::sleep(d).await;
                }
                let Ok(model) = client.download_model(Some(ins.model_version)).await else {
                    continue;
                };
                let global = decode_model(&model.bytes, &UpdateLimits::default()).unwrap();
                let seed = ins.hyper_parameters.map(|h| h.seed).unwrap_or_default();
                let trained = train(&global, seed).to_safetensors().unwrap();
                let update = UpdateToSend {
                    round: ins.round,
                    base_version: ins.model_version,
                    num_examples: examples(&id),
                    metrics: HashMap::from([("loss".to_string(), 1.0 / ins.round as f64)]),
                    bytes: Bytes::from(trained),
                };
                if client.upload_update(update).await.is_ok() {
                    uploaded.push(ins.round);
                }
            }
            Kind::Evaluate => {
                let acc = 0.5 + (ins.model_version as f64) * 0.1;
                let metrics = HashMap::from([("accuracy".to_string(), acc)]);
                let _ = client
                    .report_evaluation(ins.model_version, examples(&id), metrics)
                    .await;
            }
            Kind::Done => return Ok(uploaded),
            Kind::Failed => return Err(format!("{id}: job failed: {}", ins.message)),
            Kind::Wait | Kind::Unspecified => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn is_unknown(e: &ClientError) -> bool {
    e.code() == Some(tonic::Code::PermissionDenied)
}

/// The final model's bytes as served by the model manager.
pub async fn latest_model(h: &Harness) -> Vec<u8> {
    let resp = h.http_get("/v1/versions/latest/model").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap().to_vec()
}
