//! Standard test problems with known Pareto fronts, defined as in pymoo
//! (variable counts, bounds, constraint scaling) so results can be compared
//! with it directly.

mod constrained;
mod dtlz;
mod zdt;

pub use constrained::{Bnh, Osy, Tnk};
pub use dtlz::Dtlz2;
pub use zdt::{Zdt1, Zdt2, Zdt3, Zdt6};

use crate::pareto::non_dominated_indices;
use crate::problem::Problem;

/// A problem whose true Pareto front is known.
pub trait TestProblem: Problem {
    /// pymoo's name for the problem, e.g. `"zdt1"`.
    fn name(&self) -> &'static str;

    /// Points of the true Pareto front in objective space: exactly
    /// `n_points` for the two-objective problems with an analytic front
    /// (ZDT, BNH), about `n_points` for the others (each says how).
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>>;
}

/// `n` evenly spaced values from `start` to `end` inclusive (numpy's
/// `linspace`).
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => (0..n)
            .map(|i| {
                if i == n - 1 {
                    end
                } else {
                    start + (end - start) * i as f64 / (n - 1) as f64
                }
            })
            .collect(),
    }
}

/// The non-dominated points of a dense sample, sorted by the first
/// objective and thinned evenly to at most `n` points (ends kept).
pub(crate) fn thin_front(points: Vec<Vec<f64>>, n: usize) -> Vec<Vec<f64>> {
    let rows: Vec<&[f64]> = points.iter().map(Vec::as_slice).collect();
    let mut kept = vec![false; points.len()];
    for i in non_dominated_indices(&rows) {
        kept[i] = true;
    }
    let mut front: Vec<Vec<f64>> = points
        .into_iter()
        .zip(kept)
        .filter_map(|(p, k)| k.then_some(p))
        .collect();
    front.sort_by(|a, b| crate::pareto::lex_cmp(a, b));
    front.dedup();
    if front.len() <= n || n <= 1 {
        front.truncate(n);
        return front;
    }
    let last = front.len() - 1;
    (0..n)
        .map(|i| front[(i * last + (n - 1) / 2) / (n - 1)].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        assert_eq!(linspace(0.0, 1.0, 0), Vec::<f64>::new());
        assert_eq!(linspace(2.0, 3.0, 1), vec![2.0]);
        assert_eq!(linspace(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn thinning_keeps_ends_and_count() {
        let pts: Vec<Vec<f64>> = (0..101).map(|i| vec![i as f64, 100.0 - i as f64]).collect();
        let thin = thin_front(pts, 11);
        assert_eq!(thin.len(), 11);
        assert_eq!(thin[0], vec![0.0, 100.0]);
        assert_eq!(thin[10], vec![100.0, 0.0]);
        assert_eq!(thin[5], vec![50.0, 50.0]);
    }
}
