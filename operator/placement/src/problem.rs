//! What an optimisation problem is: variables, objectives to minimise, constraints.

use serde::{Deserialize, Serialize};

use crate::error::PlacementError;

/// The domain of one decision variable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Variable {
    /// A real number in `[lower, upper]`.
    Real {
        /// Smallest allowed value.
        lower: f64,
        /// Largest allowed value.
        upper: f64,
    },
    /// One of `choices` options (an integer or a category). The gene holds the
    /// option's index `0..choices` as an exact integer-valued `f64`; read it
    /// with [`choice`].
    Categorical {
        /// Number of options; at least 1.
        choices: usize,
    },
}

impl Variable {
    /// A real variable in `[lower, upper]`.
    pub fn real(lower: f64, upper: f64) -> Self {
        Self::Real { lower, upper }
    }

    /// A categorical variable with `choices` options.
    pub fn categorical(choices: usize) -> Self {
        Self::Categorical { choices }
    }

    /// Whether the variable is categorical.
    pub fn is_categorical(&self) -> bool {
        matches!(self, Self::Categorical { .. })
    }
}

/// The option index held by a categorical gene.
///
/// Genes produced by the solvers are exact integers in `0..choices`, so this
/// conversion is lossless for them; a negative or NaN value maps to 0.
pub fn choice(gene: f64) -> usize {
    // `as` saturates and maps NaN to 0, which is what a defensive read wants.
    gene as usize
}

/// A multi-objective problem: all objectives are minimised, and constraint
/// `j` is satisfied when `g_j(x) <= 0`.
///
/// `evaluate` must be a pure function of `x`: the solvers call it from
/// several threads and rely on it returning the same values every time.
pub trait Problem: Sync {
    /// The decision variables, in gene order.
    fn variables(&self) -> &[Variable];

    /// Number of objectives `m`.
    fn n_objectives(&self) -> usize;

    /// Number of inequality constraints `k`.
    fn n_constraints(&self) -> usize {
        0
    }

    /// Writes the `m` objective values and the `k` constraint values of `x`.
    /// Both slices arrive with the declared lengths.
    fn evaluate(&self, x: &[f64], objectives: &mut [f64], constraints: &mut [f64]);

    /// Moves a new point `x` to one that is at least as good in every
    /// objective and constraint (a problem-specific local improvement).
    /// NSGA-II calls it on every point it creates, before duplicate
    /// elimination and evaluation; genes must stay within their domains.
    /// The default leaves `x` as it is. Must be deterministic.
    fn repair(&self, _x: &mut [f64]) {}
}

/// An evaluated point of the decision space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Solution {
    /// The genes, one per variable (categorical genes hold option indices).
    pub variables: Vec<f64>,
    /// The objective values (minimised).
    pub objectives: Vec<f64>,
    /// The raw constraint values, `g_j(x) <= 0` when satisfied.
    pub constraints: Vec<f64>,
    /// Total violation: the sum of `max(0, g_j)`; `+inf` when a constraint
    /// or an objective is NaN, so such points never look feasible.
    pub violation: f64,
}

impl Solution {
    /// Whether every constraint holds.
    pub fn is_feasible(&self) -> bool {
        self.violation <= 0.0
    }
}

/// Checks the problem's declaration before any solver touches it.
pub(crate) fn validate(problem: &(impl Problem + ?Sized)) -> Result<(), PlacementError> {
    let variables = problem.variables();
    if variables.is_empty() {
        return Err(PlacementError::NoVariables);
    }
    if problem.n_objectives() == 0 {
        return Err(PlacementError::NoObjectives);
    }
    for (index, variable) in variables.iter().enumerate() {
        match *variable {
            Variable::Real { lower, upper } => {
                if !(lower.is_finite() && upper.is_finite() && lower <= upper) {
                    return Err(PlacementError::InvalidBounds {
                        index,
                        lower,
                        upper,
                    });
                }
            }
            Variable::Categorical { choices: 0 } => {
                return Err(PlacementError::EmptySpace { index });
            }
            Variable::Categorical { .. } => {}
        }
    }
    Ok(())
}

/// Number of points of a fully categorical space: `Ok(None)` when the product
/// overflows `u128`, `Err` naming the first real variable otherwise.
pub fn candidate_count(variables: &[Variable]) -> Result<Option<u128>, PlacementError> {
    let mut total: Option<u128> = Some(1);
    for (index, variable) in variables.iter().enumerate() {
        match *variable {
            Variable::Real { .. } => return Err(PlacementError::NotCategorical { index }),
            Variable::Categorical { choices } => {
                // usize fits in u128 on every platform Rust supports.
                total = total.and_then(|t| t.checked_mul(choices as u128));
            }
        }
    }
    Ok(total)
}

/// Evaluates one point into a [`Solution`].
pub(crate) fn evaluate(problem: &(impl Problem + ?Sized), variables: Vec<f64>) -> Solution {
    let mut objectives = vec![0.0; problem.n_objectives()];
    let mut constraints = vec![0.0; problem.n_constraints()];
    problem.evaluate(&variables, &mut objectives, &mut constraints);
    let violation = total_violation(&objectives, &constraints);
    Solution {
        variables,
        objectives,
        constraints,
        violation,
    }
}

pub(crate) fn total_violation(objectives: &[f64], constraints: &[f64]) -> f64 {
    if objectives.iter().any(|f| f.is_nan()) {
        return f64::INFINITY;
    }
    let mut sum = 0.0;
    for &g in constraints {
        if g.is_nan() {
            return f64::INFINITY;
        }
        if g > 0.0 {
            sum += g;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_sums_positive_parts_and_poisons_nan() {
        assert_eq!(total_violation(&[1.0], &[-1.0, 0.5, 0.25]), 0.75);
        assert_eq!(total_violation(&[1.0], &[-1.0, 0.0]), 0.0);
        assert_eq!(total_violation(&[1.0], &[f64::NAN]), f64::INFINITY);
        assert_eq!(total_violation(&[f64::NAN], &[]), f64::INFINITY);
    }

    #[test]
    fn candidate_count_multiplies_and_detects_overflow() {
        let vars = [Variable::categorical(3), Variable::categorical(4)];
        assert_eq!(candidate_count(&vars), Ok(Some(12)));
        let huge = vec![Variable::categorical(usize::MAX); 3];
        assert_eq!(candidate_count(&huge), Ok(None));
        let mixed = [Variable::categorical(3), Variable::real(0.0, 1.0)];
        assert_eq!(
            candidate_count(&mixed),
            Err(PlacementError::NotCategorical { index: 1 })
        );
    }

    #[test]
    fn choice_reads_index_defensively() {
        assert_eq!(choice(3.0), 3);
        assert_eq!(choice(-1.0), 0);
        assert_eq!(choice(f64::NAN), 0);
    }
}
