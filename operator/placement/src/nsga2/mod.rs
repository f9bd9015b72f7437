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
//!
//! A generation allocates nothing: individuals live in flat buffers that
//! are reused, and sorting works on integer keys (`population`). The
//! public [`sort::non_dominated_sort`] and [`crowding::crowding_distance`]
//! are the textbook versions the loop's own are tested against.

pub mod crowding;
mod operators;
mod population;
pub mod sort;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::PlacementError;
use crate::pareto::best_front;
use crate::problem::{Problem, Solution, Variable, validate};

use self::operators::{Operators, Variation, mate_into, tournament};
use self::population::{Rows, Survival};

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
    let ops = Operators::new(Variation {
        crossover_prob: settings.crossover_prob,
        crossover_variable_prob: settings.crossover_variable_prob,
        eta_c: settings.crossover_eta,
        eta_m: settings.mutation_eta,
        mutation_prob: settings
            .mutation_prob
            .unwrap_or(1.0 / variables.len() as f64),
    });
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let (nv, m, k) = (
        variables.len(),
        problem.n_objectives(),
        problem.n_constraints(),
    );

    // Parents and children share one buffer (children appended, rows
    // `len..`); the survivors go to the other, and the two swap.
    let mut merged = Rows::new(nv, m, k, 2 * n);
    let mut next = Rows::new(nv, m, k, 2 * n);
    let mut survival = Survival::default();
    let mut state = Breeding::new(nv, n);

    state.initial_points(
        problem,
        &mut merged,
        n,
        settings.eliminate_duplicates,
        &mut rng,
    );
    let mut evaluations = merged.len() as u64;
    merged.evaluate_from(problem, 0);
    let mut ranked = Ranked::default();
    ranked.survive(&merged, &mut next, &mut survival, n);
    std::mem::swap(&mut merged, &mut next);

    for _ in 0..settings.generations {
        let parents = merged.len();
        state.offspring(problem, &mut merged, &ranked, &ops, n, settings, &mut rng);
        evaluations += (merged.len() - parents) as u64;
        merged.evaluate_from(problem, parents);
        ranked.survive(&merged, &mut next, &mut survival, n);
        std::mem::swap(&mut merged, &mut next);
    }

    let members = (0..merged.len())
        .map(|i| Solution {
            variables: merged.genes(i).to_vec(),
            objectives: merged.objectives(i).to_vec(),
            constraints: merged.constraints(i).to_vec(),
            violation: merged.violation(i),
        })
        .collect();
    Ok(Nsga2Result {
        front: best_front(members),
        evaluations,
        generations: settings.generations,
    })
}

/// Front rank and crowding distance of each member of the current
/// population (same order as its rows).
#[derive(Debug, Default)]
struct Ranked {
    rank: Vec<usize>,
    crowding: Vec<f64>,
}

impl Ranked {
    /// Keeps the best `n` of `merged` by (rank, crowding) in `next`; ties in
    /// crowding go to the lower index, so the choice is deterministic.
    fn survive(&mut self, merged: &Rows, next: &mut Rows, survival: &mut Survival, n: usize) {
        survival.select(merged, n);
        next.clear();
        self.rank.clear();
        self.crowding.clear();
        // Fronts partition the indices, so each row is taken once.
        for &(index, rank, distance) in &survival.chosen {
            next.push_from(merged, index as usize);
            self.rank.push(rank as usize);
            self.crowding.push(distance);
        }
    }
}

/// The buffers of making children, reused across generations.
#[derive(Debug)]
struct Breeding {
    /// Points already present, for duplicate elimination.
    seen: Seen,
    /// The tournament's current permutation, drawn from the back.
    pool: Vec<usize>,
    /// The two children of one mating.
    child_a: Vec<f64>,
    child_b: Vec<f64>,
}

impl Breeding {
    fn new(nv: usize, n: usize) -> Self {
        Self {
            seen: Seen::with_capacity(2 * n),
            pool: Vec::with_capacity(n),
            child_a: vec![0.0; nv],
            child_b: vec![0.0; nv],
        }
    }

    /// `n` random points appended to `rows` (fewer when duplicates are
    /// eliminated and the space is too small to hold `n` distinct ones).
    fn initial_points<P: Problem + ?Sized>(
        &mut self,
        problem: &P,
        rows: &mut Rows,
        n: usize,
        eliminate_duplicates: bool,
        rng: &mut ChaCha8Rng,
    ) {
        let variables = problem.variables();
        self.seen.clear();
        let draws = if eliminate_duplicates {
            MATINGS_PER_CHILD * n
        } else {
            n
        };
        for _ in 0..draws {
            if rows.len() >= n {
                break;
            }
            for (x, v) in self.child_a.iter_mut().zip(variables) {
                *x = sample(v, rng);
            }
            problem.repair(&mut self.child_a);
            if !eliminate_duplicates || self.seen.is_new(&self.child_a, rows, 0) {
                rows.push(&self.child_a);
            }
        }
    }

    /// Up to `n` children by tournament selection and variation, appended
    /// to `rows` after its `parents` members.
    #[allow(clippy::too_many_arguments)]
    fn offspring<P: Problem + ?Sized>(
        &mut self,
        problem: &P,
        rows: &mut Rows,
        ranked: &Ranked,
        ops: &Operators,
        n: usize,
        settings: &Nsga2Settings,
        rng: &mut ChaCha8Rng,
    ) {
        let variables = problem.variables();
        let size = rows.len();
        let dedup = settings.eliminate_duplicates;
        if dedup {
            self.seen.clear();
            for i in 0..size {
                self.seen.insert(hash(rows.genes(i)));
            }
        }
        // Competitors come from shuffled permutations, as in Deb's and
        // pymoo's tournaments, so every individual competes about equally.
        let pool = &mut self.pool;
        pool.clear();
        let mut draw = |rng: &mut ChaCha8Rng| {
            if pool.is_empty() {
                permutation(size, rng, pool);
            }
            pool.pop().unwrap_or(0)
        };

        let max_matings = if dedup {
            MATINGS_PER_CHILD * n
        } else {
            n.div_ceil(2)
        };
        let mut children = 0;
        for _ in 0..max_matings {
            if children >= n {
                break;
            }
            let (a, b) = (draw(rng), draw(rng));
            let first = tournament(a, b, &ranked.rank, &ranked.crowding, rng);
            let (a, b) = (draw(rng), draw(rng));
            let second = tournament(a, b, &ranked.rank, &ranked.crowding, rng);
            mate_into(
                rows.genes(first),
                rows.genes(second),
                &mut self.child_a,
                &mut self.child_b,
                variables,
                ops,
                rng,
            );
            for child in [&mut self.child_a, &mut self.child_b] {
                problem.repair(child);
                let fresh = !dedup || self.seen.is_new(child, rows, 0);
                if fresh && children < n {
                    rows.push(child);
                    children += 1;
                }
            }
        }
    }
}

fn sample(variable: &Variable, rng: &mut ChaCha8Rng) -> f64 {
    match *variable {
        Variable::Real { lower, upper } => lower + rng.random::<f64>() * (upper - lower),
        Variable::Categorical { choices } => rng.random_range(0..choices) as f64,
    }
}

/// Fisher–Yates with our own draws into `p`, so the order never depends on
/// how a library version implements shuffling.
fn permutation(n: usize, rng: &mut ChaCha8Rng, p: &mut Vec<usize>) {
    p.clear();
    p.extend(0..n);
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
}

/// Points already present, for duplicate elimination: a set of 64-bit
/// hashes, with an exact comparison only when a hash is seen again. Exact
/// keys per point cost an allocation each; hashes alone could drop a point
/// on a collision. This keeps the exact semantics of "identical genes" at
/// the cost of a scan on repeats.
///
/// The set is open addressing over a power-of-two table that is cleared,
/// not freed, between generations: a tree or a std `HashSet` allocated
/// nodes or rehashed every generation.
#[derive(Debug)]
struct Seen {
    /// Hashes, `EMPTY` where free.
    slots: Vec<u64>,
    /// Whether the hash `EMPTY` itself is in the set.
    has_empty: bool,
    /// Occupied slots.
    len: usize,
}

/// The free-slot marker; a point hashing to it is tracked by `has_empty`.
const EMPTY: u64 = 0;

impl Seen {
    fn with_capacity(n: usize) -> Self {
        Self {
            slots: vec![EMPTY; (4 * n.max(4)).next_power_of_two()],
            has_empty: false,
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.has_empty = false;
        self.len = 0;
    }

    /// Adds `h`; true when it was not there.
    fn insert(&mut self, h: u64) -> bool {
        if h == EMPTY {
            return !std::mem::replace(&mut self.has_empty, true);
        }
        // At most half full, so probes stay short.
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        // The hash's high bits are its best mixed (a multiply came last).
        let mut i = (h >> 32) as usize & mask;
        loop {
            match self.slots[i] {
                EMPTY => {
                    self.slots[i] = h;
                    self.len += 1;
                    return true;
                }
                existing if existing == h => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; 2 * self.slots.len()];
        let old = std::mem::replace(&mut self.slots, bigger);
        self.len = 0;
        for h in old.into_iter().filter(|&h| h != EMPTY) {
            self.insert(h);
        }
    }

    /// Whether `x` is identical to none of the individuals of `rows` from
    /// `from` on, recording its hash either way.
    fn is_new(&mut self, x: &[f64], rows: &Rows, from: usize) -> bool {
        if self.insert(hash(x)) {
            return true;
        }
        !(from..rows.len()).any(|i| same_point(x, rows.genes(i)))
    }
}

/// Whether two points have identical genes; `-0.0` and `0.0` are the same.
fn same_point(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x + 0.0).to_bits() == (y + 0.0).to_bits())
}

/// A hash of the genes' bits (`-0.0` as `0.0`) for [`Seen`]: four
/// independent multiply chains over the genes (FxHash's step), mixed at the
/// end, so the multiplies overlap instead of waiting on one another. Which
/// hash is used changes no result: a repeated hash is always confirmed by
/// comparing the genes, so it only decides how often that happens.
fn hash(x: &[f64]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, v: f64| (h.rotate_left(5) ^ (v + 0.0).to_bits()).wrapping_mul(K);
    let (mut h0, mut h1, mut h2, mut h3) = (0u64, 1u64, 2u64, 3u64);
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        h0 = step(h0, c[0]);
        h1 = step(h1, c[1]);
        h2 = step(h2, c[2]);
        h3 = step(h3, c[3]);
    }
    for &v in chunks.remainder() {
        h0 = step(h0, v);
    }
    let mut h = (x.len() as u64).wrapping_mul(K);
    for lane in [h0, h1, h2, h3] {
        h = (h.rotate_left(23) ^ lane).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_is_a_set() {
        let mut seen = Seen::with_capacity(1);
        for h in [5u64, 0, 1 << 40, 5, 0, 7, (1 << 40) + 1] {
            let _ = seen.insert(h);
        }
        assert_eq!(seen.len, 4);
        assert!(seen.has_empty);
        for h in 100..1000u64 {
            assert!(seen.insert(h.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
        for h in 100..1000u64 {
            assert!(!seen.insert(h.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
        assert!(!seen.insert(0));
        seen.clear();
        assert!(seen.insert(0) && seen.insert(5));
    }
}
