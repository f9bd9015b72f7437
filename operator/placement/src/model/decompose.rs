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
//! Work: `O(A · K · (log K + S))` for `A` aggregators, `S` sites and `K`
//! flavours over all sites — independent of the `A · Π F_s` space size.

use super::PlacementModel;
use crate::pareto::non_dominated_indices;

/// A decision: aggregator index and one flavour index per site.
pub type Decision = (usize, Vec<usize>);

/// The exact front before constraints, and the work it took.
#[derive(Debug, Clone, PartialEq)]
pub struct DecomposedFront {
    /// Non-dominated decisions, cheapest first; one decision per distinct
    /// (cost, round time) point.
    pub decisions: Vec<Decision>,
    /// Their (monthly cost, round time), in the same order.
    pub objectives: Vec<[f64; 2]>,
    /// Per-site terms evaluated: aggregators × flavours over all sites.
    pub evaluations: u64,
}

/// The exact unconstrained Pareto front of `model`.
pub fn exact_front(model: &PlacementModel) -> DecomposedFront {
    let n_sites = model.sites.len();
    let mut decisions: Vec<Decision> = Vec::new();
    // (t, c, s, f) of one aggregator's per-site terms, reused across
    // aggregators to avoid reallocating.
    let mut events: Vec<(f64, f64, usize, usize)> = Vec::with_capacity(model.row_len());
    for a in 0..model.aggregators.len() {
        events.clear();
        for (s, site) in model.sites.iter().enumerate() {
            for f in 0..site.flavours.len() {
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
                decisions.push((a, best.iter().flatten().map(|&(_, f)| f).collect()));
            }
        }
    }

    let objectives: Vec<[f64; 2]> = decisions
        .iter()
        .map(|(a, f)| {
            let o = model.objectives(*a, f);
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
        evaluations: (model.aggregators.len() * model.row_len()) as u64,
    }
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
