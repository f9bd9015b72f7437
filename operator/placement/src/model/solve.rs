//! Solving a placement model: the front, the pick by cost weight, and why
//! nothing is feasible when that happens.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::decompose::{Decision, exact_front, sort_and_dedup};
use super::{ModelError, PlacementModel, StandbyMode};
use crate::exact::exact;
use crate::format::{count, space_size};
use crate::nsga2::{Nsga2Settings, nsga2};
use crate::problem::Solution;
use crate::solve::SolverKind;

/// Which solver a placement uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlacementSolver {
    /// The exact front by decomposition, for any space size (the placement
    /// model is always decomposable, so exact is always affordable).
    Auto,
    /// Same as `Auto`; named for users who ask for exactness explicitly.
    Exact,
    /// Evaluate every decision (brute force); fails above `max_candidates`.
    /// For checking the decomposition and for benchmarks.
    Enumerate {
        /// Largest space to enumerate.
        max_candidates: u64,
    },
    /// NSGA-II with these settings.
    Nsga2(Nsga2Settings),
}

/// What a placement solve found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementOutcome {
    /// Version of the catalog used.
    pub catalog_version: String,
    /// The solver that produced the front.
    pub solver: SolverKind,
    /// How it solved and why that solver.
    pub reason: String,
    /// Evaluations: whole decisions (enumeration, NSGA-II) or per-site
    /// terms (decomposition).
    pub evaluations: u64,
    /// NSGA-II generations; 0 for the exact solvers.
    pub generations: usize,
    /// Wall time of the solve in milliseconds.
    pub solve_time_ms: f64,
    /// Aggregator candidates after all filters.
    pub aggregator_candidates: usize,
    /// Decisions in the space (aggregators × flavour combinations), as a
    /// float because it can exceed every integer type JSON readers know.
    pub space_size: f64,
    /// Memory the aggregator needs, in GiB.
    pub memory_needed_gib: f64,
    /// The feasible Pareto front, cheapest first.
    pub front: Vec<PlacementPoint>,
    /// Index in `front` of the point picked by the cost weight.
    pub selected: Option<usize>,
    /// Why nothing is feasible, when the front is empty.
    pub infeasibility: Option<Infeasibility>,
}

impl PlacementOutcome {
    /// The picked point.
    pub fn selected_point(&self) -> Option<&PlacementPoint> {
        self.selected.and_then(|i| self.front.get(i))
    }
}

/// One placement and its objective values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementPoint {
    /// Cloud of the aggregator.
    pub cloud: String,
    /// Region of the aggregator.
    pub region: String,
    /// Instance type of the aggregator.
    pub instance_type: String,
    /// Its on-demand price in USD per hour.
    pub hourly_usd: f64,
    /// Predicted monthly cost in USD.
    pub monthly_cost: f64,
    /// Predicted round time in seconds.
    pub round_time_seconds: f64,
    /// The parts of the monthly cost.
    pub cost: CostBreakdown,
    /// Aggregation seconds per round (part of the round time).
    pub aggregation_seconds: f64,
    /// The site whose compute and transfers bound the round.
    pub slowest_site: String,
    /// Flavour per site.
    pub site_flavours: Vec<SiteFlavour>,
    /// The standby aggregator, when one is planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyPoint>,
}

/// The standby aggregator of a placement and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandbyPoint {
    /// Cloud of the standby.
    pub cloud: String,
    /// Region of the standby.
    pub region: String,
    /// Instance type of the standby.
    pub instance_type: String,
    /// Its on-demand price in USD per hour.
    pub hourly_usd: f64,
    /// Warm or cold.
    pub mode: StandbyMode,
    /// The standby's part of the monthly cost in USD (instance +
    /// replication), included in the placement's monthly cost.
    pub monthly_cost: f64,
    /// Standby instance hours per month, in USD.
    pub instance: f64,
    /// Checkpoint replication from the primary's region, in USD per month.
    pub replication: f64,
    /// Predicted round time with the standby as the aggregator, in seconds.
    pub failover_round_time_seconds: f64,
    /// The site that bounds the failover round.
    pub failover_slowest_site: String,
}

/// Monthly cost by part, in USD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostBreakdown {
    /// Aggregator instance hours.
    pub instance: f64,
    /// Model traffic.
    pub egress: f64,
    /// Participant flavours.
    pub participants: f64,
    /// The standby (instance and replication); 0 without one.
    #[serde(default)]
    pub standby: f64,
}

/// The flavour a site trains on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteFlavour {
    /// Site name.
    pub site: String,
    /// Flavour name (`default` for a site that declares none).
    pub flavour: String,
    /// Whether the site offers a choice (more than one flavour).
    pub chosen: bool,
}

/// Which limit makes the placement infeasible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BindingConstraint {
    /// `maxMonthlyCost` is below the cheapest candidate.
    MaxMonthlyCost,
    /// `maxRoundTimeSeconds` is below the fastest candidate.
    MaxRoundTime,
    /// Each limit alone excludes everything.
    Both,
    /// Each limit alone can be met, but not both at once.
    Joint,
    /// Feasible candidates exist but the heuristic solver found none.
    SolverMissed,
    /// `standby.distinctRegion` leaves no (primary, standby) pair: every
    /// candidate is in one region.
    StandbyDistinctRegion,
    /// `standby.distinctCloud` leaves no (primary, standby) pair: every
    /// candidate is in one cloud.
    StandbyDistinctCloud,
    /// No allowed standby's failover round meets `maxRoundTimeSeconds`.
    StandbyFailoverRoundTime,
}

/// Why no candidate is feasible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Infeasibility {
    /// The constraint that binds.
    pub binding: BindingConstraint,
    /// A sentence naming it with the numbers, e.g. `maxMonthlyCost 10 USD
    /// is below the cheapest candidate's 23.40 USD (aws eu-central-1 t3.micro)`.
    pub message: String,
}

/// Solves the model and picks one point by the requirements' cost weight.
pub fn solve_placement(
    model: &PlacementModel,
    solver: &PlacementSolver,
) -> Result<PlacementOutcome, ModelError> {
    let start = Instant::now();
    let space = model.space_size();
    let aggregators = model.aggregators.len();
    let (kind, reason, decisions, evaluations, generations, mut unconstrained) = match solver {
        PlacementSolver::Auto | PlacementSolver::Exact => {
            let exact = exact_front(model);
            let mut reason = format!(
                "decomposition over {} aggregator candidates x {} site flavour terms \
                 (space {} candidates): for a fixed aggregator and round-time bound each \
                 site's cheapest adequate flavour is independent, so the front is exact",
                count(aggregators as u128),
                count(model.row_len() as u128),
                space_size(space)
            );
            if let Some(pairs) = model.counts.standby_pairs {
                reason.push_str(&format!(
                    "; with a standby over {} allowed (primary, standby) pairs, the cheapest \
                     standby among those admitting the same flavours to the failover round \
                     covers the rest, so it stays exact",
                    count(u128::from(pairs))
                ));
            }
            let feasible = feasible_decisions(model, &exact.decisions, &exact.objectives);
            (
                SolverKind::Exact,
                reason,
                feasible,
                exact.evaluations,
                0,
                Some(exact),
            )
        }
        PlacementSolver::Enumerate { max_candidates } => {
            let result = exact(model, *max_candidates)?;
            let reason = format!(
                "enumerated all {} candidates (limit {})",
                space_size(space),
                count(u128::from(*max_candidates))
            );
            (
                SolverKind::Exact,
                reason,
                decisions_of(model, &result.front),
                result.evaluations,
                0,
                None,
            )
        }
        PlacementSolver::Nsga2(settings) => {
            let result = nsga2(model, settings)?;
            let reason = format!(
                "requested (population {}, {} generations, seed {}) over {} candidates",
                settings.population,
                result.generations,
                settings.seed,
                space_size(space)
            );
            (
                SolverKind::Nsga2,
                reason,
                decisions_of(model, &result.front),
                result.evaluations,
                result.generations,
                None,
            )
        }
    };

    let mut front: Vec<(Decision, [f64; 2])> = decisions
        .into_iter()
        .map(|d| {
            let o = model.objectives(&d);
            (d, [o.monthly_cost, o.round_time])
        })
        .collect();
    sort_and_dedup(&mut front);
    let points: Vec<PlacementPoint> = front.iter().map(|(d, _)| point(model, d)).collect();
    let selected = pick(&points, model.requirements.cost_weight);
    let infeasibility = if points.is_empty() {
        let exact = unconstrained.get_or_insert_with(|| exact_front(model));
        Some(explain(model, exact, kind))
    } else {
        None
    };
    Ok(PlacementOutcome {
        catalog_version: model.catalog_version.clone(),
        solver: kind,
        reason,
        evaluations,
        generations,
        solve_time_ms: start.elapsed().as_secs_f64() * 1000.0,
        aggregator_candidates: aggregators,
        space_size: space.map_or(f64::INFINITY, |n| n as f64),
        memory_needed_gib: model.memory_needed_gib,
        front: points,
        selected,
        infeasibility,
    })
}

fn within(model: &PlacementModel, o: &[f64; 2]) -> bool {
    let r = &model.requirements;
    r.max_monthly_cost.is_none_or(|m| o[0] <= m)
        && r.max_round_time_seconds.is_none_or(|m| o[1] <= m)
}

/// The decisions of an unconstrained front that meet the limits: a point
/// that dominates a feasible one is feasible too, so this is the exact
/// constrained front.
fn feasible_decisions(
    model: &PlacementModel,
    decisions: &[Decision],
    objectives: &[[f64; 2]],
) -> Vec<Decision> {
    decisions
        .iter()
        .zip(objectives)
        .filter(|(_, o)| within(model, o))
        .map(|(d, _)| d.clone())
        .collect()
}

/// The feasible solutions of a generic solver's front, as decisions.
fn decisions_of(model: &PlacementModel, front: &[Solution]) -> Vec<Decision> {
    front
        .iter()
        .filter(|s| s.is_feasible())
        .map(|s| model.decision_of(&s.variables))
        .collect()
}

fn point(model: &PlacementModel, d: &Decision) -> PlacementPoint {
    let o = model.objectives(d);
    let agg = &model.aggregators[d.aggregator];
    let standby = match (d.standby, o.standby, &model.standby) {
        (Some(b), Some(so), Some(sm)) => {
            let sb = &model.aggregators[b];
            Some(StandbyPoint {
                cloud: sb.cloud.clone(),
                region: sb.region.clone(),
                instance_type: sb.instance_type.clone(),
                hourly_usd: sb.hourly_usd,
                mode: sm.requirement.mode,
                monthly_cost: so.instance + so.replication,
                instance: so.instance,
                replication: so.replication,
                failover_round_time_seconds: so.failover_round_time,
                failover_slowest_site: model.sites[so.failover_slowest_site].name.clone(),
            })
        }
        _ => None,
    };
    PlacementPoint {
        cloud: agg.cloud.clone(),
        region: agg.region.clone(),
        instance_type: agg.instance_type.clone(),
        hourly_usd: agg.hourly_usd,
        monthly_cost: o.monthly_cost,
        round_time_seconds: o.round_time,
        cost: CostBreakdown {
            instance: o.instance,
            egress: o.egress,
            participants: o.participants,
            standby: standby.as_ref().map_or(0.0, |s| s.monthly_cost),
        },
        aggregation_seconds: o.aggregation,
        slowest_site: model.sites[o.slowest_site].name.clone(),
        site_flavours: model
            .sites
            .iter()
            .zip(&d.flavours)
            .map(|(site, &f)| SiteFlavour {
                site: site.name.clone(),
                flavour: site.flavours[f].name.clone(),
                chosen: site.flavours.len() > 1,
            })
            .collect(),
        standby,
    }
}

/// Index of the point minimising `w · cost' + (1 − w) · time'`, with both
/// objectives normalised to [0, 1] over the front; ties go to the cheaper.
pub(crate) fn pick(points: &[PlacementPoint], cost_weight: f64) -> Option<usize> {
    let objectives: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.monthly_cost, p.round_time_seconds))
        .collect();
    pick_weighted(&objectives, cost_weight)
}

/// One point's objectives rescaled to [0, 1] over its front and its weighted score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedScore {
    /// Monthly cost rescaled over the front (0 = cheapest).
    pub cost: f64,
    /// Round time rescaled over the front (0 = fastest).
    pub time: f64,
    /// `w · cost + (1 − w) · time`.
    pub score: f64,
}

/// The score of every `(monthly cost, round time)` point at `cost_weight` (1 = cheapest,
/// 0 = fastest): what `costWeight` picks by.
pub fn weighted_scores(points: &[(f64, f64)], cost_weight: f64) -> Vec<WeightedScore> {
    let (Some((cmin, cmax)), Some((tmin, tmax))) = (
        range(points.iter().map(|p| p.0)),
        range(points.iter().map(|p| p.1)),
    ) else {
        return Vec::new();
    };
    let norm = |v: f64, lo: f64, hi: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
    points
        .iter()
        .map(|&(c, t)| {
            let (cost, time) = (norm(c, cmin, cmax), norm(t, tmin, tmax));
            WeightedScore {
                cost,
                time,
                score: cost_weight * cost + (1.0 - cost_weight) * time,
            }
        })
        .collect()
}

/// Index of the lowest [`weighted_scores`] score; the first on a tie, which is the
/// cheaper for a front sorted cheapest first (as solvers return it).
pub fn pick_weighted(points: &[(f64, f64)], cost_weight: f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in weighted_scores(points, cost_weight).iter().enumerate() {
        if best.is_none_or(|(_, b)| s.score < b) {
            best = Some((i, s.score));
        }
    }
    best.map(|(i, _)| i)
}

fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

fn describe(model: &PlacementModel, d: &Decision) -> String {
    let agg = &model.aggregators[d.aggregator];
    let mut text = format!("{} {} {}", agg.cloud, agg.region, agg.instance_type);
    if let Some(b) = d.standby {
        let sb = &model.aggregators[b];
        text.push_str(&format!(
            " with standby {} {} {}",
            sb.cloud, sb.region, sb.instance_type
        ));
    }
    text
}

/// Names the binding constraint from the exact unconstrained front, whose
/// first point is the cheapest candidate and last point the fastest.
fn explain(
    model: &PlacementModel,
    exact: &super::decompose::DecomposedFront,
    solver: SolverKind,
) -> Infeasibility {
    let r = &model.requirements;
    if let Some(why) = explain_standby(model, exact) {
        return why;
    }
    let (Some(cheapest), Some(fastest)) = (exact.objectives.first(), exact.objectives.last())
    else {
        return Infeasibility {
            binding: BindingConstraint::Joint,
            message: "the model has no candidate to evaluate".into(),
        };
    };
    let cheapest_at = describe(model, &exact.decisions[0]);
    let fastest_at = describe(model, &exact.decisions[exact.decisions.len() - 1]);
    let cost_msg = r.max_monthly_cost.filter(|&m| m < cheapest[0]).map(|m| {
        format!(
            "maxMonthlyCost {m} USD is below the cheapest candidate's {:.2} USD ({cheapest_at})",
            cheapest[0]
        )
    });
    let time_msg = r
        .max_round_time_seconds
        .filter(|&m| m < fastest[1])
        .map(|m| {
            format!(
                "maxRoundTimeSeconds {m} s is below the fastest candidate's {:.2} s ({fastest_at})",
                fastest[1]
            )
        });
    match (cost_msg, time_msg) {
        (Some(c), Some(t)) => Infeasibility {
            binding: BindingConstraint::Both,
            message: format!("{c}; and {t}"),
        },
        (Some(c), None) => Infeasibility {
            binding: BindingConstraint::MaxMonthlyCost,
            message: c,
        },
        (None, Some(t)) => Infeasibility {
            binding: BindingConstraint::MaxRoundTime,
            message: t,
        },
        (None, None) => {
            if exact.objectives.iter().any(|o| within(model, o)) {
                return Infeasibility {
                    binding: BindingConstraint::SolverMissed,
                    message: format!(
                        "{solver:?} found no feasible candidate, but the exact solver finds {}; \
                         use solver Auto or raise population/generations",
                        exact.objectives.iter().filter(|o| within(model, o)).count()
                    ),
                };
            }
            // Both limits are set here, or one of them would have bound alone.
            let max_cost = r.max_monthly_cost.unwrap_or(f64::INFINITY);
            let max_time = r.max_round_time_seconds.unwrap_or(f64::INFINITY);
            let in_time = exact
                .objectives
                .iter()
                .zip(&exact.decisions)
                .find(|(o, _)| o[1] <= max_time);
            let in_cost = exact
                .objectives
                .iter()
                .zip(&exact.decisions)
                .rev()
                .find(|(o, _)| o[0] <= max_cost);
            let mut message = format!(
                "maxMonthlyCost {max_cost} USD and maxRoundTimeSeconds {max_time} s cannot both hold"
            );
            if let Some((o, d)) = in_time {
                message.push_str(&format!(
                    ": the cheapest candidate within {max_time} s costs {:.2} USD ({})",
                    o[0],
                    describe(model, d)
                ));
            }
            if let Some((o, d)) = in_cost {
                message.push_str(&format!(
                    ", and the fastest within {max_cost} USD takes {:.2} s ({})",
                    o[1],
                    describe(model, d)
                ));
            }
            Infeasibility {
                binding: BindingConstraint::Joint,
                message,
            }
        }
    }
}

/// Why a model with a standby has no feasible decision, when the standby
/// is the cause: its pair rules leave no pair, or `maxRoundTimeSeconds`,
/// which the primary alone could meet, cannot hold for both rounds of any
/// allowed pair. `None` leaves it to the primary's limits.
fn explain_standby(
    model: &PlacementModel,
    exact: &super::decompose::DecomposedFront,
) -> Option<Infeasibility> {
    let standby = model.standby.as_ref()?;
    let n = model.aggregators.len();
    if standby.pairs == 0 {
        let first = model.aggregators.first()?;
        let left =
            format!("all {n} aggregator candidates left by candidates, data residency and memory");
        return Some(
            if standby.requirement.distinct_cloud && standby.pairs_without_distinct_cloud() {
                Infeasibility {
                    binding: BindingConstraint::StandbyDistinctCloud,
                    message: format!(
                        "requirements.standby.distinctCloud needs the standby in another cloud \
                         than the primary, but {left} are in {}; allow a second cloud or set \
                         distinctCloud false",
                        first.cloud
                    ),
                }
            } else {
                Infeasibility {
                    binding: BindingConstraint::StandbyDistinctRegion,
                    message: format!(
                        "requirements.standby.distinctRegion needs the standby in another \
                         region than the primary, but {left} are in {}:{}; allow a second region",
                        first.cloud, first.region
                    ),
                }
            },
        );
    }
    let max = model.requirements.max_round_time_seconds?;
    if exact
        .objectives
        .last()
        .is_some_and(|fastest| fastest[1] <= max)
    {
        return None;
    }
    // Per site, the fastest flavour's time plus aggregation under `a`; the
    // fastest round of `a` alone is the largest of these.
    let fastest_site = |a: usize, s: usize, other: Option<usize>| {
        let site_time =
            |x: usize, f: usize| model.site_time[model.term(x, s, f)] + model.aggregation_time[x];
        (0..model.sites[s].flavours.len())
            .map(|f| other.map_or(site_time(a, f), |b| site_time(a, f).max(site_time(b, f))))
            .fold(f64::INFINITY, f64::min)
    };
    let fastest = |a: usize, b: Option<usize>| {
        (0..model.sites.len())
            .map(|s| fastest_site(a, s, b))
            .fold(0.0, f64::max)
    };
    let primary_time = (0..n)
        .map(|a| fastest(a, None))
        .fold(f64::INFINITY, f64::min);
    if primary_time > max && !exact.objectives.is_empty() {
        // The primary alone misses the limit: the primary's limits explain it.
        return None;
    }
    // Both rounds share the flavours, so the best a pair can do is, per
    // site, the flavour whose slower round is fastest.
    let mut best: Option<(f64, usize, usize)> = None;
    for a in 0..n {
        for b in (0..n).filter(|&b| standby.allowed(a, b)) {
            let t = fastest(a, Some(b));
            if best.is_none_or(|(bt, _, _)| t < bt) {
                best = Some((t, a, b));
            }
        }
    }
    let (t, a, b) = best?;
    let describe_pair = describe(
        model,
        &Decision {
            aggregator: a,
            flavours: Vec::new(),
            standby: Some(b),
        },
    );
    Some(if primary_time > max {
        Infeasibility {
            binding: BindingConstraint::MaxRoundTime,
            message: format!(
                "maxRoundTimeSeconds {max} s is below the fastest candidate's \
                 {primary_time:.2} s, and the fastest pair with a standby needs {t:.2} s \
                 ({describe_pair})"
            ),
        }
    } else {
        Infeasibility {
            binding: BindingConstraint::StandbyFailoverRoundTime,
            message: format!(
                "maxRoundTimeSeconds {max} s bounds the failover round of \
                 requirements.standby too, and no (primary, standby) pair that distinctRegion \
                 and distinctCloud allow keeps both rounds within it: the best pair needs \
                 {t:.2} s ({describe_pair}) while the primary alone could take \
                 {primary_time:.2} s; raise maxRoundTimeSeconds or relax the standby's rules"
            ),
        }
    })
}
