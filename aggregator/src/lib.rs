//! The fedsky aggregator.
//!
//! The pure core — models and their safetensors validation, aggregation
//! strategies, and the round state machine — does no I/O and reads no clock.
//! With the `server` feature (default) the crate adds the coordinator that
//! drives the core, the gRPC data plane, the model store (directory or S3)
//! with checkpoint/resume, the HTTP model manager and the binary. The
//! `client` feature alone gives participants the protocol and a small client.

mod header;
pub mod in_memory;
pub mod model;
pub mod round;
pub mod strategy;
pub mod update;

#[cfg(feature = "server")]
pub mod buffers;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod coordinator;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod http_auth;
#[cfg(feature = "server")]
pub mod identity;
#[cfg(feature = "server")]
pub mod job;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;

pub use model::{
    DType, Model, ModelError, ModelSpec, ModelView, TensorData, TensorSpec, TensorView,
};
pub use round::{
    ParticipantId, Phase, RoundCheckpoint, RoundConfig, RoundError, RoundEvent, RoundFailure,
    RoundMachine, Slot, UpdateOutcome, UpdateRefusal,
};
pub use strategy::{
    AnyStrategy, FedOptConfig, Strategy, StrategyCheckpoint, StrategyConfig, StrategyError,
};
pub use update::{
    HEADER_LEN_BYTES, UpdateHeader, UpdateLimits, UpdateRejection, declared_header_len,
    decode_model, decode_update, parse_update_header, validate_layout, validate_update,
    view_validated,
};

/// Metadata key of the stable reason label on every error status.
pub const REASON_METADATA: &str = "fedsky-reason";
/// Metadata key carrying the participant id in `--insecure-plaintext` mode.
pub const PARTICIPANT_METADATA: &str = "fedsky-participant";

/// Generated gRPC types of `fedsky.v1` (server and/or client per the crate features).
#[cfg(feature = "client")]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("fedsky.v1");
}
