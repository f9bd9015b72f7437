//! Exact solver for fully categorical problems: evaluate every candidate.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::PlacementError;
use crate::pareto::best_front;
use crate::problem::{Problem, Solution, Variable, candidate_count, evaluate, validate};

/// Default largest space the exact solver enumerates.
pub const DEFAULT_EXACT_LIMIT: u64 = 1_000_000;

/// Candidates evaluated per parallel task. Chunks are fixed by index, not by
/// thread, so the merged result does not depend on the thread count.
const CHUNK: u64 = 4096;

/// What the exact solver found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExactResult {
    /// The true Pareto front of the feasible candidates, sorted by
    /// objectives; when none is feasible, the non-dominated candidates among
    /// those of least violation.
    pub front: Vec<Solution>,
    /// Candidates evaluated (the whole space).
    pub evaluations: u64,
}

/// Enumerates and evaluates every candidate of a fully categorical problem
/// whose space holds at most `max_candidates` points.
pub fn exact<P: Problem + ?Sized>(
    problem: &P,
    max_candidates: u64,
) -> Result<ExactResult, PlacementError> {
    validate(problem)?;
    let variables = problem.variables();
    let total = candidate_count(variables)?;
    let total = match total {
        Some(t) if t <= u128::from(max_candidates) => t as u64,
        _ => {
            return Err(PlacementError::SpaceTooLarge {
                candidates: total,
                limit: max_candidates,
            });
        }
    };
    let radices: Vec<usize> = variables
        .iter()
        .map(|v| match *v {
            Variable::Categorical { choices } => choices,
            // candidate_count has refused real variables already.
            Variable::Real { .. } => 1,
        })
        .collect();

    let chunks = total.div_ceil(CHUNK);
    let partial: Vec<Vec<Solution>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let start = c * CHUNK;
            let end = (start + CHUNK).min(total);
            chunk_front(problem, &radices, start, end)
        })
        .collect();
    Ok(ExactResult {
        front: best_front(partial.into_iter().flatten().collect()),
        evaluations: total,
    })
}

/// The reported front of candidates `start..end`. Merging chunk fronts and
/// taking the front again gives the front of the whole space, because a
/// point dropped inside its chunk is dominated (or out-violated) there.
fn chunk_front(
    problem: &(impl Problem + ?Sized),
    radices: &[usize],
    start: u64,
    end: u64,
) -> Vec<Solution> {
    let mut digits = decode(start, radices);
    let mut solutions = Vec::with_capacity((end - start) as usize);
    for _ in start..end {
        let x: Vec<f64> = digits.iter().map(|&d| d as f64).collect();
        solutions.push(evaluate(problem, x));
        increment(&mut digits, radices);
    }
    best_front(solutions)
}

/// Mixed-radix digits of `index`, first variable most significant, so the
/// enumeration runs in lexicographic order of the genes.
fn decode(mut index: u64, radices: &[usize]) -> Vec<usize> {
    let mut digits = vec![0; radices.len()];
    for (digit, &radix) in digits.iter_mut().zip(radices).rev() {
        let r = radix as u64;
        *digit = (index % r) as usize;
        index /= r;
    }
    digits
}

fn increment(digits: &mut [usize], radices: &[usize]) {
    for (digit, &radix) in digits.iter_mut().zip(radices).rev() {
        *digit += 1;
        if *digit < radix {
            return;
        }
        *digit = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_and_increment_agree() {
        let radices = [3, 1, 4, 2];
        let mut digits = decode(0, &radices);
        for i in 0..24 {
            assert_eq!(digits, decode(i, &radices), "index {i}");
            increment(&mut digits, &radices);
        }
        assert_eq!(decode(23, &radices), vec![2, 0, 3, 1]);
    }
}
