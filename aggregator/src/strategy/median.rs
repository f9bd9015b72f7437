//! Coordinate-wise median (Yin et al., 2018), as Flower's `FedMedian`.

use super::buffer::BufferedRound;
use super::{Strategy, StrategyError};
use crate::model::{Model, ModelView};

/// Per coordinate, the median of the updates (mean of the two middle values
/// for an even count, like `numpy.median`). Example counts are ignored.
#[derive(Debug)]
pub struct FedMedian {
    max_buffered_bytes: u64,
    round: Option<BufferedRound>,
}

impl FedMedian {
    /// Median with updates buffered up to `max_buffered_bytes`.
    pub fn new(max_buffered_bytes: u64) -> Self {
        Self {
            max_buffered_bytes,
            round: None,
        }
    }

    /// The configured buffer bound.
    pub fn max_buffered_bytes(&self) -> u64 {
        self.max_buffered_bytes
    }
}

/// Median of `values` (reordered in place); NaN-free input is guaranteed by
/// validation, `total_cmp` keeps the order total regardless.
pub(crate) fn median(values: &mut [f32]) -> f32 {
    values.sort_unstable_by(f32::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl Strategy for FedMedian {
    fn name(&self) -> &'static str {
        "FedMedian"
    }

    fn begin_round(&mut self, round: u64, global: &Model) -> Result<(), StrategyError> {
        self.round = Some(BufferedRound::new(round, global, self.max_buffered_bytes));
        Ok(())
    }

    fn accept(&mut self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError> {
        self.round
            .as_mut()
            .ok_or(StrategyError::NoRound)?
            .accept(update, num_examples)
    }

    fn accepted(&self) -> usize {
        self.round.as_ref().map_or(0, |r| r.buffer.len())
    }

    fn buffered_bytes(&self) -> u64 {
        self.round.as_ref().map_or(0, |r| r.buffer.bytes())
    }

    fn max_updates(&self) -> Option<usize> {
        self.round.as_ref().map(|r| r.buffer.capacity())
    }

    fn finish(&mut self) -> Result<Model, StrategyError> {
        let round = self.round.take().ok_or(StrategyError::NoRound)?;
        round.require_updates()?;
        round.ctx.output(&round.coordinatewise(median))
    }

    fn abort_round(&mut self) {
        self.round = None;
    }
}
