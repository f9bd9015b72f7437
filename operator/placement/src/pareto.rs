//! Pareto dominance and the non-dominated filter.

use std::cmp::Ordering;

use crate::error::PlacementError;
use crate::problem::Solution;

/// Whether `a` Pareto-dominates `b` under minimisation: no worse in every
/// objective and better in at least one. A NaN coordinate makes every
/// comparison false, so such a point neither dominates nor is dominated.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut strictly_better = false;
    for (x, y) in a.iter().zip(b) {
        match x.partial_cmp(y) {
            Some(Ordering::Less) => strictly_better = true,
            Some(Ordering::Equal) => {}
            // Worse, or NaN on either side: not dominating.
            Some(Ordering::Greater) | None => return false,
        }
    }
    strictly_better
}

/// Deb's constrained domination: a feasible point beats an infeasible one,
/// of two infeasible points the smaller violation wins, and two feasible
/// points compare by Pareto dominance.
pub fn constrained_dominates(a: &[f64], a_violation: f64, b: &[f64], b_violation: f64) -> bool {
    match (a_violation <= 0.0, b_violation <= 0.0) {
        (true, true) => dominates(a, b),
        (true, false) => true,
        (false, true) => false,
        (false, false) => a_violation < b_violation,
    }
}

/// Indices of the non-dominated points, in ascending (input) order.
///
/// Identical points do not dominate each other, so all copies of a
/// non-dominated point are kept. Runs in `O(N log N)` for two objectives and
/// `O(N log N + N·F·M)` otherwise (`F` the front size).
pub fn pareto_filter<P: AsRef<[f64]>>(points: &[P]) -> Result<Vec<usize>, PlacementError> {
    let Some(first) = points.first() else {
        return Ok(Vec::new());
    };
    let m = first.as_ref().len();
    for p in points {
        let got = p.as_ref().len();
        if got != m {
            return Err(PlacementError::DimensionMismatch {
                what: "a point",
                got,
                expected: m,
            });
        }
    }
    let rows: Vec<&[f64]> = points.iter().map(AsRef::as_ref).collect();
    Ok(non_dominated_indices(&rows))
}

/// [`pareto_filter`] for rows already known to share one length.
pub(crate) fn non_dominated_indices(rows: &[&[f64]]) -> Vec<usize> {
    let two_finite = rows
        .iter()
        .all(|r| r.len() == 2 && !r.iter().any(|v| v.is_nan()));
    let mut kept = if two_finite {
        first_front_2d(rows)
    } else {
        first_front_sorted(rows)
    };
    kept.sort_unstable();
    kept
}

/// The front a solver reports: the non-dominated feasible solutions, or, when
/// none is feasible, the non-dominated ones among those of least violation.
/// Duplicate points are dropped; the result is sorted by objectives, then
/// variables.
pub(crate) fn best_front(solutions: Vec<Solution>) -> Vec<Solution> {
    let candidates: Vec<Solution> = if solutions.iter().any(Solution::is_feasible) {
        solutions
            .into_iter()
            .filter(Solution::is_feasible)
            .collect()
    } else {
        let least = solutions
            .iter()
            .map(|s| s.violation)
            .min_by(f64::total_cmp)
            .unwrap_or(f64::INFINITY);
        solutions
            .into_iter()
            .filter(|s| s.violation.total_cmp(&least) == Ordering::Equal)
            .collect()
    };
    let rows: Vec<&[f64]> = candidates.iter().map(|s| s.objectives.as_slice()).collect();
    let keep = non_dominated_indices(&rows);
    let mut slots: Vec<Option<Solution>> = candidates.into_iter().map(Some).collect();
    let mut front: Vec<Solution> = keep.iter().filter_map(|&i| slots[i].take()).collect();
    front.sort_by(|a, b| {
        lex_cmp(&a.objectives, &b.objectives).then_with(|| lex_cmp(&a.variables, &b.variables))
    });
    // Sorting made identical points adjacent.
    front.dedup_by(|a, b| lex_cmp(&a.variables, &b.variables) == Ordering::Equal);
    front
}

/// Lexicographic order that agrees with dominance: if `a` dominates `b`
/// then `a` sorts before `b`. `-0.0` and `0.0` are equal numerically, so
/// they must be equal here too, which `total_cmp` alone would not give.
pub(crate) fn lex_cmp(a: &[f64], b: &[f64]) -> Ordering {
    for (&x, &y) in a.iter().zip(b) {
        let ord = (x + 0.0).total_cmp(&(y + 0.0));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Indices sorted lexicographically, ties by index so the order is total.
pub(crate) fn lex_order(rows: &[&[f64]]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&i, &j| lex_cmp(rows[i], rows[j]).then(i.cmp(&j)));
    order
}

/// Two objectives, no NaN: one sweep in lexicographic order.
fn first_front_2d(rows: &[&[f64]]) -> Vec<usize> {
    let order = lex_order(rows);
    let mut kept = Vec::new();
    // Smallest f2 among the points sorted before the current group of
    // identical points; a point is dominated exactly when that is <= its f2.
    let mut best_before = f64::INFINITY;
    let mut any_before = false;
    let mut start = 0;
    while start < order.len() {
        let head = rows[order[start]];
        let mut end = start + 1;
        while end < order.len() && lex_cmp(rows[order[end]], head) == Ordering::Equal {
            end += 1;
        }
        if !(any_before && best_before <= head[1]) {
            kept.extend_from_slice(&order[start..end]);
        }
        if !any_before || head[1] < best_before {
            best_before = head[1];
        }
        any_before = true;
        start = end;
    }
    kept
}

/// Any number of objectives: in lexicographic order no point can dominate
/// one sorted before it, and dominance is transitive, so comparing each
/// point with the kept ones alone is enough.
fn first_front_sorted(rows: &[&[f64]]) -> Vec<usize> {
    let mut kept: Vec<usize> = Vec::new();
    for i in lex_order(rows) {
        if !kept.iter().rev().any(|&k| dominates(rows[k], rows[i])) {
            kept.push(i);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn brute_force(points: &[Vec<f64>]) -> Vec<usize> {
        (0..points.len())
            .filter(|&i| !points.iter().any(|q| dominates(q, &points[i])))
            .collect()
    }

    #[test]
    fn dominance_basics() {
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
        assert!(!dominates(&[1.0, 4.0], &[2.0, 3.0]));
        assert!(!dominates(&[f64::NAN, 0.0], &[1.0, 1.0]));
        assert!(!dominates(&[0.0, 0.0], &[f64::NAN, 1.0]));
        assert!(dominates(&[0.0, 1.0], &[-0.0, 2.0]));
    }

    #[test]
    fn constrained_dominance_follows_deb() {
        assert!(constrained_dominates(&[9.0], 0.0, &[1.0], 0.5));
        assert!(!constrained_dominates(&[1.0], 0.5, &[9.0], 0.0));
        assert!(constrained_dominates(&[9.0], 0.1, &[1.0], 0.5));
        assert!(!constrained_dominates(&[1.0], 0.5, &[1.0], 0.5));
        assert!(constrained_dominates(&[1.0], 0.0, &[2.0], 0.0));
    }

    #[test]
    fn filter_keeps_duplicates_and_input_order() {
        let pts = vec![
            vec![2.0, 2.0],
            vec![1.0, 3.0],
            vec![2.0, 2.0],
            vec![3.0, 3.0],
            vec![3.0, 1.0],
            vec![1.0, 3.5],
        ];
        assert_eq!(pareto_filter(&pts), Ok(vec![0, 1, 2, 4]));
    }

    #[test]
    fn filter_handles_signed_zero() {
        let pts = vec![vec![-0.0, 2.0, 0.0], vec![0.0, 1.0, 0.0]];
        assert_eq!(pareto_filter(&pts), Ok(vec![1]));
        let pts2: Vec<Vec<f64>> = pts.iter().map(|p| p[..2].to_vec()).collect();
        assert_eq!(pareto_filter(&pts2), Ok(vec![1]));
    }

    #[test]
    fn filter_rejects_ragged_input() {
        let pts = vec![vec![1.0, 2.0], vec![1.0]];
        assert!(matches!(
            pareto_filter(&pts),
            Err(PlacementError::DimensionMismatch { got: 1, .. })
        ));
        let empty: Vec<Vec<f64>> = Vec::new();
        assert_eq!(pareto_filter(&empty), Ok(vec![]));
    }

    #[test]
    fn filter_equals_brute_force_on_random_points() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for trial in 0..300 {
            let m = 1 + trial % 4;
            let n = rng.random_range(0..60);
            // A coarse grid gives many ties and duplicates.
            let grid = if trial % 2 == 0 { 5.0 } else { 1000.0 };
            let pts: Vec<Vec<f64>> = (0..n)
                .map(|_| {
                    (0..m)
                        .map(|_| (rng.random::<f64>() * grid).floor())
                        .collect()
                })
                .collect();
            assert_eq!(pareto_filter(&pts), Ok(brute_force(&pts)), "trial {trial}");
        }
    }

    #[test]
    fn filter_with_nan_keeps_incomparable_points() {
        let pts = vec![vec![f64::NAN, 1.0], vec![1.0, 1.0], vec![2.0, 2.0]];
        assert_eq!(pareto_filter(&pts), Ok(brute_force(&pts)));
        assert_eq!(pareto_filter(&pts), Ok(vec![0, 1]));
    }
}
