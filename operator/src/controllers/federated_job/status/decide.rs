//! Pure decisions behind a FederatedJob's status: the facts read once from the
//! observation, then one function per condition and one for the phase.

use super::fields::summary;
use super::types::{
    AGGREGATOR_READY, DEGRADED, FAILED, PARTICIPANTS_READY, PLACED, PROGRESSING, SUCCEEDED,
};
use super::{AggregatorObs, Observation, PlacementObs};
use fedsky_contract::AggregatorPhase;
use fedsky_crds::conditions::{ConditionStatus, NewCondition, READY, RECONCILING, STALLED};
use fedsky_crds::federated_job::JobPhase;
use fedsky_crds::federated_job::ParticipantPhase;

/// A condition decided here; its type is one of [`super::types`] or a kstatus one.
pub type Decided = NewCondition<'static>;

fn cond(type_: &'static str, ok: bool, reason: &'static str, message: String) -> Decided {
    NewCondition {
        type_,
        status: ConditionStatus::from(ok),
        reason,
        message,
    }
}

/// What the conditions and the phase are decided from.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The placement is solved.
    pub placed: bool,
    /// The aggregator serves.
    pub aggregator_ready: bool,
    /// At least `minPerRound` participants run.
    pub quorum: bool,
    /// Rounds completed.
    pub done: i32,
    /// The aggregator reports completion, or all rounds are done.
    pub succeeded: bool,
    /// Why the job failed (reason, message), if it did.
    pub failure: Option<(&'static str, String)>,
}

impl Facts {
    /// The facts of `o`, with `current_round` the rounds completed as status records them.
    pub fn of(o: &Observation, current_round: Option<i32>) -> Self {
        let quorum = o.running >= o.min_per_round;
        let done = current_round.unwrap_or(0);
        let aggregator_phase =
            |phase: AggregatorPhase| o.progress.as_ref().is_some_and(|p| p.phase == phase);
        let failure = if aggregator_phase(AggregatorPhase::Failed) {
            Some((
                "AggregatorFailed",
                "the aggregator reports the job failed".to_string(),
            ))
        } else if o.budget_exhausted && !quorum {
            Some(("ReplacementBudgetExhausted", participants_message(o)))
        } else {
            None
        };
        Self {
            placed: matches!(o.placement, PlacementObs::Placed { .. }),
            aggregator_ready: matches!(o.aggregator, AggregatorObs::Ready { .. }),
            quorum,
            done,
            succeeded: aggregator_phase(AggregatorPhase::Completed) || done >= o.rounds,
            failure,
        }
    }

    /// The job cannot go on without a change: its placement is infeasible or it failed.
    pub fn stalled(&self, o: &Observation) -> bool {
        matches!(o.placement, PlacementObs::Infeasible(_)) || self.failure.is_some()
    }
}

/// `k of n participants running (quorum q)`, with why fewer could be started.
pub fn participants_message(o: &Observation) -> String {
    let msg = format!(
        "{} of {} participants running (quorum {})",
        o.running, o.max_per_round, o.min_per_round
    );
    match &o.shortfall {
        Some(why) => format!("{msg}; {why}"),
        None => msg,
    }
}

/// The phase; `prev` is the phase status held before.
pub fn phase(prev: Option<JobPhase>, o: &Observation, f: &Facts) -> JobPhase {
    if f.succeeded {
        JobPhase::Succeeded
    } else if f.failure.is_some() {
        JobPhase::Failed
    } else if f.aggregator_ready && f.quorum {
        JobPhase::Running
    } else if f.placed {
        JobPhase::Starting
    } else if matches!(o.placement, PlacementObs::Pending(_)) && prev.is_none() {
        JobPhase::Pending
    } else {
        JobPhase::Placing
    }
}

/// The kstatus conditions of a spec the user must fix.
pub fn invalid(why: &str) -> [Decided; 3] {
    [
        cond(STALLED, true, "InvalidSpec", why.to_string()),
        cond(READY, false, "InvalidSpec", why.to_string()),
        cond(RECONCILING, false, "InvalidSpec", String::new()),
    ]
}

/// Every condition of a valid job in `phase`.
pub fn conditions(o: &Observation, f: &Facts, phase: JobPhase) -> [Decided; 10] {
    [
        placed(&o.placement),
        aggregator_ready(&o.aggregator),
        participants_ready(o, f),
        degraded(o, f),
        succeeded(o, f),
        failed(f),
        progressing(o, f, phase),
        stalled(o, f),
        ready(f, phase),
        reconciling(o, f, phase),
    ]
}

/// `Placed`: the placement is solved, with its cost and predicted round time.
pub fn placed(p: &PlacementObs) -> Decided {
    match p {
        PlacementObs::Placed { option, .. } => {
            let msg = format!(
                "{}: {:.2} USD/month, {:.1} s/round predicted",
                summary(option),
                option.monthly_cost,
                option.round_time_seconds
            );
            cond(PLACED, true, "Solved", msg)
        }
        PlacementObs::Pending(m) => cond(PLACED, false, "Solving", m.clone()),
        PlacementObs::Infeasible(m) => cond(PLACED, false, "Infeasible", m.clone()),
    }
}

/// `AggregatorReady`: the aggregator serves.
pub fn aggregator_ready(a: &AggregatorObs) -> Decided {
    match a {
        AggregatorObs::Ready {
            endpoint, cluster, ..
        } => cond(
            AGGREGATOR_READY,
            true,
            "Serving",
            format!("serving at {endpoint} in {cluster}"),
        ),
        AggregatorObs::Starting { cluster } => cond(
            AGGREGATOR_READY,
            false,
            "Starting",
            format!("starting in member cluster {cluster}"),
        ),
        AggregatorObs::Blocked {
            reason, message, ..
        } => cond(AGGREGATOR_READY, false, reason, message.clone()),
        AggregatorObs::Waiting(reason, m) => cond(AGGREGATOR_READY, false, reason, m.clone()),
    }
}

/// `ParticipantsReady`: a quorum runs against a serving aggregator.
pub fn participants_ready(o: &Observation, f: &Facts) -> Decided {
    cond(
        PARTICIPANTS_READY,
        f.quorum && f.aggregator_ready,
        if f.quorum {
            "QuorumRunning"
        } else {
            "BelowQuorum"
        },
        participants_message(o),
    )
}

/// `Degraded`: serving with fewer participants than asked for, or after replacements.
pub fn degraded(o: &Observation, f: &Facts) -> Decided {
    let replaced = o
        .participants
        .iter()
        .filter(|p| p.state == ParticipantPhase::Replaced)
        .count();
    let degraded = f.aggregator_ready && (o.running < o.max_per_round || replaced > 0);
    cond(
        DEGRADED,
        degraded,
        if degraded {
            "ParticipantsReplacedOrMissing"
        } else {
            "AllParticipantsRunning"
        },
        format!("{}; {replaced} replaced", participants_message(o)),
    )
}

/// `Succeeded`: all rounds finished.
pub fn succeeded(o: &Observation, f: &Facts) -> Decided {
    cond(
        SUCCEEDED,
        f.succeeded,
        if f.succeeded {
            "AllRoundsCompleted"
        } else {
            "NotFinished"
        },
        format!("{}/{} rounds", f.done, o.rounds),
    )
}

/// `Failed`: the job cannot finish, and why.
pub fn failed(f: &Facts) -> Decided {
    let (reason, message) = f.failure.clone().unwrap_or(("NotFailed", String::new()));
    cond(FAILED, f.failure.is_some(), reason, message)
}

/// `Progressing`: rounds are advancing.
pub fn progressing(o: &Observation, f: &Facts, phase: JobPhase) -> Decided {
    let running = phase == JobPhase::Running;
    cond(
        PROGRESSING,
        running,
        if running {
            "RoundsAdvancing"
        } else {
            "NotRunning"
        },
        format!("{}/{} rounds", f.done, o.rounds),
    )
}

/// `Stalled` (kstatus): an infeasible placement or a failure waits for the user.
pub fn stalled(o: &Observation, f: &Facts) -> Decided {
    match (&o.placement, &f.failure) {
        (PlacementObs::Infeasible(m), _) => cond(STALLED, true, "PlacementInfeasible", m.clone()),
        (_, Some((reason, m))) => cond(STALLED, true, reason, m.clone()),
        _ => cond(STALLED, false, "NotStalled", String::new()),
    }
}

/// `Ready` (kstatus): the job runs or has succeeded.
pub fn ready(f: &Facts, phase: JobPhase) -> Decided {
    let ready = is_ready(f, phase);
    cond(
        READY,
        ready,
        if f.succeeded {
            "Succeeded"
        } else if ready {
            "Running"
        } else {
            "NotReady"
        },
        phase_message(phase),
    )
}

/// `Reconciling` (kstatus): neither finished, nor ready, nor stalled.
pub fn reconciling(o: &Observation, f: &Facts, phase: JobPhase) -> Decided {
    let terminal = matches!(phase, JobPhase::Succeeded | JobPhase::Failed);
    cond(
        RECONCILING,
        !terminal && !is_ready(f, phase) && !f.stalled(o),
        "Progressing",
        phase_message(phase),
    )
}

fn is_ready(f: &Facts, phase: JobPhase) -> bool {
    f.succeeded || phase == JobPhase::Running
}

fn phase_message(p: JobPhase) -> String {
    format!("phase {p:?}")
}
