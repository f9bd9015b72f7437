//! Pure status computation for FederatedJob: phase, conditions and progress.
//!
//! [`compute`] gathers the facts once ([`decide::Facts`]), then each condition and the phase
//! come from their own pure function in [`decide`], and the printed fields (placement,
//! round progress, history) from [`fields`].

pub mod decide;
#[cfg(test)]
mod decide_tests;
pub mod fields;
#[cfg(test)]
mod tests;

use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::conditions;
use fedsky_crds::federated_job::{
    AggregatorEndpoint, FederatedJobStatus, JobPhase, ModelVersion, ParticipantState, RoundMetrics,
};
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
    /// Objects applied in the member cluster, but the aggregator cannot start there (its
    /// pod cannot be scheduled).
    Blocked {
        /// Member cluster.
        cluster: String,
        /// CamelCase reason, such as `AggregatorUnschedulable`.
        reason: &'static str,
        /// What holds it up.
        message: String,
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
    /// The aggregator's phase.
    pub phase: fedsky_contract::AggregatorPhase,
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
    let mut s = prev.clone();
    s.observed_generation = generation;
    if let Some(why) = &o.invalid {
        let mut set = conditions::Setter::new(&mut s.conditions, generation, now);
        for c in decide::invalid(why) {
            set.apply(c);
        }
        s.phase = Some(s.phase.unwrap_or(JobPhase::Pending));
        return s;
    }
    if let PlacementObs::Placed { name, option } = &o.placement {
        s.placement = Some(fields::chosen_placement(prev, name, option, &o.aggregator));
    }
    if let AggregatorObs::Ready {
        endpoint,
        model_url,
        ..
    } = &o.aggregator
    {
        s.aggregator = Some(AggregatorEndpoint {
            endpoint: endpoint.clone(),
            model_url: Some(model_url.clone()),
        });
    }
    s.participants = o.participants.clone();
    if let Some(p) = &o.progress {
        fields::merge_progress(&mut s, p);
    }
    let facts = decide::Facts::of(o, s.current_round);
    s.round_progress = Some(fields::round_progress(facts.done, o.rounds));
    let phase = decide::phase(prev.phase, o, &facts);
    fields::stamp_times(&mut s, phase, now);
    s.phase = Some(phase);
    let mut set = conditions::Setter::new(&mut s.conditions, generation, now);
    for c in decide::conditions(o, &facts, phase) {
        set.apply(c);
    }
    s
}
