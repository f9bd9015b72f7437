//! The pure core of the fedsky aggregator: models and their safetensors
//! validation, aggregation strategies, and the round state machine.
//!
//! Nothing here does I/O or reads a clock; the gRPC service on top feeds
//! bytes and timestamps in and acts on the returned events.

mod header;
pub mod model;
pub mod round;
pub mod strategy;
pub mod update;

pub use model::{
    DType, Model, ModelError, ModelSpec, ModelView, TensorData, TensorSpec, TensorView,
};
pub use round::{
    ParticipantId, Phase, RoundCheckpoint, RoundConfig, RoundError, RoundEvent, RoundFailure,
    RoundMachine, Slot, UpdateOutcome, UpdateRefusal,
};
pub use strategy::{AnyStrategy, Strategy, StrategyCheckpoint, StrategyConfig, StrategyError};
pub use update::{
    HEADER_LEN_BYTES, UpdateHeader, UpdateLimits, UpdateRejection, declared_header_len,
    decode_model, decode_update, parse_update_header,
};
