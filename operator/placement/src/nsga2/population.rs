//! The generation loop's storage and survival step, without allocation per
//! individual or per generation.
//!
//! Individuals live in flat row-major buffers ([`Rows`]): the genes in one,
//! and objectives, constraints and total violation side by side in another.
//! Children are appended after their parents, evaluated in place, and the
//! survivors copied into a second buffer that then swaps with the first.
//! [`Survival`] keeps the buffers of the non-dominated sort and the crowding
//! distance from one generation to the next.
//!
//! Every step computes exactly what the textbook versions in
//! [`super::sort`] and [`super::crowding`] compute (the same fronts, the
//! same sums in the same order, ties broken by index), so results are the
//! same bits; the tests below check it on random inputs. The speed comes
//! from sorting integer keys instead of calling comparison closures that
//! chase row pointers, and from reusing every buffer.

use rayon::prelude::*;

use crate::pareto::{dominates, lex_cmp};
use crate::problem::{Problem, total_violation};

/// Individuals in flat buffers.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    /// Genes per individual.
    pub nv: usize,
    /// Objectives per individual.
    pub m: usize,
    /// Constraints per individual.
    pub k: usize,
    /// `len × nv` genes.
    pub x: Vec<f64>,
    /// `len × (m + k + 1)`: objectives, constraints, total violation.
    pub out: Vec<f64>,
}

impl Rows {
    /// Empty rows for a problem's dimensions, with room for `capacity`.
    pub fn new(nv: usize, m: usize, k: usize, capacity: usize) -> Self {
        Self {
            nv,
            m,
            k,
            x: Vec::with_capacity(capacity * nv),
            out: Vec::with_capacity(capacity * (m + k + 1)),
        }
    }

    /// Width of one row of `out`.
    pub fn stride(&self) -> usize {
        self.m + self.k + 1
    }

    /// Number of individuals.
    pub fn len(&self) -> usize {
        self.x.len().checked_div(self.nv).unwrap_or(0)
    }

    /// Genes of individual `i`.
    pub fn genes(&self, i: usize) -> &[f64] {
        &self.x[i * self.nv..(i + 1) * self.nv]
    }

    /// Objectives of individual `i`.
    pub fn objectives(&self, i: usize) -> &[f64] {
        let s = i * self.stride();
        &self.out[s..s + self.m]
    }

    /// Constraint values of individual `i`.
    pub fn constraints(&self, i: usize) -> &[f64] {
        let s = i * self.stride() + self.m;
        &self.out[s..s + self.k]
    }

    /// Total violation of individual `i`.
    pub fn violation(&self, i: usize) -> f64 {
        self.out[i * self.stride() + self.m + self.k]
    }

    /// Appends an individual with genes `genes`, not yet evaluated.
    pub fn push(&mut self, genes: &[f64]) {
        self.x.extend_from_slice(genes);
        let stride = self.stride();
        self.out.resize(self.out.len() + stride, 0.0);
    }

    /// Removes every individual, keeping the buffers.
    pub fn clear(&mut self) {
        self.x.clear();
        self.out.clear();
    }

    /// Appends individual `i` of `other`, evaluated.
    pub fn push_from(&mut self, other: &Self, i: usize) {
        self.x.extend_from_slice(other.genes(i));
        let stride = self.stride();
        self.out
            .extend_from_slice(&other.out[i * stride..(i + 1) * stride]);
    }

    /// Evaluates individuals `from..` in place: in parallel when the rayon
    /// pool has several threads, else in a plain loop (rayon's splitting
    /// costs more than ZDT's evaluation). Each row comes from one sequential
    /// call either way, so the result does not depend on the thread count.
    pub fn evaluate_from(&mut self, problem: &(impl Problem + ?Sized), from: usize) {
        let (nv, m, stride) = (self.nv, self.m, self.stride());
        let x = &self.x[from * nv..];
        let out = &mut self.out[from * stride..];
        let one = |genes: &[f64], row: &mut [f64]| {
            let (objectives, rest) = row.split_at_mut(m);
            let (constraints, violation) = rest.split_at_mut(rest.len() - 1);
            problem.evaluate(genes, objectives, constraints);
            violation[0] = total_violation(objectives, constraints);
        };
        if rayon::current_num_threads() > 1 {
            out.par_chunks_mut(stride)
                .zip(x.par_chunks(nv))
                .with_min_len(8)
                .for_each(|(row, genes)| one(genes, row));
        } else {
            for (row, genes) in out.chunks_mut(stride).zip(x.chunks(nv)) {
                one(genes, row);
            }
        }
    }
}

/// A key whose unsigned order is `f64::total_cmp`'s order.
#[inline]
fn total_key(x: f64) -> u64 {
    let bits = x.to_bits() as i64;
    let ordered = bits ^ ((((bits >> 63) as u64) >> 1) as i64);
    (ordered as u64) ^ (1 << 63)
}

/// The buffers of one survival step, reused across generations.
#[derive(Debug, Default)]
pub(crate) struct Survival {
    /// Indices of all individuals grouped by front, each front ascending.
    fronts: Vec<u32>,
    /// Start of each front in `fronts`, plus the end.
    bounds: Vec<usize>,
    /// Front of each individual.
    front_of: Vec<u32>,
    /// Feasible individuals, then their lexicographic order.
    feasible: Vec<u32>,
    /// Sort keys of two-objective rows: (f1, f2, index).
    keys2: Vec<(u64, u64, u32)>,
    /// Sort keys of other rows: (f1, index).
    keys1: Vec<(u64, u32)>,
    /// Last member of each front (two objectives).
    last: Vec<u32>,
    /// Members of each front in insertion order (more objectives).
    members: Vec<Vec<u32>>,
    /// Three objectives: dense rank (from 1) of each row's second objective.
    rank_of: Vec<u32>,
    /// Number of distinct second objectives.
    ranks: usize,
    /// Three objectives: per front, a Fenwick tree over the second
    /// objective's ranks of the least third objective (NaN: none).
    minima: Vec<f64>,
    /// Position of each row within its front.
    pos_of: Vec<u32>,
    /// Two objectives: per front (same bounds as `fronts`), its positions
    /// in lexicographic order; `u32::MAX` for the other fronts.
    lex: Vec<u32>,
    /// Infeasible individuals by (violation, index).
    infeasible: Vec<(u64, u32)>,
    /// Counts, then offsets, per front.
    offsets: Vec<usize>,
    /// Crowding distances of one front.
    distance: Vec<f64>,
    /// (key, position) pairs for the crowding sorts and the truncation.
    order: Vec<(u64, u32)>,
    /// The survivors: (index, rank, crowding distance), in survivor order.
    pub chosen: Vec<(u32, u32, f64)>,
}

impl Survival {
    /// Picks the best `n` of `rows` by (rank, crowding), as
    /// `non_dominated_sort` and `crowding_distance` followed by a stable
    /// sort would: fronts in rank order; within a front all members in
    /// index order, or, when it does not fit, the largest distances first
    /// (ties by index) cut to the room left. Result in `self.chosen`.
    pub fn select(&mut self, rows: &Rows, n: usize) {
        self.sort(rows);
        self.chosen.clear();
        for rank in 0..self.bounds.len() - 1 {
            let room = n - self.chosen.len();
            if room == 0 {
                break;
            }
            let (s, e) = (self.bounds[rank], self.bounds[rank + 1]);
            self.crowding(rows, s, e);
            let size = e - s;
            if size > room {
                self.order.clear();
                self.order.extend(
                    self.distance
                        .iter()
                        .enumerate()
                        // Largest distance first: the complement reverses
                        // the order; ties go to the lower position, which is
                        // the lower index since fronts are ascending.
                        .map(|(p, &d)| (!total_key(d), p as u32)),
                );
                self.order.sort_unstable();
                for &(_, p) in &self.order[..room] {
                    let p = p as usize;
                    self.chosen
                        .push((self.fronts[s + p], rank as u32, self.distance[p]));
                }
            } else {
                for p in 0..size {
                    self.chosen
                        .push((self.fronts[s + p], rank as u32, self.distance[p]));
                }
            }
        }
    }

    /// Non-dominated sort under constrained domination into `fronts` and
    /// `bounds`: ENS-SS on the feasible rows in lexicographic order (a row
    /// joins the first front holding none that dominates it), then one
    /// front per distinct violation. The same fronts as
    /// `sort::non_dominated_sort` (fronts are unique; both list each front
    /// by ascending index).
    fn sort(&mut self, rows: &Rows) {
        let total = rows.len();
        let m = rows.m;
        self.front_of.clear();
        self.front_of.resize(total, u32::MAX);
        self.feasible.clear();
        self.infeasible.clear();
        for i in 0..total {
            let v = rows.violation(i);
            if v <= 0.0 {
                self.feasible.push(i as u32);
            } else {
                self.infeasible.push((total_key(v), i as u32));
            }
        }
        let two = m == 2
            && self
                .feasible
                .iter()
                .all(|&i| !rows.objectives(i as usize).iter().any(|v| v.is_nan()));
        // Lexicographic order with `-0.0 == 0.0` (hence `+ 0.0`), ties by
        // index, as `pareto::lex_order`; the keys are unique, so an unstable
        // sort gives that exact order.
        let mut n_fronts = 0usize;
        if two {
            self.keys2.clear();
            self.keys2.extend(self.feasible.iter().map(|&i| {
                let f = rows.objectives(i as usize);
                (total_key(f[0] + 0.0), total_key(f[1] + 0.0), i)
            }));
            self.keys2.sort_unstable();
            // In lexicographic order a front's members have non-increasing
            // second objectives, so if any member dominates a later row the
            // last one does: one comparison per front.
            self.last.clear();
            for &(_, _, i) in &self.keys2 {
                let row = rows.objectives(i as usize);
                let target = self
                    .last
                    .iter()
                    .position(|&l| !dominates(rows.objectives(l as usize), row));
                let k = match target {
                    Some(k) => {
                        self.last[k] = i;
                        k
                    }
                    None => {
                        self.last.push(i);
                        self.last.len() - 1
                    }
                };
                self.front_of[i as usize] = k as u32;
            }
            n_fronts = self.last.len();
        } else {
            self.keys1.clear();
            self.keys1.extend(self.feasible.iter().map(|&i| {
                let f = rows.objectives(i as usize);
                (f.first().map_or(0, |&v| total_key(v + 0.0)), i)
            }));
            self.keys1.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| {
                        let (ra, rb) =
                            (rows.objectives(a.1 as usize), rows.objectives(b.1 as usize));
                        lex_cmp(ra.get(1..).unwrap_or(&[]), rb.get(1..).unwrap_or(&[]))
                    })
                    .then(a.1.cmp(&b.1))
            });
            for front in &mut self.members {
                front.clear();
            }
            let three = m == 3
                && self
                    .feasible
                    .iter()
                    .all(|&i| !rows.objectives(i as usize).iter().any(|v| v.is_nan()));
            if three {
                self.rank_second_objective(rows);
            }
            for &(_, i) in &self.keys1 {
                let row = rows.objectives(i as usize);
                // The newest members are the closest in order, so the
                // likeliest dominators: check them first.
                let scan = |front: &Vec<u32>| {
                    front
                        .iter()
                        .rev()
                        .any(|&o| dominates(rows.objectives(o as usize), row))
                };
                let target = if three {
                    let rank = self.rank_of[i as usize] as usize;
                    let (minima, width) = (&self.minima, self.ranks + 1);
                    (0..n_fronts).position(|k| {
                        // The least third objective among the front's
                        // members whose second is <= this row's (all of
                        // whose first are <=, by the order).
                        let least = prefix_min(&minima[k * width..(k + 1) * width], rank);
                        let dominated = if least < row[2] {
                            true
                        } else if least == row[2] {
                            // Perhaps only an identical point, which does
                            // not dominate: ask the members.
                            scan(&self.members[k])
                        } else {
                            false
                        };
                        !dominated
                    })
                } else {
                    self.members[..n_fronts]
                        .iter()
                        .position(|front| !scan(front))
                };
                let k = match target {
                    Some(k) => k,
                    None => {
                        if self.members.len() == n_fronts {
                            self.members.push(Vec::new());
                        }
                        n_fronts += 1;
                        n_fronts - 1
                    }
                };
                self.members[k].push(i);
                self.front_of[i as usize] = k as u32;
                if three {
                    let width = self.ranks + 1;
                    if self.minima.len() < (k + 1) * width {
                        self.minima.resize((k + 1) * width, f64::NAN);
                    }
                    let rank = self.rank_of[i as usize] as usize;
                    prefix_min_insert(&mut self.minima[k * width..(k + 1) * width], rank, row[2]);
                }
            }
        }
        // Infeasible rows: a chain by violation, equal violations together.
        self.infeasible.sort_unstable();
        let mut previous = None;
        for &(key, i) in &self.infeasible {
            if previous != Some(key) {
                n_fronts += 1;
                previous = Some(key);
            }
            self.front_of[i as usize] = (n_fronts - 1) as u32;
        }
        // Counting sort by front; scanning indices upwards lists every
        // front in ascending index order.
        self.offsets.clear();
        self.offsets.resize(n_fronts + 1, 0);
        for &f in &self.front_of {
            self.offsets[f as usize + 1] += 1;
        }
        for f in 0..n_fronts {
            self.offsets[f + 1] += self.offsets[f];
        }
        self.bounds.clear();
        self.bounds.extend_from_slice(&self.offsets);
        self.fronts.clear();
        self.fronts.resize(total, 0);
        for (i, &f) in self.front_of.iter().enumerate() {
            let slot = &mut self.offsets[f as usize];
            self.fronts[*slot] = i as u32;
            *slot += 1;
        }
        // Two objectives: each feasible front's positions in lexicographic
        // order, a near-sorted start for the crowding sorts.
        self.lex.clear();
        self.lex.resize(total, u32::MAX);
        if two {
            self.pos_of.clear();
            self.pos_of.resize(total, 0);
            for f in 0..n_fronts {
                let start = self.bounds[f];
                for slot in start..self.bounds[f + 1] {
                    self.pos_of[self.fronts[slot] as usize] = (slot - start) as u32;
                }
            }
            self.offsets.clear();
            self.offsets.extend_from_slice(&self.bounds);
            for &(_, _, i) in &self.keys2 {
                let slot = &mut self.offsets[self.front_of[i as usize] as usize];
                self.lex[*slot] = self.pos_of[i as usize];
                *slot += 1;
            }
        }
    }

    /// Ranks the feasible rows' second objectives (equal values, `-0.0`
    /// and `0.0` included, share a rank) and empties the minima trees.
    fn rank_second_objective(&mut self, rows: &Rows) {
        self.rank_of.clear();
        self.rank_of.resize(rows.len(), 0);
        self.order.clear();
        self.order.extend(
            self.feasible
                .iter()
                .map(|&i| (total_key(rows.objectives(i as usize)[1] + 0.0), i)),
        );
        self.order.sort_unstable();
        let mut rank = 0u32;
        let mut previous = None;
        for &(key, i) in &self.order {
            if previous != Some(key) {
                rank += 1;
                previous = Some(key);
            }
            self.rank_of[i as usize] = rank;
        }
        self.ranks = rank as usize;
        self.minima.clear();
    }

    /// Crowding distance of the front `fronts[s..e]` into `distance`, as
    /// `crowding::crowding_distance`: per objective in order, the members
    /// sorted by value (`total_cmp`, ties by index), both ends `+inf`, the
    /// others adding their neighbours' normalised gap.
    fn crowding(&mut self, rows: &Rows, s: usize, e: usize) {
        let n = e - s;
        self.distance.clear();
        if n <= 2 {
            self.distance.resize(n, f64::INFINITY);
            return;
        }
        self.distance.resize(n, 0.0);
        let front = &self.fronts[s..e];
        let value = |p: u32, k: usize| rows.objectives(front[p as usize] as usize)[k];
        // In a two-objective front the order by the first objective is
        // nearly always the lexicographic one, and by the second its
        // reverse: start from those and sort only when the check fails (the
        // sorted order is unique, so either way it is the same order).
        let lex = &self.lex[s..e];
        let guess = rows.m == 2 && lex[0] != u32::MAX;
        for k in 0..rows.m {
            self.order.clear();
            let key = |p: u32| (total_key(value(p, k)), p);
            match (guess, k) {
                (true, 0) => self.order.extend(lex.iter().map(|&p| key(p))),
                (true, _) => self.order.extend(lex.iter().rev().map(|&p| key(p))),
                _ => self.order.extend((0..n as u32).map(key)),
            }
            if !self.order.is_sorted() {
                self.order.sort_unstable();
            }
            let (first, last) = (self.order[0].1, self.order[n - 1].1);
            self.distance[first as usize] = f64::INFINITY;
            self.distance[last as usize] = f64::INFINITY;
            let range = value(last, k) - value(first, k);
            if !(range.is_finite() && range > 0.0) {
                continue;
            }
            for w in self.order.windows(3) {
                self.distance[w[1].1 as usize] += (value(w[2].1, k) - value(w[0].1, k)) / range;
            }
        }
    }

    /// The fronts of the last [`Self::select`] (for tests).
    #[cfg(test)]
    fn fronts(&self) -> Vec<Vec<usize>> {
        self.bounds
            .windows(2)
            .map(|w| {
                self.fronts[w[0]..w[1]]
                    .iter()
                    .map(|&i| i as usize)
                    .collect()
            })
            .collect()
    }
}

/// The least value at positions `1..=position` of a prefix-minimum Fenwick
/// tree (NaN when none was inserted there).
fn prefix_min(tree: &[f64], mut position: usize) -> f64 {
    let mut least = f64::NAN;
    while position > 0 {
        // `min` ignores NaN, the "empty" marker.
        least = least.min(tree[position]);
        position &= position - 1;
    }
    least
}

/// Records `value` at `position` (from 1) of a prefix-minimum Fenwick tree.
fn prefix_min_insert(tree: &mut [f64], mut position: usize, value: f64) {
    while position < tree.len() {
        tree[position] = tree[position].min(value);
        position += position & position.wrapping_neg();
    }
}

/// Whether two keys order like `total_cmp` (for tests).
#[cfg(test)]
fn same_order(a: f64, b: f64) -> bool {
    total_key(a).cmp(&total_key(b)) == a.total_cmp(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nsga2::crowding::crowding_distance;
    use crate::nsga2::sort::{non_dominated_sort, reference_sort};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rows_of(objs: &[Vec<f64>], violations: &[f64]) -> Rows {
        let m = objs.first().map_or(1, Vec::len);
        let mut rows = Rows::new(1, m, 0, objs.len());
        for (o, &v) in objs.iter().zip(violations) {
            rows.push(&[0.0]);
            let n = rows.len() - 1;
            let s = n * rows.stride();
            rows.out[s..s + m].copy_from_slice(o);
            rows.out[s + m] = v;
        }
        rows
    }

    #[test]
    fn total_key_orders_like_total_cmp() {
        let values = [
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            f64::INFINITY,
            f64::NAN,
            -f64::NAN,
        ];
        for &a in &values {
            for &b in &values {
                assert!(same_order(a, b), "{a} {b}");
            }
        }
    }

    #[test]
    fn flat_sort_and_crowding_equal_the_reference_versions() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let mut survival = Survival::default();
        for trial in 0..600 {
            let m = 1 + trial % 4;
            let n = rng.random_range(1..90);
            let grid = [3.0, 10.0, 1e6][trial % 3];
            let objs: Vec<Vec<f64>> = (0..n)
                .map(|_| {
                    (0..m)
                        .map(|_| match rng.random_range(0..400) {
                            0..10 => -0.0,
                            10..20 => f64::INFINITY,
                            20 if trial % 5 == 0 => f64::NAN,
                            _ => (rng.random::<f64>() * grid).floor() - grid / 2.0,
                        })
                        .collect()
                })
                .collect();
            let violations: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..4) {
                    0 => (rng.random::<f64>() * 4.0).floor(),
                    1 => f64::INFINITY,
                    _ => 0.0,
                })
                .collect();
            let refs: Vec<&[f64]> = objs.iter().map(Vec::as_slice).collect();
            let want = non_dominated_sort(&refs, &violations);
            assert_eq!(want, reference_sort(&refs, &violations), "trial {trial}");
            let rows = rows_of(&objs, &violations);
            let keep = rng.random_range(1..=n);
            survival.select(&rows, keep);
            assert_eq!(survival.fronts(), want, "trial {trial}");

            // The survivors, as the textbook step picks them.
            let mut chosen = Vec::new();
            for (rank, front) in want.iter().enumerate() {
                let room = keep - chosen.len();
                if room == 0 {
                    break;
                }
                let d = crowding_distance(&refs, front);
                let mut positions: Vec<usize> = (0..front.len()).collect();
                if front.len() > room {
                    positions.sort_by(|&a, &b| d[b].total_cmp(&d[a]).then(front[a].cmp(&front[b])));
                    positions.truncate(room);
                }
                chosen.extend(
                    positions
                        .iter()
                        .map(|&p| (front[p] as u32, rank as u32, d[p])),
                );
            }
            let bits = |c: &[(u32, u32, f64)]| -> Vec<(u32, u32, u64)> {
                c.iter().map(|&(i, r, d)| (i, r, d.to_bits())).collect()
            };
            assert_eq!(bits(&survival.chosen), bits(&chosen), "trial {trial}");
        }
    }
}
