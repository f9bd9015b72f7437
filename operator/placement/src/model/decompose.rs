//! The exact Pareto front of a placement model by decomposition.
//!
//! For a fixed aggregator `a`, cost is `instance(a) + Σ_s c(a, s, f_s)` and
//! round time `aggregation(a) + max_s t(a, s, f_s)`. Any decision's round
//! time bound `T = max_s t(a, s, f_s)` is one of the per-site times, and
//! for that `T` the cheapest decision takes, independently per site, the
//! cheapest flavour with `t <= T`: it costs no more and is no slower. So
//! sweeping `T` over the sorted per-site times yields, per aggregator, a
//! staircase that weakly dominates every decision with that aggregator, and
//! the non-dominated union over aggregators is the exact front.
//!
//! With a standby `b`, cost gains `S(a, b)` (its instance and the
//! replication from `a`'s region), round time is unchanged, and the
//! failover round `aggregation(b) + max_s t(b, s, f_s)` must stay within
//! `maxRoundTimeSeconds`. That constraint holds exactly when every site's
//! term does, so it only removes flavours, site by site: standby `b` admits
//! flavour `f` at site `s` when `t(b, s, f) + aggregation(b) <= max`.
//! Standbys that admit the same flavours form a group; within a group and
//! for a fixed `a`, the one with the least `S(a, b)` (allowed with `a`)
//! weakly dominates the others, whatever the flavours. So the staircase of
//! each (`a`, group) over the group's admitted flavours, with that cheapest
//! standby, again covers every feasible decision, and the union is exact.
//!
//! Work: `O(A · K · (log K + S))` for `A` aggregators, `S` sites and `K`
//! flavours over all sites — independent of the `A · Π F_s` space size;
//! with a standby, `O(A · (A + G · K · S))` for `G` groups (one without a
//! round-time limit).

use std::collections::BTreeMap;

pub use super::Decision;
use super::PlacementModel;
use crate::pareto::non_dominated_indices;

/// The exact front before constraints, and the work it took.
#[derive(Debug, Clone, PartialEq)]
pub struct DecomposedFront {
    /// Non-dominated decisions, cheapest first; one decision per distinct
    /// (cost, round time) point.
    pub decisions: Vec<Decision>,
    /// Their (monthly cost, round time), in the same order.
    pub objectives: Vec<[f64; 2]>,
    /// Per-site terms (and standby pairs) evaluated.
    pub evaluations: u64,
}

/// The exact Pareto front of `model` before the cost and round-time limits
/// (which cut it afterwards: a point that dominates a feasible one is
/// feasible). With a standby, the pair rules and the failover round's limit
/// are applied here already, since they are not objectives.
pub fn exact_front(model: &PlacementModel) -> DecomposedFront {
    let (decisions, evaluations) = match &model.standby {
        None => {
            let all = vec![true; model.row_len()];
            let mut decisions = Vec::new();
            let mut events = Vec::with_capacity(model.row_len());
            for a in 0..model.aggregators.len() {
                sweep(model, a, &all, &mut events, |flavours| {
                    decisions.push(Decision {
                        aggregator: a,
                        flavours,
                        standby: None,
                    });
                });
            }
            (
                decisions,
                (model.aggregators.len() * model.row_len()) as u64,
            )
        }
        Some(standby) => {
            let groups = standby_groups(model);
            let n = model.aggregators.len();
            let mut decisions = Vec::new();
            let mut events = Vec::with_capacity(model.row_len());
            let mut evaluations = (n * model.row_len()) as u64;
            for a in 0..n {
                for (mask, members) in &groups {
                    evaluations += members.len() as u64;
                    // The cheapest allowed standby of the group; ties go to
                    // the first in gene order.
                    let mut best: Option<(f64, usize)> = None;
                    for &b in members {
                        if !standby.allowed(a, b) {
                            continue;
                        }
                        let (instance, replication) = standby.cost(a, b);
                        let cost = instance + replication;
                        if best.is_none_or(|(c, _)| cost < c) {
                            best = Some((cost, b));
                        }
                    }
                    let Some((_, b)) = best else { continue };
                    evaluations += model.row_len() as u64;
                    sweep(model, a, mask, &mut events, |flavours| {
                        decisions.push(Decision {
                            aggregator: a,
                            flavours,
                            standby: Some(b),
                        });
                    });
                }
            }
            (decisions, evaluations)
        }
    };

    let objectives: Vec<[f64; 2]> = decisions
        .iter()
        .map(|d| {
            let o = model.objectives(d);
            [o.monthly_cost, o.round_time]
        })
        .collect();
    let rows: Vec<&[f64]> = objectives.iter().map(|o| o.as_slice()).collect();
    let keep = non_dominated_indices(&rows);
    let mut front: Vec<(Decision, [f64; 2])> = keep
        .into_iter()
        .map(|i| (decisions[i].clone(), objectives[i]))
        .collect();
    sort_and_dedup(&mut front);
    let (decisions, objectives) = front.into_iter().unzip();
    DecomposedFront {
        decisions,
        objectives,
        evaluations,
    }
}

/// One aggregator's staircase over the per-site terms that `admitted`
/// (indexed like a row of terms) lets through: for each distinct bound on
/// the slowest site's time, the cheapest admitted flavour per site, kept
/// when it costs less than the previous bound's. `emit` gets the flavours.
fn sweep(
    model: &PlacementModel,
    a: usize,
    admitted: &[bool],
    events: &mut Vec<(f64, f64, usize, usize)>,
    mut emit: impl FnMut(Vec<usize>),
) {
    let n_sites = model.sites.len();
    // (t, c, s, f) of the aggregator's per-site terms, reused across calls
    // to avoid reallocating.
    events.clear();
    for (s, site) in model.sites.iter().enumerate() {
        for f in 0..site.flavours.len() {
            if !admitted[model.site_offset[s] + f] {
                continue;
            }
            let t = model.term(a, s, f);
            events.push((
                model.site_time[t],
                model.site_egress[t] + model.site_flavour_cost[t],
                s,
                f,
            ));
        }
    }
    // Ties in time: cheaper first, so the fastest of equally cheap
    // flavours is the one kept.
    events.sort_by(|x, y| {
        x.0.total_cmp(&y.0)
            .then(x.1.total_cmp(&y.1))
            .then(x.2.cmp(&y.2))
            .then(x.3.cmp(&y.3))
    });
    let mut best: Vec<Option<(f64, usize)>> = vec![None; n_sites];
    let mut covered = 0;
    let mut last_cost = f64::INFINITY;
    let mut i = 0;
    while i < events.len() {
        let t = events[i].0;
        while i < events.len() && events[i].0.total_cmp(&t).is_eq() {
            let (_, c, s, f) = events[i];
            match best[s] {
                None => {
                    best[s] = Some((c, f));
                    covered += 1;
                }
                Some((bc, _)) if c < bc => best[s] = Some((c, f)),
                Some(_) => {}
            }
            i += 1;
        }
        if covered < n_sites {
            continue;
        }
        let cost: f64 = best.iter().flatten().map(|(c, _)| c).sum();
        // A larger bound that costs no less is dominated by the last one.
        if cost < last_cost {
            last_cost = cost;
            emit(best.iter().flatten().map(|&(_, f)| f).collect());
        }
    }
}

/// The standbys grouped by the flavours their failover round admits (a
/// mask over a row of terms), leaving out those that admit no flavour at
/// some site; in mask order, members in gene order.
pub(crate) fn standby_groups(model: &PlacementModel) -> BTreeMap<Vec<bool>, Vec<usize>> {
    let mut groups: BTreeMap<Vec<bool>, Vec<usize>> = BTreeMap::new();
    'standby: for b in 0..model.aggregators.len() {
        let mut mask = vec![false; model.row_len()];
        for (s, site) in model.sites.iter().enumerate() {
            let mut any = false;
            for f in 0..site.flavours.len() {
                let ok = model.failover_admits(b, s, f);
                mask[model.site_offset[s] + f] = ok;
                any |= ok;
            }
            if !any {
                continue 'standby;
            }
        }
        groups.entry(mask).or_default().push(b);
    }
    groups
}

/// Sorts by (cost, time, decision) and keeps the first decision of each
/// distinct objective point, so every solver reports a front the same way.
pub(crate) fn sort_and_dedup(front: &mut Vec<(Decision, [f64; 2])>) {
    front.sort_by(|(da, oa), (db, ob)| {
        oa[0]
            .total_cmp(&ob[0])
            .then(oa[1].total_cmp(&ob[1]))
            .then_with(|| da.cmp(db))
    });
    front.dedup_by(|later, earlier| later.1 == earlier.1);
}
