//! The gRPC service: authentication, identity, chunked streams and the
//! mapping of every core error to a precise `tonic::Status`. It is generic
//! over [`DataPlane`], which [`Coordinator`] implements; conversions between
//! core and wire types are plain functions at the bottom.
//!
//! No handler panics: every failure is a `Status` with a `fedsky-reason`
//! metadata entry (the metric label of the refusal).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::buffers::RecvBuf;
use crate::coordinator::{
    Coordinator, CoreError, Instruction, InstructionKind, ModelBlob, Registration, UploadMeta,
    UploadReceipt, UploadTicket, WireLimits,
};
use crate::identity::{IdentityError, participant_from_der, validate_id};
use crate::metrics::Metrics;
use crate::proto;
use crate::proto::aggregator_server::Aggregator;
use crate::round::{ParticipantId, UpdateRefusal};
use crate::update::UpdateRejection;

pub use crate::{PARTICIPANT_METADATA, REASON_METADATA};

/// What the gRPC layer needs from the core.
pub trait DataPlane: Clone + Send + Sync + 'static {
    /// An admitted upload.
    type Upload: UploadSession;
    /// Whether `token` is the job token.
    fn token_matches(&self, token: &str) -> bool;
    /// Metrics to count refusals in.
    fn metrics(&self) -> &Metrics;
    /// Limits announced to participants.
    fn wire_limits(&self) -> WireLimits;
    /// Registers a participant.
    fn register(
        &self,
        id: &ParticipantId,
        labels: BTreeMap<String, String>,
    ) -> Result<Registration, CoreError>;
    /// Whether `id` is registered.
    fn is_registered(&self, id: &ParticipantId) -> bool;
    /// Records a heartbeat.
    fn heartbeat(&self, id: &ParticipantId) -> Result<(u64, &'static str), CoreError>;
    /// The instruction for `id` now.
    fn instruction(&self, id: &ParticipantId) -> Instruction;
    /// Changes whenever instructions may have changed.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// A model version.
    fn model(
        &self,
        version: Option<u64>,
    ) -> impl Future<Output = Result<ModelBlob, CoreError>> + Send;
    /// Admits an upload.
    fn begin_upload(&self, id: &ParticipantId, meta: UploadMeta)
    -> Result<Self::Upload, CoreError>;
    /// Records an evaluation.
    fn report_evaluation(
        &self,
        id: &ParticipantId,
        version: u64,
        num_examples: u64,
        metrics: BTreeMap<String, f64>,
    ) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// An upload in progress.
pub trait UploadSession: Send + 'static {
    /// Declared size.
    fn declared_bytes(&self) -> u64;
    /// Checks the head of the bytes; `Some(total)` once the header is in.
    fn check_prefix(&mut self, prefix: &[u8]) -> Result<Option<usize>, CoreError>;
    /// A receive buffer of at least `capacity` bytes, for once the header is in.
    fn buffer(&self, capacity: usize) -> RecvBuf;
    /// Checks the data received so far (the whole upload up to now), while
    /// the newest chunk is still in cache.
    fn check_data(&mut self, received: &[u8]) -> Result<(), CoreError>;
    /// Refuses the upload on content.
    fn reject(self, error: &CoreError);
    /// Validates and records the complete bytes.
    fn finish(
        self,
        bytes: RecvBuf,
    ) -> impl Future<Output = Result<UploadReceipt, CoreError>> + Send;
}

impl UploadSession for UploadTicket {
    fn declared_bytes(&self) -> u64 {
        UploadTicket::declared_bytes(self)
    }
    fn check_prefix(&mut self, prefix: &[u8]) -> Result<Option<usize>, CoreError> {
        UploadTicket::check_prefix(self, prefix)
    }
    fn buffer(&self, capacity: usize) -> RecvBuf {
        UploadTicket::buffer(self, capacity)
    }
    fn check_data(&mut self, received: &[u8]) -> Result<(), CoreError> {
        UploadTicket::check_data(self, received)
    }
    fn reject(self, error: &CoreError) {
        UploadTicket::reject(self, error);
    }
    fn finish(
        self,
        bytes: RecvBuf,
    ) -> impl Future<Output = Result<UploadReceipt, CoreError>> + Send {
        UploadTicket::finish(self, bytes)
    }
}

impl DataPlane for Coordinator {
    type Upload = UploadTicket;
    fn token_matches(&self, token: &str) -> bool {
        Coordinator::token_matches(self, token)
    }
    fn metrics(&self) -> &Metrics {
        Coordinator::metrics(self)
    }
    fn wire_limits(&self) -> WireLimits {
        Coordinator::wire_limits(self)
    }
    fn register(
        &self,
        id: &ParticipantId,
        labels: BTreeMap<String, String>,
    ) -> Result<Registration, CoreError> {
        Coordinator::register(self, id, labels)
    }
    fn is_registered(&self, id: &ParticipantId) -> bool {
        Coordinator::is_registered(self, id)
    }
    fn heartbeat(&self, id: &ParticipantId) -> Result<(u64, &'static str), CoreError> {
        Coordinator::heartbeat(self, id)
    }
    fn instruction(&self, id: &ParticipantId) -> Instruction {
        Coordinator::instruction(self, id)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        Coordinator::subscribe(self)
    }
    fn model(
        &self,
        version: Option<u64>,
    ) -> impl Future<Output = Result<ModelBlob, CoreError>> + Send {
        Coordinator::model(self, version)
    }
    fn begin_upload(
        &self,
        id: &ParticipantId,
        meta: UploadMeta,
    ) -> Result<UploadTicket, CoreError> {
        Coordinator::begin_upload(self, id, meta)
    }
    fn report_evaluation(
        &self,
        id: &ParticipantId,
        version: u64,
        num_examples: u64,
        metrics: BTreeMap<String, f64>,
    ) -> impl Future<Output = Result<(), CoreError>> + Send {
        Coordinator::report_evaluation(self, id, version, num_examples, metrics)
    }
}

/// How callers are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    /// From the verified mTLS client certificate.
    ClientCertificate,
    /// From `fedsky-participant` metadata (`--insecure-plaintext` only).
    InsecureMetadata,
}

/// The `fedsky.v1.Aggregator` service.
#[derive(Debug, Clone)]
pub struct AggregatorService<D> {
    core: D,
    identity: IdentityMode,
}

impl<D: DataPlane> AggregatorService<D> {
    /// Serves `core`, identifying callers per `identity`.
    pub fn new(core: D, identity: IdentityMode) -> Self {
        Self { core, identity }
    }

    /// Checks the job token and derives the caller's identity.
    fn authenticate<T>(&self, req: &Request<T>) -> Result<ParticipantId, Status> {
        let unauthenticated = |msg: String, reason: &'static str| {
            self.core.metrics().reject("unauthenticated");
            tracing::warn!(reason, remote = ?req.remote_addr(), "refused unauthenticated call");
            status(Code::Unauthenticated, msg, reason)
        };
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token {
            None => {
                return Err(unauthenticated(
                    "missing job token (authorization: Bearer <token>)".into(),
                    "missing_token",
                ));
            }
            Some(t) if !self.core.token_matches(t) => {
                return Err(unauthenticated("invalid job token".into(), "bad_token"));
            }
            Some(_) => {}
        }
        let id = match self.identity {
            IdentityMode::ClientCertificate => peer_identity(req),
            IdentityMode::InsecureMetadata => req
                .metadata()
                .get(PARTICIPANT_METADATA)
                .and_then(|v| v.to_str().ok())
                .ok_or(IdentityError::NoMetadata)
                .and_then(validate_id),
        };
        id.map_err(|e| {
            let reason = match e {
                IdentityError::NoCertificate => "no_client_certificate",
                _ => "bad_identity",
            };
            unauthenticated(e.to_string(), reason)
        })
    }

    /// Authenticates and requires a registered caller.
    fn registered<T>(&self, req: &Request<T>) -> Result<ParticipantId, Status> {
        let id = self.authenticate(req)?;
        if self.core.is_registered(&id) {
            Ok(id)
        } else {
            Err(self.fail(&id, &CoreError::UnknownParticipant { id: id.clone() }))
        }
    }

    /// Counts, logs and converts a refusal.
    fn fail(&self, id: &ParticipantId, e: &CoreError) -> Status {
        let s = core_status(e);
        if counts_as_rejection(e) {
            self.core.metrics().reject(e.reason());
            tracing::warn!(participant = %id, reason = e.reason(), code = ?s.code(), error = %e, "refused");
        } else {
            tracing::debug!(participant = %id, reason = e.reason(), error = %e, "call failed");
        }
        s
    }

    async fn receive_upload(
        &self,
        id: &ParticipantId,
        mut stream: Streaming<proto::UpdateChunk>,
    ) -> Result<UploadReceipt, Status> {
        let first = match stream.message().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                return Err(self.fail(id, &protocol("the upload stream was empty")));
            }
            Err(s) => return Err(self.stream_failure(id, &s, None::<D::Upload>)),
        };
        let Some(proto::update_chunk::Part::Meta(meta)) = first.part else {
            return Err(self.fail(
                id,
                &protocol("the first message of an upload must be `meta`"),
            ));
        };
        let mut ticket = self
            .core
            .begin_upload(id, upload_meta(meta))
            .map_err(|e| self.fail(id, &e))?;
        let declared = usize::try_from(ticket.declared_bytes()).unwrap_or(usize::MAX);
        // Nothing is reserved until the header has been checked: the head is
        // gathered in a small vector, then the exact size it implies is
        // taken (from the pool of warm buffers) and every chunk is checked
        // as it lands, while it is still in cache.
        let mut head: Vec<u8> = Vec::new();
        let mut buf: Option<RecvBuf> = None;
        let mut total: Option<usize> = None;
        loop {
            let chunk = match stream.message().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(s) => return Err(self.stream_failure(id, &s, Some(ticket))),
            };
            let data = match chunk.part {
                Some(proto::update_chunk::Part::Data(d)) => d,
                _ => {
                    let e = protocol("only `data` messages may follow `meta`");
                    let s = self.fail(id, &e);
                    ticket.reject(&e);
                    return Err(s);
                }
            };
            let expected = total.unwrap_or(declared);
            let have = buf.as_ref().map_or(head.len(), |b| b.len());
            let got = have.saturating_add(data.len());
            if got > expected {
                let e = CoreError::Rejected(UpdateRejection::TrailingBytes {
                    expected: expected as u64,
                    got: got as u64,
                });
                let s = self.fail(id, &e);
                ticket.reject(&e);
                return Err(s);
            }
            let step = match &mut buf {
                Some(b) => append(b, &data).and_then(|()| ticket.check_data(b)),
                None => {
                    head.extend_from_slice(&data);
                    match ticket.check_prefix(&head) {
                        Ok(Some(t)) => {
                            let mut b = ticket.buffer(t);
                            let step = append(&mut b, &head).and_then(|()| ticket.check_data(&b));
                            head = Vec::new();
                            buf = Some(b);
                            total = Some(t);
                            step
                        }
                        other => other.map(|_| ()),
                    }
                }
            };
            if let Err(e) = step {
                let s = self.fail(id, &e);
                ticket.reject(&e);
                return Err(s);
            }
        }
        let received = buf.as_ref().map_or(head.len(), |b| b.len());
        if received < declared {
            // A cancelled call reaches the server as a clean end of stream
            // (hyper maps RST_STREAM(CANCEL) to end-of-body), so a short
            // upload cannot be told from a broken connection: refuse it, but
            // give the slot back (dropping the ticket) so a participant whose
            // link broke can retry this round; one that is gone is dropped
            // at the heartbeat timeout.
            let e = CoreError::Rejected(UpdateRejection::Truncated {
                what: "upload",
                expected: declared as u64,
                got: received as u64,
            });
            let s = self.fail(id, &e);
            drop(ticket);
            return Err(s);
        }
        let bytes = buf.unwrap_or_else(|| RecvBuf::from(head));
        ticket.finish(bytes).await.map_err(|e| self.fail(id, &e))
    }

    /// A broken inbound stream: an over-long message is a rejection; a
    /// vanished client gives its slot back (by dropping the ticket).
    fn stream_failure(&self, id: &ParticipantId, s: &Status, ticket: Option<D::Upload>) -> Status {
        if s.code() == Code::OutOfRange && s.message().contains("too large") {
            let e = CoreError::MessageTooLarge {
                detail: s.message().to_string(),
            };
            let out = self.fail(id, &e);
            if let Some(t) = ticket {
                t.reject(&e);
            }
            return out;
        }
        tracing::warn!(participant = %id, code = ?s.code(), message = s.message(), "upload stream broke off");
        drop(ticket);
        status(
            Code::Aborted,
            format!("upload stream broke off: {}", s.message()),
            "stream_broken",
        )
    }
}

/// Appends a chunk to a buffer sized from the header (the size check above
/// makes overflow impossible; it is still refused rather than trusted).
fn append(buf: &mut RecvBuf, data: &[u8]) -> Result<(), CoreError> {
    buf.extend_from_slice(data)
        .map_err(|e| CoreError::Internal(format!("receive buffer: {e}")))
}

fn protocol(detail: &str) -> CoreError {
    CoreError::Protocol {
        detail: detail.to_string(),
    }
}

fn peer_identity<T>(req: &Request<T>) -> Result<ParticipantId, IdentityError> {
    let certs = req.peer_certs().ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    participant_from_der(leaf.as_ref())
}

/// A status with the reason label attached.
fn status(code: Code, message: impl Into<String>, reason: &'static str) -> Status {
    let mut s = Status::new(code, message);
    s.metadata_mut()
        .insert(REASON_METADATA, MetadataValue::from_static(reason));
    s
}

/// Whether an error is a refused update or call (counted per reason).
fn counts_as_rejection(e: &CoreError) -> bool {
    !matches!(
        e,
        CoreError::Store(_) | CoreError::Internal(_) | CoreError::VersionNotFound { .. }
    )
}

/// The gRPC code of each core error.
pub fn core_code(e: &CoreError) -> Code {
    match e {
        CoreError::UnknownParticipant { .. } | CoreError::NotAllowed { .. } => {
            Code::PermissionDenied
        }
        CoreError::Refused(r) => match r {
            UpdateRefusal::UnknownParticipant { .. } => Code::PermissionDenied,
            UpdateRefusal::Duplicate { .. } => Code::AlreadyExists,
            UpdateRefusal::NotSampled { .. }
            | UpdateRefusal::StaleRound { .. }
            | UpdateRefusal::Late { .. }
            | UpdateRefusal::Dropped { .. }
            | UpdateRefusal::NoRoundOpen { .. }
            | UpdateRefusal::NotUploading { .. } => Code::FailedPrecondition,
        },
        CoreError::Rejected(
            UpdateRejection::Oversized { .. } | UpdateRejection::HeaderTooLarge { .. },
        ) => Code::ResourceExhausted,
        CoreError::Rejected(_) | CoreError::ZeroExamples | CoreError::Protocol { .. } => {
            Code::InvalidArgument
        }
        CoreError::MessageTooLarge { .. } | CoreError::Capacity { .. } => Code::ResourceExhausted,
        CoreError::StaleBase { .. } => Code::FailedPrecondition,
        CoreError::VersionNotFound { .. } => Code::NotFound,
        CoreError::Store(_) => Code::Unavailable,
        CoreError::NoInitialModel
        | CoreError::Job(_)
        | CoreError::Strategy(_)
        | CoreError::Round(_)
        | CoreError::Model(_)
        | CoreError::Internal(_) => Code::Internal,
    }
}

fn core_status(e: &CoreError) -> Status {
    status(core_code(e), e.to_string(), e.reason())
}

fn upload_meta(m: proto::UpdateMeta) -> UploadMeta {
    UploadMeta {
        round: m.round,
        base_version: m.base_version,
        num_examples: m.num_examples,
        total_bytes: m.total_bytes,
        metrics: m.metrics.into_iter().collect(),
    }
}

/// Core instruction → wire instruction.
pub fn instruction_to_proto(i: &Instruction) -> proto::Instruction {
    use proto::instruction::Kind;
    let kind = match i.kind {
        InstructionKind::Wait => Kind::Wait,
        InstructionKind::Fit => Kind::Fit,
        InstructionKind::Evaluate => Kind::Evaluate,
        InstructionKind::Done => Kind::Done,
        InstructionKind::Failed => Kind::Failed,
    };
    proto::Instruction {
        kind: kind as i32,
        round: i.round,
        attempt: i.attempt,
        total_rounds: i.total_rounds,
        model_version: i.model_version,
        model_sha256: i.model_sha256.clone(),
        deadline_in_ms: i.deadline_in_ms,
        hyper_parameters: i.hyper_parameters.as_ref().map(|h| proto::HyperParameters {
            local_epochs: h.local_epochs,
            batch_size: h.batch_size,
            learning_rate: h.learning_rate,
            proximal_mu: h.proximal_mu,
            seed: h.seed,
            optimizer: h.optimizer.clone(),
        }),
        message: i.message.clone(),
    }
}

fn model_chunks(blob: &ModelBlob, chunk: usize) -> Vec<Result<proto::ModelChunk, Status>> {
    let len = blob.bytes.len();
    let chunk = chunk.max(1);
    let mut out = Vec::with_capacity(len.div_ceil(chunk).max(1));
    let mut offset = 0usize;
    loop {
        let end = (offset + chunk).min(len);
        out.push(Ok(proto::ModelChunk {
            info: (offset == 0).then(|| proto::ModelInfo {
                version: blob.version,
                size: len as u64,
                sha256: blob.sha256.clone(),
            }),
            offset: offset as u64,
            // A slice of the shared buffer: no copy per download.
            data: blob.bytes.slice(offset..end),
        }));
        offset = end;
        if offset >= len {
            break;
        }
    }
    out
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<D: DataPlane> Aggregator for AggregatorService<D> {
    async fn register(
        &self,
        req: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let id = self.authenticate(&req)?;
        let labels = req.into_inner().labels.into_iter().collect();
        let reg = self
            .core
            .register(&id, labels)
            .map_err(|e| self.fail(&id, &e))?;
        tracing::info!(participant = %id, "participant registered");
        let l = self.core.wire_limits();
        Ok(Response::new(proto::RegisterResponse {
            participant_id: id.0,
            job: reg.job,
            heartbeat_interval_ms: reg.heartbeat_interval_ms,
            limits: Some(proto::Limits {
                max_update_bytes: l.max_update_bytes,
                max_message_bytes: l.max_message_bytes,
                chunk_bytes: l.chunk_bytes,
            }),
        }))
    }

    type InstructionsStream = BoxStream<proto::Instruction>;

    async fn instructions(
        &self,
        req: Request<proto::InstructionsRequest>,
    ) -> Result<Response<Self::InstructionsStream>, Status> {
        let id = self.registered(&req)?;
        let core = self.core.clone();
        // Subscribed before the first instruction is computed, so no change
        // between the two is missed.
        let mut changes = core.subscribe();
        let stream = async_stream::stream! {
            let mut last: Option<Instruction> = None;
            loop {
                let now = core.instruction(&id);
                if last.as_ref().is_none_or(|l| l.differs(&now)) {
                    let end = matches!(now.kind, InstructionKind::Done | InstructionKind::Failed);
                    yield Ok(instruction_to_proto(&now));
                    if end {
                        break;
                    }
                    last = Some(now);
                }
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn poll_instruction(
        &self,
        req: Request<proto::InstructionsRequest>,
    ) -> Result<Response<proto::Instruction>, Status> {
        let id = self.registered(&req)?;
        Ok(Response::new(instruction_to_proto(
            &self.core.instruction(&id),
        )))
    }

    type DownloadModelStream = BoxStream<proto::ModelChunk>;

    async fn download_model(
        &self,
        req: Request<proto::DownloadModelRequest>,
    ) -> Result<Response<Self::DownloadModelStream>, Status> {
        let id = self.registered(&req)?;
        let version = req.into_inner().version;
        let blob = self
            .core
            .model(version)
            .await
            .map_err(|e| self.fail(&id, &e))?;
        let chunk = usize::try_from(self.core.wire_limits().chunk_bytes).unwrap_or(1 << 20);
        self.core
            .metrics()
            .download_bytes
            .inc_by(blob.bytes.len() as u64);
        Ok(Response::new(Box::pin(tokio_stream::iter(model_chunks(
            &blob, chunk,
        )))))
    }

    async fn upload_update(
        &self,
        req: Request<Streaming<proto::UpdateChunk>>,
    ) -> Result<Response<proto::UploadUpdateResponse>, Status> {
        let id = self.registered(&req)?;
        let receipt = self.receive_upload(&id, req.into_inner()).await?;
        tracing::info!(participant = %id, round = receipt.round, bytes = receipt.bytes, "update accepted");
        Ok(Response::new(proto::UploadUpdateResponse {
            round: receipt.round,
            bytes: receipt.bytes,
            accepted_in_round: receipt.accepted_in_round,
        }))
    }

    async fn report_evaluation(
        &self,
        req: Request<proto::EvaluationReport>,
    ) -> Result<Response<proto::EvaluationAck>, Status> {
        let id = self.registered(&req)?;
        let r = req.into_inner();
        self.core
            .report_evaluation(
                &id,
                r.model_version,
                r.num_examples,
                r.metrics.into_iter().collect(),
            )
            .await
            .map_err(|e| self.fail(&id, &e))?;
        Ok(Response::new(proto::EvaluationAck {}))
    }

    async fn heartbeat(
        &self,
        req: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let id = self.authenticate(&req)?;
        let (round, phase) = self.core.heartbeat(&id).map_err(|e| self.fail(&id, &e))?;
        Ok(Response::new(proto::HeartbeatResponse {
            round,
            phase: phase.into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_precise() {
        let id = ParticipantId::from("p");
        let cases = [
            (
                CoreError::Rejected(UpdateRejection::NonFinite {
                    tensor: "w".into(),
                    index: 0,
                    value: f32::NAN,
                }),
                Code::InvalidArgument,
            ),
            (
                CoreError::Rejected(UpdateRejection::Oversized { got: 2, limit: 1 }),
                Code::ResourceExhausted,
            ),
            (
                CoreError::Refused(UpdateRefusal::StaleRound {
                    id: id.clone(),
                    current: 2,
                    got: 1,
                }),
                Code::FailedPrecondition,
            ),
            (
                CoreError::Refused(UpdateRefusal::Duplicate {
                    id: id.clone(),
                    round: 1,
                }),
                Code::AlreadyExists,
            ),
            (CoreError::UnknownParticipant { id }, Code::PermissionDenied),
            (CoreError::ZeroExamples, Code::InvalidArgument),
        ];
        for (e, code) in cases {
            let s = core_status(&e);
            assert_eq!(s.code(), code, "{e}");
            assert_eq!(
                s.metadata()
                    .get(REASON_METADATA)
                    .and_then(|v| v.to_str().ok()),
                Some(e.reason())
            );
        }
    }

    #[test]
    fn chunks_cover_the_model_once() {
        let blob = ModelBlob {
            version: 3,
            bytes: bytes::Bytes::from(vec![7u8; 10]),
            sha256: "x".into(),
        };
        let chunks: Vec<proto::ModelChunk> = model_chunks(&blob, 4)
            .into_iter()
            .map(|c| c.expect("ok"))
            .collect();
        assert_eq!(chunks.len(), 3);
        assert!(chunks[0].info.is_some() && chunks[1].info.is_none());
        assert_eq!(chunks.iter().map(|c| c.data.len()).sum::<usize>(), 10);
        assert_eq!(chunks[2].offset, 8);
    }
}
