//! What the gRPC layer needs from the core, and the coordinator's side of it.

use std::collections::BTreeMap;
use std::future::Future;

use crate::buffers::RecvBuf;
use crate::coordinator::{
    Coordinator, CoreError, Instruction, ModelBlob, Registration, UploadMeta, UploadReceipt,
    UploadTicket, WireLimits,
};
use crate::metrics::Metrics;
use crate::round::ParticipantId;

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
    /// Admits a call of a registered participant: [`CoreError::NotAllowed`] once the
    /// operator's list no longer names it, [`CoreError::UnknownParticipant`] when it is
    /// not registered.
    fn admit(&self, id: &ParticipantId) -> Result<(), CoreError>;
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
    fn admit(&self, id: &ParticipantId) -> Result<(), CoreError> {
        Coordinator::admit(self, id)
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
