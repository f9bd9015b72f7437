//! Tests of the whole status computation, phase by phase.

use super::types::*;
use super::*;
use fedsky_crds::conditions::{READY, RECONCILING, STALLED};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(s).expect("valid")
}

pub(super) fn option() -> PlacementOption {
    PlacementOption {
        cloud: "aws".into(),
        region: "eu-central-1".into(),
        instance_type: "m5.large".into(),
        monthly_cost: 70.1,
        round_time_seconds: 48.0,
        site_flavours: Default::default(),
        standby: None,
    }
}

pub(super) fn obs() -> Observation {
    Observation {
        invalid: None,
        placement: PlacementObs::Pending("waiting for AggregatorPlacement covid-xray".into()),
        aggregator: AggregatorObs::Waiting("WaitingForPlacement", "not placed yet".into()),
        participants: vec![],
        running: 0,
        min_per_round: 2,
        max_per_round: 3,
        shortfall: None,
        budget_exhausted: false,
        rounds: 20,
        progress: None,
    }
}

fn cond<'a>(s: &'a FederatedJobStatus, t: &str) -> &'a fedsky_crds::conditions::Condition {
    conditions::find(&s.conditions, t).unwrap_or_else(|| panic!("{t} missing"))
}

#[test]
fn walks_the_phases_to_running() {
    let s0 = compute(&Default::default(), &obs(), Some(1), t(0));
    assert_eq!(s0.phase, Some(JobPhase::Pending));
    assert_eq!(cond(&s0, PLACED).status, "False");
    assert_eq!(cond(&s0, RECONCILING).status, "True");

    let mut o = obs();
    o.placement = PlacementObs::Placed {
        name: "covid-xray".into(),
        option: option(),
    };
    o.aggregator = AggregatorObs::Starting {
        cluster: "aws-eu".into(),
    };
    let s1 = compute(&s0, &o, Some(1), t(10));
    assert_eq!(s1.phase, Some(JobPhase::Starting));
    assert_eq!(
        s1.placement.as_ref().map(|p| p.summary.as_str()),
        Some("aws/eu-central-1/m5.large")
    );

    o.aggregator = AggregatorObs::Ready {
        cluster: "aws-eu".into(),
        endpoint: "1.2.3.4:50051".into(),
        model_url: "https://1.2.3.4:8081".into(),
    };
    o.running = 3;
    o.progress = Some(Progress {
        phase: fedsky_contract::AggregatorPhase::Collecting,
        completed_rounds: 4,
        rounds: vec![RoundMetrics {
            round: 4,
            participants: 3,
            accuracy: Some(0.8),
            ..Default::default()
        }],
        latest_model: None,
    });
    let s2 = compute(&s1, &o, Some(1), t(20));
    assert_eq!(s2.phase, Some(JobPhase::Running));
    assert_eq!(s2.round_progress.as_deref(), Some("4/20"));
    assert_eq!(cond(&s2, READY).status, "True");
    assert_eq!(cond(&s2, PROGRESSING).status, "True");
    assert_eq!(cond(&s2, DEGRADED).status, "False");
    assert_eq!(s2.history.len(), 1);
    // Same round again: history does not grow, transition times hold.
    let s3 = compute(&s2, &o, Some(1), t(30));
    assert_eq!(s3.history.len(), 1);
    assert_eq!(
        cond(&s3, READY).last_transition_time,
        cond(&s2, READY).last_transition_time
    );
}

#[test]
fn an_unreachable_aggregator_keeps_its_cluster_until_the_placement_moves() {
    let mut o = obs();
    o.placement = PlacementObs::Placed {
        name: "covid-xray".into(),
        option: option(),
    };
    o.aggregator = AggregatorObs::Starting {
        cluster: "aws-eu".into(),
    };
    let s1 = compute(&Default::default(), &o, Some(1), t(0));
    o.aggregator = AggregatorObs::Waiting("MemberClusterError", "timed out".into());
    let s2 = compute(&s1, &o, Some(1), t(10));
    let cluster =
        |s: &FederatedJobStatus| s.placement.as_ref().and_then(|p| p.member_cluster.clone());
    assert_eq!(cluster(&s2).as_deref(), Some("aws-eu"), "still there");
    o.placement = PlacementObs::Placed {
        name: "covid-xray".into(),
        option: PlacementOption {
            region: "us-east-1".into(),
            ..option()
        },
    };
    assert_eq!(cluster(&compute(&s2, &o, Some(1), t(20))), None, "moved");
}

#[test]
fn infeasible_placement_stalls() {
    let mut o = obs();
    o.placement =
        PlacementObs::Infeasible("maxMonthlyCost 5 USD is below the cheapest 23.4 USD".into());
    let s = compute(&Default::default(), &o, Some(1), t(0));
    assert_eq!(cond(&s, STALLED).status, "True");
    assert!(cond(&s, STALLED).message.contains("maxMonthlyCost"));
    assert_eq!(cond(&s, RECONCILING).status, "False");
}

#[test]
fn exhausted_budget_below_quorum_fails_and_completion_succeeds() {
    let mut o = obs();
    o.placement = PlacementObs::Placed {
        name: "p".into(),
        option: option(),
    };
    o.aggregator = AggregatorObs::Ready {
        cluster: "c".into(),
        endpoint: "e".into(),
        model_url: "u".into(),
    };
    o.running = 1;
    o.budget_exhausted = true;
    let s = compute(&Default::default(), &o, Some(1), t(0));
    assert_eq!(s.phase, Some(JobPhase::Failed));
    assert_eq!(cond(&s, FAILED).reason, "ReplacementBudgetExhausted");
    assert!(s.completion_time.is_some());

    let mut o = obs();
    o.progress = Some(Progress {
        phase: fedsky_contract::AggregatorPhase::Completed,
        completed_rounds: 20,
        ..Default::default()
    });
    let s = compute(&Default::default(), &o, Some(1), t(0));
    assert_eq!(s.phase, Some(JobPhase::Succeeded));
    assert_eq!(cond(&s, SUCCEEDED).status, "True");
    assert_eq!(cond(&s, READY).status, "True");
}

#[test]
fn history_fills_in_metrics_that_arrive_a_round_later() {
    let mut o = obs();
    o.rounds = 10;
    let m = |round, accuracy| RoundMetrics {
        round,
        accuracy,
        ..Default::default()
    };
    o.progress = Some(Progress {
        phase: fedsky_contract::AggregatorPhase::Collecting,
        completed_rounds: 1,
        rounds: vec![m(0, Some(0.3)), m(1, None)],
        latest_model: None,
    });
    let s1 = compute(&FederatedJobStatus::default(), &o, Some(1), t(1));
    assert_eq!(s1.history.len(), 2);
    o.progress = Some(Progress {
        phase: fedsky_contract::AggregatorPhase::Collecting,
        completed_rounds: 2,
        rounds: vec![m(0, Some(0.3)), m(1, Some(0.6)), m(2, None)],
        latest_model: None,
    });
    let s2 = compute(&s1, &o, Some(1), t(2));
    let acc: Vec<Option<f64>> = s2.history.iter().map(|h| h.accuracy).collect();
    assert_eq!(acc, [Some(0.3), Some(0.6), None]);
}

#[test]
fn history_is_bounded() {
    let mut s = FederatedJobStatus::default();
    let mut o = obs();
    for r in 1..=(HISTORY_LIMIT as i32 + 10) {
        o.progress = Some(Progress {
            phase: fedsky_contract::AggregatorPhase::Collecting,
            completed_rounds: r,
            rounds: vec![RoundMetrics {
                round: r,
                ..Default::default()
            }],
            latest_model: None,
        });
        o.rounds = 1000;
        s = compute(&s, &o, Some(1), t(i64::from(r)));
    }
    assert_eq!(s.history.len(), HISTORY_LIMIT);
    assert_eq!(s.history[0].round, 11);
}
