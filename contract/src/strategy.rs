//! Strategy configuration as the job file names it, with Flower's defaults and the range
//! checks; building a strategy from it is the aggregator's.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// Default bound on buffered updates for robust rules: 4 GiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 4 << 30;

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
    pub fn validate(&self) -> Result<(), FieldError> {
        let positive = [("eta", self.eta), ("etaL", self.eta_l), ("tau", self.tau)];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(FieldError::new(
                    field,
                    format!("must be a positive finite number, got {v}"),
                ));
            }
        }
        for (field, v) in [("beta1", self.beta_1), ("beta2", self.beta_2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(FieldError::new(
                    field,
                    format!("must be in [0, 1), got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// Which rule aggregates updates, with its parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all_fields = "camelCase")]
pub enum StrategyConfig {
    /// Example-weighted mean.
    #[default]
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
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            StrategyConfig::FedAvg => Ok(()),
            StrategyConfig::FedProx { proximal_mu } => {
                if proximal_mu.is_finite() && *proximal_mu >= 0.0 {
                    Ok(())
                } else {
                    Err(FieldError::new(
                        "proximalMu",
                        format!("must be a finite number >= 0, got {proximal_mu}"),
                    ))
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
                    Err(FieldError::new(
                        "beta",
                        format!("must be in [0, 0.5), got {beta}"),
                    ))
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
}

fn check_bound(max_buffered_bytes: u64) -> Result<(), FieldError> {
    if max_buffered_bytes == 0 {
        return Err(FieldError::new("maxBufferedBytes", "must be > 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_the_job_file_spells_them() {
        let yogi = StrategyConfig::FedYogi(FedOptConfig::yogi_default());
        let v = serde_json::to_value(&yogi).expect("serialises");
        assert_eq!(v["kind"], "FedYogi");
        assert_eq!(v["etaL"], 0.0316);
        assert_eq!(v["beta1"], 0.9);
        let krum: StrategyConfig =
            serde_json::from_str(r#"{"kind":"Krum","numByzantine":1}"#).expect("parses");
        assert_eq!(
            krum,
            StrategyConfig::Krum {
                num_byzantine: 1,
                num_selected: 0,
                max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES
            }
        );
    }

    #[test]
    fn ranges_are_checked() {
        let mut c = FedOptConfig::adam_default();
        assert_eq!(c.validate(), Ok(()));
        c.beta_2 = 1.0;
        assert_eq!(c.validate().map_err(|e| e.field), Err("beta2"));
        c = FedOptConfig::adam_default();
        c.tau = 0.0;
        assert_eq!(c.validate().map_err(|e| e.field), Err("tau"));
        let trimmed = StrategyConfig::TrimmedMean {
            beta: 0.5,
            max_buffered_bytes: 1,
        };
        assert_eq!(trimmed.validate().map_err(|e| e.field), Err("beta"));
        let prox = StrategyConfig::FedProx { proximal_mu: -1.0 };
        assert_eq!(prox.validate().map_err(|e| e.field), Err("proximalMu"));
        let median = StrategyConfig::FedMedian {
            max_buffered_bytes: 0,
        };
        assert_eq!(
            median.validate().map_err(|e| e.field),
            Err("maxBufferedBytes")
        );
    }

    #[test]
    fn client_hints_carry_mu_and_the_client_rate() {
        let prox = StrategyConfig::FedProx { proximal_mu: 0.1 };
        assert_eq!(prox.client_hints().proximal_mu, Some(0.1));
        let adam = StrategyConfig::FedAdam(FedOptConfig::adam_default());
        assert_eq!(adam.client_hints().learning_rate, Some(0.1));
        assert_eq!(
            StrategyConfig::FedAvg.client_hints(),
            ClientHints::default()
        );
    }
}
