//! NSGA-II (Deb et al. 2002) with Deb's constraint handling.
//!
//! One generation: binary tournaments on (rank, crowding) pick parents,
//! crossover and mutation make `population` children, the children are
//! evaluated (in parallel), and the best `population` of parents + children
//! survive by non-dominated rank, then crowding distance.
//!
//! All randomness comes from one `ChaCha8Rng` seeded from the settings and
//! is drawn on the calling thread in a fixed order; evaluation is the only
//! parallel step and its results do not depend on scheduling. So the same
//! problem and settings give the same front, bit for bit, on any machine and
//! any number of threads.

pub mod crowding;
mod operators;
pub mod sort;

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::PlacementError;
use crate::pareto::best_front;
use crate::problem::{Problem, Solution, Variable, evaluate_all, validate};

use self::crowding::crowding_distance;
use self::operators::{Variation, mate, tournament};
use self::sort::non_dominated_sort;

/// Largest population accepted; beyond it allocation, not search, dominates.
pub const MAX_POPULATION: usize = 1_000_000;

/// With duplicate elimination, give up filling the offspring after this many
/// matings per wanted child (the space may hold fewer distinct points).
const MATINGS_PER_CHILD: usize = 20;

/// NSGA-II settings. Defaults follow pymoo's NSGA2 (SBX `eta_c` 15 with
/// probability 0.9, polynomial mutation `eta_m` 20), with mutation
/// probability `1/n` per gene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Nsga2Settings {
    /// Individuals per generation, 4 to [`MAX_POPULATION`]. An odd size is
    /// fine: the last mating's second child is dropped.
    pub population: usize,
    /// Generations after the initial population.
    pub generations: usize,
    /// Seed of the `ChaCha8Rng` that drives every random choice.
    pub seed: u64,
    /// Probability that a pair of parents is recombined, in `[0, 1]`.
    pub crossover_prob: f64,
    /// Probability that each gene of a recombined pair is crossed (SBX) or
    /// swapped (categorical), in `[0, 1]`; pymoo's `prob_var`.
    pub crossover_variable_prob: f64,
    /// SBX distribution index `eta_c` (>= 0): larger keeps children closer
    /// to their parents.
    pub crossover_eta: f64,
    /// Polynomial mutation distribution index `eta_m` (>= 0).
    pub mutation_eta: f64,
    /// Per-gene mutation probability in `[0, 1]`; `None` means `1/n`.
    pub mutation_prob: Option<f64>,
    /// Reject children identical to a current individual or to a sibling, so
    /// no evaluation is spent twice on one point (useful for categorical
    /// spaces; rarely triggers for real ones).
    pub eliminate_duplicates: bool,
}

impl Default for Nsga2Settings {
    fn default() -> Self {
        Self {
            population: 100,
            generations: 250,
            seed: 1,
            crossover_prob: 0.9,
            crossover_variable_prob: 0.5,
            crossover_eta: 15.0,
            mutation_eta: 20.0,
            mutation_prob: None,
            eliminate_duplicates: true,
        }
    }
}

impl Nsga2Settings {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), PlacementError> {
        if !(4..=MAX_POPULATION).contains(&self.population) {
            return Err(PlacementError::InvalidSettings {
                field: "population",
                value: self.population.to_string(),
                expected: "between 4 and 1,000,000",
            });
        }
        let probabilities = [
            ("crossover_prob", Some(self.crossover_prob)),
            (
                "crossover_variable_prob",
                Some(self.crossover_variable_prob),
            ),
            ("mutation_prob", self.mutation_prob),
        ];
        for (field, value) in probabilities {
            if let Some(p) = value
                && !(0.0..=1.0).contains(&p)
            {
                return Err(PlacementError::InvalidSettings {
                    field,
                    value: p.to_string(),
                    expected: "a probability in [0, 1]",
                });
            }
        }
        for (field, eta) in [
            ("crossover_eta", self.crossover_eta),
            ("mutation_eta", self.mutation_eta),
        ] {
            if !(eta.is_finite() && eta >= 0.0) {
                return Err(PlacementError::InvalidSettings {
                    field,
                    value: eta.to_string(),
                    expected: "a finite distribution index >= 0",
                });
            }
        }
        Ok(())
    }
}

/// What an NSGA-II run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nsga2Result {
    /// The final population's first front without duplicate points, sorted
    /// by objectives. When no individual is feasible: the non-dominated
    /// ones among those of least violation.
    pub front: Vec<Solution>,
    /// Objective evaluations spent.
    pub evaluations: u64,
    /// Generations run.
    pub generations: usize,
}

/// Runs NSGA-II on `problem`.
pub fn nsga2<P: Problem + ?Sized>(
    problem: &P,
    settings: &Nsga2Settings,
) -> Result<Nsga2Result, PlacementError> {
    validate(problem)?;
    settings.validate()?;
    let variables = problem.variables();
    let n = settings.population;
    let op = Variation {
        crossover_prob: settings.crossover_prob,
        crossover_variable_prob: settings.crossover_variable_prob,
        eta_c: settings.crossover_eta,
        eta_m: settings.mutation_eta,
        mutation_prob: settings
            .mutation_prob
            .unwrap_or(1.0 / variables.len() as f64),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);

    let repair = |x: &mut Vec<f64>| problem.repair(x);
    let initial = initial_points(
        variables,
        n,
        settings.eliminate_duplicates,
        &mut rng,
        &repair,
    );
    let mut evaluations = initial.len() as u64;
    let mut population = Ranked::survive(evaluate_all(problem, initial), n);

    for _ in 0..settings.generations {
        let children = population.offspring(variables, &op, n, settings, &mut rng, &repair);
        evaluations += children.len() as u64;
        let mut merged = std::mem::take(&mut population.members);
        merged.extend(evaluate_all(problem, children));
        population = Ranked::survive(merged, n);
    }

    Ok(Nsga2Result {
        front: best_front(population.members),
        evaluations,
        generations: settings.generations,
    })
}

/// A population with each member's front rank and crowding distance.
#[derive(Debug)]
struct Ranked {
    members: Vec<Solution>,
    rank: Vec<usize>,
    crowding: Vec<f64>,
}

impl Ranked {
    /// Keeps the best `n` by (rank, crowding); ties in crowding go to the
    /// lower index, so the choice is deterministic.
    fn survive(merged: Vec<Solution>, n: usize) -> Self {
        let rows: Vec<&[f64]> = merged.iter().map(|s| s.objectives.as_slice()).collect();
        let violations: Vec<f64> = merged.iter().map(|s| s.violation).collect();
        let mut chosen: Vec<(usize, usize, f64)> = Vec::with_capacity(n.min(merged.len()));
        for (rank, front) in non_dominated_sort(&rows, &violations).iter().enumerate() {
            let room = n - chosen.len();
            if room == 0 {
                break;
            }
            let distance = crowding_distance(&rows, front);
            let mut positions: Vec<usize> = (0..front.len()).collect();
            if front.len() > room {
                positions.sort_by(|&a, &b| {
                    distance[b]
                        .total_cmp(&distance[a])
                        .then(front[a].cmp(&front[b]))
                });
                positions.truncate(room);
            }
            chosen.extend(positions.iter().map(|&p| (front[p], rank, distance[p])));
        }

        let mut slots: Vec<Option<Solution>> = merged.into_iter().map(Some).collect();
        let mut members = Vec::with_capacity(chosen.len());
        let mut rank = Vec::with_capacity(chosen.len());
        let mut crowding = Vec::with_capacity(chosen.len());
        for (index, r, d) in chosen {
            // Fronts partition the indices, so each slot is taken once.
            if let Some(solution) = slots[index].take() {
                members.push(solution);
                rank.push(r);
                crowding.push(d);
            }
        }
        Self {
            members,
            rank,
            crowding,
        }
    }

    /// Up to `n` children by tournament selection and variation.
    fn offspring(
        &self,
        variables: &[Variable],
        op: &Variation,
        n: usize,
        settings: &Nsga2Settings,
        rng: &mut ChaCha8Rng,
        repair: &impl Fn(&mut Vec<f64>),
    ) -> Vec<Vec<f64>> {
        let size = self.members.len();
        let mut seen: Option<Seen> = settings.eliminate_duplicates.then(|| {
            let mut seen = Seen::default();
            for member in &self.members {
                seen.hashes.insert(hash(&member.variables));
            }
            seen
        });
        // Competitors come from shuffled permutations, as in Deb's and
        // pymoo's tournaments, so every individual competes about equally.
        let mut pool: Vec<usize> = Vec::new();
        let mut draw = |rng: &mut ChaCha8Rng| {
            if pool.is_empty() {
                pool = permutation(size, rng);
            }
            pool.pop().unwrap_or(0)
        };

        let mut children = Vec::with_capacity(n);
        let max_matings = if seen.is_some() {
            MATINGS_PER_CHILD * n
        } else {
            n.div_ceil(2)
        };
        for _ in 0..max_matings {
            if children.len() >= n {
                break;
            }
            let (a, b) = (draw(rng), draw(rng));
            let first = tournament(a, b, &self.rank, &self.crowding, rng);
            let (a, b) = (draw(rng), draw(rng));
            let second = tournament(a, b, &self.rank, &self.crowding, rng);
            let (c1, c2) = mate(
                &self.members[first].variables,
                &self.members[second].variables,
                variables,
                op,
                rng,
            );
            for mut child in [c1, c2] {
                repair(&mut child);
                let fresh = seen.as_mut().is_none_or(|s| {
                    s.is_new(
                        &child,
                        self.members.iter().map(|m| m.variables.as_slice()),
                        &children,
                    )
                });
                if fresh && children.len() < n {
                    children.push(child);
                }
            }
        }
        children
    }
}

/// `n` random points (fewer when duplicates are eliminated and the space is
/// too small to hold `n` distinct ones).
fn initial_points(
    variables: &[Variable],
    n: usize,
    eliminate_duplicates: bool,
    rng: &mut ChaCha8Rng,
    repair: &impl Fn(&mut Vec<f64>),
) -> Vec<Vec<f64>> {
    let mut seen = Seen::default();
    let mut points = Vec::with_capacity(n);
    let draws = if eliminate_duplicates {
        MATINGS_PER_CHILD * n
    } else {
        n
    };
    for _ in 0..draws {
        if points.len() >= n {
            break;
        }
        let mut x: Vec<f64> = variables.iter().map(|v| sample(v, rng)).collect();
        repair(&mut x);
        if !eliminate_duplicates || seen.is_new(&x, std::iter::empty(), &points) {
            points.push(x);
        }
    }
    points
}

fn sample(variable: &Variable, rng: &mut ChaCha8Rng) -> f64 {
    match *variable {
        Variable::Real { lower, upper } => lower + rng.random::<f64>() * (upper - lower),
        Variable::Categorical { choices } => rng.random_range(0..choices) as f64,
    }
}

/// Fisher–Yates with our own draws, so the order never depends on how a
/// library version implements shuffling.
fn permutation(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
    p
}

/// Points already present, for duplicate elimination: a set of 64-bit
/// hashes, with an exact comparison only when a hash is seen again. Exact
/// keys per point cost an allocation each, which dominated NSGA-II's run
/// time; hashes alone could drop a point on a collision. This keeps the
/// exact semantics of "identical genes" at the cost of a scan on repeats.
#[derive(Debug, Default)]
struct Seen {
    hashes: BTreeSet<u64>,
}

impl Seen {
    /// Whether `x` is identical to none of `earlier` and `others`, recording
    /// it either way.
    fn is_new<'a>(
        &mut self,
        x: &[f64],
        earlier: impl Iterator<Item = &'a [f64]>,
        others: &[Vec<f64>],
    ) -> bool {
        if self.hashes.insert(hash(x)) {
            return true;
        }
        let same = |y: &[f64]| same_point(x, y);
        !(others.iter().any(|y| same(y)) || earlier.into_iter().any(same))
    }
}

/// Whether two points have identical genes; `-0.0` and `0.0` are the same.
fn same_point(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x + 0.0).to_bits() == (y + 0.0).to_bits())
}

/// A word-at-a-time multiplicative hash (FxHash's) of the genes' bits
/// (`-0.0` as `0.0`): fixed, so the same on every machine, and one multiply
/// per gene.
fn hash(x: &[f64]) -> u64 {
    let mut h: u64 = 0;
    for v in x {
        h = (h.rotate_left(5) ^ (v + 0.0).to_bits()).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h
}
