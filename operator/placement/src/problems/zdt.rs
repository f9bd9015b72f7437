//! ZDT1, ZDT2, ZDT3 and ZDT6 (Zitzler, Deb & Thiele 2000), as in pymoo:
//! all variables in `[0, 1]`, 30 of them by default (10 for ZDT6). The
//! fronts are reached with `x_2..x_n = 0`, where `g = 1`.

use std::f64::consts::PI;

use super::{TestProblem, linspace};
use crate::error::PlacementError;
use crate::problem::{Problem, Variable};

/// `n_var` variables in `[0, 1]`; ZDT needs at least two.
fn unit_box(n_var: usize) -> Result<Vec<Variable>, PlacementError> {
    if n_var < 2 {
        return Err(PlacementError::InvalidTestProblem {
            reason: "ZDT problems need at least 2 variables",
        });
    }
    Ok(vec![Variable::real(0.0, 1.0); n_var])
}

/// `sum(x_2..x_n) / (n - 1)`, the mean of the distance variables.
fn tail_mean(x: &[f64]) -> f64 {
    x[1..].iter().sum::<f64>() / (x.len() - 1) as f64
}

macro_rules! zdt {
    ($(#[$doc:meta])* $name:ident, $label:literal, $default_vars:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            variables: Vec<Variable>,
        }

        impl $name {
            /// The problem with `n_var` variables (at least 2).
            pub fn new(n_var: usize) -> Result<Self, PlacementError> {
                Ok(Self {
                    variables: unit_box(n_var)?,
                })
            }
        }

        impl Default for $name {
            /// pymoo's default size.
            fn default() -> Self {
                Self {
                    variables: vec![Variable::real(0.0, 1.0); $default_vars],
                }
            }
        }

        impl $name {
            /// pymoo's name.
            pub const NAME: &'static str = $label;
        }
    };
}

zdt!(
    /// ZDT1: convex front `f2 = 1 - sqrt(f1)`, `f1` in `[0, 1]`.
    Zdt1, "zdt1", 30
);
zdt!(
    /// ZDT2: concave front `f2 = 1 - f1²`, `f1` in `[0, 1]`.
    Zdt2, "zdt2", 30
);
zdt!(
    /// ZDT3: front in five disconnected pieces of
    /// `f2 = 1 - sqrt(f1) - f1·sin(10π·f1)`.
    Zdt3, "zdt3", 30
);
zdt!(
    /// ZDT6: non-uniform density, front `f2 = 1 - f1²` for `f1` in
    /// `[0.2807753191, 1]`.
    Zdt6, "zdt6", 10
);

impl Problem for Zdt1 {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], _g: &mut [f64]) {
        let g = 1.0 + 9.0 * tail_mean(x);
        f[0] = x[0];
        f[1] = g * (1.0 - (f[0] / g).sqrt());
    }
}

impl TestProblem for Zdt1 {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    /// `n_points` with `f1` evenly spaced, as pymoo.
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        linspace(0.0, 1.0, n_points)
            .into_iter()
            .map(|f1| vec![f1, 1.0 - f1.sqrt()])
            .collect()
    }
}

impl Problem for Zdt2 {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], _g: &mut [f64]) {
        let g = 1.0 + 9.0 * tail_mean(x);
        f[0] = x[0];
        let r = f[0] / g;
        f[1] = g * (1.0 - r * r);
    }
}

impl TestProblem for Zdt2 {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    /// `n_points` with `f1` evenly spaced, as pymoo.
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        linspace(0.0, 1.0, n_points)
            .into_iter()
            .map(|f1| vec![f1, 1.0 - f1 * f1])
            .collect()
    }
}

/// The `f1` intervals of ZDT3's five front pieces (pymoo's values).
const ZDT3_REGIONS: [(f64, f64); 5] = [
    (0.0, 0.0830015349),
    (0.182228780, 0.2577623634),
    (0.4093136748, 0.4538821041),
    (0.6183967944, 0.6525117038),
    (0.8233317983, 0.8518328654),
];

fn zdt3_front_f2(f1: f64) -> f64 {
    1.0 - f1.sqrt() - f1 * libm::sin(10.0 * PI * f1)
}

impl Problem for Zdt3 {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], _g: &mut [f64]) {
        let g = 1.0 + 9.0 * tail_mean(x);
        f[0] = x[0];
        let r = f[0] / g;
        f[1] = g * (1.0 - r.sqrt() - r * libm::sin(10.0 * PI * f[0]));
    }
}

impl TestProblem for Zdt3 {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    /// `n_points` spread over the five pieces (pymoo gives each
    /// `n_points / 5`; here the remainder goes to the first pieces).
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        let pieces = ZDT3_REGIONS.len();
        ZDT3_REGIONS
            .iter()
            .enumerate()
            .flat_map(|(i, &(lo, hi))| {
                let count = n_points / pieces + usize::from(i < n_points % pieces);
                linspace(lo, hi, count)
            })
            .map(|f1| vec![f1, zdt3_front_f2(f1)])
            .collect()
    }
}

/// Where ZDT6's front begins: the smallest `f1` reachable.
const ZDT6_F1_MIN: f64 = 0.2807753191;

impl Problem for Zdt6 {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }
    fn n_objectives(&self) -> usize {
        2
    }
    fn evaluate(&self, x: &[f64], f: &mut [f64], _g: &mut [f64]) {
        let s = libm::sin(6.0 * PI * x[0]);
        f[0] = 1.0 - libm::exp(-4.0 * x[0]) * libm::pow(s, 6.0);
        let g = 1.0 + 9.0 * libm::pow(tail_mean(x), 0.25);
        let r = f[0] / g;
        f[1] = g * (1.0 - r * r);
    }
}

impl TestProblem for Zdt6 {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    /// `n_points` with `f1` evenly spaced over `[0.2807753191, 1]`, as pymoo.
    fn pareto_front(&self, n_points: usize) -> Vec<Vec<f64>> {
        linspace(ZDT6_F1_MIN, 1.0, n_points)
            .into_iter()
            .map(|f1| vec![f1, 1.0 - f1 * f1])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::evaluate;

    fn objectives(p: &impl Problem, x: Vec<f64>) -> Vec<f64> {
        evaluate(p, x).objectives
    }

    #[test]
    fn optimal_points_lie_on_the_front() {
        let mut x = vec![0.0; 30];
        x[0] = 0.25;
        assert_eq!(objectives(&Zdt1::default(), x.clone()), vec![0.25, 0.5]);
        assert_eq!(objectives(&Zdt2::default(), x.clone()), vec![0.25, 0.9375]);
        let f = objectives(&Zdt3::default(), x);
        assert!((f[1] - zdt3_front_f2(0.25)).abs() < 1e-15);
        let f = objectives(&Zdt6::default(), vec![0.0; 10]);
        assert_eq!(f, vec![1.0, 0.0]);
    }

    #[test]
    fn worst_distance_variables_give_g_of_ten() {
        // x_2..x_n = 1 → g = 10 for every ZDT; with x1 = 0, f2 = g.
        let mut x = vec![1.0; 30];
        x[0] = 0.0;
        assert_eq!(objectives(&Zdt1::default(), x.clone())[1], 10.0);
        assert_eq!(objectives(&Zdt2::default(), x)[1], 10.0);
    }

    #[test]
    fn sizes_follow_pymoo_and_bad_sizes_are_refused() {
        assert_eq!(Zdt1::default().variables().len(), 30);
        assert_eq!(Zdt6::default().variables().len(), 10);
        assert_eq!(Zdt3::new(5).map(|p| p.variables().len()), Ok(5));
        assert!(Zdt2::new(1).is_err());
        assert_eq!(Zdt3::default().pareto_front(100).len(), 100);
        assert_eq!(Zdt3::default().pareto_front(7).len(), 7);
        assert_eq!(Zdt6::default().pareto_front(3)[0][0], ZDT6_F1_MIN);
    }
}
