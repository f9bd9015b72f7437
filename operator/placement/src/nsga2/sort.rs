//! Non-dominated sorting under Deb's constrained domination.
//!
//! [`non_dominated_sort`] is the one NSGA-II uses: Efficient Non-dominated
//! Sort with sequential search (ENS-SS, Zhang et al. 2015) on the feasible
//! points, then one front per distinct violation for the infeasible ones
//! (under constrained domination they form a chain ordered by violation).
//! [`reference_sort`] is Deb's plain `O(M·N²)` algorithm, kept to test that
//! both give the same fronts. NSGA-II's generation loop runs an equivalent
//! on its flat buffers (with a Fenwick-tree dominance query for three
//! objectives), tested to give the same fronts as these.

use std::cmp::Ordering;

use crate::pareto::{constrained_dominates, dominates, lex_order};

/// Fronts of the points, best first; each front lists indices in ascending
/// order. `objectives[i]` and `violations[i]` describe point `i`.
pub fn non_dominated_sort(objectives: &[&[f64]], violations: &[f64]) -> Vec<Vec<usize>> {
    let feasible: Vec<usize> = (0..objectives.len())
        .filter(|&i| is_feasible(violations[i]))
        .collect();
    let feasible_rows: Vec<&[f64]> = feasible.iter().map(|&i| objectives[i]).collect();

    let mut fronts: Vec<Vec<usize>> = Vec::new();
    // Two objectives: a front's members, in lexicographic order, have
    // non-increasing second objectives, so if any member dominates a later
    // point the last one does (one that dominated it while the last did not
    // would dominate the last too). One comparison per front instead of one
    // per member.
    let two_objectives = feasible_rows
        .iter()
        .all(|r| r.len() == 2 && !r.iter().any(|v| v.is_nan()));
    // ENS-SS: in lexicographic order a point can only be dominated by points
    // before it, so it joins the first front holding none that dominates it.
    for local in lex_order(&feasible_rows) {
        let row = feasible_rows[local];
        let target = fronts.iter().position(|front| {
            if two_objectives {
                return front
                    .last()
                    .is_none_or(|&last| !dominates(feasible_rows[last], row));
            }
            // The newest members are the closest in order, so the likeliest
            // dominators: check them first.
            !front
                .iter()
                .rev()
                .any(|&other| dominates(feasible_rows[other], row))
        });
        match target {
            Some(k) => fronts[k].push(local),
            None => fronts.push(vec![local]),
        }
    }
    for front in &mut fronts {
        for local in front.iter_mut() {
            *local = feasible[*local];
        }
    }

    let mut infeasible: Vec<usize> = (0..objectives.len())
        .filter(|&i| !is_feasible(violations[i]))
        .collect();
    infeasible.sort_by(|&a, &b| violations[a].total_cmp(&violations[b]).then(a.cmp(&b)));
    let mut start = 0;
    while start < infeasible.len() {
        let v = violations[infeasible[start]];
        let mut end = start + 1;
        while end < infeasible.len() && violations[infeasible[end]].total_cmp(&v) == Ordering::Equal
        {
            end += 1;
        }
        fronts.push(infeasible[start..end].to_vec());
        start = end;
    }

    for front in &mut fronts {
        front.sort_unstable();
    }
    fronts
}

fn is_feasible(violation: f64) -> bool {
    violation <= 0.0
}

/// Deb's fast non-dominated sort with constrained domination, `O(M·N²)`.
/// Same output contract as [`non_dominated_sort`].
pub fn reference_sort(objectives: &[&[f64]], violations: &[f64]) -> Vec<Vec<usize>> {
    let n = objectives.len();
    let mut dominated_by_count = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for p in 0..n {
        for q in 0..n {
            if p == q {
                continue;
            }
            if constrained_dominates(objectives[p], violations[p], objectives[q], violations[q]) {
                dominates_list[p].push(q);
            } else if constrained_dominates(
                objectives[q],
                violations[q],
                objectives[p],
                violations[p],
            ) {
                dominated_by_count[p] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&p| dominated_by_count[p] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &p in &current {
            for &q in &dominates_list[p] {
                dominated_by_count[q] -= 1;
                if dominated_by_count[q] == 0 {
                    next.push(q);
                }
            }
        }
        current.sort_unstable();
        fronts.push(current);
        current = next;
    }
    fronts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn fast_sort_equals_reference_on_random_inputs() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for trial in 0..400 {
            let m = 1 + trial % 4;
            let n = rng.random_range(0..80);
            let grid = [3.0, 10.0, 1e6][trial % 3];
            let objs: Vec<Vec<f64>> = (0..n)
                .map(|_| {
                    (0..m)
                        .map(|_| (rng.random::<f64>() * grid).floor() - grid / 2.0)
                        .collect()
                })
                .collect();
            let violations: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..4) {
                    0 => (rng.random::<f64>() * 4.0).floor(),
                    1 => f64::INFINITY,
                    _ => 0.0,
                })
                .collect();
            let rows: Vec<&[f64]> = objs.iter().map(Vec::as_slice).collect();
            assert_eq!(
                non_dominated_sort(&rows, &violations),
                reference_sort(&rows, &violations),
                "trial {trial}"
            );
        }
    }

    #[test]
    fn known_fronts() {
        let objs = [
            vec![1.0, 4.0],
            vec![2.0, 3.0],
            vec![2.0, 5.0],
            vec![3.0, 4.0],
            vec![0.0, 0.0],
        ];
        let rows: Vec<&[f64]> = objs.iter().map(Vec::as_slice).collect();
        let violations = [0.0, 0.0, 0.0, 0.0, 2.0];
        assert_eq!(
            non_dominated_sort(&rows, &violations),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
    }

    #[test]
    fn empty_input() {
        assert!(non_dominated_sort(&[], &[]).is_empty());
        assert!(reference_sort(&[], &[]).is_empty());
    }
}
