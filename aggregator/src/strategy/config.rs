//! Strategies built from their configuration (the operator–aggregator contract's
//! [`StrategyConfig`]), and checkpoints of strategy state.

use serde::{Deserialize, Serialize};

pub use fedsky_contract::{ClientHints, FedOptConfig, StrategyConfig};

use super::{
    AnyStrategy, FedAvg, FedMedian, FedOpt, FedOptState, Krum, ServerOptimizer, StrategyError,
    TrimmedMean,
};

/// Building strategies from their configuration (the configuration itself is the
/// operator–aggregator contract's).
pub trait BuildStrategy {
    /// A fresh strategy.
    fn build(&self) -> Result<AnyStrategy, StrategyError>;
    /// A strategy carrying restored optimiser state.
    fn build_with_state(&self, state: Option<FedOptState>) -> Result<AnyStrategy, StrategyError>;
}

impl BuildStrategy for StrategyConfig {
    fn build(&self) -> Result<AnyStrategy, StrategyError> {
        self.build_with_state(None)
    }

    fn build_with_state(&self, state: Option<FedOptState>) -> Result<AnyStrategy, StrategyError> {
        self.validate()?;
        let state = state.unwrap_or_default();
        // Called in at most one match arm, so the state moves in exactly once.
        let opt = |o: ServerOptimizer, c: FedOptConfig| {
            FedOpt::with_state(o, c, state).map(AnyStrategy::FedOpt)
        };
        Ok(match self {
            StrategyConfig::FedAvg => AnyStrategy::FedAvg(FedAvg::new()),
            StrategyConfig::FedProx { proximal_mu } => {
                AnyStrategy::FedAvg(FedAvg::prox(*proximal_mu))
            }
            StrategyConfig::FedAdagrad(c) => opt(ServerOptimizer::Adagrad, *c)?,
            StrategyConfig::FedAdam(c) => opt(ServerOptimizer::Adam, *c)?,
            StrategyConfig::FedYogi(c) => opt(ServerOptimizer::Yogi, *c)?,
            StrategyConfig::FedMedian { max_buffered_bytes } => {
                AnyStrategy::FedMedian(FedMedian::new(*max_buffered_bytes))
            }
            StrategyConfig::TrimmedMean {
                beta,
                max_buffered_bytes,
            } => AnyStrategy::TrimmedMean(TrimmedMean::new(*beta, *max_buffered_bytes)?),
            StrategyConfig::Krum {
                num_byzantine,
                num_selected,
                max_buffered_bytes,
            } => AnyStrategy::Krum(Krum::new(
                *num_byzantine,
                *num_selected,
                *max_buffered_bytes,
            )),
        })
    }
}

/// Everything needed to rebuild a strategy after a restart: its config and
/// the state carried between rounds. Per-round buffers are not included; a
/// resumed aggregator re-runs the round that was in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyCheckpoint {
    /// The strategy's configuration.
    pub config: StrategyConfig,
    /// FedOpt moments, for the FedOpt family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<FedOptState>,
}

impl AnyStrategy {
    /// Builds the strategy `config` describes.
    pub fn from_config(config: &StrategyConfig) -> Result<Self, StrategyError> {
        config.build()
    }

    /// Snapshot as of the last finished round (safe to take mid-round).
    pub fn checkpoint(&self) -> StrategyCheckpoint {
        match self {
            AnyStrategy::FedAvg(s) => StrategyCheckpoint {
                config: match s.proximal_mu() {
                    Some(proximal_mu) => StrategyConfig::FedProx { proximal_mu },
                    None => StrategyConfig::FedAvg,
                },
                optimizer: None,
            },
            AnyStrategy::FedOpt(s) => StrategyCheckpoint {
                config: match s.optimizer() {
                    ServerOptimizer::Adagrad => StrategyConfig::FedAdagrad(*s.config()),
                    ServerOptimizer::Adam => StrategyConfig::FedAdam(*s.config()),
                    ServerOptimizer::Yogi => StrategyConfig::FedYogi(*s.config()),
                },
                optimizer: Some(s.state().clone()),
            },
            AnyStrategy::FedMedian(s) => StrategyCheckpoint {
                config: StrategyConfig::FedMedian {
                    max_buffered_bytes: s.max_buffered_bytes(),
                },
                optimizer: None,
            },
            AnyStrategy::TrimmedMean(s) => StrategyCheckpoint {
                config: StrategyConfig::TrimmedMean {
                    beta: s.beta(),
                    max_buffered_bytes: s.max_buffered_bytes(),
                },
                optimizer: None,
            },
            AnyStrategy::Krum(s) => StrategyCheckpoint {
                config: StrategyConfig::Krum {
                    num_byzantine: s.num_byzantine(),
                    num_selected: s.num_selected(),
                    max_buffered_bytes: s.max_buffered_bytes(),
                },
                optimizer: None,
            },
        }
    }

    /// Rebuilds a strategy from a checkpoint.
    pub fn restore(checkpoint: &StrategyCheckpoint) -> Result<Self, StrategyError> {
        checkpoint
            .config
            .build_with_state(checkpoint.optimizer.clone())
    }
}
