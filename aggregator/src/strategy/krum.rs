//! Krum and multi-Krum (Blanchard et al., 2017), as Flower's `Krum` and
//! `aggregate_krum`.
//!
//! Each update's score is the sum of squared L2 distances to its
//! `max(1, n − f − 2)` nearest other updates. Krum returns the update with the
//! lowest score; multi-Krum returns the example-weighted mean of the `m`
//! lowest-scoring ones. Flower does not require `n ≥ 2f + 3`, and neither does
//! this rule: with fewer updates it still runs but its guarantee does not hold.
//! A FederatedJob cannot ask for fewer: the API server requires
//! `minPerRound ≥ 2 · byzantine + 3` for Krum and MultiKrum.

use rayon::prelude::*;

use super::StrategyError;
use super::buffer::{Buffered, BufferedRound, RobustRule};
use super::sum::WeightedSum;
use crate::model::Model;

/// The Krum rule (`num_selected == 0`) or multi-Krum (`num_selected == m > 0`).
#[derive(Debug, Clone, Copy)]
pub struct KrumRule {
    num_byzantine: usize,
    num_selected: usize,
}

impl KrumRule {
    /// Krum tolerating `num_byzantine` (f) bad updates, averaging the best
    /// `num_selected` (m; 0 = plain Krum).
    pub fn new(num_byzantine: usize, num_selected: usize) -> Self {
        Self {
            num_byzantine,
            num_selected,
        }
    }
}

/// Krum or multi-Krum over buffered updates.
pub type Krum = Buffered<KrumRule>;

impl Krum {
    /// Krum tolerating `num_byzantine` (f) bad updates, averaging the best
    /// `num_selected` (m; 0 = plain Krum), buffering up to `max_buffered_bytes`.
    pub fn new(num_byzantine: usize, num_selected: usize, max_buffered_bytes: u64) -> Self {
        Self::with_rule(
            KrumRule::new(num_byzantine, num_selected),
            max_buffered_bytes,
        )
    }

    /// f.
    pub fn num_byzantine(&self) -> usize {
        self.rule().num_byzantine
    }

    /// m (0 = Krum).
    pub fn num_selected(&self) -> usize {
        self.rule().num_selected
    }
}

/// Squared distance, summed sequentially in f64 so it is order-stable.
fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum()
}

/// Krum score of every update (lower is more central).
pub(crate) fn krum_scores(updates: &[Vec<f32>], num_byzantine: usize) -> Vec<f64> {
    let n = updates.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    // Pairs in parallel, each distance sequential: deterministic.
    let dists: Vec<f64> = pairs
        .par_iter()
        .map(|&(i, j)| squared_distance(&updates[i], &updates[j]))
        .collect();
    let mut matrix = vec![vec![0f64; n]; n];
    for (&(i, j), &d) in pairs.iter().zip(&dists) {
        matrix[i][j] = d;
        matrix[j][i] = d;
    }
    let closest = n
        .saturating_sub(num_byzantine)
        .saturating_sub(2)
        .max(1)
        .min(n.saturating_sub(1));
    matrix
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut others: Vec<f64> = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &d)| d)
                .collect();
            others.sort_unstable_by(f64::total_cmp);
            others.iter().take(closest).sum()
        })
        .collect()
}

/// Indices of the `k` lowest scores, ties broken by index.
pub(crate) fn best_indices(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

impl RobustRule for KrumRule {
    fn name(&self) -> &'static str {
        if self.num_selected > 0 {
            "MultiKrum"
        } else {
            "Krum"
        }
    }

    fn combine(&self, round: &BufferedRound) -> Result<Model, StrategyError> {
        let updates = round.buffer.updates();
        let scores = krum_scores(updates, self.num_byzantine);
        if self.num_selected == 0 {
            let best = best_indices(&scores, 1);
            let flat = best.first().and_then(|&i| updates.get(i));
            return round.ctx.output(flat.map_or(&[][..], Vec::as_slice));
        }
        let mut chosen = best_indices(&scores, self.num_selected);
        // Sum in index order so the result does not depend on score ties.
        chosen.sort_unstable();
        let mut sum = WeightedSum::new(&round.ctx.spec);
        for i in chosen {
            if let (Some(u), Some(&n)) = (updates.get(i), round.buffer.examples().get(i)) {
                sum.add_flat(u, n);
            }
        }
        let mean = sum.into_mean().ok_or(StrategyError::NoUpdates {
            round: round.ctx.round,
        })?;
        round.ctx.output(&mean)
    }
}
