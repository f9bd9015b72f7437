use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::catalog::{Catalog, CatalogOverlay};
use crate::nsga2::Nsga2Settings;
use crate::pareto::dominates;

pub(super) fn small() -> Catalog {
    Catalog::from_yaml(crate::catalog::tests::SMALL).expect("fixture is valid")
}

pub(super) fn site(name: &str, region: &str, flavours: &[(&str, f64, f64)]) -> SiteInput {
    SiteInput {
        name: name.into(),
        region: RegionRef::parse(region),
        flavours: flavours
            .iter()
            .map(|&(n, price, speed)| FlavourInput {
                name: n.into(),
                hourly_usd: price,
                relative_speed: speed,
            })
            .collect(),
    }
}

pub(super) fn input(sites: Vec<SiteInput>) -> PlacementInput {
    PlacementInput {
        sites,
        candidates: CandidateFilter::default(),
        requirements: Requirements::default(),
        workload: Workload::default(),
        timing: TimingModel::default(),
    }
}

fn two_sites() -> PlacementInput {
    input(vec![
        site("eu", "aws:eu-central-1", &[]),
        site("us", "us-east-1", &[]),
    ])
}

pub(super) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn objectives_follow_the_documented_formulas() {
    let catalog = small();
    let mut inp = two_sites();
    inp.workload = Workload {
        model_size_mb: 100.0,
        rounds_per_month: 1000.0,
        hours_per_month: 730.0,
        local_compute_seconds: 10.0,
        memory: AggregationMemory::StreamingMean,
        charge_site_egress: true,
    };
    let model = PlacementModel::build(&catalog, &inp).expect("builds");
    // Gene order: aws eu-central-1 m5.large, aws us-east-1 m5.large, gcp us-east1 e2.
    let names: Vec<String> = model
        .aggregators()
        .iter()
        .map(|a| format!("{}:{}:{}", a.cloud, a.region, a.instance_type))
        .collect();
    assert_eq!(
        names,
        [
            "aws:eu-central-1:m5.large",
            "aws:us-east-1:m5.large",
            "gcp:us-east1:e2-standard-2"
        ]
    );
    // Aggregator in us-east-1.
    let o = model.objectives(&Decision {
        aggregator: 1,
        flavours: vec![0, 0],
        standby: None,
    });
    let instance = 0.096 * 730.0;
    // Down to eu: us-east-1 has no per-region price → internet 0.09; up from
    // eu to us-east-1: 0.02; the us site is in the same region: free.
    let egress = 1000.0 * 0.1 * (0.09 + 0.02);
    assert!(close(o.instance, instance));
    assert!(close(o.egress, egress), "{}", o.egress);
    assert!(close(o.monthly_cost, instance + egress));
    // eu site: RTT 90 ms, 5 Gbit/s measured vs 4 MiB window / 90 ms.
    let rtt: f64 = 0.090;
    let bps = (4.0 * 1_048_576.0 * 8.0 / rtt).min(5e9);
    let transfer = 2.0 * rtt + 100e6 * 8.0 / bps;
    let aggregation = 2.0 * 0.1 / (0.5 * 2.0);
    assert!(close(o.round_time, 10.0 + 2.0 * transfer + aggregation));
    assert_eq!(o.slowest_site, 0);
}

#[test]
fn memory_need_filters_candidates_and_explains_an_empty_set() {
    let catalog = small();
    let mut inp = two_sites();
    inp.workload.model_size_mb = 1000.0;
    inp.workload.memory = AggregationMemory::AllUpdates;
    // 1000 MB x 4 copies = 3.73 GiB + 0.5: fits in 8 GiB.
    let model = PlacementModel::build(&catalog, &inp).expect("fits");
    assert!((model.memory_needed_gib() - (4e9 / 1_073_741_824.0 + 0.5)).abs() < 1e-12);
    inp.workload.model_size_mb = 3000.0;
    let e = PlacementModel::build(&catalog, &inp).expect_err("too big");
    assert_eq!(
        e.to_string(),
        "no aggregator candidate left: the aggregation needs 11.68 GiB of memory (model 3000 MB \
         x 4 copies + 0.5 GiB base) but the largest allowed instance has 8 GiB"
    );
}

#[test]
fn bad_input_gives_precise_errors() {
    let catalog = small();
    let err = |inp: &PlacementInput| match PlacementModel::build(&catalog, inp) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err(&input(vec![])),
        "no participant sites: a placement needs at least one site"
    );
    assert_eq!(
        err(&input(vec![site("eu", "eu-centrl-1", &[])])),
        "unknown region `eu-centrl-1` in site eu (did you mean aws:eu-central-1?)"
    );
    assert_eq!(
        err(&input(vec![
            site("eu", "eu-central-1", &[]),
            site("eu", "us-east-1", &[])
        ])),
        "duplicate site name `eu`"
    );
    let mut inp = two_sites();
    inp.candidates.clouds = vec!["azure".into()];
    assert_eq!(
        err(&inp),
        "unknown cloud `azure` in candidates.clouds; the catalog has aws, gcp"
    );
    let mut inp = two_sites();
    inp.candidates.instance_types = vec!["m5.larg".into()];
    assert_eq!(
        err(&inp),
        "unknown instance type `m5.larg` in candidates.instanceTypes (did you mean m5.large?)"
    );
    let mut inp = two_sites();
    inp.candidates.clouds = vec!["gcp".into()];
    inp.requirements.allowed_clouds = vec!["aws".into()];
    assert_eq!(
        err(&inp),
        "no aggregator candidate left: contradictory requirements: the 1 candidates of clouds \
         [gcp], regions [], instanceTypes [] all lie outside dataResidency (allowedClouds [aws], \
         allowedRegions [])"
    );
    let mut inp = two_sites();
    inp.candidates.regions = vec!["us-east1".into()];
    inp.candidates.instance_types = vec!["m5.large".into()];
    assert!(err(&inp).starts_with("no aggregator candidate left: no catalog instance type"));
    let mut inp = two_sites();
    inp.requirements.cost_weight = 1.5;
    assert_eq!(
        err(&inp),
        "requirements.costWeight is 1.5; expected a weight in [0, 1] (1 = cheapest, 0 = fastest)"
    );
    let mut inp = two_sites();
    inp.requirements.max_monthly_cost = Some(-1.0);
    assert!(err(&inp).starts_with("requirements.maxMonthlyCost is -1"));
    let mut inp = two_sites();
    inp.workload.model_size_mb = f64::NAN;
    assert!(err(&inp).starts_with("workload.modelSizeMB is NaN"));
    let inp = input(vec![site("eu", "eu-central-1", &[("big", 1.0, 0.0)])]);
    assert_eq!(
        err(&inp),
        "site eu flavour big relativeSpeed is 0; expected a finite speed > 0"
    );
}

#[test]
fn bare_region_names_must_be_unique_across_clouds() {
    let overlay = CatalogOverlay::from_yaml(
        "version: dc\nregions:\n  - { cloud: openstack, name: us-east-1, networkLike: \"aws:us-east-1\" }\n",
    )
    .expect("parses");
    let catalog = small().with_overlay(&overlay).expect("valid");
    let e = PlacementModel::build(&catalog, &input(vec![site("a", "us-east-1", &[])]))
        .expect_err("ambiguous");
    assert_eq!(
        e.to_string(),
        "region `us-east-1` in site a is ambiguous: it matches aws:us-east-1, \
         openstack:us-east-1; write it as cloud:name"
    );
    let model = PlacementModel::build(
        &catalog,
        &input(vec![site("a", "openstack:us-east-1", &[])]),
    )
    .expect("qualified name resolves");
    assert_eq!(model.site_names(), ["a"]);
}

/// Builtin catalog, a few instance types, random sites and flavours.
pub(super) fn random_input(
    rng: &mut ChaCha8Rng,
    sites: usize,
    max_flavours: usize,
) -> PlacementInput {
    let regions = [
        "aws:eu-central-1",
        "aws:ap-northeast-2",
        "aws:us-east-1",
        "gcp:europe-west1",
        "aws:sa-east-1",
        "gcp:asia-south1",
    ];
    let sites = (0..sites)
        .map(|i| {
            let n = rng.random_range(1..=max_flavours);
            let flavours: Vec<(String, f64, f64)> = (0..n)
                .map(|f| {
                    let speed = rng.random_range(0.5..4.0);
                    // Faster usually costs more, with noise so some flavours
                    // are dominated.
                    let price = (speed * 0.05 + rng.random_range(-0.03..0.03_f64)).max(0.0);
                    (format!("f{f}"), price, speed)
                })
                .collect();
            SiteInput {
                name: format!("site-{i}"),
                region: RegionRef::parse(regions[rng.random_range(0..regions.len())]),
                flavours: flavours
                    .into_iter()
                    .map(|(name, hourly_usd, relative_speed)| FlavourInput {
                        name,
                        hourly_usd,
                        relative_speed,
                    })
                    .collect(),
            }
        })
        .collect();
    let mut inp = input(sites);
    inp.candidates.instance_types = vec![
        "t3.micro".into(),
        "m5.xlarge".into(),
        "e2-medium".into(),
        "n2-standard-8".into(),
    ];
    inp.candidates.regions = vec![
        "eu-central-1".into(),
        "us-east-1".into(),
        "ap-northeast-2".into(),
        "europe-west1".into(),
        "us-east4".into(),
        "asia-northeast3".into(),
    ];
    inp
}

pub(super) fn objective_set(outcome: &PlacementOutcome) -> Vec<(f64, f64)> {
    outcome
        .front
        .iter()
        .map(|p| (p.monthly_cost, p.round_time_seconds))
        .collect()
}

#[test]
fn decomposition_equals_brute_force_on_random_models() {
    let catalog = Catalog::builtin().expect("valid");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut rich = 0;
    for trial in 0..12 {
        let mut inp = random_input(&mut rng, 2 + trial % 4, 4);
        // Limits taken from the unconstrained front, so they cut it somewhere.
        let free = solve_placement(
            &PlacementModel::build(catalog, &inp).expect("builds"),
            &PlacementSolver::Auto,
        )
        .expect("solves");
        let mid = free.front[free.front.len() / 2].clone();
        match trial % 4 {
            1 => inp.requirements.max_round_time_seconds = Some(mid.round_time_seconds),
            2 => inp.requirements.max_monthly_cost = Some(mid.monthly_cost),
            3 if trial == 11 => {
                // Each limit alone feasible, together not: a joint infeasibility.
                inp.requirements.max_monthly_cost = Some(free.front[0].monthly_cost);
                inp.requirements.max_round_time_seconds =
                    Some(free.front[free.front.len() - 1].round_time_seconds);
            }
            _ => {}
        }
        let model = PlacementModel::build(catalog, &inp).expect("builds");
        let exact = solve_placement(&model, &PlacementSolver::Auto).expect("solves");
        let brute = solve_placement(
            &model,
            &PlacementSolver::Enumerate {
                max_candidates: 100_000,
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
        rich += usize::from(exact.front.len() > 3);
    }
    // The comparison must not pass on trivial fronts only.
    assert!(
        rich >= 6,
        "only {rich} trials had fronts of more than 3 points"
    );
}

#[test]
fn nsga2_front_is_never_better_than_exact_and_is_deterministic() {
    let catalog = Catalog::builtin().expect("valid");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let inp = random_input(&mut rng, 5, 4);
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
    assert_eq!(objective_set(&a), objective_set(&b));
    assert_eq!(a.front, b.front);
    let exact_points = objective_set(&exact);
    for p in objective_set(&a) {
        let covered = exact_points
            .iter()
            .any(|q| *q == p || dominates(&[q.0, q.1], &[p.0, p.1]));
        assert!(
            covered,
            "NSGA-II point {p:?} is neither on nor behind the exact front"
        );
    }
}

#[test]
fn repair_never_worsens_a_decision() {
    use crate::problem::Problem;
    let catalog = Catalog::builtin().expect("valid");
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let model = PlacementModel::build(catalog, &random_input(&mut rng, 6, 4)).expect("builds");
    let sizes: Vec<usize> = model
        .variables()
        .iter()
        .map(|v| match v {
            crate::problem::Variable::Categorical { choices } => *choices,
            crate::problem::Variable::Real { .. } => 1,
        })
        .collect();
    let (mut f0, mut f1, mut g) = ([0.0; 2], [0.0; 2], [0.0; 2]);
    for _ in 0..500 {
        let mut x: Vec<f64> = sizes
            .iter()
            .map(|&n| rng.random_range(0..n) as f64)
            .collect();
        model.evaluate(&x, &mut f0, &mut g);
        let before = x.clone();
        model.repair(&mut x);
        model.evaluate(&x, &mut f1, &mut g);
        assert_eq!(x[0], before[0], "the aggregator gene is kept");
        assert!(f1[0] <= f0[0] && f1[1] <= f0[1], "{f0:?} -> {f1:?}");
        let mut again = x.clone();
        model.repair(&mut again);
        assert_eq!(again, x, "repair is idempotent");
    }
}

#[test]
fn cost_weight_picks_the_ends_and_a_balance() {
    let catalog = Catalog::builtin().expect("valid");
    let mut inp = input(vec![
        site("eu", "aws:eu-central-1", &[]),
        site("asia", "aws:ap-northeast-2", &[]),
        site("us", "aws:us-east-1", &[]),
    ]);
    let solve = |inp: &PlacementInput| {
        let model = PlacementModel::build(catalog, inp).expect("builds");
        solve_placement(&model, &PlacementSolver::Auto).expect("solves")
    };
    inp.requirements.cost_weight = 1.0;
    let cheapest = solve(&inp);
    assert!(cheapest.front.len() > 2);
    assert_eq!(cheapest.selected, Some(0));
    inp.requirements.cost_weight = 0.0;
    let fastest = solve(&inp);
    assert_eq!(fastest.selected, Some(fastest.front.len() - 1));
    inp.requirements.cost_weight = 0.5;
    let balanced = solve(&inp);
    let pick = balanced.selected_point().expect("picked");
    assert!(pick.monthly_cost <= fastest.front[fastest.front.len() - 1].monthly_cost);
    assert!(pick.round_time_seconds <= cheapest.front[0].round_time_seconds);
    // The front is sorted cheapest first and strictly trades cost for time.
    for w in balanced.front.windows(2) {
        assert!(w[0].monthly_cost < w[1].monthly_cost);
        assert!(w[0].round_time_seconds > w[1].round_time_seconds);
    }
}

#[test]
fn infeasibility_names_the_binding_constraint() {
    let catalog = Catalog::builtin().expect("valid");
    let mut inp = input(vec![
        site("eu", "aws:eu-central-1", &[]),
        site("us", "aws:us-east-1", &[]),
    ]);
    let solve = |inp: &PlacementInput| {
        let model = PlacementModel::build(catalog, inp).expect("builds");
        solve_placement(&model, &PlacementSolver::Auto).expect("solves")
    };
    let free = solve(&inp);
    let cheapest = free.front[0].clone();
    let fastest = free.front[free.front.len() - 1].clone();

    inp.requirements.max_monthly_cost = Some(1.0);
    let out = solve(&inp);
    assert!(out.front.is_empty() && out.selected.is_none());
    let why = out.infeasibility.expect("explained");
    assert_eq!(why.binding, BindingConstraint::MaxMonthlyCost);
    assert_eq!(
        why.message,
        format!(
            "maxMonthlyCost 1 USD is below the cheapest candidate's {:.2} USD ({} {} {})",
            cheapest.monthly_cost, cheapest.cloud, cheapest.region, cheapest.instance_type
        )
    );

    inp.requirements.max_monthly_cost = None;
    inp.requirements.max_round_time_seconds = Some(1.0);
    let why = solve(&inp).infeasibility.expect("explained");
    assert_eq!(why.binding, BindingConstraint::MaxRoundTime);
    assert!(why.message.starts_with(&format!(
        "maxRoundTimeSeconds 1 s is below the fastest candidate's {:.2} s",
        fastest.round_time_seconds
    )));

    inp.requirements.max_monthly_cost = Some(1.0);
    let why = solve(&inp).infeasibility.expect("explained");
    assert_eq!(why.binding, BindingConstraint::Both);

    // Each limit alone is met by some candidate, but not both together.
    inp.requirements.max_monthly_cost = Some(cheapest.monthly_cost + 1e-6);
    inp.requirements.max_round_time_seconds = Some(fastest.round_time_seconds + 1e-6);
    let why = solve(&inp).infeasibility.expect("explained");
    assert_eq!(why.binding, BindingConstraint::Joint);
    assert!(why.message.contains("cannot both hold"), "{}", why.message);
}

#[test]
fn limits_keep_exactly_the_feasible_part_of_the_front() {
    let catalog = Catalog::builtin().expect("valid");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut inp = random_input(&mut rng, 3, 3);
    let model = PlacementModel::build(catalog, &inp).expect("builds");
    let free = solve_placement(&model, &PlacementSolver::Auto).expect("solves");
    let mid = &free.front[free.front.len() / 2];
    inp.requirements.max_monthly_cost = Some(mid.monthly_cost);
    let model = PlacementModel::build(catalog, &inp).expect("builds");
    let limited = solve_placement(&model, &PlacementSolver::Auto).expect("solves");
    let expected: Vec<_> = free
        .front
        .iter()
        .filter(|p| p.monthly_cost <= mid.monthly_cost)
        .cloned()
        .collect();
    assert_eq!(limited.front, expected);
}
