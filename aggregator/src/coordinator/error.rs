//! Why a data-plane call or the start-up failed.

use crate::job::JobConfigError;
use crate::round::{ParticipantId, RoundError, UpdateRefusal};
use crate::store::StoreError;
use crate::strategy::StrategyError;
use crate::update::UpdateRejection;

/// Why a data-plane call or the start-up failed. [`CoreError::reason`] is
/// the metric label; the gRPC layer maps each variant to a status code.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The caller is not registered (or was removed).
    #[error("participant {id} is not registered with this job; call Register first")]
    UnknownParticipant {
        /// Caller.
        id: ParticipantId,
    },
    /// The caller's identity is not on the job's participant list.
    #[error("participant {id} is not allowed to join job {job}")]
    NotAllowed {
        /// Caller.
        id: ParticipantId,
        /// Job name.
        job: String,
    },
    /// The caller is on no list the operator sent yet (most likely it was just started
    /// and is about to be listed); it may retry.
    #[error(
        "participant {id} is not on the operator's participant list of job {job} (yet); retry later"
    )]
    NotListed {
        /// Caller.
        id: ParticipantId,
        /// Job name.
        job: String,
    },
    /// The round rules refused the upload.
    #[error(transparent)]
    Refused(UpdateRefusal),
    /// The update's content was refused.
    #[error(transparent)]
    Rejected(UpdateRejection),
    /// The upload did not follow the protocol (message order, empty stream).
    #[error("upload protocol violated: {detail}")]
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// A gRPC message exceeded the configured maximum message size.
    #[error("message exceeds the maximum gRPC message size; send smaller chunks ({detail})")]
    MessageTooLarge {
        /// Transport message.
        detail: String,
    },
    /// The update claims no training examples.
    #[error("update reports 0 training examples; its FedAvg weight would be 0")]
    ZeroExamples,
    /// The update was trained from another global model version.
    #[error(
        "update was trained from model version {got}, but round {round} starts from version {current}; download the current model"
    )]
    StaleBase {
        /// Version named by the update.
        got: u64,
        /// Version of the round in progress.
        current: u64,
        /// Round in progress.
        round: u64,
    },
    /// A robust strategy holds as many updates as its memory bound allows.
    #[error("round {round} already holds the {limit} updates the strategy's memory bound allows")]
    Capacity {
        /// Round.
        round: u64,
        /// Most updates per round.
        limit: usize,
    },
    /// The requested model version does not exist.
    #[error("model version {version} does not exist (latest is {latest})")]
    VersionNotFound {
        /// Requested.
        version: u64,
        /// Latest version.
        latest: u64,
    },
    /// The model store failed.
    #[error("model store failed")]
    Store(#[source] StoreError),
    /// Neither a checkpoint nor an initial model to start from.
    #[error("the model store holds no checkpoint and no initial model was given")]
    NoInitialModel,
    /// The job config is invalid.
    #[error("invalid job config")]
    Job(#[source] JobConfigError),
    /// The strategy could not be built or restored.
    #[error("strategy cannot be set up")]
    Strategy(#[source] StrategyError),
    /// The round machine could not be built or resumed.
    #[error("round machine cannot be set up")]
    Round(#[source] RoundError),
    /// The initial model cannot be encoded.
    #[error("initial model cannot be encoded")]
    Model(#[source] crate::model::ModelError),
    /// An internal step failed (a blocking task, the receive buffer).
    #[error("internal error: {what} failed")]
    Internal {
        /// The step that failed.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CoreError {
    /// An internal failure of `what`, keeping its cause.
    pub fn internal(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        CoreError::Internal {
            what,
            source: Box::new(source),
        }
    }

    /// Stable label for metrics and the `fedsky-reason` metadata.
    pub fn reason(&self) -> &'static str {
        match self {
            CoreError::UnknownParticipant { .. } => "unknown_participant",
            CoreError::NotAllowed { .. } => "permission_denied",
            CoreError::NotListed { .. } => "not_listed",
            CoreError::Refused(r) => r.reason(),
            CoreError::Rejected(r) => r.reason(),
            CoreError::Protocol { .. } => "protocol",
            CoreError::MessageTooLarge { .. } => "message_too_large",
            CoreError::ZeroExamples => "zero_examples",
            CoreError::StaleBase { .. } => "stale_base",
            CoreError::Capacity { .. } => "capacity",
            CoreError::VersionNotFound { .. } => "version_not_found",
            CoreError::Store(_) => "store",
            CoreError::NoInitialModel => "no_initial_model",
            CoreError::Job(_) => "job_config",
            CoreError::Strategy(_) => "strategy",
            CoreError::Round(_) => "round",
            CoreError::Model(_) => "model",
            CoreError::Internal { .. } => "internal",
        }
    }
}
