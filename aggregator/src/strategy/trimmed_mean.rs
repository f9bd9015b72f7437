//! Coordinate-wise trimmed mean (Yin et al., 2018), as Flower's `FedTrimmedAvg`.

use super::StrategyError;
use super::buffer::{Buffered, BufferedRound, RobustRule};
use crate::model::Model;

/// The trimmed-mean rule: per coordinate, the mean after dropping the
/// `⌊beta·n⌋` smallest and largest values (scipy's `trim_mean`). Example
/// counts are ignored.
#[derive(Debug, Clone, Copy)]
pub struct TrimmedMeanRule {
    beta: f64,
}

impl TrimmedMeanRule {
    /// Cuts `beta` ∈ [0, 0.5) from each end.
    pub fn new(beta: f64) -> Result<Self, StrategyError> {
        if !(0.0..0.5).contains(&beta) {
            return Err(StrategyError::InvalidConfig {
                field: "beta",
                problem: format!("must be in [0, 0.5), got {beta}"),
            });
        }
        Ok(Self { beta })
    }

    /// Fraction cut from each end.
    pub fn beta(&self) -> f64 {
        self.beta
    }
}

/// Coordinate-wise trimmed mean over buffered updates.
pub type TrimmedMean = Buffered<TrimmedMeanRule>;

impl TrimmedMean {
    /// Trimmed mean cutting `beta` ∈ [0, 0.5) from each end.
    pub fn new(beta: f64, max_buffered_bytes: u64) -> Result<Self, StrategyError> {
        Ok(Self::with_rule(
            TrimmedMeanRule::new(beta)?,
            max_buffered_bytes,
        ))
    }

    /// Fraction cut from each end.
    pub fn beta(&self) -> f64 {
        self.rule().beta()
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

impl RobustRule for TrimmedMeanRule {
    fn name(&self) -> &'static str {
        "TrimmedMean"
    }

    fn combine(&self, round: &BufferedRound) -> Result<Model, StrategyError> {
        // beta < 0.5 keeps at least one value: n − 2⌊beta·n⌋ ≥ 1.
        let cut = (self.beta * round.buffer.len() as f64).floor() as usize;
        round
            .ctx
            .output(&round.coordinatewise(|v| trimmed_mean(v, cut)))
    }
}
