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

    /// Admits the start of an upload from `id` for round `round`, or says why
    /// not. On success the participant's slot is `Uploading` until
    /// [`RoundMachine::finish_update`].
    pub fn begin_update(
        &mut self,
        id: &ParticipantId,
        round: u64,
        now: u64,
    ) -> Result<(), UpdateRefusal> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| UpdateRefusal::UnknownParticipant { id: id.clone() })?;
        if p.connected {
            p.last_seen_ms = now;
        }
        let current = self.round;
        match &mut self.phase {
            Phase::Collecting(open) => {
                if round != current {
                    return Err(UpdateRefusal::StaleRound {
                        id: id.clone(),
                        current,
                        got: round,
                    });
                }
                let past_deadline = now >= open.deadline_ms;
                let slot = open
                    .slots
                    .get_mut(id)
                    .ok_or_else(|| UpdateRefusal::NotSampled {
                        id: id.clone(),
                        round,
                    })?;
                match slot {
                    Slot::Pending if past_deadline => Err(UpdateRefusal::Late {
                        id: id.clone(),
                        round,
                    }),
                    Slot::Pending => {
                        *slot = Slot::Uploading;
                        Ok(())
                    }
                    Slot::Dropped => Err(UpdateRefusal::Dropped {
                        id: id.clone(),
                        round,
                    }),
                    Slot::Uploading | Slot::Accepted | Slot::Rejected { .. } => {
                        Err(UpdateRefusal::Duplicate {
                            id: id.clone(),
                            round,
                        })
                    }
                }
            }
            _ => Err(self.refusal_outside_collecting(id, round)),
        }
    }

    /// Checks that an upload admitted by `begin_update` may still be counted
    /// (call under the same lock right before handing it to the strategy).
    pub fn check_upload(
        &self,
        id: &ParticipantId,
        round: u64,
        now: u64,
    ) -> Result<(), UpdateRefusal> {
        if !self.participants.contains_key(id) {
            return Err(UpdateRefusal::UnknownParticipant { id: id.clone() });
        }
        let Phase::Collecting(open) = &self.phase else {
            return Err(self.refusal_outside_collecting(id, round));
        };
        if round != self.round {
            return Err(UpdateRefusal::StaleRound {
                id: id.clone(),
                current: self.round,
                got: round,
            });
        }
        match open.slots.get(id) {
            None => Err(UpdateRefusal::NotSampled {
                id: id.clone(),
                round,
            }),
            Some(Slot::Dropped) => Err(UpdateRefusal::Dropped {
                id: id.clone(),
                round,
            }),
            Some(Slot::Uploading) if now >= open.deadline_ms => Err(UpdateRefusal::Late {
                id: id.clone(),
                round,
            }),
            Some(Slot::Uploading) => Ok(()),
            Some(_) => Err(UpdateRefusal::NotUploading {
                id: id.clone(),
                round,
            }),
        }
    }

    /// Records how an admitted upload ended. `Accepted` is refused (and must
    /// not have been aggregated) if [`RoundMachine::check_upload`] would fail.
    pub fn finish_update(
        &mut self,
        id: &ParticipantId,
        round: u64,
        outcome: UpdateOutcome,
        now: u64,
    ) -> Result<Vec<RoundEvent>, UpdateRefusal> {
        let mut events = Vec::new();
        let checked = self.check_upload(id, round, now);
        let Phase::Collecting(open) = &mut self.phase else {
            return checked.map(|()| events);
        };
        let Some(slot) = open.slots.get_mut(id) else {
            return checked.map(|()| events);
        };
        match outcome {
            UpdateOutcome::Accepted => {
                checked?;
                *slot = Slot::Accepted;
            }
            // A content rejection counts as a reply even when late, so the
            // round does not wait for this participant.
            UpdateOutcome::Rejected { reason } => {
                if *slot != Slot::Uploading {
                    return checked.map(|()| events);
                }
                *slot = Slot::Rejected { reason };
            }
            UpdateOutcome::Abandoned => {
                if *slot == Slot::Uploading {
                    *slot = Slot::Pending;
                }
                return Ok(events);
            }
        }
        self.evaluate(now, &mut events);
        Ok(events)
    }

    /// Marks the aggregated round final and moves on (next round or job done).
    pub fn complete_round(&mut self, round: u64, now: u64) -> Result<Vec<RoundEvent>, RoundError> {
        self.require_aggregating(round)?;
        let mut events = vec![RoundEvent::RoundCompleted { round }];
        self.completed_rounds = round;
        if round >= self.config.total_rounds {
            self.phase = Phase::Completed;
            events.push(RoundEvent::JobCompleted { rounds: round });
            return Ok(events);
        }
        self.round = round + 1;
        self.attempt = 0;
        self.enter_waiting(now, &mut events);
        Ok(events)
    }

    /// Reports that aggregating `round` failed; the round is retried or the job fails.
    pub fn fail_round(
        &mut self,
        round: u64,
        detail: String,
        now: u64,
    ) -> Result<Vec<RoundEvent>, RoundError> {
        self.require_aggregating(round)?;
        let mut events = Vec::new();
        self.fail_attempt(RoundFailure::AggregationFailed { detail }, now, &mut events);
        Ok(events)
    }

    fn require_aggregating(&self, round: u64) -> Result<(), RoundError> {
        match self.phase {
            Phase::Aggregating { .. } if round == self.round => Ok(()),
            _ => Err(RoundError::NotAggregating {
                round,
                phase: format!("{} in round {}", self.phase.label(), self.round),
            }),
        }
    }

    fn refusal_outside_collecting(&self, id: &ParticipantId, round: u64) -> UpdateRefusal {
        let id = id.clone();
        match &self.phase {
            Phase::Aggregating { .. } if round == self.round => UpdateRefusal::Late { id, round },
            Phase::Aggregating { .. } | Phase::Waiting if round != self.round => {
                UpdateRefusal::StaleRound {
                    id,
                    current: self.round,
                    got: round,
                }
            }
            _ => UpdateRefusal::NoRoundOpen { id, got: round },
        }
    }

    fn drop_from_round(&mut self, id: &ParticipantId, events: &mut Vec<RoundEvent>) {
        if let Phase::Collecting(open) = &mut self.phase
            && let Some(slot) = open.slots.get_mut(id)
            && slot.outstanding()
        {
            *slot = Slot::Dropped;
            events.push(RoundEvent::ParticipantDropped {
                round: self.round,
                id: id.clone(),
            });
        }
    }

    /// Closes the open round when its outcome is decided.
    fn evaluate(&mut self, now: u64, events: &mut Vec<RoundEvent>) {
        let Phase::Collecting(open) = &self.phase else {
            return;
        };
        let required = self.config.min_per_round;
        let accepted: Vec<ParticipantId> = open
            .slots
            .iter()
            .filter(|(_, s)| **s == Slot::Accepted)
            .map(|(id, _)| id.clone())
            .collect();
        let outstanding: Vec<ParticipantId> = open
            .slots
            .iter()
            .filter(|(_, s)| s.outstanding())
            .map(|(id, _)| id.clone())
            .collect();
        let at_deadline = now >= open.deadline_ms;
        let decided = outstanding.is_empty() || at_deadline;
        // Fail early when even all outstanding replies could not make quorum.
        let hopeless = accepted.len() + outstanding.len() < required;
        if decided && accepted.len() >= required {
            events.push(RoundEvent::RoundReady {
                round: self.round,
                attempt: self.attempt,
                accepted: accepted.clone(),
                stragglers: outstanding,
            });
            self.phase = Phase::Aggregating { accepted };
        } else if decided || hopeless {
            let reason = RoundFailure::BelowQuorum {
                accepted: accepted.len(),
                required,
            };
            self.fail_attempt(reason, now, events);
        }
    }

    fn fail_attempt(&mut self, reason: RoundFailure, now: u64, events: &mut Vec<RoundEvent>) {
        let will_retry = self.attempt + 1 < self.config.max_round_attempts;
        events.push(RoundEvent::RoundFailed {
            round: self.round,
            attempt: self.attempt,
            reason: reason.clone(),
            will_retry,
        });
        if will_retry {
            self.attempt += 1;
            self.enter_waiting(now, events);
        } else {
            events.push(RoundEvent::JobFailed {
                round: self.round,
                reason: reason.clone(),
            });
            self.phase = Phase::Failed { reason };
        }
    }

    fn enter_waiting(&mut self, now: u64, events: &mut Vec<RoundEvent>) {
        self.phase = Phase::Waiting;
        if !self.try_start(now, events) {
            events.push(RoundEvent::WaitingForParticipants {
                round: self.round,
                attempt: self.attempt,
                connected: self.connected(),
                required: self.config.min_available,
            });
        }
    }

    /// Samples and opens the round if waiting and enough are connected.
    fn try_start(&mut self, now: u64, events: &mut Vec<RoundEvent>) -> bool {
        if self.phase != Phase::Waiting {
            return false;
        }
        let candidates: Vec<&ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.connected)
            .map(|(id, _)| id)
            .collect();
        if candidates.len() < self.config.min_available {
            return false;
        }
        let sampled = sampling::sample(
            &candidates,
            self.config.max_per_round,
            self.config.seed,
            self.round,
            self.attempt,
        );
        let deadline_ms = now.saturating_add(self.config.round_timeout_ms);
        let slots = sampled
            .iter()
            .map(|id| (id.clone(), Slot::Pending))
            .collect();
        self.phase = Phase::Collecting(OpenRound {
            started_ms: now,
            deadline_ms,
            slots,
        });
        events.push(RoundEvent::RoundStarted {
            round: self.round,
            attempt: self.attempt,
            sampled,
            deadline_ms,
        });
        true
    }
}
