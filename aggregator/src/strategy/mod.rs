//! Aggregation strategies behind one streaming trait.
//!
//! A round is `begin_round` → `accept` per valid update → `finish`. FedAvg and
//! the FedOpt family fold each update into a running weighted sum as it
//! arrives (memory O(model)); the robust rules (median, trimmed mean, Krum)
//! need all updates at once, so they buffer them as f32 under an explicit
//! byte bound and refuse updates past it.
//!
//! All arithmetic is per coordinate in a fixed order; parallelism only splits
//! coordinates into disjoint chunks, so results do not depend on thread count.

mod buffer;
mod config;
mod fedavg;
mod fedopt;
mod krum;
mod median;
mod sum;
mod trimmed_mean;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use buffer::{Buffered, BufferedRound, RobustRule};
pub use config::{BuildStrategy, ClientHints, FedOptConfig, StrategyCheckpoint, StrategyConfig};
pub use fedavg::FedAvg;
pub use fedopt::{FedOpt, FedOptState, ServerOptimizer};
pub use krum::{Krum, KrumRule};
pub use median::{FedMedian, MedianRule};
pub use trimmed_mean::{TrimmedMean, TrimmedMeanRule};

use crate::model::{Model, ModelError, ModelSpec, ModelView};

/// Errors from a strategy. None of them poisons the strategy: a failed
/// `accept` leaves earlier updates intact; a failed `finish` may be retried
/// after a new `begin_round`.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// `accept` or `finish` without a round in progress.
    #[error("no aggregation round in progress; call begin_round first")]
    NoRound,
    /// The update's layout is not the round's global model layout.
    #[error(
        "update does not follow the layout of round {round}'s global model; decode it with decode_update against that model"
    )]
    SpecMismatch {
        /// Round in progress.
        round: u64,
    },
    /// An update claims zero training examples, so it has no weight.
    #[error("update reports 0 training examples; a participant must train on at least one example")]
    ZeroExamples,
    /// `finish` with nothing accepted.
    #[error("round {round} has no accepted updates to aggregate")]
    NoUpdates {
        /// Round in progress.
        round: u64,
    },
    /// A robust strategy's buffer would exceed its bound.
    #[error(
        "buffering another update would hold {needed} bytes, over the bound of {limit} bytes ({buffered} updates already buffered); raise maxBufferedBytes or lower the participants per round"
    )]
    MemoryBoundExceeded {
        /// Bytes the buffer would hold with this update.
        needed: u64,
        /// Configured `max_buffered_bytes`.
        limit: u64,
        /// Updates already held.
        buffered: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid strategy config: {field} {problem}")]
    InvalidConfig {
        /// Offending field (as spelled in the config).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Restored optimiser state does not fit the global model.
    #[error(
        "restored optimizer state holds {got} parameters but the global model has {expected}; the checkpoint belongs to another model"
    )]
    StateMismatch {
        /// Parameters of the global model.
        expected: usize,
        /// Parameters in the state.
        got: usize,
    },
    /// Building the output model failed (an internal inconsistency).
    #[error("building the aggregated model failed")]
    Model(#[source] ModelError),
}

impl From<fedsky_contract::FieldError> for StrategyError {
    fn from(e: fedsky_contract::FieldError) -> Self {
        StrategyError::InvalidConfig {
            field: e.field,
            problem: e.problem,
        }
    }
}

impl StrategyError {
    /// Stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StrategyError::NoRound => "no_round",
            StrategyError::SpecMismatch { .. } => "spec_mismatch",
            StrategyError::ZeroExamples => "zero_examples",
            StrategyError::NoUpdates { .. } => "no_updates",
            StrategyError::MemoryBoundExceeded { .. } => "memory_bound_exceeded",
            StrategyError::InvalidConfig { .. } => "invalid_config",
            StrategyError::StateMismatch { .. } => "state_mismatch",
            StrategyError::Model(_) => "internal",
        }
    }
}

/// A server-side aggregation rule, driven one round at a time.
pub trait Strategy: std::fmt::Debug + Send {
    /// Short name for logs and metrics (`"FedAvg"`, `"FedAdam"`, …).
    fn name(&self) -> &'static str;

    /// Starts round `round` (1-based, Flower's `server_round`) from `global`.
    /// Discards any unfinished round.
    fn begin_round(&mut self, round: u64, global: &Model) -> Result<(), StrategyError>;

    /// Folds in (or buffers) one validated update trained on `num_examples`.
    /// On error the update is not counted and earlier ones are kept.
    fn accept(&mut self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError>;

    /// Folds several validated updates in slice order; the result equals
    /// calling [`Strategy::accept`] on each in turn. On error nothing of the
    /// batch is counted. Streaming strategies override it to fold the batch
    /// in one pass over their accumulator.
    fn accept_batch(&mut self, updates: &[(&ModelView<'_>, u64)]) -> Result<(), StrategyError> {
        for (u, n) in updates {
            self.accept(u, *n)?;
        }
        Ok(())
    }

    /// Updates accepted so far this round.
    fn accepted(&self) -> usize;

    /// Bytes currently held for received updates (accumulators included).
    fn buffered_bytes(&self) -> u64;

    /// Most updates this strategy can hold in one round, if bounded.
    fn max_updates(&self) -> Option<usize>;

    /// Ends the round and returns the new global model in the global model's dtypes.
    fn finish(&mut self) -> Result<Model, StrategyError>;

    /// Drops the round in progress (round failed or is being retried).
    fn abort_round(&mut self);

    /// Takes back a model this strategy produced that is no longer used (the
    /// replaced global model), to reuse its memory: vectors whose pages are
    /// already touched cost no page faults. The default drops it.
    fn recycle(&mut self, model: Model) {
        drop(model);
    }
}

/// What every strategy remembers about the round in progress.
#[derive(Debug)]
pub(crate) struct RoundCtx {
    pub round: u64,
    pub spec: Arc<ModelSpec>,
}

impl RoundCtx {
    pub fn new(round: u64, global: &Model) -> Self {
        Self {
            round,
            spec: global.spec_arc(),
        }
    }

    /// Checks that an update fits this round before anything is folded in.
    pub fn check(&self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError> {
        let same = std::ptr::eq(update.spec(), &*self.spec) || *update.spec() == *self.spec;
        if !same {
            return Err(StrategyError::SpecMismatch { round: self.round });
        }
        if num_examples == 0 {
            return Err(StrategyError::ZeroExamples);
        }
        Ok(())
    }

    pub fn output(&self, flat: &[f32]) -> Result<Model, StrategyError> {
        Model::from_flat_f32(Arc::clone(&self.spec), flat).map_err(StrategyError::Model)
    }
}

/// Any configured strategy; what the server holds and checkpoints.
#[derive(Debug)]
pub enum AnyStrategy {
    /// FedAvg / FedProx.
    FedAvg(FedAvg),
    /// FedAdagrad / FedAdam / FedYogi.
    FedOpt(FedOpt),
    /// Coordinate-wise median.
    FedMedian(FedMedian),
    /// Coordinate-wise trimmed mean.
    TrimmedMean(TrimmedMean),
    /// Krum / multi-Krum.
    Krum(Krum),
}

impl AnyStrategy {
    fn inner(&self) -> &dyn Strategy {
        match self {
            AnyStrategy::FedAvg(s) => s,
            AnyStrategy::FedOpt(s) => s,
            AnyStrategy::FedMedian(s) => s,
            AnyStrategy::TrimmedMean(s) => s,
            AnyStrategy::Krum(s) => s,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Strategy {
        match self {
            AnyStrategy::FedAvg(s) => s,
            AnyStrategy::FedOpt(s) => s,
            AnyStrategy::FedMedian(s) => s,
            AnyStrategy::TrimmedMean(s) => s,
            AnyStrategy::Krum(s) => s,
        }
    }
}

impl Strategy for AnyStrategy {
    fn name(&self) -> &'static str {
        self.inner().name()
    }
    fn begin_round(&mut self, round: u64, global: &Model) -> Result<(), StrategyError> {
        self.inner_mut().begin_round(round, global)
    }
    fn accept(&mut self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError> {
        self.inner_mut().accept(update, num_examples)
    }
    fn accept_batch(&mut self, updates: &[(&ModelView<'_>, u64)]) -> Result<(), StrategyError> {
        self.inner_mut().accept_batch(updates)
    }
    fn accepted(&self) -> usize {
        self.inner().accepted()
    }
    fn buffered_bytes(&self) -> u64 {
        self.inner().buffered_bytes()
    }
    fn max_updates(&self) -> Option<usize> {
        self.inner().max_updates()
    }
    fn finish(&mut self) -> Result<Model, StrategyError> {
        self.inner_mut().finish()
    }
    fn abort_round(&mut self) {
        self.inner_mut().abort_round();
    }
    fn recycle(&mut self, model: Model) {
        self.inner_mut().recycle(model);
    }
}
