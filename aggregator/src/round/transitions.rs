//! Moving between phases: closing, completing and failing rounds, and
//! starting the next one.

use super::{
    OpenRound, ParticipantId, Phase, RoundError, RoundEvent, RoundFailure, RoundMachine, Slot,
    sampling,
};

impl RoundMachine {
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

    pub(super) fn drop_from_round(&mut self, id: &ParticipantId, events: &mut Vec<RoundEvent>) {
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
    pub(super) fn evaluate(&mut self, now: u64, events: &mut Vec<RoundEvent>) {
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

    pub(super) fn fail_attempt(
        &mut self,
        reason: RoundFailure,
        now: u64,
        events: &mut Vec<RoundEvent>,
    ) {
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

    pub(super) fn enter_waiting(&mut self, now: u64, events: &mut Vec<RoundEvent>) {
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
    pub(super) fn try_start(&mut self, now: u64, events: &mut Vec<RoundEvent>) -> bool {
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
