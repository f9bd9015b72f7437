//! What the operator and the aggregator say to each other, as types both build.
//!
//! The operator renders a [`JobConfig`] into the aggregator's job file and reads the
//! aggregator's progress back from its model manager as a [`StatusView`] (`GET /v1/status`)
//! and [`VersionInfo`]s (`GET /v1/versions`). Defaults (Flower's FedOpt hyper-parameters,
//! round and upload limits) live here once, so the two sides cannot drift apart.
//!
//! Plain data with serde and range checks only: no I/O, no optional features, so the
//! operator builds it without the aggregator's data plane.

mod job;
mod status;
mod strategy;

pub use job::{FoldOrder, JobConfig, LimitsSpec, Optimizer, RoundsSpec, TrainingSpec};
pub use status::{
    AggregatorPhase, ParticipantId, ParticipantStatus, Slot, StatusView, VersionInfo,
};
pub use strategy::{ClientHints, DEFAULT_MAX_BUFFERED_BYTES, FedOptConfig, StrategyConfig};

/// A field of the contract out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    /// The field as spelled in the job file.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl FieldError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}
