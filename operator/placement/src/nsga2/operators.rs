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

/// `x^y` as the operators need it, the same bits on every platform and
/// several times faster than a general `pow`, which dominated NSGA-II's run
/// time: integer exponents (`eta + 1` for the usual integer `eta`) by
/// repeated squaring, roots `1/2^k` by `k` square roots (both IEEE-exact
/// steps), other roots `1/n` by `exp(ln x / n)`, anything else by `libm::pow`.
pub(crate) fn power(x: f64, y: f64) -> f64 {
    // Casts rather than `fract`/`round`: those are library calls on the
    // baseline x86-64 target, and this runs for every crossed gene.
    if y.abs() <= 64.0 && (y as i64) as f64 == y {
        let p = integer_power(x, y.abs() as u32);
        return if y < 0.0 { 1.0 / p } else { p };
    }
    if y > 0.0 && y < 1.0 && x >= 0.0 {
        let n = (1.0 / y + 0.5) as u32;
        if (2..=64).contains(&n) && 1.0 / f64::from(n) == y {
            if n.is_power_of_two() {
                let mut r = x;
                for _ in 0..n.trailing_zeros() {
                    r = r.sqrt();
                }
                return r;
            }
            return if x == 0.0 {
                0.0
            } else {
                libm::exp(libm::log(x) / f64::from(n))
            };
        }
    }
    libm::pow(x, y)
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
/// `crossover_prob`), then mutation of each child.
pub(crate) fn mate(
    parent_a: &[f64],
    parent_b: &[f64],
    variables: &[Variable],
    op: &Variation,
    rng: &mut impl Rng,
) -> (Vec<f64>, Vec<f64>) {
    let mut a = parent_a.to_vec();
    let mut b = parent_b.to_vec();
    if rng.random::<f64>() < op.crossover_prob {
        crossover(&mut a, &mut b, variables, op, rng);
    }
    mutate(&mut a, variables, op, rng);
    mutate(&mut b, variables, op, rng);
    (a, b)
}

/// SBX on real genes, uniform crossover on categorical ones, in place.
fn crossover(
    a: &mut [f64],
    b: &mut [f64],
    variables: &[Variable],
    op: &Variation,
    rng: &mut impl Rng,
) {
    for (i, variable) in variables.iter().enumerate() {
        if rng.random::<f64>() >= op.crossover_variable_prob {
            continue;
        }
        match *variable {
            Variable::Real { lower, upper } => {
                if (a[i] - b[i]).abs() <= SBX_EPS || lower >= upper {
                    continue;
                }
                let (c1, c2) = sbx_pair(a[i], b[i], lower, upper, op.eta_c, rng);
                a[i] = c1;
                b[i] = c2;
            }
            Variable::Categorical { .. } => std::mem::swap(&mut a[i], &mut b[i]),
        }
    }
}

/// Simulated binary crossover of one gene (Deb & Agrawal 1995, bounded form
/// as in pymoo's `cross_sbx`): children spread around the parents with a
/// polynomial density of index `eta`, their order swapped half the time.
fn sbx_pair(x1: f64, x2: f64, lower: f64, upper: f64, eta: f64, rng: &mut impl Rng) -> (f64, f64) {
    let (y1, y2) = if x1 < x2 { (x1, x2) } else { (x2, x1) };
    let delta = y2 - y1;
    let u = rng.random::<f64>();
    let exponent = 1.0 / (eta + 1.0);
    let betaq = |beta: f64| {
        let alpha = 2.0 - power(beta, -(eta + 1.0));
        if u <= 1.0 / alpha {
            power(u * alpha, exponent)
        } else {
            power(1.0 / (2.0 - u * alpha), exponent)
        }
    };
    let c1 = 0.5 * ((y1 + y2) - betaq(1.0 + 2.0 * (y1 - lower) / delta) * delta);
    let c2 = 0.5 * ((y1 + y2) + betaq(1.0 + 2.0 * (upper - y2) / delta) * delta);
    let (c1, c2) = if rng.random::<f64>() < 0.5 {
        (c2, c1)
    } else {
        (c1, c2)
    };
    (c1.clamp(lower, upper), c2.clamp(lower, upper))
}

/// Polynomial mutation of real genes and random reset of categorical ones,
/// each gene with probability `mutation_prob`.
fn mutate(x: &mut [f64], variables: &[Variable], op: &Variation, rng: &mut impl Rng) {
    for (i, variable) in variables.iter().enumerate() {
        if rng.random::<f64>() >= op.mutation_prob {
            continue;
        }
        match *variable {
            Variable::Real { lower, upper } => {
                if lower < upper {
                    x[i] = polynomial_mutation(x[i], lower, upper, op.eta_m, rng);
                }
            }
            Variable::Categorical { choices } => {
                // Reset to a *different* option: redrawing the same one would
                // waste the mutation.
                if choices > 1 {
                    let current = choice(x[i]);
                    let mut pick = rng.random_range(0..choices - 1);
                    if pick >= current {
                        pick += 1;
                    }
                    x[i] = pick as f64;
                }
            }
        }
    }
}

/// Deb's polynomial mutation of one bounded gene, as in pymoo's `mut_pm`.
fn polynomial_mutation(x: f64, lower: f64, upper: f64, eta: f64, rng: &mut impl Rng) -> f64 {
    let span = upper - lower;
    let delta1 = (x - lower) / span;
    let delta2 = (upper - x) / span;
    let exponent = 1.0 / (eta + 1.0);
    let u = rng.random::<f64>();
    let deltaq = if u <= 0.5 {
        let val = 2.0 * u + (1.0 - 2.0 * u) * power(1.0 - delta1, eta + 1.0);
        power(val, exponent) - 1.0
    } else {
        let val = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * power(1.0 - delta2, eta + 1.0);
        1.0 - power(val, exponent)
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
            let (c1, c2) = sbx_pair(0.4, 0.6, -1e6, 1e6, 15.0, &mut rng);
            assert!((c1 + c2 - 1.0).abs() < 1e-6, "{c1} {c2}");
        }
    }

    #[test]
    fn power_agrees_with_libm() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..10_000 {
            let x: f64 = rng.random_range(0.0..4.0);
            for y in [16.0, -16.0, 21.0, 1.0 / 16.0, 1.0 / 21.0, 0.37, 2.5, 0.0] {
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
