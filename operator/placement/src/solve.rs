//! Choosing a solver: exact enumeration when the space is small and fully
//! categorical, NSGA-II otherwise.

use serde::{Deserialize, Serialize};

use crate::error::PlacementError;
use crate::exact::{DEFAULT_EXACT_LIMIT, exact};
use crate::format::{count, space_size};
use crate::nsga2::{Nsga2Settings, nsga2};
use crate::problem::{Problem, Solution, candidate_count, validate};

/// Which solver to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SolverChoice {
    /// Exact when every variable is categorical and the space holds at most
    /// `threshold` candidates; NSGA-II with `nsga2` otherwise.
    Auto {
        /// Largest space to enumerate.
        threshold: u64,
        /// Settings for the NSGA-II fallback.
        nsga2: Nsga2Settings,
    },
    /// Enumerate; fail if the space is not categorical or holds more than
    /// `max_candidates`.
    Exact {
        /// Largest space to enumerate.
        max_candidates: u64,
    },
    /// NSGA-II with these settings.
    Nsga2(Nsga2Settings),
}

impl Default for SolverChoice {
    /// `Auto` with [`DEFAULT_EXACT_LIMIT`] and default NSGA-II settings.
    fn default() -> Self {
        Self::Auto {
            threshold: DEFAULT_EXACT_LIMIT,
            nsga2: Nsga2Settings::default(),
        }
    }
}

/// The solver that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SolverKind {
    /// Exhaustive enumeration.
    Exact,
    /// NSGA-II.
    Nsga2,
}

/// A solved problem and how it was solved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Solved {
    /// The solver that ran.
    pub solver: SolverKind,
    /// Why it was chosen, e.g. `exact: 6,912 candidates <= threshold 1,000,000`.
    pub reason: String,
    /// The front, sorted by objectives: the non-dominated feasible points
    /// (exact: the true Pareto front), or, when none is feasible, the
    /// non-dominated points among those of least violation.
    pub front: Vec<Solution>,
    /// Objective evaluations spent.
    pub evaluations: u64,
    /// NSGA-II generations run; 0 for the exact solver.
    pub generations: usize,
}

impl Solved {
    /// Whether the front holds feasible points (then all of them are).
    pub fn feasible(&self) -> bool {
        self.front.iter().any(Solution::is_feasible)
    }
}

/// Solves `problem` with the chosen solver.
pub fn solve<P: Problem + ?Sized>(
    problem: &P,
    choice: &SolverChoice,
) -> Result<Solved, PlacementError> {
    validate(problem)?;
    match choice {
        SolverChoice::Nsga2(settings) => run_nsga2(problem, settings, "nsga2: requested".into()),
        SolverChoice::Exact { max_candidates } => {
            let candidates = candidate_count(problem.variables())?;
            let reason = format!(
                "exact: requested, {} candidates <= limit {}",
                space_size(candidates),
                count(u128::from(*max_candidates))
            );
            run_exact(problem, *max_candidates, reason)
        }
        SolverChoice::Auto { threshold, nsga2 } => match candidate_count(problem.variables()) {
            Err(PlacementError::NotCategorical { index }) => run_nsga2(
                problem,
                nsga2,
                format!("nsga2: variable {index} is real, so the space cannot be enumerated"),
            ),
            Err(other) => Err(other),
            Ok(Some(n)) if n <= u128::from(*threshold) => run_exact(
                problem,
                *threshold,
                format!(
                    "exact: {} candidates <= threshold {}",
                    count(n),
                    count(u128::from(*threshold))
                ),
            ),
            Ok(n) => run_nsga2(
                problem,
                nsga2,
                format!(
                    "nsga2: {} candidates > threshold {}",
                    space_size(n),
                    count(u128::from(*threshold))
                ),
            ),
        },
    }
}

fn run_exact<P: Problem + ?Sized>(
    problem: &P,
    limit: u64,
    reason: String,
) -> Result<Solved, PlacementError> {
    let result = exact(problem, limit)?;
    Ok(Solved {
        solver: SolverKind::Exact,
        reason,
        front: result.front,
        evaluations: result.evaluations,
        generations: 0,
    })
}

fn run_nsga2<P: Problem + ?Sized>(
    problem: &P,
    settings: &Nsga2Settings,
    reason: String,
) -> Result<Solved, PlacementError> {
    let result = nsga2(problem, settings)?;
    Ok(Solved {
        solver: SolverKind::Nsga2,
        reason,
        front: result.front,
        evaluations: result.evaluations,
        generations: result.generations,
    })
}
