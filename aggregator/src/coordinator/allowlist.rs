//! Who may take part: the participants the operator runs. A certificate from the job's
//! CA proves only that the operator issued it once; when the operator replaces a
//! participant the old certificate and the job token stay valid, so the operator also
//! tells the aggregator which names it still runs, and everyone else is refused.
//!
//! The list starts as the job config's `participants` (empty: no list, anyone with a
//! certificate from the job's CA, as before the operator first sends one). It is not
//! written to the model store: after a restart the operator sends it again (it reads the
//! list back with `GET /v1/participants` at least every minute).
//!
//! Names off the operator's list are refused in two ways. One the operator took off
//! (listed before, or registered when the list came) is revoked: `NotAllowed`,
//! PERMISSION_DENIED, which a participant takes as final. One never seen is most likely a
//! participant the operator has just started and is about to list (it sends the list
//! right after the start, and a local process can register first): `NotListed`,
//! UNAVAILABLE, which a participant retries with backoff. Neither is admitted.

use std::collections::BTreeSet;

use super::{Coordinator, CoreError, State};
use crate::round::ParticipantId;

/// Who is admitted.
#[derive(Debug, Default)]
pub(super) struct Allowlist {
    /// The names admitted; `None`: anyone with a certificate from the job's CA.
    names: Option<BTreeSet<ParticipantId>>,
    /// Names taken off the operator's list: refused for good, until a list names them.
    revoked: BTreeSet<ParticipantId>,
    /// Whether `names` came from the operator (a name on neither list may be about to be
    /// listed) rather than from the job config (it never will be).
    from_operator: bool,
}

impl Allowlist {
    /// The list a job config starts with.
    pub(super) fn from_job(participants: &[String]) -> Self {
        let names = (!participants.is_empty()).then(|| {
            participants
                .iter()
                .map(|p| ParticipantId::from(p.as_str()))
                .collect()
        });
        Self {
            names,
            ..Self::default()
        }
    }
}

impl State {
    /// Refuses `id` when a list is set and does not name it (see the module doc).
    pub(super) fn check_allowed(&self, id: &ParticipantId, job: &str) -> Result<(), CoreError> {
        let list = &self.allowed;
        match &list.names {
            Some(names) if !names.contains(id) => {
                let (id, job) = (id.clone(), job.to_string());
                if list.from_operator && !list.revoked.contains(&id) {
                    Err(CoreError::NotListed { id, job })
                } else {
                    Err(CoreError::NotAllowed { id, job })
                }
            }
            _ => Ok(()),
        }
    }
}

impl Coordinator {
    /// The participants admitted; `None`: anyone with a certificate from the job's CA.
    pub fn allowed(&self) -> Option<BTreeSet<ParticipantId>> {
        self.lock().allowed.names.clone()
    }

    /// Admits only `allowed` from now on (an empty set admits nobody). Registered
    /// participants not in it are revoked at once: removed from the round machine as if
    /// the operator had deregistered them (an unfinished slot in the open round is
    /// dropped; an update already accepted stays in the round), and every later call of
    /// theirs fails with [`CoreError::NotAllowed`]; so do those of names the previous
    /// list held. Returns the registered participants revoked.
    pub fn set_allowed(&self, allowed: BTreeSet<ParticipantId>) -> Vec<ParticipantId> {
        let now = self.now_ms();
        let mut s = self.lock();
        let revoked: Vec<ParticipantId> = s
            .machine
            .participants()
            .keys()
            .filter(|id| !allowed.contains(*id))
            .cloned()
            .collect();
        let list = &mut s.allowed;
        let dropped: Vec<ParticipantId> = list
            .names
            .iter()
            .flatten()
            .chain(&revoked)
            .filter(|id| !allowed.contains(*id))
            .cloned()
            .collect();
        list.revoked.extend(dropped);
        // Listed again (a name is reused only by the operator): admitted again.
        list.revoked.retain(|id| !allowed.contains(id));
        list.names = Some(allowed);
        list.from_operator = true;
        let mut events = Vec::new();
        for id in &revoked {
            // Listed just above under the same lock, so it is registered.
            if let Ok(ev) = s.machine.deregister(id, now) {
                events.extend(ev);
            }
            s.labels.remove(id);
            self.inner.metrics.participants_revoked.inc();
            tracing::warn!(participant = %id, "participant revoked: no longer on the operator's list");
        }
        self.apply(&mut s, &events);
        // Instruction streams of revoked participants that were not registered (nothing
        // changed in the machine) must still wake and end.
        self.inner.epoch.send_modify(|e| *e += 1);
        revoked
    }

    /// Admits a data-plane call of `id`: on the list (else [`CoreError::NotAllowed`] or
    /// [`CoreError::NotListed`]) and registered (else [`CoreError::UnknownParticipant`]).
    pub fn admit(&self, id: &ParticipantId) -> Result<(), CoreError> {
        let s = self.lock();
        s.check_allowed(id, &self.inner.job.name)?;
        if s.machine.participants().contains_key(id) {
            Ok(())
        } else {
            Err(CoreError::UnknownParticipant { id: id.clone() })
        }
    }
}
