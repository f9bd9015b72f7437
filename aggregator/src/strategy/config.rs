//! Strategy configuration (as the FederatedJob spec names it), construction,
//! and checkpoints of strategy state.

use serde::{Deserialize, Serialize};

use super::{
    AnyStrategy, FedAvg, FedMedian, FedOpt, FedOptState, Krum, ServerOptimizer, StrategyError,
    TrimmedMean,
};

/// Default bound on buffered updates for robust rules: 4 GiB.
const DEFAULT_MAX_BUFFERED_BYTES: u64 = 4 << 30;

fn default_max_buffered_bytes() -> u64 {
    DEFAULT_MAX_BUFFERED_BYTES
}

/// Hyper-parameters of FedAdagrad / FedAdam / FedYogi, named as in Flower.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FedOptConfig {
    /// Server learning rate η.
    pub eta: f64,
    /// Client learning rate η_l (sent to participants; unused on the server).
    pub eta_l: f64,
    /// First-moment decay β₁ (ignored by FedAdagrad, which uses 0).
    #[serde(rename = "beta1")]
    pub beta_1: f64,
    /// Second-moment decay β₂ (ignored by FedAdagrad, which uses 0).
    #[serde(rename = "beta2")]
    pub beta_2: f64,
    /// Adaptivity τ, added to √v; must be > 0 so the step is finite.
    pub tau: f64,
}

impl FedOptConfig {
    /// Flower's `FedAdagrad` defaults.
    pub fn adagrad_default() -> Self {
        Self {
            eta: 1e-1,
            eta_l: 1e-1,
            beta_1: 0.0,
            beta_2: 0.0,
            tau: 1e-9,
        }
    }

    /// Flower's `FedAdam` defaults.
    pub fn adam_default() -> Self {
        Self {
            eta: 1e-1,
            eta_l: 1e-1,
            beta_1: 0.9,
            beta_2: 0.99,
            tau: 1e-9,
        }
    }

    /// Flower's `FedYogi` defaults.
    pub fn yogi_default() -> Self {
        Self {
            eta: 1e-2,
            eta_l: 0.0316,
            beta_1: 0.9,
            beta_2: 0.99,
            tau: 1e-3,
        }
    }

    /// Checks ranges: η, η_l, τ > 0 and finite; β₁, β₂ in [0, 1).
    pub fn validate(&self) -> Result<(), StrategyError> {
        let positive = [("eta", self.eta), ("etaL", self.eta_l), ("tau", self.tau)];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(StrategyError::InvalidConfig {
                    field,
                    problem: format!("must be a positive finite number, got {v}"),
                });
            }
        }
        for (field, v) in [("beta1", self.beta_1), ("beta2", self.beta_2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(StrategyError::InvalidConfig {
                    field,
                    problem: format!("must be in [0, 1), got {v}"),
                });
            }
        }
        Ok(())
    }
}

/// Which rule aggregates updates, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all_fields = "camelCase")]
pub enum StrategyConfig {
    /// Example-weighted mean.
    FedAvg,
    /// FedAvg on the server; `proximal_mu` goes to participants.
    FedProx {
        /// Proximal term coefficient μ ≥ 0.
        proximal_mu: f64,
    },
    /// Adagrad on the pseudo-gradient.
    FedAdagrad(FedOptConfig),
    /// Adam on the pseudo-gradient.
    FedAdam(FedOptConfig),
    /// Yogi on the pseudo-gradient.
    FedYogi(FedOptConfig),
    /// Coordinate-wise median.
    FedMedian {
        /// Bound on bytes of buffered updates (f32 copies).
        #[serde(default = "default_max_buffered_bytes")]
        max_buffered_bytes: u64,
    },
    /// Coordinate-wise mean after cutting a `beta` fraction from each end.
    TrimmedMean {
        /// Fraction cut from each end, in [0, 0.5).
        beta: f64,
        /// Bound on bytes of buffered updates (f32 copies).
        #[serde(default = "default_max_buffered_bytes")]
        max_buffered_bytes: u64,
    },
    /// Krum (`num_selected` = 0) or multi-Krum (`num_selected` = m > 0).
    Krum {
        /// Byzantine participants tolerated (f).
        num_byzantine: usize,
        /// Updates averaged by multi-Krum; 0 picks the single best (Krum).
        #[serde(default)]
        num_selected: usize,
        /// Bound on bytes of buffered updates (f32 copies).
        #[serde(default = "default_max_buffered_bytes")]
        max_buffered_bytes: u64,
    },
}

/// Hyper-parameters a strategy needs the participants to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientHints {
    /// FedProx μ for the local proximal term.
    pub proximal_mu: Option<f64>,
    /// Client learning rate (FedOpt's η_l).
    pub learning_rate: Option<f64>,
}

impl StrategyConfig {
    /// Checks every parameter range.
    pub fn validate(&self) -> Result<(), StrategyError> {
        match self {
            StrategyConfig::FedAvg => Ok(()),
            StrategyConfig::FedProx { proximal_mu } => {
                if proximal_mu.is_finite() && *proximal_mu >= 0.0 {
                    Ok(())
                } else {
                    Err(StrategyError::InvalidConfig {
                        field: "proximalMu",
                        problem: format!("must be a finite number >= 0, got {proximal_mu}"),
                    })
                }
            }
            StrategyConfig::FedAdagrad(c)
            | StrategyConfig::FedAdam(c)
            | StrategyConfig::FedYogi(c) => c.validate(),
            StrategyConfig::FedMedian { max_buffered_bytes } => check_bound(*max_buffered_bytes),
            StrategyConfig::TrimmedMean {
                beta,
                max_buffered_bytes,
            } => {
                check_bound(*max_buffered_bytes)?;
                if (0.0..0.5).contains(beta) {
                    Ok(())
                } else {
                    Err(StrategyError::InvalidConfig {
                        field: "beta",
                        problem: format!("must be in [0, 0.5), got {beta}"),
                    })
                }
            }
            StrategyConfig::Krum {
                max_buffered_bytes, ..
            } => check_bound(*max_buffered_bytes),
        }
    }

    /// What participants must be told (FedProx μ, FedOpt η_l).
    pub fn client_hints(&self) -> ClientHints {
        match self {
            StrategyConfig::FedProx { proximal_mu } => ClientHints {
                proximal_mu: Some(*proximal_mu),
                learning_rate: None,
            },
            StrategyConfig::FedAdagrad(c)
            | StrategyConfig::FedAdam(c)
            | StrategyConfig::FedYogi(c) => ClientHints {
                proximal_mu: None,
                learning_rate: Some(c.eta_l),
            },
            _ => ClientHints::default(),
        }
    }

    /// A fresh strategy.
    pub fn build(&self) -> Result<AnyStrategy, StrategyError> {
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

fn check_bound(max_buffered_bytes: u64) -> Result<(), StrategyError> {
    if max_buffered_bytes == 0 {
        return Err(StrategyError::InvalidConfig {
            field: "maxBufferedBytes",
            problem: "must be > 0".into(),
        });
    }
    Ok(())
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
