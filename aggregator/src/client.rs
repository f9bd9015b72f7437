//! A small client for participants: connect (mTLS or plaintext), register,
//! follow instructions, download models, upload updates in chunks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fedsky_aggregator::client::ClientError> {
//! use fedsky_aggregator::client::{AggregatorClient, ClientConfig, UpdateToSend};
//! let mut c = AggregatorClient::connect(ClientConfig::insecure("http://127.0.0.1:50051", "token", "site-a")).await?;
//! c.register(Default::default()).await?;
//! let ins = c.poll_instruction().await?;
//! let model = c.download_model(Some(ins.model_version)).await?;
//! # let trained = model.bytes.clone();
//! c.upload_update(UpdateToSend { round: ins.round, base_version: ins.model_version, num_examples: 100, metrics: Default::default(), bytes: trained }).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status, Streaming};

use crate::proto;
use crate::proto::aggregator_client::AggregatorClient as Raw;
use crate::{PARTICIPANT_METADATA, REASON_METADATA};

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad client settings (token, participant id).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The endpoint is not a valid URI.
    #[error("invalid aggregator endpoint {endpoint:?}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS material cannot be used.
    #[error("invalid client TLS configuration")]
    Tls(#[source] tonic::transport::Error),
    /// Connecting failed.
    #[error("connecting to the aggregator failed")]
    Connect(#[source] tonic::transport::Error),
    /// The aggregator answered with an error.
    #[error("aggregator refused the call: {}: {}", .0.code(), .0.message())]
    Status(#[source] Status),
    /// A downloaded model does not match its announced size or hash.
    #[error("downloaded model is corrupt: {0}")]
    Corrupt(String),
}

impl ClientError {
    /// The gRPC code, if the aggregator answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The aggregator's reason label (`non_finite`, `stale_round`, ...).
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Status(s) => s
                .metadata()
                .get(REASON_METADATA)
                .and_then(|v| v.to_str().ok()),
            _ => None,
        }
    }
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError::Status(s)
    }
}

/// PEM material for mTLS.
#[derive(Clone)]
pub struct ClientTls {
    /// CA bundle that signed the aggregator's certificate.
    pub ca: Vec<u8>,
    /// This participant's certificate (its CN is its identity).
    pub cert: Vec<u8>,
    /// Its private key.
    pub key: Vec<u8>,
    /// Name to verify the server certificate against (default: the URL's host).
    pub domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://host:port` (mTLS) or `http://host:port` (plaintext).
    pub endpoint: String,
    /// Job token.
    pub token: String,
    /// mTLS material; `None` for plaintext.
    pub tls: Option<ClientTls>,
    /// Identity sent as metadata in plaintext mode (ignored under mTLS).
    pub participant: Option<String>,
    /// Upload chunk size (kept below the server's max message size).
    pub chunk_bytes: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("participant", &self.participant)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// mTLS configuration.
    pub fn mtls(endpoint: impl Into<String>, token: impl Into<String>, tls: ClientTls) -> Self {
        Self {
            endpoint: endpoint.into(),
            token: token.into(),
            tls: Some(tls),
            participant: None,
            chunk_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Plaintext configuration for local development.
    pub fn insecure(
        endpoint: impl Into<String>,
        token: impl Into<String>,
        participant: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            token: token.into(),
            tls: None,
            participant: Some(participant.into()),
            chunk_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Adds the job token (and the plaintext identity) to every call.
#[derive(Debug, Clone)]
pub struct Auth {
    token: AsciiMetadataValue,
    participant: Option<AsciiMetadataValue>,
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("authorization", self.token.clone());
        if let Some(p) = &self.participant {
            req.metadata_mut().insert(PARTICIPANT_METADATA, p.clone());
        }
        Ok(req)
    }
}

/// A model as downloaded (size and sha256 verified).
#[derive(Debug, Clone)]
pub struct DownloadedModel {
    /// Version.
    pub version: u64,
    /// sha256 (hex).
    pub sha256: String,
    /// Safetensors bytes.
    pub bytes: Bytes,
}

/// An update to upload.
#[derive(Debug, Clone, Default)]
pub struct UpdateToSend {
    /// Round trained for.
    pub round: u64,
    /// Version trained from.
    pub base_version: u64,
    /// Training examples (the FedAvg weight).
    pub num_examples: u64,
    /// Training metrics.
    pub metrics: HashMap<String, f64>,
    /// Safetensors bytes.
    pub bytes: Bytes,
}

/// The participant's handle on the aggregator (cheap to clone).
#[derive(Debug, Clone)]
pub struct AggregatorClient {
    raw: Raw<InterceptedService<Channel, Auth>>,
    chunk_bytes: usize,
}

impl AggregatorClient {
    fn endpoint(config: &ClientConfig) -> Result<Endpoint, ClientError> {
        let mut ep = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|source| ClientError::Endpoint {
                endpoint: config.endpoint.clone(),
                source,
            })?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .max_frame_size(Some(1 << 20))
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if let Some(tls) = &config.tls {
            let mut t = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .identity(Identity::from_pem(&tls.cert, &tls.key));
            if let Some(d) = &tls.domain {
                t = t.domain_name(d.clone());
            }
            ep = ep.tls_config(t).map_err(ClientError::Tls)?;
        }
        Ok(ep)
    }

    fn with_channel(config: &ClientConfig, channel: Channel) -> Result<Self, ClientError> {
        let token = MetadataValue::try_from(format!("Bearer {}", config.token))
            .map_err(|_| ClientError::Config("the token must be printable ASCII".into()))?;
        let participant = match (&config.tls, &config.participant) {
            (None, Some(p)) => Some(
                MetadataValue::try_from(p.as_str())
                    .map_err(|_| ClientError::Config("participant id must be ASCII".into()))?,
            ),
            _ => None,
        };
        let raw = Raw::with_interceptor(channel, Auth { token, participant })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        Ok(Self {
            raw,
            chunk_bytes: config.chunk_bytes.max(1),
        })
    }

    /// Connects now.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let channel = Self::endpoint(&config)?
            .connect()
            .await
            .map_err(ClientError::Connect)?;
        Self::with_channel(&config, channel)
    }

    /// Connects on first use (and reconnects after failures).
    pub fn connect_lazy(config: &ClientConfig) -> Result<Self, ClientError> {
        let channel = Self::endpoint(config)?.connect_lazy();
        Self::with_channel(config, channel)
    }

    /// Upload chunk size in use.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// Sets the upload chunk size (e.g. from [`proto::Limits::chunk_bytes`]).
    pub fn set_chunk_bytes(&mut self, n: usize) {
        self.chunk_bytes = n.max(1);
    }

    /// Joins the job.
    pub async fn register(
        &mut self,
        labels: HashMap<String, String>,
    ) -> Result<proto::RegisterResponse, ClientError> {
        Ok(self
            .raw
            .register(proto::RegisterRequest { labels })
            .await?
            .into_inner())
    }

    /// Streams instructions (one now, then one per change).
    pub async fn instructions(&mut self) -> Result<Streaming<proto::Instruction>, ClientError> {
        Ok(self
            .raw
            .instructions(proto::InstructionsRequest {})
            .await?
            .into_inner())
    }

    /// The current instruction.
    pub async fn poll_instruction(&mut self) -> Result<proto::Instruction, ClientError> {
        Ok(self
            .raw
            .poll_instruction(proto::InstructionsRequest {})
            .await?
            .into_inner())
    }

    /// Downloads a model version (`None`: the current one) and verifies it.
    pub async fn download_model(
        &mut self,
        version: Option<u64>,
    ) -> Result<DownloadedModel, ClientError> {
        let mut stream = self
            .raw
            .download_model(proto::DownloadModelRequest { version })
            .await?
            .into_inner();
        let mut info: Option<proto::ModelInfo> = None;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if let Some(i) = chunk.info {
                // The announced size bounds the allocation; a lying server is
                // caught by the size check below.
                buf.reserve_exact(usize::try_from(i.size).unwrap_or(0).min(16 << 30));
                info = Some(i);
            }
            if chunk.offset != buf.len() as u64 {
                return Err(ClientError::Corrupt(format!(
                    "chunk at offset {} but {} bytes received",
                    chunk.offset,
                    buf.len()
                )));
            }
            buf.extend_from_slice(&chunk.data);
        }
        let info = info.ok_or_else(|| ClientError::Corrupt("no model info chunk".into()))?;
        let sha = hex::encode(Sha256::digest(&buf));
        if buf.len() as u64 != info.size || sha != info.sha256 {
            return Err(ClientError::Corrupt(format!(
                "expected {} bytes with sha256 {}, got {} bytes with sha256 {sha}",
                info.size,
                info.sha256,
                buf.len()
            )));
        }
        Ok(DownloadedModel {
            version: info.version,
            sha256: sha,
            bytes: Bytes::from(buf),
        })
    }

    /// Uploads an update in chunks (no copy of the bytes).
    pub async fn upload_update(
        &mut self,
        update: UpdateToSend,
    ) -> Result<proto::UploadUpdateResponse, ClientError> {
        let meta = proto::UpdateChunk {
            part: Some(proto::update_chunk::Part::Meta(proto::UpdateMeta {
                round: update.round,
                base_version: update.base_version,
                num_examples: update.num_examples,
                total_bytes: update.bytes.len() as u64,
                metrics: update.metrics,
            })),
        };
        let stream = upload_stream(meta, update.bytes, self.chunk_bytes);
        Ok(self.raw.upload_update(stream).await?.into_inner())
    }

    /// Uploads raw chunks as given (for tests of malformed uploads).
    pub async fn upload_chunks(
        &mut self,
        chunks: Vec<proto::UpdateChunk>,
    ) -> Result<proto::UploadUpdateResponse, ClientError> {
        Ok(self
            .raw
            .upload_update(tokio_stream::iter(chunks))
            .await?
            .into_inner())
    }

    /// Reports evaluation metrics of a model version.
    pub async fn report_evaluation(
        &mut self,
        model_version: u64,
        num_examples: u64,
        metrics: HashMap<String, f64>,
    ) -> Result<(), ClientError> {
        self.raw
            .report_evaluation(proto::EvaluationReport {
                model_version,
                num_examples,
                metrics,
            })
            .await?;
        Ok(())
    }

    /// Sends a heartbeat.
    pub async fn heartbeat(&mut self) -> Result<proto::HeartbeatResponse, ClientError> {
        Ok(self
            .raw
            .heartbeat(proto::HeartbeatRequest {})
            .await?
            .into_inner())
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&mut self) -> &mut Raw<InterceptedService<Channel, Auth>> {
        &mut self.raw
    }
}

/// `meta` then `bytes` in `chunk`-sized slices of the same buffer.
pub fn upload_stream(
    meta: proto::UpdateChunk,
    bytes: Bytes,
    chunk: usize,
) -> impl tokio_stream::Stream<Item = proto::UpdateChunk> + Send + 'static {
    let chunk = chunk.max(1);
    let n = bytes.len().div_ceil(chunk);
    let data = (0..n).map(move |i| proto::UpdateChunk {
        part: Some(proto::update_chunk::Part::Data(
            bytes.slice(i * chunk..((i + 1) * chunk).min(bytes.len())),
        )),
    });
    tokio_stream::iter(std::iter::once(meta).chain(data))
}
