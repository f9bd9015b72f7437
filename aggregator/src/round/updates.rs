//! Admitting, checking and recording a participant's upload.

use super::{ParticipantId, Phase, RoundEvent, RoundMachine, Slot, UpdateOutcome, UpdateRefusal};

impl RoundMachine {
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
}
