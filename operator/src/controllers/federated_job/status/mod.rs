//! Pure status computation for FederatedJob: phase, conditions and progress.

use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::conditions::{self, ConditionStatus, NewCondition, READY, RECONCILING, STALLED};
use fedsky_crds::federated_job::{
    AggregatorEndpoint, ChosenPlacement, FederatedJobStatus, JobPhase, ModelVersion,
    ParticipantState, RoundMetrics,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Condition types of a FederatedJob.
pub mod types {
    /// The aggregator placement is solved.
    pub const PLACED: &str = "Placed";
    /// The aggregator serves participants.
    pub const AGGREGATOR_READY: &str = "AggregatorReady";
    /// At least `minPerRound` participants run.
    pub const PARTICIPANTS_READY: &str = "ParticipantsReady";
    /// Rounds are advancing.
    pub const PROGRESSING: &str = "Progressing";
    /// All rounds finished.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The job cannot finish.
    pub const FAILED: &str = "Failed";
    /// Running with fewer participants than asked or after replacements.
    pub const DEGRADED: &str = "Degraded";
}

/// Placement as observed.
#[derive(Debug, Clone, PartialEq)]
pub enum PlacementObs {
    /// Not solved yet.
    Pending(String),
    /// Solved.
    Placed {
        /// AggregatorPlacement name.
        name: String,
        /// Chosen option.
        option: PlacementOption,
    },
    /// No candidate meets the requirements.
    Infeasible(String),
}

/// Aggregator as observed.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregatorObs {
    /// Cannot start yet, with the reason and message.
    Waiting(&'static str, String),
    /// Objects applied in the member cluster; not serving yet.
    Starting {
        /// Member cluster.
        cluster: String,
    },
    /// Serving.
    Ready {
        /// Member cluster.
        cluster: String,
        /// gRPC endpoint.
        endpoint: String,
        /// Model manager URL.
        model_url: String,
    },
}

/// Training progress as the aggregator reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// The aggregator's phase: `completed`, `failed`, or a running phase (any case).
    pub phase: String,
    /// Rounds completed.
    pub completed_rounds: i32,
    /// Metrics per model version (0 = the initial model), oldest first; evaluation
    /// metrics of a version arrive with the next round, so entries may fill in later.
    pub rounds: Vec<RoundMetrics>,
    /// Latest model version.
    pub latest_model: Option<ModelVersion>,
}

/// Everything the reconcile observed and decided.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Spec problem the user must fix.
    pub invalid: Option<String>,
    /// Placement.
    pub placement: PlacementObs,
    /// Aggregator.
    pub aggregator: AggregatorObs,
    /// Participant states (live and replaced).
    pub participants: Vec<ParticipantState>,
    /// Participants running now.
    pub running: usize,
    /// Quorum.
    pub min_per_round: usize,
    /// Participants asked for.
    pub max_per_round: usize,
    /// Why fewer participants could be started.
    pub shortfall: Option<String>,
    /// The replacement budget is spent and the quorum cannot be met.
    pub budget_exhausted: bool,
    /// Rounds asked for.
    pub rounds: i32,
    /// Aggregator progress, if it could be read.
    pub progress: Option<Progress>,
}

/// Most recent rounds kept in status.
pub const HISTORY_LIMIT: usize = 50;

/// The next status. Transition times are kept where conditions do not change.
pub fn compute(
    prev: &FederatedJobStatus,
    o: &Observation,
    generation: Option<i64>,
    now: Timestamp,
) -> FederatedJobStatus {
    use types::*;
    let mut s = prev.clone();
    s.observed_generation = generation;
    let set = |s: &mut FederatedJobStatus,
               type_: &'static str,
               ok: bool,
               reason: &'static str,
               message: String| {
        let status = ConditionStatus::from(ok);
        conditions::set_condition(
            &mut s.conditions,
            NewCondition {
                type_,
                status,
                reason,
                message,
            },
            generation,
            now,
        );
    };

    if let Some(why) = &o.invalid {
        set(&mut s, STALLED, true, "InvalidSpec", why.clone());
        set(&mut s, READY, false, "InvalidSpec", why.clone());
        set(&mut s, RECONCILING, false, "InvalidSpec", String::new());
        s.phase = Some(s.phase.unwrap_or(JobPhase::Pending));
        return s;
    }

    let placed = match &o.placement {
        PlacementObs::Placed { name, option } => {
            let summary = format!(
                "{}/{}/{}",
                option.cloud, option.region, option.instance_type
            );
            let msg = format!(
                "{summary}: {:.2} USD/month, {:.1} s/round predicted",
                option.monthly_cost, option.round_time_seconds
            );
            let cluster = match &o.aggregator {
                AggregatorObs::Starting { cluster } | AggregatorObs::Ready { cluster, .. } => {
                    Some(cluster.clone())
                }
                // Not reachable this time (a timeout, a restart before the member's client
                // exists): the aggregator is still where it was, and cleanup needs to know
                // where that is.
                AggregatorObs::Waiting(..) => prev
                    .placement
                    .as_ref()
                    .filter(|p| p.name == *name && p.summary == summary)
                    .and_then(|p| p.member_cluster.clone()),
            };
            s.placement = Some(ChosenPlacement {
                name: name.clone(),
                summary,
                option: Some(option.clone()),
                member_cluster: cluster,
            });
            set(&mut s, PLACED, true, "Solved", msg);
            true
        }
        PlacementObs::Pending(m) => {
            set(&mut s, PLACED, false, "Solving", m.clone());
            false
        }
        PlacementObs::Infeasible(m) => {
            set(&mut s, PLACED, false, "Infeasible", m.clone());
            false
        }
    };

    let aggregator_ready = match &o.aggregator {
        AggregatorObs::Ready {
            endpoint,
            model_url,
            cluster,
        } => {
            s.aggregator = Some(AggregatorEndpoint {
                endpoint: endpoint.clone(),
                model_url: Some(model_url.clone()),
            });
            set(
                &mut s,
                AGGREGATOR_READY,
                true,
                "Serving",
                format!("serving at {endpoint} in {cluster}"),
            );
            true
        }
        AggregatorObs::Starting { cluster } => {
            set(
                &mut s,
                AGGREGATOR_READY,
                false,
                "Starting",
                format!("starting in member cluster {cluster}"),
            );
            false
        }
        AggregatorObs::Waiting(reason, m) => {
            set(&mut s, AGGREGATOR_READY, false, reason, m.clone());
            false
        }
    };

    s.participants = o.participants.clone();
    let quorum = o.running >= o.min_per_round;
    let pmsg = format!(
        "{} of {} participants running (quorum {})",
        o.running, o.max_per_round, o.min_per_round
    );
    let pmsg = match &o.shortfall {
        Some(why) => format!("{pmsg}; {why}"),
        None => pmsg,
    };
    set(
        &mut s,
        PARTICIPANTS_READY,
        quorum && aggregator_ready,
        if quorum {
            "QuorumRunning"
        } else {
            "BelowQuorum"
        },
        pmsg.clone(),
    );
    let replaced = s
        .participants
        .iter()
        .filter(|p| p.state == "Replaced")
        .count();
    let degraded = aggregator_ready && (o.running < o.max_per_round || replaced > 0);
    set(
        &mut s,
        DEGRADED,
        degraded,
        if degraded {
            "ParticipantsReplacedOrMissing"
        } else {
            "AllParticipantsRunning"
        },
        format!("{pmsg}; {replaced} replaced"),
    );

    if let Some(p) = &o.progress {
        s.current_round = Some(p.completed_rounds);
        for r in &p.rounds {
            if let Some(h) = s.history.iter_mut().find(|h| h.round == r.round) {
                *h = r.clone();
            } else if s.history.last().is_none_or(|h| h.round < r.round) {
                s.history.push(r.clone());
            }
        }
        let excess = s.history.len().saturating_sub(HISTORY_LIMIT);
        s.history.drain(..excess);
        if p.latest_model.is_some() {
            s.latest_model = p.latest_model.clone();
        }
    }
    let done = s.current_round.unwrap_or(0);
    s.round_progress = Some(format!("{done}/{}", o.rounds));

    let succeeded = o
        .progress
        .as_ref()
        .is_some_and(|p| p.phase.eq_ignore_ascii_case("completed"))
        || done >= o.rounds;
    let failed_reason = if o
        .progress
        .as_ref()
        .is_some_and(|p| p.phase.eq_ignore_ascii_case("failed"))
    {
        Some((
            "AggregatorFailed",
            "the aggregator reports the job failed".to_string(),
        ))
    } else if o.budget_exhausted && !quorum {
        Some(("ReplacementBudgetExhausted", pmsg))
    } else {
        None
    };
    let phase = if succeeded {
        JobPhase::Succeeded
    } else if failed_reason.is_some() {
        JobPhase::Failed
    } else if aggregator_ready && quorum {
        JobPhase::Running
    } else if placed {
        JobPhase::Starting
    } else if matches!(o.placement, PlacementObs::Pending(_)) && prev.phase.is_none() {
        JobPhase::Pending
    } else {
        JobPhase::Placing
    };
    let terminal = matches!(phase, JobPhase::Succeeded | JobPhase::Failed);
    if terminal && s.completion_time.is_none() {
        s.completion_time = Some(Time(now));
    }
    if phase == JobPhase::Running && s.start_time.is_none() {
        s.start_time = Some(Time(now));
    }
    s.phase = Some(phase);

    set(
        &mut s,
        SUCCEEDED,
        succeeded,
        if succeeded {
            "AllRoundsCompleted"
        } else {
            "NotFinished"
        },
        format!("{done}/{} rounds", o.rounds),
    );
    let (freason, fmsg) = failed_reason
        .clone()
        .unwrap_or(("NotFailed", String::new()));
    set(
        &mut s,
        FAILED,
        failed_reason.is_some(),
        freason,
        fmsg.clone(),
    );
    set(
        &mut s,
        PROGRESSING,
        phase == JobPhase::Running,
        if phase == JobPhase::Running {
            "RoundsAdvancing"
        } else {
            "NotRunning"
        },
        format!("{done}/{} rounds", o.rounds),
    );
    let infeasible = matches!(o.placement, PlacementObs::Infeasible(_));
    let stalled = infeasible || failed_reason.is_some();
    let stalled_msg = match &o.placement {
        PlacementObs::Infeasible(m) => m.clone(),
        _ => fmsg,
    };
    set(
        &mut s,
        STALLED,
        stalled,
        if infeasible {
            "PlacementInfeasible"
        } else if stalled {
            freason
        } else {
            "NotStalled"
        },
        stalled_msg,
    );
    let ready = succeeded || (phase == JobPhase::Running);
    set(
        &mut s,
        READY,
        ready,
        if succeeded {
            "Succeeded"
        } else if ready {
            "Running"
        } else {
            "NotReady"
        },
        s_phase_msg(phase),
    );
    set(
        &mut s,
        RECONCILING,
        !terminal && !ready && !stalled,
        "Progressing",
        s_phase_msg(phase),
    );
    s
}

fn s_phase_msg(p: JobPhase) -> String {
    format!("phase {p:?}")
}

#[cfg(test)]
mod tests {
    use super::types::*;
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn option() -> PlacementOption {
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

    fn obs() -> Observation {
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
            model_url: "http://1.2.3.4:8081".into(),
        };
        o.running = 3;
        o.progress = Some(Progress {
            phase: "Running".into(),
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
            phase: "Completed".into(),
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
            phase: "Running".into(),
            completed_rounds: 1,
            rounds: vec![m(0, Some(0.3)), m(1, None)],
            latest_model: None,
        });
        let s1 = compute(&FederatedJobStatus::default(), &o, Some(1), t(1));
        assert_eq!(s1.history.len(), 2);
        o.progress = Some(Progress {
            phase: "Running".into(),
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
                phase: "Running".into(),
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
}
