//! Variation and selection operators, written after pymoo's so results can be
//! compared: SBX and polynomial mutation for real genes, uniform crossover and
//! random reset for categorical genes, binary tournament on (rank, crowding).
//!
//! Every random draw comes from the caller's generator in a fixed order, and
//! powers go through `libm`, so a seed gives the same bits on any platform.

use rand::Rng;

use crate::problem::{Variable, choice};

/// SBX does nothing to genes closer than this (pymoo's `eps`).
const SBX_EPS: f64 = 1.0e-14;

/// Parameters of the variation operators, resolved from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variation {
    /// Probability that a mating recombines at all.
    pub crossover_prob: f64,
    /// Per-gene probability of recombining a gene (SBX and uniform).
    pub crossover_variable_prob: f64,
    /// SBX distribution index.
    pub eta_c: f64,
    /// Polynomial mutation distribution index.
    pub eta_m: f64,
    /// Per-gene mutation probability.
    pub mutation_prob: f64,
}

/// `x^y` by [`Power`], for tests against `libm::pow`.
#[cfg(test)]
pub(crate) fn power(x: f64, y: f64) -> f64 {
    Power::new(y).apply(x)
}

/// `x^y` for one fixed `y` as the operators need it: the same bits on every
/// platform and several times faster than a general `pow`, which dominated
/// NSGA-II's run time. Integer exponents (`eta + 1` for the usual integer
/// `eta`) by repeated squaring, roots `1/2^k` by `k` square roots (both
/// IEEE-exact steps), other roots `1/n` by `exp(ln x / n)`, anything else by
/// `libm::pow`. The choice is made once per run, not once per gene: the
/// operators use four exponents (`±(eta + 1)`, `1/(eta + 1)` for both
/// distribution indices), and choosing cost as much as the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Power {
    /// `x^(2^k)` or its reciprocal: `k` squarings, which is what repeated
    /// squaring computes for such an exponent (its final `1.0 * x^(2^k)`
    /// is exact), without the loop over the exponent's bits.
    Squarings {
        /// `k`.
        times: u32,
        /// `y < 0`: the reciprocal.
        negative: bool,
    },
    /// `x^e` or `x^-e` for an integer `e <= 64`, by repeated squaring.
    Integer {
        /// `|y|`.
        exponent: u32,
        /// `y < 0`: the reciprocal.
        negative: bool,
    },
    /// `x^(1/2^k)` by `k` square roots (for `x >= 0`).
    Sqrts {
        /// `k`.
        times: u32,
        /// `y`, for negative or NaN `x`.
        y: f64,
    },
    /// `x^(1/n)` by `exp(ln x / n)` (for `x >= 0`).
    Root {
        /// `n`.
        n: u32,
        /// `y`, for negative or NaN `x`.
        y: f64,
    },
    /// `libm::pow(x, y)`.
    General(f64),
}

impl Power {
    /// The plan for exponent `y`.
    pub(crate) fn new(y: f64) -> Self {
        // Casts rather than `fract`/`round`: those are library calls on the
        // baseline x86-64 target.
        if y.abs() <= 64.0 && (y as i64) as f64 == y {
            let exponent = y.abs() as u32;
            let negative = y < 0.0;
            return if exponent.is_power_of_two() {
                Self::Squarings {
                    times: exponent.trailing_zeros(),
                    negative,
                }
            } else {
                Self::Integer { exponent, negative }
            };
        }
        if y > 0.0 && y < 1.0 {
            let n = (1.0 / y + 0.5) as u32;
            if (2..=64).contains(&n) && 1.0 / f64::from(n) == y {
                return if n.is_power_of_two() {
                    Self::Sqrts {
                        times: n.trailing_zeros(),
                        y,
                    }
                } else {
                    Self::Root { n, y }
                };
            }
        }
        Self::General(y)
    }

    /// `x` raised to the plan's exponent.
    // Always inlined: called four times per crossed gene, and out of line
    // the call and the dispatch cost more than the arithmetic.
    #[inline(always)]
    pub(crate) fn apply(self, x: f64) -> f64 {
        match self {
            Self::Squarings { times, negative } => {
                let mut p = x;
                for _ in 0..times {
                    p *= p;
                }
                if negative { 1.0 / p } else { p }
            }
            Self::Integer { exponent, negative } => {
                let p = integer_power(x, exponent);
                if negative { 1.0 / p } else { p }
            }
            // Negative or NaN `x`: `pow`'s answer, as before planning.
            Self::Sqrts { times, y } => {
                if x >= 0.0 {
                    let mut r = x;
                    for _ in 0..times {
                        r = r.sqrt();
                    }
                    r
                } else {
                    libm::pow(x, y)
                }
            }
            Self::Root { n, y } => {
                if x > 0.0 {
                    libm::exp(libm::log(x) / f64::from(n))
                } else if x == 0.0 {
                    0.0
                } else {
                    libm::pow(x, y)
                }
            }
            Self::General(y) => libm::pow(x, y),
        }
    }

    /// [`Self::apply`] on two values, written lane by lane so that the
    /// common plans (squarings, square roots) become two-lane vector
    /// instructions; each lane's result is `apply`'s.
    #[inline(always)]
    pub(crate) fn apply2(self, x: [f64; 2]) -> [f64; 2] {
        match self {
            Self::Squarings { times, negative } => {
                let mut p = x;
                for _ in 0..times {
                    p = [p[0] * p[0], p[1] * p[1]];
                }
                if negative {
                    [1.0 / p[0], 1.0 / p[1]]
                } else {
                    p
                }
            }
            Self::Sqrts { times, .. } if x[0] >= 0.0 && x[1] >= 0.0 => {
                let mut r = x;
                for _ in 0..times {
                    r = [r[0].sqrt(), r[1].sqrt()];
                }
                r
            }
            _ => [self.apply(x[0]), self.apply(x[1])],
        }
    }
}

/// `rng.random::<f64>() < p` for a fixed `p` in `[0, 1]`, decided on the
/// integer the float would be made from.
///
/// `random::<f64>()` is `(next_u64() >> 11) · 2^-53`: exactly `t · 2^-53`
/// for the 53-bit integer `t`. So `t · 2^-53 < p` holds exactly when
/// `t < p · 2^53` (a scaling by a power of two, exact), that is when
/// `t < ceil(p · 2^53)`. The same draw, the same answer, without the
/// int-to-float conversion and the multiply on the loops' hottest line
/// (one coin per gene per child for mutation, per gene per pair for
/// crossover).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Coin(u64);

impl Coin {
    /// The coin that shows "yes" with probability `p` (in `[0, 1]`).
    pub(crate) fn new(p: f64) -> Self {
        // In [0, 2^53]: the cast is exact.
        Self((p * 9_007_199_254_740_992.0).ceil() as u64)
    }

    /// One draw: `rng.random::<f64>() < p`.
    #[inline(always)]
    pub(crate) fn flip(self, rng: &mut impl Rng) -> bool {
        (rng.next_u64() >> 11) < self.0
    }
}

/// [`Variation`] with its exponents planned ([`Power`]) and its
/// probabilities as [`Coin`]s: what the generation loop calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operators {
    /// Whether a pair is recombined.
    crossover: Coin,
    /// Whether a gene of a recombined pair is crossed.
    crossover_gene: Coin,
    /// Whether a gene is mutated.
    mutation: Coin,
    /// A fair coin.
    half: Coin,
    /// `-(eta_c + 1)`, SBX's spread bound.
    sbx_bound: Power,
    /// `1/(eta_c + 1)`, SBX's spread.
    sbx_root: Power,
    /// `eta_m + 1`, mutation's bound.
    pm_power: Power,
    /// `1/(eta_m + 1)`, mutation's spread.
    pm_root: Power,
}

impl Operators {
    /// Plans the exponents of `variation`.
    pub(crate) fn new(variation: Variation) -> Self {
        Self {
            crossover: Coin::new(variation.crossover_prob),
            crossover_gene: Coin::new(variation.crossover_variable_prob),
            mutation: Coin::new(variation.mutation_prob),
            half: Coin::new(0.5),
            sbx_bound: Power::new(-(variation.eta_c + 1.0)),
            sbx_root: Power::new(1.0 / (variation.eta_c + 1.0)),
            pm_power: Power::new(variation.eta_m + 1.0),
            pm_root: Power::new(1.0 / (variation.eta_m + 1.0)),
        }
    }
}

fn integer_power(mut base: f64, mut exponent: u32) -> f64 {
    let mut result = 1.0;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result *= base;
        }
        base *= base;
        exponent >>= 1;
    }
    result
}

/// Binary tournament: lower rank wins, then larger crowding distance, then a
/// fair coin.
pub(crate) fn tournament(
    a: usize,
    b: usize,
    rank: &[usize],
    crowding: &[f64],
    rng: &mut impl Rng,
) -> usize {
    if rank[a] != rank[b] {
        return if rank[a] < rank[b] { a } else { b };
    }
    if crowding[a] > crowding[b] {
        return a;
    }
    if crowding[b] > crowding[a] {
        return b;
    }
    if rng.random::<f64>() < 0.5 { a } else { b }
}

/// Makes two children from two parents: crossover (with probability
/// `crossover_prob`), then mutation of each child. Allocates; the
/// generation loop uses [`mate_into`].
#[cfg(test)]
pub(crate) fn mate(
    parent_a: &[f64],
    parent_b: &[f64],
    variables: &[Variable],
    op: &Variation,
    rng: &mut impl Rng,
) -> (Vec<f64>, Vec<f64>) {
    let mut a = vec![0.0; parent_a.len()];
    let mut b = vec![0.0; parent_b.len()];
    mate_into(
        parent_a,
        parent_b,
        &mut a,
        &mut b,
        variables,
        &Operators::new(*op),
        rng,
    );
    (a, b)
}

/// [`mate`] into the caller's buffers (`a` and `b` as long as the parents),
/// so a generation allocates nothing per child.
pub(crate) fn mate_into(
    parent_a: &[f64],
    parent_b: &[f64],
    a: &mut [f64],
    b: &mut [f64],
    variables: &[Variable],
    ops: &Operators,
    rng: &mut impl Rng,
) {
    a.copy_from_slice(parent_a);
    b.copy_from_slice(parent_b);
    if ops.crossover.flip(rng) {
        crossover(a, b, variables, ops, rng);
    }
    mutate(a, variables, ops, rng);
    mutate(b, variables, ops, rng);
}

/// SBX on real genes, uniform crossover on categorical ones, in place.
fn crossover(
    a: &mut [f64],
    b: &mut [f64],
    variables: &[Variable],
    ops: &Operators,
    rng: &mut impl Rng,
) {
    for ((variable, ai), bi) in variables.iter().zip(a.iter_mut()).zip(b.iter_mut()) {
        if !ops.crossover_gene.flip(rng) {
            continue;
        }
        match *variable {
            Variable::Real { lower, upper } => {
                if (*ai - *bi).abs() <= SBX_EPS || lower >= upper {
                    continue;
                }
                let (c1, c2) = sbx_pair(*ai, *bi, lower, upper, ops, rng);
                *ai = c1;
                *bi = c2;
            }
            Variable::Categorical { .. } => std::mem::swap(ai, bi),
        }
    }
}

/// Simulated binary crossover of one gene (Deb & Agrawal 1995, bounded form
/// as in pymoo's `cross_sbx`): children spread around the parents with a
/// polynomial density of index `eta`, their order swapped half the time.
fn sbx_pair(
    x1: f64,
    x2: f64,
    lower: f64,
    upper: f64,
    ops: &Operators,
    rng: &mut impl Rng,
) -> (f64, f64) {
    let (y1, y2) = if x1 < x2 { (x1, x2) } else { (x2, x1) };
    let delta = y2 - y1;
    let u = rng.random::<f64>();
    let [b1, b2] = betaq(
        [
            1.0 + 2.0 * (y1 - lower) / delta,
            1.0 + 2.0 * (upper - y2) / delta,
        ],
        u,
        ops,
    );
    let c1 = 0.5 * ((y1 + y2) - b1 * delta);
    let c2 = 0.5 * ((y1 + y2) + b2 * delta);
    // A select rather than a branch on a coin flip (see `betaq`).
    let swap = ops.half.flip(rng);
    let (c1, c2) = (if swap { c2 } else { c1 }, if swap { c1 } else { c2 });
    (c1.clamp(lower, upper), c2.clamp(lower, upper))
}

/// SBX's spread factors for both sides of the parents' interval (`beta`
/// from the distances to the bounds, `u` the gene's uniform draw).
///
/// The two sides go through the same steps side by side, lane by lane, so
/// the compiler can use two-lane vector instructions: the root by square
/// roots is a chain of long-latency steps, and two chains at once take
/// about the time of one. Both candidates of the inverse CDF are computed
/// and one is kept, a select rather than a branch on what is a coin flip
/// per gene. Every lane computes exactly the scalar formula, so the bits
/// are the same.
#[inline(always)]
fn betaq(beta: [f64; 2], u: f64, ops: &Operators) -> [f64; 2] {
    let bound = ops.sbx_bound.apply2(beta);
    let alpha = [2.0 - bound[0], 2.0 - bound[1]];
    let inside = [u * alpha[0], u * alpha[1]];
    let outside = [1.0 / (2.0 - u * alpha[0]), 1.0 / (2.0 - u * alpha[1])];
    let limit = [1.0 / alpha[0], 1.0 / alpha[1]];
    let base = [
        if u <= limit[0] { inside[0] } else { outside[0] },
        if u <= limit[1] { inside[1] } else { outside[1] },
    ];
    ops.sbx_root.apply2(base)
}

/// Polynomial mutation of real genes and random reset of categorical ones,
/// each gene with probability `mutation_prob`.
fn mutate(x: &mut [f64], variables: &[Variable], ops: &Operators, rng: &mut impl Rng) {
    for (variable, xi) in variables.iter().zip(x.iter_mut()) {
        if !ops.mutation.flip(rng) {
            continue;
        }
        match *variable {
            Variable::Real { lower, upper } => {
                if lower < upper {
                    *xi = polynomial_mutation(*xi, lower, upper, ops, rng);
                }
            }
            Variable::Categorical { choices } => {
                // Reset to a *different* option: redrawing the same one would
                // waste the mutation.
                if choices > 1 {
                    let current = choice(*xi);
                    let mut pick = rng.random_range(0..choices - 1);
                    if pick >= current {
                        pick += 1;
                    }
                    *xi = pick as f64;
                }
            }
        }
    }
}

/// Deb's polynomial mutation of one bounded gene, as in pymoo's `mut_pm`.
fn polynomial_mutation(x: f64, lower: f64, upper: f64, ops: &Operators, rng: &mut impl Rng) -> f64 {
    let span = upper - lower;
    let delta1 = (x - lower) / span;
    let delta2 = (upper - x) / span;
    let u = rng.random::<f64>();
    let deltaq = if u <= 0.5 {
        let val = 2.0 * u + (1.0 - 2.0 * u) * ops.pm_power.apply(1.0 - delta1);
        ops.pm_root.apply(val) - 1.0
    } else {
        let val = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * ops.pm_power.apply(1.0 - delta2);
        1.0 - ops.pm_root.apply(val)
    };
    (x + deltaq * span).clamp(lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn op() -> Variation {
        Variation {
            crossover_prob: 1.0,
            crossover_variable_prob: 1.0,
            eta_c: 15.0,
            eta_m: 20.0,
            mutation_prob: 1.0,
        }
    }

    #[test]
    fn children_stay_in_bounds_and_categories_stay_valid() {
        let vars = [
            Variable::real(-1.0, 2.0),
            Variable::real(5.0, 5.0),
            Variable::categorical(3),
            Variable::categorical(1),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..2000 {
            let a = [
                rng.random_range(-1.0..=2.0),
                5.0,
                rng.random_range(0..3) as f64,
                0.0,
            ];
            let b = [
                rng.random_range(-1.0..=2.0),
                5.0,
                rng.random_range(0..3) as f64,
                0.0,
            ];
            let (c, d) = mate(&a, &b, &vars, &op(), &mut rng);
            for child in [c, d] {
                assert!((-1.0..=2.0).contains(&child[0]));
                assert_eq!(child[1], 5.0);
                assert!([0.0, 1.0, 2.0].contains(&child[2]));
                assert_eq!(child[3], 0.0);
            }
        }
    }

    #[test]
    fn sbx_children_are_symmetric_around_parents_on_average() {
        // Far from the bounds SBX preserves the parents' mean exactly.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..1000 {
            let (c1, c2) = sbx_pair(0.4, 0.6, -1e6, 1e6, &Operators::new(op()), &mut rng);
            assert!((c1 + c2 - 1.0).abs() < 1e-6, "{c1} {c2}");
        }
    }

    #[test]
    fn coins_answer_as_the_float_comparison() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let scale = 1.0 / 9_007_199_254_740_992.0;
        let mut ps: Vec<f64> = vec![0.0, 1.0, 0.5, 0.9, 1.0 / 30.0, 1.0 / 7.0, f64::MIN_POSITIVE];
        ps.extend((0..200).map(|_| rng.random::<f64>()));
        for p in ps {
            let coin = Coin::new(p);
            // Around the threshold, where a rounding slip would show.
            let edge = coin.0;
            let near = [edge.saturating_sub(1), edge, edge + 1, 0, (1 << 53) - 1];
            let random = (0..200).map(|_| rng.random::<u64>() >> 11);
            for t in near.into_iter().chain(random).filter(|&t| t < 1 << 53) {
                let float = (t as f64) * scale < p;
                assert_eq!(t < coin.0, float, "p {p} t {t}");
            }
        }
        // And on the generator: the same answers from the same stream.
        let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(3), ChaCha8Rng::seed_from_u64(3));
        let coin = Coin::new(1.0 / 30.0);
        for _ in 0..10_000 {
            assert_eq!(coin.flip(&mut a), a_float(&mut b, 1.0 / 30.0));
        }
        fn a_float(rng: &mut ChaCha8Rng, p: f64) -> bool {
            rng.random::<f64>() < p
        }
    }

    #[test]
    fn squarings_are_bit_identical_to_repeated_squaring() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.5,
            f64::MIN_POSITIVE / 3.0,
            1e300,
            f64::INFINITY,
        ];
        let xs: Vec<f64> = (0..5000)
            .map(|_| rng.random_range(-3.0..3.0))
            .chain(specials)
            .collect();
        for e in [1u32, 2, 4, 8, 16, 32, 64] {
            for negative in [false, true] {
                let y = if negative {
                    -f64::from(e)
                } else {
                    f64::from(e)
                };
                let plan = Power::new(y);
                assert!(matches!(plan, Power::Squarings { .. }), "{y}");
                for &x in &xs {
                    let p = integer_power(x, e);
                    let want = if negative { 1.0 / p } else { p };
                    assert_eq!(plan.apply(x).to_bits(), want.to_bits(), "{x}^{y}");
                }
                assert!(plan.apply(f64::NAN).is_nan());
            }
        }
    }

    #[test]
    fn power_agrees_with_libm() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..10_000 {
            let x: f64 = rng.random_range(0.0..4.0);
            for y in [
                16.0,
                -16.0,
                21.0,
                1.0 / 16.0,
                1.0 / 21.0,
                0.37,
                2.5,
                0.0,
                1.0,
                -1.0,
            ] {
                let (got, want) = (power(x, y), libm::pow(x, y));
                let tolerance = 1e-13 * want.abs().max(f64::MIN_POSITIVE);
                assert!(
                    (got - want).abs() <= tolerance || got == want,
                    "{x}^{y}: {got} vs {want}"
                );
            }
        }
        assert_eq!(power(0.0, 1.0 / 21.0), 0.0);
        assert_eq!(power(0.0, -16.0), f64::INFINITY);
    }

    #[test]
    fn random_reset_always_changes_the_option() {
        let vars = [Variable::categorical(2)];
        let no_crossover = Variation {
            crossover_prob: 0.0,
            ..op()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..100 {
            let (c, d) = mate(&[0.0], &[1.0], &vars, &no_crossover, &mut rng);
            assert_eq!((c[0], d[0]), (1.0, 0.0));
        }
    }

    #[test]
    fn tournament_prefers_rank_then_crowding() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let rank = [0, 1, 0];
        let crowd = [0.5, 9.0, f64::INFINITY];
        assert_eq!(tournament(0, 1, &rank, &crowd, &mut rng), 0);
        assert_eq!(tournament(1, 0, &rank, &crowd, &mut rng), 0);
        assert_eq!(tournament(0, 2, &rank, &crowd, &mut rng), 2);
    }
}
