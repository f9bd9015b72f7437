//! Constrained two-objective problems BNH, TNK and OSY, as in pymoo
//! (bounds, and constraints scaled the same way, written `g(x) <= 0`).

use std::f64::consts::PI;

use super::{TestProblem, linspace, thin_front};
use crate::problem::{Problem, Variable, evaluate};

/// Samples per unit of each front parameter when building dense fronts.
const DENSE: usize = 20_000;

/// BNH (Binh & Korn 1997): 2 variables, `x1` in `[0, 5]`, `x2` in `[0, 3]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bnh {
    variables: [Variable; 2],
}

impl Default for Bnh {
    fn default() -> Self {
        Self {
            variables: [Variable::real(0.0, 5.0), Variable::real(0.0, 3.0)],
        }
    }
}

impl Problem for Bnh {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn n_constraints(&self) -> usize {
        2
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], g: &mut [f64]) {
        let (x1, x2) = (x[0], x[1]);
        f[0] = 4.0 * x1 * x1 + 4.0 * x2 * x2;
        f[1] = (x1 - 5.0) * (x1 - 5.0) + (x2 - 5.0) * (x2 - 5.0);
        g[0] = (1.0 / 25.0) * ((x1 - 5.0) * (x1 - 5.0) + x2 * x2 - 25.0);
        g[1] = -1.0 / 7.7 * ((x1 - 8.0) * (x1 - 8.0) + (x2 + 3.0) * (x2 + 3.0) - 7.7);
    }
}

impl TestProblem for Bnh {
    fn name(&self) -> &'static str {
        "bnh"
    }
    /// `n_points` as pymoo: `x1` evenly spaced in `[0, 5]`, `x2 = min(x1, 3)`.
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        linspace(0.0, 5.0, n_points)
            .into_iter()
            .map(|x1| evaluate(self, vec![x1, if x1 >= 3.0 { 3.0 } else { x1 }]).objectives)
            .collect()
    }
}

/// TNK (Tanaka 1995): 2 variables in `[0, π]` (pymoo bounds `x2` below by
/// `1e-30` so `x1 / x2` stays defined); the objectives are the variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Tnk {
    variables: [Variable; 2],
}

impl Default for Tnk {
    fn default() -> Self {
        Self {
            variables: [Variable::real(0.0, PI), Variable::real(1e-30, PI)],
        }
    }
}

impl Problem for Tnk {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn n_constraints(&self) -> usize {
        2
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], g: &mut [f64]) {
        let (x1, x2) = (x[0], x[1]);
        f[0] = x1;
        f[1] = x2;
        g[0] = -(x1 * x1 + x2 * x2 - 1.0 - 0.1 * libm::cos(16.0 * libm::atan(x1 / x2)));
        g[1] = 2.0 * ((x1 - 0.5) * (x1 - 0.5) + (x2 - 0.5) * (x2 - 0.5)) - 1.0;
    }
}

impl TestProblem for Tnk {
    fn name(&self) -> &'static str {
        "tnk"
    }
    /// The front lies on the wavy boundary of the first constraint,
    /// `r(φ)² = 1 + 0.1·cos(16φ)` with `x = r·(sin φ, cos φ)`: a dense sample
    /// of it, inside the second constraint, Pareto-filtered and thinned to
    /// at most `n_points`.
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        let dense = 4 * DENSE;
        let points = linspace(0.0, PI / 2.0, dense)
            .into_iter()
            .map(|phi| {
                let r = (1.0 + 0.1 * libm::cos(16.0 * phi)).sqrt();
                vec![r * libm::sin(phi), r * libm::cos(phi)]
            })
            .filter(|x| (x[0] - 0.5) * (x[0] - 0.5) + (x[1] - 0.5) * (x[1] - 0.5) <= 0.5)
            .collect();
        thin_front(points, n_points)
    }
}

/// OSY (Osyczka & Kundu 1995): 6 variables, bounds
/// `[0,10] [0,10] [1,5] [0,6] [1,5] [0,10]`, 6 constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct Osy {
    variables: [Variable; 6],
}

impl Default for Osy {
    fn default() -> Self {
        Self {
            variables: [
                Variable::real(0.0, 10.0),
                Variable::real(0.0, 10.0),
                Variable::real(1.0, 5.0),
                Variable::real(0.0, 6.0),
                Variable::real(1.0, 5.0),
                Variable::real(0.0, 10.0),
            ],
        }
    }
}

impl Problem for Osy {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn n_constraints(&self) -> usize {
        6
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], g: &mut [f64]) {
        let sq = |v: f64| v * v;
        f[0] = -(25.0 * sq(x[0] - 2.0)
            + sq(x[1] - 2.0)
            + sq(x[2] - 1.0)
            + sq(x[3] - 4.0)
            + sq(x[4] - 1.0));
        f[1] = x.iter().map(|&v| v * v).sum();
        // pymoo states C_i(x) >= 0 and hands the solver -C_i <= 0.
        g[0] = -((x[0] + x[1] - 2.0) / 2.0);
        g[1] = -((6.0 - x[0] - x[1]) / 6.0);
        g[2] = -((2.0 - x[1] + x[0]) / 2.0);
        g[3] = -((2.0 - x[0] + 3.0 * x[1]) / 4.0);
        g[4] = -((4.0 - sq(x[2] - 3.0) - x[3]) / 4.0);
        g[5] = -((sq(x[4] - 3.0) + x[5] - 4.0) / 4.0);
    }
}

impl TestProblem for Osy {
    fn name(&self) -> &'static str {
        "osy"
    }
    /// The five regions of Deb's description (all with `x4 = x6 = 0`):
    /// `x1 = 5, x2 = 1, x5 ∈ {1, 5}` with `x3` in `[1, 5]`;
    /// `x2 = (x1 - 2)/3, x3 = x5 = 1` with `x1` in `[4.056, 5]`;
    /// `x1 = 0, x2 = 2, x5 = 1` with `x3` in `[1, 3.732]`;
    /// `x2 = 2 - x1, x3 = x5 = 1` with `x1` in `[0, 1]`. Sampled densely
    /// (parameter ranges a little wider so no end is lost), kept where
    /// feasible up to rounding, Pareto-filtered and thinned to at most
    /// `n_points`.
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        let mut candidates: Vec<Vec<f64>> = Vec::new();
        for x3 in linspace(1.0, 5.0, DENSE) {
            candidates.push(vec![5.0, 1.0, x3, 0.0, 5.0, 0.0]);
            candidates.push(vec![5.0, 1.0, x3, 0.0, 1.0, 0.0]);
            candidates.push(vec![0.0, 2.0, x3, 0.0, 1.0, 0.0]);
        }
        for x1 in linspace(4.0, 5.0, DENSE) {
            candidates.push(vec![x1, (x1 - 2.0) / 3.0, 1.0, 0.0, 1.0, 0.0]);
        }
        for x1 in linspace(0.0, 1.0, DENSE) {
            candidates.push(vec![x1, 2.0 - x1, 1.0, 0.0, 1.0, 0.0]);
        }
        let points = candidates
            .into_iter()
            .map(|x| evaluate(self, x))
            .filter(|s| s.violation <= 1e-12)
            .map(|s| s.objectives)
            .collect();
        thin_front(points, n_points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bounds_follow_pymoo() {
        assert_eq!(Bnh::default().variables().len(), 2);
        assert_eq!(Tnk::default().variables().len(), 2);
        assert_eq!(Osy::default().variables().len(), 6);
        assert_eq!(Osy::default().n_constraints(), 6);
        assert_eq!(Bnh::default().pareto_front(100).len(), 100);
    }

    #[test]
    fn reference_front_points_are_feasible() {
        // Every BNH front point comes from a feasible decision vector.
        for x1 in linspace(0.0, 5.0, 50) {
            let s = evaluate(&Bnh::default(), vec![x1, x1.min(3.0)]);
            assert!(s.is_feasible(), "{s:?}");
        }
        // TNK's objectives are its variables: the front is on the boundary
        // of constraint 1, so feasible up to rounding.
        for f in Tnk::default().pareto_front(200) {
            let s = evaluate(&Tnk::default(), f);
            assert!(s.violation < 1e-9, "{s:?}");
        }
    }

    #[test]
    fn known_points() {
        // OSY at (5, 1, 1, 0, 1, 0): f1 = -(225 + 1 + 0 + 16 + 0), f2 = 25 + 1 + 1 + 1.
        let s = evaluate(&Osy::default(), vec![5.0, 1.0, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(s.objectives, vec![-242.0, 28.0]);
        assert!(s.is_feasible());
        // TNK at the origin: atan(0/1e-30) = 0, so g1 = 1.1 > 0.
        let s = evaluate(&Tnk::default(), vec![0.0, 1e-30]);
        assert!(!s.is_feasible());
    }
}
