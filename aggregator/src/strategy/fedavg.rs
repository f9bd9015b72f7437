//! FedAvg (McMahan et al., 2017), streaming; FedProx shares it, because the
//! proximal term only changes local training on the participants.

use super::sum::WeightedSum;
use super::{RoundCtx, Strategy, StrategyError};
use crate::model::{DType, Model, ModelView, TensorData};

/// Example-weighted mean of the updates, folded in as they arrive.
///
/// Memory: one f32 accumulator the size of the model, whatever the number of
/// participants. The accumulator becomes the new model's f32 tensors without
/// a copy; [`Strategy::recycle`] hands the replaced model's vectors back as
/// the next round's accumulator, so warm rounds allocate nothing.
#[derive(Debug, Default)]
pub struct FedAvg {
    proximal_mu: Option<f64>,
    round: Option<(RoundCtx, WeightedSum)>,
    /// Vectors for the next round's accumulator, by tensor position.
    spare: Vec<Vec<f32>>,
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
            ..Self::default()
        }
    }

    /// The FedProx proximal coefficient, if this is FedProx.
    pub fn proximal_mu(&self) -> Option<f64> {
        self.proximal_mu
    }

    /// Aggregates a round whose updates are all in memory and whose data has
    /// not been scanned yet (headers, layouts and sizes checked), reading
    /// each update once: the fold, the division and the finiteness proof
    /// share one sweep ([`WeightedSum::into_mean_with`] on an empty sum).
    ///
    /// `Ok(None)` when that proves nothing — a coordinate came out NaN/±inf
    /// (a bad update, or an overflow), or updates were already accepted this
    /// round: nothing was accepted by this call, the round stays open (on
    /// the same buffers), and the caller scans the updates and goes the
    /// usual way ([`Strategy::accept_batch`], [`Strategy::finish`]).
    pub fn finish_unscanned(
        &mut self,
        updates: &[(&ModelView<'_>, u64)],
    ) -> Result<Option<Model>, StrategyError> {
        let (ctx, sum) = self.round.as_ref().ok_or(StrategyError::NoRound)?;
        for (u, n) in updates {
            ctx.check(u, *n)?;
        }
        if sum.count() != 0 || updates.is_empty() {
            return Ok(None);
        }
        let (ctx, sum) = self.round.take().ok_or(StrategyError::NoRound)?;
        match sum.into_mean_with(updates) {
            Some(mean) if mean.finite => self.output(ctx, mean.tensors).map(Some),
            not_proven => {
                let buffers = not_proven.map(|m| m.tensors).unwrap_or_default();
                let sum = WeightedSum::with_buffers(&ctx.spec, buffers);
                self.round = Some((ctx, sum));
                Ok(None)
            }
        }
    }

    /// [`Strategy::accept_batch`] then [`Strategy::finish`] with one pass
    /// over the accumulator fewer: the last updates are folded and the sum
    /// divided in the same sweep. On a refusal nothing of `last` is counted
    /// and the round stays open.
    pub fn finish_with(&mut self, last: &[(&ModelView<'_>, u64)]) -> Result<Model, StrategyError> {
        let (ctx, _) = self.round.as_ref().ok_or(StrategyError::NoRound)?;
        for (u, n) in last {
            ctx.check(u, *n)?;
        }
        let (ctx, sum) = self.round.take().ok_or(StrategyError::NoRound)?;
        let mean = sum
            .into_mean_with(last)
            .ok_or(StrategyError::NoUpdates { round: ctx.round })?;
        self.output(ctx, mean.tensors)
    }

    /// The new model from the mean's tensors; the f32 accumulators of
    /// narrower tensors are kept for the next round.
    fn output(&mut self, ctx: RoundCtx, mean: Vec<Vec<f32>>) -> Result<Model, StrategyError> {
        let mut spare = Vec::with_capacity(mean.len());
        let data = ctx
            .spec
            .tensors()
            .iter()
            .zip(mean)
            .map(|(t, v)| match t.dtype {
                DType::F32 => {
                    spare.push(Vec::new());
                    TensorData::F32(v)
                }
                // Narrower tensors are converted; their f32 accumulator stays.
                dtype => {
                    let out = TensorData::from_f32(dtype, &v);
                    spare.push(v);
                    out
                }
            })
            .collect();
        self.spare = spare;
        Model::from_data(ctx.spec, data).map_err(StrategyError::Model)
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
        if let Some((_, unfinished)) = self.round.take() {
            self.spare = unfinished.into_buffers();
        }
        let sum = WeightedSum::with_buffers(global.spec(), std::mem::take(&mut self.spare));
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
        self.finish_with(&[])
    }

    fn recycle(&mut self, model: Model) {
        let data = model.into_data();
        if self.spare.len() < data.len() {
            self.spare.resize_with(data.len(), Vec::new);
        }
        for (slot, d) in self.spare.iter_mut().zip(data) {
            if let TensorData::F32(v) = d
                && slot.is_empty()
            {
                *slot = v;
            }
        }
    }

    fn abort_round(&mut self) {
        if let Some((_, sum)) = self.round.take() {
            self.spare = sum.into_buffers();
        }
    }
}
