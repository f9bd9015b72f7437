//! What the round machine tells the network layer, and why it refuses things.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use fedsky_contract::ParticipantId;

/// Why a round attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RoundFailure {
    /// Too few accepted updates by the deadline, or too few left that could reply.
    BelowQuorum {
        /// Updates accepted.
        accepted: usize,
        /// `min_per_round`.
        required: usize,
    },
    /// The strategy could not aggregate the accepted updates.
    AggregationFailed {
        /// The strategy's error message.
        detail: String,
    },
}

impl fmt::Display for RoundFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoundFailure::BelowQuorum { accepted, required } => {
                write!(f, "{accepted} updates accepted, quorum is {required}")
            }
            RoundFailure::AggregationFailed { detail } => write!(f, "aggregation failed: {detail}"),
        }
    }
}

/// Something the network layer must act on or report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RoundEvent {
    /// A new participant registered (joins the next sampling).
    ParticipantJoined {
        /// Who.
        id: ParticipantId,
    },
    /// A vanished participant is back (joins the next sampling).
    ParticipantRejoined {
        /// Who.
        id: ParticipantId,
    },
    /// No heartbeat within the timeout.
    ParticipantVanished {
        /// Who.
        id: ParticipantId,
    },
    /// The operator removed a participant.
    ParticipantRemoved {
        /// Who.
        id: ParticipantId,
    },
    /// A sampled participant left the current round without replying.
    ParticipantDropped {
        /// Round.
        round: u64,
        /// Who.
        id: ParticipantId,
    },
    /// Not enough connected participants to sample the round yet.
    WaitingForParticipants {
        /// Round waiting to start.
        round: u64,
        /// Attempt waiting to start (0-based).
        attempt: u32,
        /// Connected participants.
        connected: usize,
        /// `min_available`.
        required: usize,
    },
    /// Send fit instructions to `sampled`; updates are due by `deadline_ms`.
    RoundStarted {
        /// Round (1-based).
        round: u64,
        /// Attempt (0-based).
        attempt: u32,
        /// Sampled participants, sorted.
        sampled: Vec<ParticipantId>,
        /// Deadline in the caller's clock.
        deadline_ms: u64,
    },
    /// Quorum reached and the round is closed: call the strategy's `finish`,
    /// then [`super::RoundMachine::complete_round`] or
    /// [`super::RoundMachine::fail_round`].
    RoundReady {
        /// Round.
        round: u64,
        /// Attempt.
        attempt: u32,
        /// Participants whose updates were accepted.
        accepted: Vec<ParticipantId>,
        /// Sampled participants that had not replied at the deadline.
        stragglers: Vec<ParticipantId>,
    },
    /// The attempt failed; the strategy's round must be aborted. When
    /// `will_retry`, a new attempt follows (a `RoundStarted` or `WaitingForParticipants`).
    RoundFailed {
        /// Round.
        round: u64,
        /// Attempt that failed.
        attempt: u32,
        /// Why.
        reason: RoundFailure,
        /// Whether another attempt follows.
        will_retry: bool,
    },
    /// The round's new global model is final; checkpoint it.
    RoundCompleted {
        /// Round.
        round: u64,
    },
    /// All rounds done.
    JobCompleted {
        /// Rounds run.
        rounds: u64,
    },
    /// A round ran out of attempts.
    JobFailed {
        /// Round that failed.
        round: u64,
        /// Why its last attempt failed.
        reason: RoundFailure,
    },
}

/// Why an update was refused by the round rules (before or after its content
/// was checked). [`UpdateRefusal::reason`] is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefusal {
    /// The sender never registered (or was removed).
    #[error("participant {id} is not registered with this job")]
    UnknownParticipant {
        /// Sender.
        id: ParticipantId,
    },
    /// The sender is not in this round's sample.
    #[error("participant {id} was not sampled for round {round}")]
    NotSampled {
        /// Sender.
        id: ParticipantId,
        /// Round in progress.
        round: u64,
    },
    /// The update is for another round than the one in progress.
    #[error("participant {id} sent an update for round {got}, but round {current} is in progress")]
    StaleRound {
        /// Sender.
        id: ParticipantId,
        /// Round in progress (or waiting to start).
        current: u64,
        /// Round named in the update.
        got: u64,
    },
    /// The sender already sent (or is sending) an update this round.
    #[error("participant {id} already sent an update for round {round}")]
    Duplicate {
        /// Sender.
        id: ParticipantId,
        /// Round.
        round: u64,
    },
    /// The round's deadline passed or it is already being aggregated.
    #[error("update from participant {id} for round {round} arrived after the round closed")]
    Late {
        /// Sender.
        id: ParticipantId,
        /// Round.
        round: u64,
    },
    /// The sender was dropped from this round after missing heartbeats.
    #[error(
        "participant {id} was dropped from round {round} after missing heartbeats; it will be sampled again in a later round"
    )]
    Dropped {
        /// Sender.
        id: ParticipantId,
        /// Round.
        round: u64,
    },
    /// No round is open (waiting for participants, or the job is over).
    #[error("no round is open for updates (participant {id}, round {got})")]
    NoRoundOpen {
        /// Sender.
        id: ParticipantId,
        /// Round named in the update.
        got: u64,
    },
    /// `finish_update` without a matching `begin_update` (a caller bug).
    #[error("participant {id} has no upload in progress for round {round}")]
    NotUploading {
        /// Sender.
        id: ParticipantId,
        /// Round.
        round: u64,
    },
}

impl UpdateRefusal {
    /// Every label [`UpdateRefusal::reason`] can return.
    pub const REASONS: &'static [&'static str] = &[
        "unknown_participant",
        "not_sampled",
        "stale_round",
        "duplicate",
        "late",
        "dropped",
        "no_round_open",
        "not_uploading",
    ];

    /// Stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            UpdateRefusal::UnknownParticipant { .. } => "unknown_participant",
            UpdateRefusal::NotSampled { .. } => "not_sampled",
            UpdateRefusal::StaleRound { .. } => "stale_round",
            UpdateRefusal::Duplicate { .. } => "duplicate",
            UpdateRefusal::Late { .. } => "late",
            UpdateRefusal::Dropped { .. } => "dropped",
            UpdateRefusal::NoRoundOpen { .. } => "no_round_open",
            UpdateRefusal::NotUploading { .. } => "not_uploading",
        }
    }
}

/// Errors of the machine's non-update operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoundError {
    /// A config value is out of range.
    #[error("invalid round config: {field} {problem}")]
    InvalidConfig {
        /// Field as spelled in the config.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Heartbeat or removal of an unregistered participant.
    #[error("participant {id} is not registered with this job")]
    UnknownParticipant {
        /// Who.
        id: ParticipantId,
    },
    /// `complete_round` / `fail_round` for a round that is not being aggregated.
    #[error("round {round} is not awaiting aggregation (machine is {phase})")]
    NotAggregating {
        /// Round given.
        round: u64,
        /// Current phase, for the message.
        phase: String,
    },
}
