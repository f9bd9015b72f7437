//! Coordinate-wise median (Yin et al., 2018), as Flower's `FedMedian`.

use super::StrategyError;
use super::buffer::{Buffered, BufferedRound, RobustRule};
use crate::model::Model;

/// The median rule: per coordinate, the median of the updates (mean of the
/// two middle values for an even count, like `numpy.median`). Example counts
/// are ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct MedianRule;

/// Coordinate-wise median over buffered updates.
pub type FedMedian = Buffered<MedianRule>;

impl FedMedian {
    /// Median with updates buffered up to `max_buffered_bytes`.
    pub fn new(max_buffered_bytes: u64) -> Self {
        Self::with_rule(MedianRule, max_buffered_bytes)
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

impl RobustRule for MedianRule {
    fn name(&self) -> &'static str {
        "FedMedian"
    }

    fn combine(&self, round: &BufferedRound) -> Result<Model, StrategyError> {
        round.ctx.output(&round.coordinatewise(median))
    }
}
