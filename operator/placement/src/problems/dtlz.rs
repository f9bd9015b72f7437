//! DTLZ2 (Deb, Thiele, Laumanns & Zitzler 2002), as in pymoo: `n_var`
//! variables in `[0, 1]` (10 by default) and `n_obj` objectives (3 by
//! default); the front is the positive orthant of the unit sphere.

use std::f64::consts::FRAC_PI_2;

use super::TestProblem;
use crate::error::PlacementError;
use crate::problem::{Problem, Variable};

/// DTLZ2: spherical front `sum(f_i²) = 1`, `f_i >= 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dtlz2 {
    variables: Vec<Variable>,
    n_obj: usize,
}

impl Dtlz2 {
    /// pymoo's name.
    pub const NAME: &'static str = "dtlz2";

    /// DTLZ2 with `n_obj >= 2` objectives and `n_var >= n_obj` variables.
    pub fn new(n_var: usize, n_obj: usize) -> Result<Self, PlacementError> {
        if n_obj < 2 {
            return Err(PlacementError::InvalidTestProblem {
                reason: "DTLZ2 needs at least 2 objectives",
            });
        }
        if n_var < n_obj {
            return Err(PlacementError::InvalidTestProblem {
                reason: "DTLZ2 needs at least as many variables as objectives",
            });
        }
        Ok(Self {
            variables: vec![Variable::real(0.0, 1.0); n_var],
            n_obj,
        })
    }
}

impl Default for Dtlz2 {
    /// pymoo's default: 10 variables, 3 objectives.
    fn default() -> Self {
        Self {
            variables: vec![Variable::real(0.0, 1.0); 10],
            n_obj: 3,
        }
    }
}

impl Problem for Dtlz2 {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }

    fn n_objectives(&self) -> usize {
        self.n_obj
    }

    fn evaluate(&self, x: &[f64], f: &mut [f64], _g: &mut [f64]) {
        let m = self.n_obj;
        let (position, distance) = x.split_at(m - 1);
        let g: f64 = distance.iter().map(|v| (v - 0.5) * (v - 0.5)).sum();
        for (i, fi) in f.iter_mut().enumerate() {
            let mut value = 1.0 + g;
            for &xj in &position[..m - 1 - i] {
                value *= libm::cos(xj * FRAC_PI_2);
            }
            if i > 0 {
                value *= libm::sin(position[m - 1 - i] * FRAC_PI_2);
            }
            *fi = value;
        }
    }
}

impl TestProblem for Dtlz2 {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// A Das–Dennis lattice on the simplex projected onto the sphere (as
    /// pymoo does with reference directions): the largest lattice with at
    /// most `n_points` points (at least the `m` corners).
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        let m = self.n_obj;
        let mut partitions = 1;
        while lattice_size(partitions + 1, m).is_some_and(|s| s <= n_points) {
            partitions += 1;
        }
        let mut out = Vec::new();
        let mut current = Vec::with_capacity(m);
        das_dennis(partitions, m, &mut current, &mut out);
        for p in &mut out {
            let norm = p.iter().map(|v| v * v).sum::<f64>().sqrt();
            for v in p.iter_mut() {
                *v /= norm;
            }
        }
        out
    }
}

/// `C(p + m - 1, m - 1)`, the number of lattice points; `None` on overflow.
fn lattice_size(p: usize, m: usize) -> Option<usize> {
    let mut size: usize = 1;
    for k in 1..m {
        size = size.checked_mul(p + k)? / k;
    }
    Some(size)
}

/// All points with coordinates `k / p` (`k` integer) summing to 1.
fn das_dennis(left: usize, m: usize, current: &mut Vec<usize>, out: &mut Vec<Vec<f64>>) {
    if current.len() == m - 1 {
        let total: usize = current.iter().sum::<usize>() + left;
        let mut point: Vec<f64> = current.iter().map(|&k| k as f64 / total as f64).collect();
        point.push(left as f64 / total as f64);
        out.push(point);
        return;
    }
    for k in (0..=left).rev() {
        current.push(k);
        das_dennis(left - k, m, current, out);
        current.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::evaluate;

    #[test]
    fn optimal_points_lie_on_the_sphere() {
        let p = Dtlz2::default();
        let mut x = vec![0.5; 10];
        x[0] = 0.3;
        x[1] = 0.8;
        let f = evaluate(&p, x).objectives;
        let r: f64 = f.iter().map(|v| v * v).sum();
        assert!((r - 1.0).abs() < 1e-12);
        // x0 = 1 puts all weight on the last objective.
        let mut x = vec![0.5; 10];
        x[0] = 1.0;
        let f = evaluate(&p, x).objectives;
        assert!(f[0].abs() < 1e-15 && f[1].abs() < 1e-15 && (f[2] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn front_sampler_sizes() {
        let p = Dtlz2::default();
        assert_eq!(p.pareto_front(91).len(), 91);
        assert_eq!(p.pareto_front(100).len(), 91);
        assert_eq!(p.pareto_front(0).len(), 3);
        for q in p.pareto_front(100) {
            let r: f64 = q.iter().map(|v| v * v).sum();
            assert!((r - 1.0).abs() < 1e-12);
        }
        assert!(Dtlz2::new(2, 3).is_err());
        assert!(Dtlz2::new(5, 1).is_err());
    }
}
