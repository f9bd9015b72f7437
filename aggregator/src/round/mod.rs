//! The round state machine: who is connected, who is sampled, when a round
//! closes, and what happens to updates that do not fit.
//!
//! It is pure: every call takes `now` (milliseconds on the caller's monotonic
//! clock) and returns [`RoundEvent`]s for the network layer to act on. The
//! caller must call [`RoundMachine::tick`] regularly (at the latest at
//! [`RoundMachine::next_wakeup_ms`]) so deadlines and vanished participants
//! are noticed.
//!
//! Life of a round: `Waiting` (until `min_available` participants are
//! connected) → `Collecting` (sampled participants upload) → `Aggregating`
//! (after [`RoundEvent::RoundReady`]; the caller runs the strategy) →
//! [`RoundMachine::complete_round`] starts the next round, or
//! [`RoundMachine::fail_round`] retries it.

mod config;
mod events;
mod sampling;
mod transitions;
mod updates;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use config::RoundConfig;
pub use events::{ParticipantId, RoundError, RoundEvent, RoundFailure, UpdateRefusal};

/// What the machine knows about a registered participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Last time it was heard from.
    pub last_seen_ms: u64,
    /// False once it missed the heartbeat timeout (until it is heard from again).
    pub connected: bool,
}

pub use fedsky_contract::{AggregatorPhase, Slot};

/// A round open for updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenRound {
    /// When it started.
    pub started_ms: u64,
    /// When it closes for updates.
    pub deadline_ms: u64,
    /// Sampled participants and their progress.
    pub slots: BTreeMap<ParticipantId, Slot>,
}

/// Phase of the current round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum Phase {
    /// Not enough participants connected to sample the round.
    Waiting,
    /// Sampled participants are uploading.
    Collecting(OpenRound),
    /// Closed; the caller is aggregating these participants' updates.
    Aggregating {
        /// Participants whose updates were accepted.
        accepted: Vec<ParticipantId>,
    },
    /// All rounds done.
    Completed,
    /// A round ran out of attempts.
    Failed {
        /// Why the last attempt failed.
        reason: RoundFailure,
    },
}

impl Phase {
    /// The phase as the status API shows it.
    pub fn public(&self) -> AggregatorPhase {
        match self {
            Phase::Waiting => AggregatorPhase::Waiting,
            Phase::Collecting(_) => AggregatorPhase::Collecting,
            Phase::Aggregating { .. } => AggregatorPhase::Aggregating,
            Phase::Completed => AggregatorPhase::Completed,
            Phase::Failed { .. } => AggregatorPhase::Failed,
        }
    }

    fn label(&self) -> &'static str {
        self.public().as_str()
    }
}

/// How an upload that passed [`RoundMachine::begin_update`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Validated and folded into the strategy.
    Accepted,
    /// Refused on content (validation or strategy); `reason` is the metric label.
    Rejected {
        /// Metric label of the rejection.
        reason: String,
    },
    /// The stream broke; the participant may upload again this round.
    Abandoned,
}

/// The state a restarted aggregator resumes from: written after each
/// completed round, together with the global model and strategy checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundCheckpoint {
    /// The job's round rules.
    pub config: RoundConfig,
    /// Rounds whose global model is final.
    pub completed_rounds: u64,
    /// Participants registered at the time.
    pub participants: Vec<ParticipantId>,
}

/// The round state machine (serialisable as a whole for inspection; use
/// [`RoundMachine::checkpoint`] for resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundMachine {
    config: RoundConfig,
    participants: BTreeMap<ParticipantId, Participant>,
    phase: Phase,
    /// Round being run or waited for (1-based).
    round: u64,
    /// Attempt of that round (0-based).
    attempt: u32,
    completed_rounds: u64,
}

impl RoundMachine {
    /// A machine waiting for participants for round 1.
    pub fn new(config: RoundConfig) -> Result<Self, RoundError> {
        config.validate()?;
        Ok(Self {
            config,
            participants: BTreeMap::new(),
            phase: Phase::Waiting,
            round: 1,
            attempt: 0,
            completed_rounds: 0,
        })
    }

    /// Rebuilds the machine after a restart. Known participants are kept but
    /// count as disconnected until they register or heartbeat again; the next
    /// round starts at attempt 0, so sampling matches an uninterrupted run.
    pub fn resume(checkpoint: RoundCheckpoint, now: u64) -> Result<Self, RoundError> {
        let mut m = Self::new(checkpoint.config)?;
        m.completed_rounds = checkpoint.completed_rounds.min(m.config.total_rounds);
        m.round = (m.completed_rounds + 1).min(m.config.total_rounds);
        if m.completed_rounds >= m.config.total_rounds {
            m.phase = Phase::Completed;
        }
        m.participants = checkpoint
            .participants
            .into_iter()
            .map(|id| {
                let p = Participant {
                    last_seen_ms: now,
                    connected: false,
                };
                (id, p)
            })
            .collect();
        Ok(m)
    }

    /// Snapshot for resume (meaningful between rounds; an open round is
    /// re-run from scratch after resume).
    pub fn checkpoint(&self) -> RoundCheckpoint {
        RoundCheckpoint {
            config: self.config.clone(),
            completed_rounds: self.completed_rounds,
            participants: self.participants.keys().cloned().collect(),
        }
    }

    /// The rules.
    pub fn config(&self) -> &RoundConfig {
        &self.config
    }

    /// Current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Round being run or waited for (1-based).
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Attempt of the current round (0-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Rounds whose global model is final.
    pub fn completed_rounds(&self) -> u64 {
        self.completed_rounds
    }

    /// Registered participants.
    pub fn participants(&self) -> &BTreeMap<ParticipantId, Participant> {
        &self.participants
    }

    /// Connected participants.
    pub fn connected(&self) -> usize {
        self.participants.values().filter(|p| p.connected).count()
    }

    /// A participant's slot in the open round, if it was sampled.
    pub fn slot(&self, id: &ParticipantId) -> Option<&Slot> {
        match &self.phase {
            Phase::Collecting(open) => open.slots.get(id),
            _ => None,
        }
    }

    /// The latest time the caller should call [`RoundMachine::tick`] next.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        let deadline = match &self.phase {
            Phase::Collecting(open) => Some(open.deadline_ms),
            _ => None,
        };
        let expiry = self
            .participants
            .values()
            .filter(|p| p.connected)
            .map(|p| {
                p.last_seen_ms
                    .saturating_add(self.config.heartbeat_timeout_ms)
                    .saturating_add(1)
            })
            .min();
        deadline.into_iter().chain(expiry).min()
    }

    /// Adds a participant or reconnects a known one; it joins the next
    /// sampling (never the round already running).
    pub fn register(&mut self, id: ParticipantId, now: u64) -> Vec<RoundEvent> {
        let mut events = Vec::new();
        match self.participants.get_mut(&id) {
            Some(p) => {
                p.last_seen_ms = now;
                if !p.connected {
                    p.connected = true;
                    events.push(RoundEvent::ParticipantRejoined { id });
                }
            }
            None => {
                self.participants.insert(
                    id.clone(),
                    Participant {
                        last_seen_ms: now,
                        connected: true,
                    },
                );
                events.push(RoundEvent::ParticipantJoined { id });
            }
        }
        self.try_start(now, &mut events);
        events
    }

    /// Records a sign of life; reconnects a participant that had vanished.
    pub fn heartbeat(
        &mut self,
        id: &ParticipantId,
        now: u64,
    ) -> Result<Vec<RoundEvent>, RoundError> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| RoundError::UnknownParticipant { id: id.clone() })?;
        p.last_seen_ms = now;
        let mut events = Vec::new();
        if !p.connected {
            p.connected = true;
            events.push(RoundEvent::ParticipantRejoined { id: id.clone() });
            self.try_start(now, &mut events);
        }
        Ok(events)
    }

    /// Removes a participant for good (operator decision); an unfinished
    /// slot in the open round is dropped.
    pub fn deregister(
        &mut self,
        id: &ParticipantId,
        now: u64,
    ) -> Result<Vec<RoundEvent>, RoundError> {
        self.participants
            .remove(id)
            .ok_or_else(|| RoundError::UnknownParticipant { id: id.clone() })?;
        let mut events = vec![RoundEvent::ParticipantRemoved { id: id.clone() }];
        self.drop_from_round(id, &mut events);
        self.evaluate(now, &mut events);
        Ok(events)
    }

    /// Notices vanished participants and the deadline; starts a waiting round.
    pub fn tick(&mut self, now: u64) -> Vec<RoundEvent> {
        let mut events = Vec::new();
        let timeout = self.config.heartbeat_timeout_ms;
        let vanished: Vec<ParticipantId> = self
            .participants
            .iter_mut()
            .filter(|(_, p)| p.connected && now.saturating_sub(p.last_seen_ms) > timeout)
            .map(|(id, p)| {
                p.connected = false;
                id.clone()
            })
            .collect();
        for id in vanished {
            events.push(RoundEvent::ParticipantVanished { id: id.clone() });
            self.drop_from_round(&id, &mut events);
        }
        self.evaluate(now, &mut events);
        self.try_start(now, &mut events);
        events
    }
}
