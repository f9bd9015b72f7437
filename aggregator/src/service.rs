//! The gRPC service: authentication, identity, chunked streams and the
//! mapping of every core error to a precise `tonic::Status`. It is generic
//! over [`DataPlane`], which [`Coordinator`] implements; conversions between
//! core and wire types are plain functions at the bottom.
//!
//! No handler panics: every failure is a `Status` with a `fedsky-reason`
//! metadata entry (the metric label of the refusal).

mod plane;
#[cfg(test)]
mod tests;
mod wire;

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::buffers::RecvBuf;
use crate::coordinator::{CoreError, Instruction, InstructionKind, UploadReceipt};
use crate::identity::{IdentityError, validate_id};
use crate::proto;
use crate::proto::aggregator_server::Aggregator;
use crate::round::ParticipantId;
use crate::update::UpdateRejection;

pub use crate::{PARTICIPANT_METADATA, REASON_METADATA};

pub use plane::{DataPlane, UploadSession};
use wire::{
    append, core_status, counts_as_rejection, model_chunks, peer_identity, protocol, status,
    upload_meta,
};
pub use wire::{core_code, instruction_to_proto};

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
            unauthenticated(wire::with_causes(&e), reason)
        })
    }

    /// Authenticates and requires a registered caller the operator still runs.
    fn registered<T>(&self, req: &Request<T>) -> Result<ParticipantId, Status> {
        let id = self.authenticate(req)?;
        match self.core.admit(&id) {
            Ok(()) => Ok(id),
            Err(e) => Err(self.fail(&id, &e)),
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
                // A participant revoked while its stream is open hears so at once,
                // rather than waiting for instructions that will never come.
                if let Err(e @ CoreError::NotAllowed { .. }) = core.admit(&id) {
                    core.metrics().reject(e.reason());
                    tracing::warn!(participant = %id, "instruction stream ended: participant revoked");
                    yield Err(core_status(&e));
                    break;
                }
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
