use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::super::tests::{close, input, objective_set, random_input, site, small};
use super::super::*;
use crate::catalog::Catalog;
use crate::nsga2::Nsga2Settings;
use crate::pareto::dominates;
use crate::problem::Problem;

fn warm() -> StandbyRequirement {
    StandbyRequirement::default()
}

fn solve(catalog: &Catalog, inp: &PlacementInput) -> PlacementOutcome {
    let model = PlacementModel::build(catalog, inp).expect("builds");
    solve_placement(&model, &PlacementSolver::Auto).expect("solves")
}

fn three_hospitals() -> PlacementInput {
    input(vec![
        site("hospital-eu", "aws:eu-central-1", &[]),
        site("hospital-asia", "aws:ap-northeast-2", &[]),
        site("hospital-us", "aws:us-east-1", &[]),
    ])
}

#[test]
fn standby_cost_and_failover_time_follow_the_documented_formulas() {
    let catalog = small();
    let mut inp = input(vec![
        site("eu", "aws:eu-central-1", &[]),
        site("us", "us-east-1", &[]),
    ]);
    inp.workload.model_size_mb = 100.0;
    inp.workload.rounds_per_month = 1000.0;
    inp.requirements.standby = Some(warm());
    let model = PlacementModel::build(&catalog, &inp).expect("builds");
    // Gene order: aws eu-central-1 m5.large, aws us-east-1 m5.large, gcp us-east1.
    let primary_only = |a| {
        let mut plain = inp.clone();
        plain.requirements.standby = None;
        PlacementModel::build(&catalog, &plain)
            .expect("builds")
            .objectives(&Decision {
                aggregator: a,
                flavours: vec![0, 0],
                standby: None,
            })
    };
    let d = Decision {
        aggregator: 0,
        flavours: vec![0, 0],
        standby: Some(1),
    };
    let o = model.objectives(&d);
    let sb = o.standby.expect("a standby");
    // Warm: the standby instance all month, plus one 0.1 GB checkpoint per
    // round from Frankfurt to Virginia at 0.02 USD/GB.
    assert!(close(sb.instance, 0.096 * 730.0));
    assert!(close(sb.replication, 1000.0 * 0.1 * 0.02));
    let primary = primary_only(0);
    assert!(close(
        o.monthly_cost,
        primary.monthly_cost + sb.instance + sb.replication
    ));
    // The round time is the primary's; the failover round is the standby's
    // own round time as a primary.
    assert_eq!(o.round_time, primary.round_time);
    assert_eq!(sb.failover_round_time, primary_only(1).round_time);
    assert!(sb.allowed);

    // Cold: the instance only for the expected failover hours.
    inp.requirements.standby = Some(StandbyRequirement {
        mode: StandbyMode::Cold,
        failover_hours_per_month: 10.0,
        ..warm()
    });
    let cold = PlacementModel::build(&catalog, &inp).expect("builds");
    let sb = cold.objectives(&d).standby.expect("a standby");
    assert!(close(sb.instance, 0.096 * 10.0));
    assert!(close(sb.replication, 1000.0 * 0.1 * 0.02));
}

#[test]
fn pair_rules_follow_distinct_region_and_cloud() {
    let catalog = small();
    let mut inp = input(vec![site("eu", "aws:eu-central-1", &[])]);
    inp.requirements.standby = Some(warm());
    let model = PlacementModel::build(&catalog, &inp).expect("builds");
    let allowed = |m: &PlacementModel, a, b| {
        m.objectives(&Decision {
            aggregator: a,
            flavours: vec![0],
            standby: Some(b),
        })
        .standby
        .expect("a standby")
        .allowed
    };
    assert!(!allowed(&model, 0, 0), "same region");
    assert!(allowed(&model, 0, 1), "another AWS region");
    assert!(allowed(&model, 0, 2), "another cloud");
    assert_eq!(model.counts().standby_pairs, Some(6));
    inp.requirements.standby = Some(StandbyRequirement {
        distinct_cloud: true,
        ..warm()
    });
    let model = PlacementModel::build(&catalog, &inp).expect("builds");
    assert!(!allowed(&model, 0, 1), "same cloud");
    assert!(allowed(&model, 0, 2));
    assert_eq!(model.counts().standby_pairs, Some(4));
    inp.requirements.standby = Some(StandbyRequirement {
        distinct_region: false,
        ..warm()
    });
    let model = PlacementModel::build(&catalog, &inp).expect("builds");
    assert!(
        allowed(&model, 0, 0),
        "a second instance in the same region"
    );
    assert_eq!(model.counts().standby_pairs, Some(9));
}

#[test]
fn a_standby_adds_cost_never_time_and_its_failover_meets_the_limit() {
    let catalog = Catalog::builtin().expect("valid");
    let mut inp = three_hospitals();
    let without = solve(catalog, &inp);
    inp.requirements.standby = Some(warm());
    let with = solve(catalog, &inp);
    // Every standby point costs more than the cheapest point without one
    // at the same or a slower round time, and the fastest round is the same.
    assert_eq!(
        with.front.last().map(|p| p.round_time_seconds),
        without.front.last().map(|p| p.round_time_seconds)
    );
    for p in &with.front {
        let sb = p.standby.as_ref().expect("every point has a standby");
        assert_ne!(
            (sb.cloud.as_str(), sb.region.as_str()),
            (p.cloud.as_str(), p.region.as_str())
        );
        assert!(close(p.cost.standby, sb.instance + sb.replication));
        assert!(close(
            p.monthly_cost,
            p.cost.instance + p.cost.egress + p.cost.participants + p.cost.standby
        ));
        let alone = without
            .front
            .iter()
            .filter(|q| q.round_time_seconds <= p.round_time_seconds)
            .map(|q| q.monthly_cost)
            .fold(f64::INFINITY, f64::min);
        assert!(p.monthly_cost > alone, "{p:?}");
    }
    // A limit on the round time bounds the failover round too.
    let limit = with.front[with.front.len() / 2].round_time_seconds;
    inp.requirements.max_round_time_seconds = Some(limit);
    let limited = solve(catalog, &inp);
    assert!(!limited.front.is_empty());
    for p in &limited.front {
        let sb = p.standby.as_ref().expect("a standby");
        assert!(sb.failover_round_time_seconds <= limit, "{p:?}");
        assert!(p.round_time_seconds <= limit);
    }
}

#[test]
fn decomposition_with_a_standby_equals_brute_force() {
    let catalog = Catalog::builtin().expect("valid");
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut rich = 0;
    let mut cut_by_failover = 0;
    let mut partial = 0;
    for trial in 0..12 {
        let mut inp = random_input(&mut rng, 3 + trial % 3, 4);
        inp.requirements.standby = Some(StandbyRequirement {
            mode: if trial % 2 == 0 {
                StandbyMode::Warm
            } else {
                StandbyMode::Cold
            },
            distinct_region: trial % 5 != 4,
            distinct_cloud: trial % 3 == 2,
            failover_hours_per_month: rng.random_range(0.0..50.0),
        });
        let free = solve(catalog, &inp);
        // Limits from the front: a round-time limit binds the failover
        // rounds of many standbys (and of all of them, in some trials).
        let at = |i: usize| &free.front[i.min(free.front.len() - 1)];
        match trial % 4 {
            1 => inp.requirements.max_round_time_seconds = Some(at(0).round_time_seconds),
            2 => inp.requirements.max_monthly_cost = Some(at(free.front.len() / 2).monthly_cost),
            3 => {
                inp.requirements.max_round_time_seconds =
                    Some(at(free.front.len() / 2).round_time_seconds);
            }
            _ => {}
        }
        let model = PlacementModel::build(catalog, &inp).expect("builds");
        let exact = solve_placement(&model, &PlacementSolver::Auto).expect("solves");
        let brute = solve_placement(
            &model,
            &PlacementSolver::Enumerate {
                max_candidates: 200_000,
            },
        )
        .expect("enumerates");
        assert_eq!(
            objective_set(&exact),
            objective_set(&brute),
            "trial {trial}"
        );
        assert_eq!(exact.infeasibility, brute.infeasibility, "trial {trial}");
        assert_eq!(exact.selected, brute.selected, "trial {trial}");
        // The reported standbys may differ only between equally good ones.
        for (e, b) in exact.front.iter().zip(&brute.front) {
            let (es, bs) = (e.standby.as_ref(), b.standby.as_ref());
            assert_eq!(
                es.map(|s| s.monthly_cost),
                bs.map(|s| s.monthly_cost),
                "trial {trial}"
            );
        }
        rich += usize::from(exact.front.len() > 3);
        // Standbys whose failover round admits some flavours but not all:
        // the case where the decomposition must drop flavours per group.
        partial += usize::from(
            super::super::decompose::standby_groups(&model)
                .keys()
                .any(|mask| mask.iter().any(|ok| !ok)),
        );
        // Count trials where the failover limit removed a point that the
        // primary alone would keep.
        if let Some(max) = inp.requirements.max_round_time_seconds {
            let mut primary_only = inp.clone();
            primary_only.requirements.standby = Some(StandbyRequirement {
                distinct_region: false,
                distinct_cloud: false,
                ..warm()
            });
            primary_only.requirements.max_round_time_seconds = None;
            let lenient = solve(catalog, &primary_only);
            let fails_over_slowly = lenient.front.iter().any(|p| {
                p.round_time_seconds <= max
                    && p.standby
                        .as_ref()
                        .is_some_and(|s| s.failover_round_time_seconds > max)
            });
            cut_by_failover += usize::from(fails_over_slowly);
        }
    }
    assert!(
        rich >= 6,
        "only {rich} trials had fronts of more than 3 points"
    );
    assert!(
        cut_by_failover >= 1,
        "no trial exercised the failover limit"
    );
    assert!(
        partial >= 2,
        "only {partial} trials had standbys admitting some flavours"
    );
}

#[test]
fn repair_with_a_standby_never_worsens_a_point() {
    let catalog = Catalog::builtin().expect("valid");
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut inp = random_input(&mut rng, 5, 4);
    inp.requirements.standby = Some(StandbyRequirement {
        distinct_cloud: true,
        ..warm()
    });
    // The slowest point's round time: a limit that many standbys' failover
    // rounds miss.
    let free = solve(catalog, &inp);
    inp.requirements.max_round_time_seconds = Some(free.front[0].round_time_seconds);
    let model = PlacementModel::build(catalog, &inp).expect("builds");
    let sizes: Vec<usize> = model
        .variables()
        .iter()
        .map(|v| match v {
            crate::problem::Variable::Categorical { choices } => *choices,
            crate::problem::Variable::Real { .. } => 1,
        })
        .collect();
    let violation = |g: &[f64]| g.iter().map(|v| v.max(0.0)).sum::<f64>();
    let (mut f0, mut f1, mut g0, mut g1) = ([0.0; 2], [0.0; 2], [0.0; 4], [0.0; 4]);
    let mut fixed = 0;
    for _ in 0..500 {
        let mut x: Vec<f64> = sizes
            .iter()
            .map(|&n| rng.random_range(0..n) as f64)
            .collect();
        model.evaluate(&x, &mut f0, &mut g0);
        let before = x.clone();
        model.repair(&mut x);
        model.evaluate(&x, &mut f1, &mut g1);
        assert_eq!(x[0], before[0], "the aggregator gene is kept");
        let (v0, v1) = (violation(&g0), violation(&g1));
        assert!(v1 <= v0, "violation {v0} -> {v1}");
        assert!(f1[1] <= f0[1], "round time {f0:?} -> {f1:?}");
        if v0 == 0.0 {
            assert!(f1[0] <= f0[0], "cost of a feasible point {f0:?} -> {f1:?}");
        }
        fixed += usize::from(v0 > 0.0 && v1 == 0.0);
    }
    assert!(fixed > 0, "no infeasible point was repaired");
}

#[test]
fn nsga2_with_a_standby_is_never_better_than_exact_and_is_deterministic() {
    let catalog = Catalog::builtin().expect("valid");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut inp = random_input(&mut rng, 5, 4);
    inp.requirements.standby = Some(warm());
    let free = solve(catalog, &inp);
    let limit = free.front[0].round_time_seconds;
    inp.requirements.max_round_time_seconds = Some(limit);
    let model = PlacementModel::build(catalog, &inp).expect("builds");
    let exact = solve_placement(&model, &PlacementSolver::Auto).expect("solves");
    let settings = Nsga2Settings {
        population: 40,
        generations: 30,
        seed: 3,
        ..Nsga2Settings::default()
    };
    let a = solve_placement(&model, &PlacementSolver::Nsga2(settings.clone())).expect("solves");
    let b = solve_placement(&model, &PlacementSolver::Nsga2(settings)).expect("solves");
    assert_eq!(a.front, b.front);
    assert!(!a.front.is_empty());
    let exact_points = objective_set(&exact);
    for p in &a.front {
        let q = (p.monthly_cost, p.round_time_seconds);
        let covered = exact_points
            .iter()
            .any(|e| *e == q || dominates(&[e.0, e.1], &[q.0, q.1]));
        assert!(
            covered,
            "NSGA-II point {q:?} is neither on nor behind the exact front"
        );
        let sb = p.standby.as_ref().expect("a standby");
        assert!(sb.failover_round_time_seconds <= limit);
    }
}

#[test]
fn infeasible_standbys_name_the_binding_rule() {
    let catalog = Catalog::builtin().expect("valid");
    // One allowed cloud and distinctCloud.
    let mut inp = three_hospitals();
    inp.requirements.allowed_clouds = vec!["aws".into()];
    inp.requirements.standby = Some(StandbyRequirement {
        distinct_cloud: true,
        ..warm()
    });
    let out = solve(catalog, &inp);
    assert!(out.front.is_empty() && out.selected.is_none());
    let why = out.infeasibility.expect("explained");
    assert_eq!(why.binding, BindingConstraint::StandbyDistinctCloud);
    assert!(
        why.message.starts_with(
            "requirements.standby.distinctCloud needs the standby in another cloud than the \
             primary, but all "
        ) && why
            .message
            .contains(" are in aws; allow a second cloud or set distinctCloud false"),
        "{}",
        why.message
    );

    // One allowed region and distinctRegion (the default).
    let mut inp = three_hospitals();
    inp.candidates.regions = vec!["aws:us-east-1".into()];
    inp.requirements.standby = Some(warm());
    let why = solve(catalog, &inp).infeasibility.expect("explained");
    assert_eq!(why.binding, BindingConstraint::StandbyDistinctRegion);
    assert!(
        why.message
            .starts_with("requirements.standby.distinctRegion needs the standby")
            && why
                .message
                .contains(" are in aws:us-east-1; allow a second region"),
        "{}",
        why.message
    );
    // Without distinctRegion the same candidates give a feasible placement.
    inp.requirements.standby = Some(StandbyRequirement {
        distinct_region: false,
        ..warm()
    });
    assert!(solve(catalog, &inp).selected.is_some());

    // A round-time limit the primary meets but no allowed standby's
    // failover round does: a fast region and a slow one.
    let mut inp = three_hospitals();
    inp.candidates.regions = vec!["gcp:us-west1".into(), "aws:sa-east-1".into()];
    let fastest = |region: &str| {
        let mut one = three_hospitals();
        one.candidates.regions = vec![region.into()];
        let out = solve(catalog, &one);
        out.front[out.front.len() - 1].round_time_seconds
    };
    let (fast, slow) = (fastest("gcp:us-west1"), fastest("aws:sa-east-1"));
    assert!(fast < slow, "{fast} {slow}");
    inp.requirements.max_round_time_seconds = Some((fast + slow) / 2.0);
    assert!(
        solve(catalog, &inp).selected.is_some(),
        "feasible without a standby"
    );
    inp.requirements.standby = Some(warm());
    let out = solve(catalog, &inp);
    let why = out.infeasibility.expect("explained");
    assert_eq!(why.binding, BindingConstraint::StandbyFailoverRoundTime);
    assert!(
        why.message.starts_with(&format!(
            "maxRoundTimeSeconds {} s bounds the failover round of requirements.standby too, \
             and no (primary, standby) pair that distinctRegion and distinctCloud allow keeps \
             both rounds within it: the best pair needs {slow:.2} s (",
            (fast + slow) / 2.0
        )) && why
            .message
            .contains(&format!("the primary alone could take {fast:.2} s")),
        "{}",
        why.message
    );
    // NSGA-II names the same rule.
    let model = PlacementModel::build(catalog, &inp).expect("builds");
    let heuristic = solve_placement(
        &model,
        &PlacementSolver::Nsga2(Nsga2Settings {
            population: 20,
            generations: 5,
            ..Nsga2Settings::default()
        }),
    )
    .expect("solves");
    assert_eq!(heuristic.infeasibility, Some(why));
}

#[test]
fn bad_failover_hours_are_refused() {
    let catalog = small();
    let mut inp = input(vec![site("eu", "aws:eu-central-1", &[])]);
    inp.requirements.standby = Some(StandbyRequirement {
        mode: StandbyMode::Cold,
        failover_hours_per_month: -1.0,
        ..warm()
    });
    let e = PlacementModel::build(&catalog, &inp).expect_err("negative hours");
    assert_eq!(
        e.to_string(),
        "requirements.standby.failoverHoursPerMonth is -1; expected a finite number of hours >= 0"
    );
}
