//! Conversions between core and wire types, and the `tonic::Status` of
//! every core error.

use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};

use crate::REASON_METADATA;
use crate::buffers::RecvBuf;
use crate::coordinator::{CoreError, Instruction, InstructionKind, ModelBlob, UploadMeta};
use crate::identity::{IdentityError, participant_from_der};
use crate::proto;
use crate::round::{ParticipantId, UpdateRefusal};
use crate::update::UpdateRejection;

/// Appends a chunk to a buffer sized from the header (the size check above
/// makes overflow impossible; it is still refused rather than trusted).
pub(super) fn append(buf: &mut RecvBuf, data: &[u8]) -> Result<(), CoreError> {
    buf.extend_from_slice(data)
        .map_err(|e| CoreError::internal("the receive buffer", e))
}

pub(super) fn protocol(detail: &str) -> CoreError {
    CoreError::Protocol {
        detail: detail.to_string(),
    }
}

pub(super) fn peer_identity<T>(req: &Request<T>) -> Result<ParticipantId, IdentityError> {
    let certs = req.peer_certs().ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    participant_from_der(leaf.as_ref())
}

/// An error and its causes as one line (`what: why: why`), for messages that leave the
/// process: a client sees why, not only what.
pub(super) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // `#[error("…: {0}")]` variants already print their cause.
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

/// A status with the reason label attached.
pub(super) fn status(code: Code, message: impl Into<String>, reason: &'static str) -> Status {
    let mut s = Status::new(code, message);
    s.metadata_mut()
        .insert(REASON_METADATA, MetadataValue::from_static(reason));
    s
}

/// Whether an error is a refused update or call (counted per reason).
pub(super) fn counts_as_rejection(e: &CoreError) -> bool {
    !matches!(
        e,
        CoreError::Store(_) | CoreError::Internal { .. } | CoreError::VersionNotFound { .. }
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
        // Not refused for good: the operator lists a participant right after starting it.
        CoreError::Store(_) | CoreError::NotListed { .. } => Code::Unavailable,
        CoreError::NoInitialModel
        | CoreError::Job(_)
        | CoreError::Strategy(_)
        | CoreError::Round(_)
        | CoreError::Model(_)
        | CoreError::Internal { .. } => Code::Internal,
    }
}

pub(super) fn core_status(e: &CoreError) -> Status {
    status(core_code(e), with_causes(e), e.reason())
}

pub(super) fn upload_meta(m: proto::UpdateMeta) -> UploadMeta {
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

pub(super) fn model_chunks(
    blob: &ModelBlob,
    chunk: usize,
) -> Vec<Result<proto::ModelChunk, Status>> {
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
