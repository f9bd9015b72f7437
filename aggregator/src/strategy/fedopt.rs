//! Adaptive federated optimisation (Reddi et al., 2021): FedAdagrad, FedAdam
//! and FedYogi, with the update rules of Flower's `FedAdagrad`, `FedAdam` and
//! `FedYogi` strategy classes.
//!
//! With `Δ = fedavg(updates) − x` (the pseudo-gradient) and state starting at 0:
//!
//! | rule    | m                      | v                                     | x ←                                   |
//! |---------|------------------------|---------------------------------------|---------------------------------------|
//! | Adagrad | Δ (β₁ = 0)             | v + Δ²                                | x + η·m / (√v + τ)                    |
//! | Adam    | β₁·m + (1−β₁)·Δ        | β₂·v + (1−β₂)·Δ²                      | x + η·√(1−β₂ᵗ⁺¹)/(1−β₁ᵗ⁺¹)·m / (√v + τ) |
//! | Yogi    | β₁·m + (1−β₁)·Δ        | v − (1−β₂)·Δ²·sign(v − Δ²)            | x + η·m / (√v + τ)                    |
//!
//! `t` is the 1-based round number (Flower's `server_round`). `m` and `v`
//! persist across rounds and are part of the checkpoint.

use serde::{Deserialize, Serialize};

use super::config::FedOptConfig;
use super::sum::{PAR_CHUNK, WeightedSum};
use super::{RoundCtx, Strategy, StrategyError};
use crate::model::{Model, ModelView};
use rayon::prelude::*;

/// Which server optimiser to apply to the pseudo-gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerOptimizer {
    /// FedAdagrad.
    Adagrad,
    /// FedAdam.
    Adam,
    /// FedYogi.
    Yogi,
}

/// Optimiser state carried from round to round (checkpointed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FedOptState {
    /// Last round whose update this state includes.
    pub last_round: Option<u64>,
    /// First moment, flat in canonical order; `None` before the first round.
    pub m_t: Option<Vec<f32>>,
    /// Second moment, flat in canonical order; `None` before the first round.
    pub v_t: Option<Vec<f32>>,
}

#[derive(Debug)]
struct OptRound {
    ctx: RoundCtx,
    /// The round's global model as f32 (Flower's `current_weights`).
    current: Vec<f32>,
    sum: WeightedSum,
}

/// FedAdagrad / FedAdam / FedYogi over a streaming FedAvg.
#[derive(Debug)]
pub struct FedOpt {
    optimizer: ServerOptimizer,
    config: FedOptConfig,
    state: FedOptState,
    round: Option<OptRound>,
}

impl FedOpt {
    /// A fresh optimiser; the config is validated.
    pub fn new(optimizer: ServerOptimizer, config: FedOptConfig) -> Result<Self, StrategyError> {
        config.validate()?;
        Ok(Self {
            optimizer,
            config,
            state: FedOptState::default(),
            round: None,
        })
    }

    /// Resumes with checkpointed state (its size is checked at `begin_round`).
    pub fn with_state(
        optimizer: ServerOptimizer,
        config: FedOptConfig,
        state: FedOptState,
    ) -> Result<Self, StrategyError> {
        let mut s = Self::new(optimizer, config)?;
        s.state = state;
        Ok(s)
    }

    /// The optimiser in use.
    pub fn optimizer(&self) -> ServerOptimizer {
        self.optimizer
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &FedOptConfig {
        &self.config
    }

    /// State as of the last finished round.
    pub fn state(&self) -> &FedOptState {
        &self.state
    }

    /// Coefficients applied per coordinate, computed once per round in f64
    /// and rounded to f32 as NumPy does with Python floats.
    fn coefficients(&self, round: u64) -> Coefficients {
        let c = &self.config;
        let (beta_1, beta_2) = match self.optimizer {
            // Flower's FedAdagrad fixes both betas at 0.
            ServerOptimizer::Adagrad => (0.0, 0.0),
            _ => (c.beta_1, c.beta_2),
        };
        let eta = match self.optimizer {
            ServerOptimizer::Adam => {
                let t = round as f64 + 1.0;
                c.eta * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t))
            }
            _ => c.eta,
        };
        Coefficients {
            beta_1: beta_1 as f32,
            one_minus_beta_1: (1.0 - beta_1) as f32,
            beta_2: beta_2 as f32,
            one_minus_beta_2: (1.0 - beta_2) as f32,
            eta: eta as f32,
            tau: c.tau as f32,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Coefficients {
    beta_1: f32,
    one_minus_beta_1: f32,
    beta_2: f32,
    one_minus_beta_2: f32,
    eta: f32,
    tau: f32,
}

impl Strategy for FedOpt {
    fn name(&self) -> &'static str {
        match self.optimizer {
            ServerOptimizer::Adagrad => "FedAdagrad",
            ServerOptimizer::Adam => "FedAdam",
            ServerOptimizer::Yogi => "FedYogi",
        }
    }

    fn begin_round(&mut self, round: u64, global: &Model) -> Result<(), StrategyError> {
        let n = global.spec().total_elements();
        for moment in [&self.state.m_t, &self.state.v_t].into_iter().flatten() {
            if moment.len() != n {
                return Err(StrategyError::StateMismatch {
                    expected: n,
                    got: moment.len(),
                });
            }
        }
        self.round = Some(OptRound {
            ctx: RoundCtx::new(round, global),
            current: global.to_flat_f32(),
            sum: WeightedSum::new(global.spec()),
        });
        Ok(())
    }

    fn accept(&mut self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError> {
        let r = self.round.as_mut().ok_or(StrategyError::NoRound)?;
        r.ctx.check(update, num_examples)?;
        r.sum.add_view(update, num_examples);
        Ok(())
    }

    fn accept_batch(&mut self, updates: &[(&ModelView<'_>, u64)]) -> Result<(), StrategyError> {
        let r = self.round.as_mut().ok_or(StrategyError::NoRound)?;
        for (u, n) in updates {
            r.ctx.check(u, *n)?;
        }
        r.sum.add_views(updates);
        Ok(())
    }

    fn accepted(&self) -> usize {
        self.round.as_ref().map_or(0, |r| r.sum.count())
    }

    fn buffered_bytes(&self) -> u64 {
        self.round
            .as_ref()
            .map_or(0, |r| r.sum.bytes().saturating_mul(2))
    }

    fn max_updates(&self) -> Option<usize> {
        None
    }

    fn finish(&mut self) -> Result<Model, StrategyError> {
        let OptRound {
            ctx,
            mut current,
            sum,
        } = self.round.take().ok_or(StrategyError::NoRound)?;
        let avg = sum
            .into_mean()
            .ok_or(StrategyError::NoUpdates { round: ctx.round })?;
        let n = avg.len();
        let mut m = self.state.m_t.take().unwrap_or_else(|| vec![0.0; n]);
        let mut v = self.state.v_t.take().unwrap_or_else(|| vec![0.0; n]);
        let k = self.coefficients(ctx.round);
        let optimizer = self.optimizer;

        // Disjoint coordinate chunks: each coordinate's arithmetic is fixed.
        current
            .par_chunks_mut(PAR_CHUNK)
            .zip(m.par_chunks_mut(PAR_CHUNK))
            .zip(v.par_chunks_mut(PAR_CHUNK))
            .zip(avg.par_chunks(PAR_CHUNK))
            .for_each(|(((x, m), v), avg)| {
                for (((x, m), v), &a) in x.iter_mut().zip(m).zip(v).zip(avg) {
                    step(optimizer, k, x, m, v, a);
                }
            });

        self.state = FedOptState {
            last_round: Some(ctx.round),
            m_t: Some(m),
            v_t: Some(v),
        };
        ctx.output(&current)
    }

    fn abort_round(&mut self) {
        self.round = None;
    }
}

/// One coordinate of the server optimiser step, in Flower's operation order.
#[inline]
fn step(opt: ServerOptimizer, k: Coefficients, x: &mut f32, m: &mut f32, v: &mut f32, avg: f32) {
    let delta = avg - *x;
    *m = k.beta_1 * *m + k.one_minus_beta_1 * delta;
    let d2 = delta * delta;
    *v = match opt {
        ServerOptimizer::Adagrad => *v + d2,
        ServerOptimizer::Adam => k.beta_2 * *v + k.one_minus_beta_2 * d2,
        ServerOptimizer::Yogi => *v - k.one_minus_beta_2 * d2 * sign(*v - d2),
    };
    *x += k.eta * *m / (v.sqrt() + k.tau);
}

/// NumPy's `sign`: 0 at 0 (Rust's `signum` gives ±1).
#[inline]
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}
