//! FedAvg (McMahan et al., 2017), streaming; FedProx shares it, because the
//! proximal term only changes local training on the participants.

use super::sum::WeightedSum;
use super::{RoundCtx, Strategy, StrategyError};
use crate::model::{Model, ModelView};

/// Example-weighted mean of the updates, folded in as they arrive.
///
/// Memory: one f32 accumulator the size of the model, whatever the number of
/// participants.
#[derive(Debug, Default)]
pub struct FedAvg {
    proximal_mu: Option<f64>,
    round: Option<(RoundCtx, WeightedSum)>,
}

impl FedAvg {
    /// Plain FedAvg.
    pub fn new() -> Self {
        Self::default()
    }

    /// FedProx: FedAvg on the server; `mu` is for the participants' loss.
    pub fn prox(mu: f64) -> Self {
        Self {
            proximal_mu: Some(mu),
            round: None,
        }
    }

    /// The FedProx proximal coefficient, if this is FedProx.
    pub fn proximal_mu(&self) -> Option<f64> {
        self.proximal_mu
    }
}

impl Strategy for FedAvg {
    fn name(&self) -> &'static str {
        if self.proximal_mu.is_some() {
            "FedProx"
        } else {
            "FedAvg"
        }
    }

    fn begin_round(&mut self, round: u64, global: &Model) -> Result<(), StrategyError> {
        let sum = WeightedSum::new(global.spec().total_elements());
        self.round = Some((RoundCtx::new(round, global), sum));
        Ok(())
    }

    fn accept(&mut self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError> {
        let (ctx, sum) = self.round.as_mut().ok_or(StrategyError::NoRound)?;
        ctx.check(update, num_examples)?;
        sum.add_view(update, num_examples);
        Ok(())
    }

    fn accept_batch(&mut self, updates: &[(&ModelView<'_>, u64)]) -> Result<(), StrategyError> {
        let (ctx, sum) = self.round.as_mut().ok_or(StrategyError::NoRound)?;
        for (u, n) in updates {
            ctx.check(u, *n)?;
        }
        sum.add_views(updates);
        Ok(())
    }

    fn accepted(&self) -> usize {
        self.round.as_ref().map_or(0, |(_, s)| s.count())
    }

    fn buffered_bytes(&self) -> u64 {
        self.round.as_ref().map_or(0, |(_, s)| s.bytes())
    }

    fn max_updates(&self) -> Option<usize> {
        None
    }

    fn finish(&mut self) -> Result<Model, StrategyError> {
        let (ctx, sum) = self.round.take().ok_or(StrategyError::NoRound)?;
        let mean = sum
            .into_mean()
            .ok_or(StrategyError::NoUpdates { round: ctx.round })?;
        ctx.output(&mean)
    }

    fn abort_round(&mut self) {
        self.round = None;
    }
}
