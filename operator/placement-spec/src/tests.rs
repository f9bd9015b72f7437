use std::collections::BTreeMap;

use fedsky_crds::aggregator_placement::{ParticipantRegion, ParticipantRegions};
use fedsky_crds::common::LocalObjectRef;
use fedsky_crds::{AggregatorPlacement, ParticipantPool};
use fedsky_placement::model::BindingConstraint;

use super::*;

const PLACEMENT: &str = include_str!("../../../examples/covid-xray/aggregator-placement.yaml");
const POOL: &str = include_str!("../../../examples/covid-xray/participant-pool.yaml");

fn placement() -> AggregatorPlacementSpec {
    serde_yaml::from_str::<AggregatorPlacement>(PLACEMENT)
        .expect("example parses")
        .spec
}

fn pool() -> ParticipantPoolSpec {
    serde_yaml::from_str::<ParticipantPool>(POOL)
        .expect("example parses")
        .spec
}

fn explicit(sites: &[(&str, CloudProvider, &str)]) -> AggregatorPlacementSpec {
    let mut spec = placement();
    spec.participants = ParticipantRegions {
        pool_ref: None,
        sites: Some(
            sites
                .iter()
                .map(|(n, c, r)| ParticipantRegion {
                    name: n.to_string(),
                    cloud: *c,
                    region: r.to_string(),
                })
                .collect(),
        ),
    };
    spec
}

fn catalog() -> &'static Catalog {
    Catalog::builtin().expect("builtin catalog is valid")
}

#[test]
fn pool_sites_become_model_sites_with_flavours() {
    let pool = pool();
    let ctx = SpecContext {
        pool: Some(("hospitals", &pool)),
        ..SpecContext::default()
    };
    let input = to_input(&placement(), &ctx).expect("converts");
    let names: Vec<_> = input.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["hospital-eu", "hospital-asia", "hospital-us"]);
    assert_eq!(input.sites[0].region, RegionRef::new("aws", "eu-central-1"));
    assert_eq!(input.sites[0].flavours.len(), 2);
    assert_eq!(input.sites[0].flavours[1].relative_speed, 1.8);
    assert_eq!(input.sites[0].flavours[0].relative_speed, 1.0);
    assert!(input.sites[1].flavours.is_empty());
    assert_eq!(input.candidates.clouds, ["aws", "gcp"]);
    assert_eq!(input.requirements.max_monthly_cost, Some(60.0));
    assert_eq!(input.requirements.cost_weight, 0.5);
    assert_eq!(input.workload.model_size_mb, 45.0);
    assert_eq!(input.workload.rounds_per_month, 3000.0);
    assert_eq!(input.workload.local_compute_seconds, 40.0);
    assert_eq!(input.workload.memory, AggregationMemory::StreamingMean);
    assert_eq!(input.timing.rtts_per_transfer, 2.0);
}

#[test]
fn round_trips_per_transfer_reach_the_time_model() {
    let pool = pool();
    let ctx = SpecContext {
        pool: Some(("hospitals", &pool)),
        ..SpecContext::default()
    };
    // One aggregator, so both solves price the same placement.
    let mut base = placement();
    base.candidates.clouds = vec![CloudProvider::Aws];
    base.candidates.regions = vec!["eu-central-1".into()];
    base.candidates.instance_types = vec!["m5.large".into()];
    base.requirements.max_monthly_cost = None;
    base.requirements.max_round_time_seconds = None;
    let mut spec = base.clone();
    spec.workload.round_trips_per_transfer = Some(1.5);
    let input = to_input(&spec, &ctx).expect("converts");
    assert_eq!(input.timing.rtts_per_transfer, 1.5);
    let time = |s| {
        let o = solve_spec(catalog(), s, &ctx).expect("solves");
        o.selected_point().expect("selected").round_time_seconds
    };
    // Half a round trip less per transfer on the slowest path (Frankfurt–Seoul), twice.
    let rtt = 0.001 * {
        let c = catalog();
        let id = |k: &str| c.region_id(k).expect("region");
        c.link(id("aws:eu-central-1"), id("aws:ap-northeast-2"))
            .expect("link")
            .rtt_ms
    };
    let saved = time(&base) - time(&spec);
    assert!((saved - rtt).abs() < 1e-6, "saved {saved} s, RTT {rtt} s");
}

#[test]
fn pool_sites_inherit_the_member_clusters_location() {
    let mut pool = pool();
    pool.sites[2].region = None;
    pool.sites[2].cloud = None;
    let mut ctx = SpecContext {
        pool: Some(("hospitals", &pool)),
        ..SpecContext::default()
    };
    assert_eq!(
        to_input(&placement(), &ctx)
            .expect_err("unknown cluster")
            .to_string(),
        "site `hospital-us` sets no region and its MemberCluster `hospital-us` is unknown; set \
         spec.sites[].region in the ParticipantPool or supply the MemberCluster"
    );
    ctx.member_clusters = BTreeMap::from([(
        "hospital-us".to_string(),
        (CloudProvider::Gcp, "us-east4".to_string()),
    )]);
    let input = to_input(&placement(), &ctx).expect("converts");
    assert_eq!(input.sites[2].region, RegionRef::new("gcp", "us-east4"));
}

#[test]
fn participants_must_be_given_exactly_once() {
    let ctx = SpecContext::default();
    let mut spec = placement();
    assert_eq!(
        to_input(&spec, &ctx).expect_err("no pool").to_string(),
        "spec.participants.poolRef names ParticipantPool `hospitals`, which was not found"
    );
    let other = pool();
    let wrong = SpecContext {
        pool: Some(("clinics", &other)),
        ..SpecContext::default()
    };
    assert!(
        to_input(&spec, &wrong)
            .expect_err("wrong pool")
            .to_string()
            .ends_with("(the pool given is `clinics`)")
    );
    spec.participants.pool_ref = None;
    assert_eq!(to_input(&spec, &ctx), Err(ConvertError::NoParticipants));
    spec.participants.sites = Some(vec![]);
    assert_eq!(to_input(&spec, &ctx), Err(ConvertError::EmptySites));
    spec.participants.pool_ref = Some(LocalObjectRef {
        name: "hospitals".into(),
    });
    assert_eq!(to_input(&spec, &ctx), Err(ConvertError::BothParticipants));
}

#[test]
fn solver_settings_map_and_bad_ones_are_named() {
    let mut s = SolverSpec::default();
    assert_eq!(to_solver(&s), Ok(PlacementSolver::Auto));
    s.type_ = SolverType::Exact;
    assert_eq!(to_solver(&s), Ok(PlacementSolver::Exact));
    s.type_ = SolverType::Nsga2;
    s.population = Some(60);
    s.generations = Some(80);
    s.seed = Some(9);
    match to_solver(&s) {
        Ok(PlacementSolver::Nsga2(n)) => {
            assert_eq!((n.population, n.generations, n.seed), (60, 80, 9));
        }
        other => panic!("unexpected {other:?}"),
    }
    s.seed = Some(-1);
    assert_eq!(
        to_solver(&s).expect_err("negative seed").to_string(),
        "spec.solver.seed is -1; expected a number >= 0"
    );
    s.seed = None;
    s.population = Some(2);
    assert!(matches!(
        to_solver(&s),
        Err(ConvertError::InvalidSolver {
            field: "population",
            ..
        })
    ));
}

#[test]
fn strategies_set_the_memory_need() {
    assert_eq!(
        aggregation_memory(StrategyType::FedAvg),
        AggregationMemory::StreamingMean
    );
    assert_eq!(
        aggregation_memory(StrategyType::FedYogi),
        AggregationMemory::ServerOptimizer
    );
    assert_eq!(
        aggregation_memory(StrategyType::MultiKrum),
        AggregationMemory::AllUpdates
    );
}

#[test]
fn example_solves_to_a_feasible_status() {
    let pool = pool();
    let ctx = SpecContext {
        pool: Some(("hospitals", &pool)),
        ..SpecContext::default()
    };
    let outcome = solve_spec(catalog(), &placement(), &ctx).expect("solves");
    let status = to_status(&outcome, STATUS_FRONT_LIMIT);
    let selected = status.selected.clone().expect("feasible");
    assert!(selected.monthly_cost <= 60.0);
    assert!(selected.round_time_seconds <= 120.0);
    // Only sites that offer a choice are listed.
    assert_eq!(
        selected.site_flavours,
        BTreeMap::from([("hospital-eu".to_string(), "m1.large".to_string())])
    );
    assert!(status.pareto_front.contains(&selected));
    assert_eq!(status.catalog_version.as_deref(), Some("2026-11"));
    assert!(
        status
            .solver
            .as_deref()
            .is_some_and(|s| s.starts_with("Exact: decomposition over"))
    );
    assert!(status.infeasible_reason.is_none());
    let (ok, reason, _) = feasible_condition(&outcome);
    assert!(ok);
    assert_eq!(reason, "Solved");
    // Same spec, same answer (only the wall time may differ).
    let again = to_status(
        &solve_spec(catalog(), &placement(), &ctx).expect("solves"),
        STATUS_FRONT_LIMIT,
    );
    assert_eq!(
        AggregatorPlacementStatus {
            solve_time_ms: None,
            ..again
        },
        AggregatorPlacementStatus {
            solve_time_ms: None,
            ..status
        }
    );
}

#[test]
fn infeasible_spec_names_the_binding_constraint_in_status() {
    let mut spec = explicit(&[
        ("eu", CloudProvider::Aws, "eu-central-1"),
        ("asia", CloudProvider::Aws, "ap-northeast-2"),
    ]);
    spec.requirements.max_monthly_cost = Some(2.0);
    spec.requirements.max_round_time_seconds = None;
    let outcome = solve_spec(catalog(), &spec, &SpecContext::default()).expect("solves");
    assert_eq!(
        outcome.infeasibility.as_ref().map(|i| i.binding),
        Some(BindingConstraint::MaxMonthlyCost)
    );
    let status = to_status(&outcome, STATUS_FRONT_LIMIT);
    assert!(status.selected.is_none());
    assert!(status.pareto_front.is_empty());
    let reason = status.infeasible_reason.expect("named");
    assert!(
        reason.starts_with("maxMonthlyCost 2 USD is below the cheapest candidate's"),
        "{reason}"
    );
    let (ok, why, message) = feasible_condition(&outcome);
    assert!(!ok);
    assert_eq!(why, "Infeasible");
    assert_eq!(message, reason);
}

#[test]
fn unknown_regions_and_empty_candidate_sets_are_errors_with_reasons() {
    let spec = explicit(&[("eu", CloudProvider::Aws, "eu-central-9")]);
    let e = solve_spec(catalog(), &spec, &SpecContext::default()).expect_err("unknown");
    assert_eq!(e.reason(), "UnknownReference");
    assert!(
        e.to_string()
            .starts_with("unknown region `aws:eu-central-9` in site eu (did you mean"),
        "{e}"
    );
    let mut spec = explicit(&[("eu", CloudProvider::Aws, "eu-central-1")]);
    spec.candidates.clouds = vec![CloudProvider::Gcp];
    spec.requirements.data_residency = Some(fedsky_crds::aggregator_placement::DataResidency {
        allowed_clouds: vec![CloudProvider::Aws],
        allowed_regions: vec![],
    });
    let e = solve_spec(catalog(), &spec, &SpecContext::default()).expect_err("contradictory");
    assert_eq!(e.reason(), "NoCandidates");
    assert!(e.to_string().contains("contradictory requirements"), "{e}");
}

#[test]
fn bounded_front_keeps_ends_and_the_selected_point() {
    assert_eq!(bounded_indices(5, 32, Some(2)), vec![0, 1, 2, 3, 4]);
    let keep = bounded_indices(100, 5, Some(37));
    assert_eq!(keep.len(), 5);
    assert_eq!(keep[0], 0);
    assert_eq!(keep[4], 99);
    assert!(keep.contains(&37));
    assert!(keep.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(bounded_indices(100, 1, Some(37)), vec![37]);
    assert!(bounded_indices(100, 0, None).is_empty());
}

const STANDBY: &str = include_str!("../../../examples/placement/standby.yaml");

fn standby_example() -> AggregatorPlacementSpec {
    serde_yaml::from_str::<AggregatorPlacement>(STANDBY)
        .expect("example parses")
        .spec
}

#[test]
fn standby_requirements_map_with_their_defaults() {
    let ctx = SpecContext::default();
    let mut spec = standby_example();
    let input = to_input(&spec, &ctx).expect("converts");
    assert_eq!(
        input.requirements.standby,
        Some(StandbyRequirement::default())
    );
    let standby = spec.requirements.standby.as_mut().expect("example has one");
    standby.mode = Some(ApiStandbyMode::Cold);
    standby.distinct_cloud = Some(true);
    standby.failover_hours_per_month = Some(24.0);
    let input = to_input(&spec, &ctx).expect("converts");
    assert_eq!(
        input.requirements.standby,
        Some(StandbyRequirement {
            mode: StandbyMode::Cold,
            distinct_region: true,
            distinct_cloud: true,
            failover_hours_per_month: 24.0,
        })
    );
    // `enabled: false` keeps the settings but plans no standby.
    spec.requirements.standby.as_mut().expect("set").enabled = Some(false);
    assert_eq!(
        to_input(&spec, &ctx)
            .expect("converts")
            .requirements
            .standby,
        None
    );
    // An empty section asks for the default standby.
    spec.requirements.standby = Some(StandbyRequirements::default());
    assert_eq!(
        to_input(&spec, &ctx)
            .expect("converts")
            .requirements
            .standby,
        Some(StandbyRequirement::default())
    );
}

#[test]
fn standby_example_solves_to_a_status_with_the_standby() {
    let ctx = SpecContext::default();
    let outcome = solve_spec(catalog(), &standby_example(), &ctx).expect("solves");
    let status = to_status(&outcome, STATUS_FRONT_LIMIT);
    let selected = status.selected.clone().expect("feasible");
    let standby = selected.standby.clone().expect("a standby");
    assert_ne!(
        (standby.cloud.as_str(), standby.region.as_str()),
        (selected.cloud.as_str(), selected.region.as_str())
    );
    assert!(standby.monthly_cost > 0.0 && standby.monthly_cost < selected.monthly_cost);
    assert!(selected.monthly_cost <= 150.0);
    assert!(selected.round_time_seconds <= 50.0);
    assert!(standby.failover_round_time_seconds <= 50.0);
    assert!(status.pareto_front.iter().all(|p| p.standby.is_some()));
    let (ok, _, message) = feasible_condition(&outcome);
    assert!(ok);
    assert!(
        message.contains(&format!(
            " with standby {} {} {} (",
            standby.cloud, standby.region, standby.instance_type
        )),
        "{message}"
    );
    // The status round-trips through the API types' JSON.
    let json = serde_json::to_value(&status).expect("serialises");
    assert_eq!(
        json["selected"]["standby"]["failoverRoundTimeSeconds"].as_f64(),
        Some(standby.failover_round_time_seconds)
    );
}

#[test]
fn standby_with_one_cloud_and_distinct_cloud_is_infeasible_naming_the_rule() {
    let mut spec = standby_example();
    spec.candidates.clouds = vec![CloudProvider::Aws];
    spec.requirements
        .standby
        .as_mut()
        .expect("set")
        .distinct_cloud = Some(true);
    let outcome = solve_spec(catalog(), &spec, &SpecContext::default()).expect("solves");
    assert_eq!(
        outcome.infeasibility.as_ref().map(|i| i.binding),
        Some(BindingConstraint::StandbyDistinctCloud)
    );
    let (ok, reason, message) = feasible_condition(&outcome);
    assert!(!ok);
    assert_eq!(reason, "Infeasible");
    assert!(
        message
            .starts_with("requirements.standby.distinctCloud needs the standby in another cloud"),
        "{message}"
    );
    let status = to_status(&outcome, STATUS_FRONT_LIMIT);
    assert_eq!(status.infeasible_reason.as_deref(), Some(message.as_str()));
}
