//! Coordinate-wise trimmed mean (Yin et al., 2018), as Flower's `FedTrimmedAvg`.

use super::buffer::BufferedRound;
use super::{Strategy, StrategyError};
use crate::model::{Model, ModelView};

/// Per coordinate, the mean after dropping the `⌊beta·n⌋` smallest and largest
/// values (scipy's `trim_mean`). Example counts are ignored.
#[derive(Debug)]
pub struct TrimmedMean {
    beta: f64,
    max_buffered_bytes: u64,
    round: Option<BufferedRound>,
}

impl TrimmedMean {
    /// Trimmed mean cutting `beta` ∈ [0, 0.5) from each end.
    pub fn new(beta: f64, max_buffered_bytes: u64) -> Result<Self, StrategyError> {
        if !(0.0..0.5).contains(&beta) {
            return Err(StrategyError::InvalidConfig {
                field: "beta",
                problem: format!("must be in [0, 0.5), got {beta}"),
            });
        }
        Ok(Self {
            beta,
            max_buffered_bytes,
            round: None,
        })
    }

    /// Fraction cut from each end.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The configured buffer bound.
    pub fn max_buffered_bytes(&self) -> u64 {
        self.max_buffered_bytes
    }
}

/// Mean of `values` without the `cut` smallest and `cut` largest (reorders in place).
pub(crate) fn trimmed_mean(values: &mut [f32], cut: usize) -> f32 {
    values.sort_unstable_by(f32::total_cmp);
    let kept = values
        .get(cut..values.len().saturating_sub(cut))
        .unwrap_or(&[]);
    if kept.is_empty() {
        return 0.0;
    }
    kept.iter().sum::<f32>() / kept.len() as f32
}

impl Strategy for TrimmedMean {
    fn name(&self) -> &'static str {
        "TrimmedMean"
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
        // beta < 0.5 keeps at least one value: n − 2⌊beta·n⌋ ≥ 1.
        let cut = (self.beta * round.buffer.len() as f64).floor() as usize;
        round
            .ctx
            .output(&round.coordinatewise(|v| trimmed_mean(v, cut)))
    }

    fn abort_round(&mut self) {
        self.round = None;
    }
}
