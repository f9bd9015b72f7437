//! Tests of each condition and the phase, one decision at a time.

use super::decide::*;
use super::tests::{obs, option};
use super::types::*;
use super::{AggregatorObs, Observation, PlacementObs, Progress};
use fedsky_crds::conditions::{ConditionStatus, READY, RECONCILING, STALLED};
use fedsky_crds::federated_job::JobPhase;
use fedsky_crds::federated_job::ParticipantPhase;
use fedsky_crds::federated_job::ParticipantState;

fn placed_obs() -> PlacementObs {
    PlacementObs::Placed {
        name: "covid-xray".into(),
        option: option(),
    }
}

fn ready_obs() -> AggregatorObs {
    AggregatorObs::Ready {
        cluster: "aws-eu".into(),
        endpoint: "1.2.3.4:50051".into(),
        model_url: "https://1.2.3.4:8081".into(),
    }
}

fn status_of(c: &Decided) -> (&str, ConditionStatus, &str) {
    (c.type_, c.status, c.reason)
}

fn serving(running: usize) -> Observation {
    let mut o = obs();
    o.placement = placed_obs();
    o.aggregator = ready_obs();
    o.running = running;
    o
}

#[test]
fn facts_read_quorum_rounds_and_failure() {
    let f = Facts::of(&obs(), None);
    assert_eq!(
        (f.placed, f.aggregator_ready, f.quorum, f.done, f.succeeded),
        (false, false, false, 0, false)
    );
    assert_eq!(f.failure, None);
    let f = Facts::of(&serving(2), Some(20));
    assert!(f.placed && f.aggregator_ready && f.quorum && f.succeeded);
    let mut o = serving(1);
    o.budget_exhausted = true;
    let f = Facts::of(&o, Some(3));
    assert_eq!(
        f.failure,
        Some((
            "ReplacementBudgetExhausted",
            "1 of 3 participants running (quorum 2)".to_string()
        ))
    );
    o.progress = Some(Progress {
        phase: fedsky_contract::AggregatorPhase::Failed,
        ..Default::default()
    });
    assert_eq!(
        Facts::of(&o, Some(3)).failure.map(|f| f.0),
        Some("AggregatorFailed")
    );
    o.progress = Some(Progress {
        phase: fedsky_contract::AggregatorPhase::Completed,
        ..Default::default()
    });
    assert!(Facts::of(&o, Some(3)).succeeded);
}

#[test]
fn phase_follows_the_facts() {
    let pending = obs();
    let f = Facts::of(&pending, None);
    assert_eq!(phase(None, &pending, &f), JobPhase::Pending);
    assert_eq!(
        phase(Some(JobPhase::Pending), &pending, &f),
        JobPhase::Placing
    );
    let mut starting = obs();
    starting.placement = placed_obs();
    let f = Facts::of(&starting, None);
    assert_eq!(phase(None, &starting, &f), JobPhase::Starting);
    let running = serving(2);
    let f = Facts::of(&running, Some(1));
    assert_eq!(phase(None, &running, &f), JobPhase::Running);
    let mut failed = serving(1);
    failed.budget_exhausted = true;
    let f = Facts::of(&failed, Some(1));
    assert_eq!(phase(None, &failed, &f), JobPhase::Failed);
    let f = Facts::of(&failed, Some(20));
    assert_eq!(phase(None, &failed, &f), JobPhase::Succeeded, "done wins");
}

#[test]
fn an_invalid_spec_stalls() {
    let [stalled, ready, reconciling] = invalid("no sites");
    assert_eq!(
        status_of(&stalled),
        (STALLED, ConditionStatus::True, "InvalidSpec")
    );
    assert_eq!(stalled.message, "no sites");
    assert_eq!(
        status_of(&ready),
        (READY, ConditionStatus::False, "InvalidSpec")
    );
    assert_eq!(
        status_of(&reconciling),
        (RECONCILING, ConditionStatus::False, "InvalidSpec")
    );
}

#[test]
fn placed_names_the_option_or_why_not() {
    let c = placed(&placed_obs());
    assert_eq!(status_of(&c), (PLACED, ConditionStatus::True, "Solved"));
    assert_eq!(
        c.message,
        "aws/eu-central-1/m5.large: 70.10 USD/month, 48.0 s/round predicted"
    );
    let c = placed(&PlacementObs::Pending("waiting".into()));
    assert_eq!(status_of(&c), (PLACED, ConditionStatus::False, "Solving"));
    let c = placed(&PlacementObs::Infeasible("too dear".into()));
    assert_eq!(
        status_of(&c),
        (PLACED, ConditionStatus::False, "Infeasible")
    );
    assert_eq!(c.message, "too dear");
}

#[test]
fn aggregator_ready_says_where() {
    let c = aggregator_ready(&ready_obs());
    assert_eq!(
        status_of(&c),
        (AGGREGATOR_READY, ConditionStatus::True, "Serving")
    );
    assert_eq!(c.message, "serving at 1.2.3.4:50051 in aws-eu");
    let c = aggregator_ready(&AggregatorObs::Starting {
        cluster: "aws-eu".into(),
    });
    assert_eq!(c.reason, "Starting");
    assert_eq!(c.message, "starting in member cluster aws-eu");
    let c = aggregator_ready(&AggregatorObs::Waiting("NoClient", "later".into()));
    assert_eq!(
        status_of(&c),
        (AGGREGATOR_READY, ConditionStatus::False, "NoClient")
    );
    let c = aggregator_ready(&AggregatorObs::Blocked {
        cluster: "aws-eu".into(),
        reason: "AggregatorUnschedulable",
        message: "no node matches".into(),
    });
    assert_eq!(
        status_of(&c),
        (
            AGGREGATOR_READY,
            ConditionStatus::False,
            "AggregatorUnschedulable"
        )
    );
    assert_eq!(c.message, "no node matches");
}

#[test]
fn participants_ready_needs_quorum_and_a_serving_aggregator() {
    let mut o = serving(2);
    o.shortfall = Some("site eu is full".into());
    let c = participants_ready(&o, &Facts::of(&o, None));
    assert_eq!(
        status_of(&c),
        (PARTICIPANTS_READY, ConditionStatus::True, "QuorumRunning")
    );
    assert_eq!(
        c.message,
        "2 of 3 participants running (quorum 2); site eu is full"
    );
    o.aggregator = AggregatorObs::Starting {
        cluster: "aws-eu".into(),
    };
    let c = participants_ready(&o, &Facts::of(&o, None));
    assert_eq!(c.status, ConditionStatus::False);
    assert_eq!(c.reason, "QuorumRunning");
    let o = serving(1);
    let c = participants_ready(&o, &Facts::of(&o, None));
    assert_eq!(c.reason, "BelowQuorum");
}

#[test]
fn degraded_counts_missing_and_replaced_participants() {
    let full = serving(3);
    let c = degraded(&full, &Facts::of(&full, None));
    assert_eq!(
        status_of(&c),
        (DEGRADED, ConditionStatus::False, "AllParticipantsRunning")
    );
    let mut replaced = serving(3);
    replaced.participants = vec![ParticipantState {
        state: ParticipantPhase::Replaced,
        ..Default::default()
    }];
    let c = degraded(&replaced, &Facts::of(&replaced, None));
    assert_eq!(c.status, ConditionStatus::True);
    assert_eq!(
        c.message,
        "3 of 3 participants running (quorum 2); 1 replaced"
    );
    let short = serving(2);
    let c = degraded(&short, &Facts::of(&short, None));
    assert_eq!(c.reason, "ParticipantsReplacedOrMissing");
    let mut not_serving = obs();
    not_serving.running = 1;
    let c = degraded(&not_serving, &Facts::of(&not_serving, None));
    assert_eq!(c.status, ConditionStatus::False);
}

#[test]
fn succeeded_failed_and_progressing() {
    let o = serving(3);
    let f = Facts::of(&o, Some(4));
    let c = succeeded(&o, &f);
    assert_eq!(
        status_of(&c),
        (SUCCEEDED, ConditionStatus::False, "NotFinished")
    );
    assert_eq!(c.message, "4/20 rounds");
    let c = succeeded(&o, &Facts::of(&o, Some(20)));
    assert_eq!(c.reason, "AllRoundsCompleted");
    let c = failed(&f);
    assert_eq!(status_of(&c), (FAILED, ConditionStatus::False, "NotFailed"));
    assert_eq!(c.message, "");
    let c = progressing(&o, &f, JobPhase::Running);
    assert_eq!(
        status_of(&c),
        (PROGRESSING, ConditionStatus::True, "RoundsAdvancing")
    );
    assert_eq!(c.message, "4/20 rounds");
    let c = progressing(&o, &f, JobPhase::Starting);
    assert_eq!(c.reason, "NotRunning");
    let mut out = serving(1);
    out.budget_exhausted = true;
    let c = failed(&Facts::of(&out, None));
    assert_eq!(
        status_of(&c),
        (FAILED, ConditionStatus::True, "ReplacementBudgetExhausted")
    );
}

#[test]
fn stalled_prefers_the_placement_then_the_failure() {
    let mut o = serving(1);
    o.budget_exhausted = true;
    let c = stalled(&o, &Facts::of(&o, None));
    assert_eq!(
        status_of(&c),
        (STALLED, ConditionStatus::True, "ReplacementBudgetExhausted")
    );
    o.placement = PlacementObs::Infeasible("too dear".into());
    let c = stalled(&o, &Facts::of(&o, None));
    assert_eq!(
        status_of(&c),
        (STALLED, ConditionStatus::True, "PlacementInfeasible")
    );
    assert_eq!(c.message, "too dear");
    let fine = serving(3);
    let c = stalled(&fine, &Facts::of(&fine, None));
    assert_eq!(
        status_of(&c),
        (STALLED, ConditionStatus::False, "NotStalled")
    );
    assert_eq!(c.message, "");
}

#[test]
fn ready_and_reconciling_by_phase() {
    let o = serving(3);
    let f = Facts::of(&o, Some(1));
    let c = ready(&f, JobPhase::Running);
    assert_eq!(status_of(&c), (READY, ConditionStatus::True, "Running"));
    assert_eq!(c.message, "phase Running");
    let c = reconciling(&o, &f, JobPhase::Running);
    assert_eq!(c.status, ConditionStatus::False);
    let c = ready(&f, JobPhase::Starting);
    assert_eq!(status_of(&c), (READY, ConditionStatus::False, "NotReady"));
    let c = reconciling(&o, &f, JobPhase::Starting);
    assert_eq!(
        status_of(&c),
        (RECONCILING, ConditionStatus::True, "Progressing")
    );
    let done = Facts::of(&o, Some(20));
    let c = ready(&done, JobPhase::Succeeded);
    assert_eq!(status_of(&c), (READY, ConditionStatus::True, "Succeeded"));
    assert_eq!(
        reconciling(&o, &done, JobPhase::Succeeded).status,
        ConditionStatus::False
    );
    let mut infeasible = obs();
    infeasible.placement = PlacementObs::Infeasible("too dear".into());
    let f = Facts::of(&infeasible, None);
    let c = reconciling(&infeasible, &f, JobPhase::Placing);
    assert_eq!(c.status, ConditionStatus::False, "stalled");
    let all = conditions(&o, &Facts::of(&o, Some(1)), JobPhase::Running);
    let mut types: Vec<&str> = all.iter().map(|c| c.type_).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types.len(), all.len(), "each type once");
}
