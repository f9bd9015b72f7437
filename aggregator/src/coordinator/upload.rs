//! Admitting, checking and recording an update's upload.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Coordinator, CoreError, Held};
use crate::buffers::RecvBuf;
use crate::job::FoldOrder;
use crate::round::{ParticipantId, Phase, RoundMachine, Slot, UpdateOutcome};
use crate::store::GlobalModel;
use crate::strategy::Strategy;
use crate::update::{
    DataCheck, HEADER_LEN_BYTES, UpdateHeader, UpdateLimits, UpdateRejection, declared_header_len,
    parse_update_header, validate_update,
};

/// Updates folded together in `foldOrder: arrival`: holding one accepted
/// update until the next arrives halves the accumulator traffic per update
/// (memory: one more update, so accumulator + two updates = 3x the model).
const ARRIVAL_FOLD_BATCH: usize = 2;

/// Metadata sent ahead of an update's bytes.
#[derive(Debug, Clone, Default)]
pub struct UploadMeta {
    /// Round trained for.
    pub round: u64,
    /// Version trained from.
    pub base_version: u64,
    /// Training examples.
    pub num_examples: u64,
    /// Declared size of the safetensors bytes.
    pub total_bytes: u64,
    /// Training metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// What an accepted upload reports back.
#[derive(Debug, Clone)]
pub struct UploadReceipt {
    /// Round.
    pub round: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Accepted updates in the round so far.
    pub accepted_in_round: u32,
}

/// An admitted upload. Dropping it unfinished (a broken stream) gives the
/// participant its slot back, so it may retry within the round.
#[derive(Debug)]
pub struct UploadTicket {
    core: Coordinator,
    id: ParticipantId,
    round: u64,
    global: Arc<GlobalModel>,
    limits: UpdateLimits,
    header: Option<UpdateHeader>,
    /// Checks the data as it arrives, once the header is known.
    check: Option<DataCheck>,
    meta: UploadMeta,
    done: bool,
}

impl UploadTicket {
    /// Round of the upload.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Declared total size.
    pub fn declared_bytes(&self) -> u64 {
        self.meta.total_bytes
    }

    /// Checks the head of the upload as soon as the safetensors header has
    /// arrived. Returns `Ok(None)` while more bytes are needed, then the
    /// exact total size the update must have.
    pub fn check_prefix(&mut self, prefix: &[u8]) -> Result<Option<usize>, CoreError> {
        if let Some(h) = &self.header {
            return Ok(Some(h.total_len()));
        }
        if prefix.len() < HEADER_LEN_BYTES {
            return Ok(None);
        }
        let header_len = declared_header_len(prefix, &self.limits).map_err(CoreError::Rejected)?;
        if prefix.len() < HEADER_LEN_BYTES + header_len {
            return Ok(None);
        }
        let header = parse_update_header(prefix, self.global.model.spec(), &self.limits)
            .map_err(CoreError::Rejected)?;
        let total = header.total_len();
        if total as u64 != self.meta.total_bytes {
            return Err(CoreError::Rejected(UpdateRejection::HeaderInvalid {
                detail: format!(
                    "the upload declared {} bytes but its safetensors header implies {total}",
                    self.meta.total_bytes
                ),
            }));
        }
        self.check = Some(DataCheck::new(header.clone(), &self.limits));
        self.header = Some(header);
        Ok(Some(total))
    }

    /// An empty receive buffer of at least `capacity` bytes (reused from
    /// earlier uploads when one fits).
    pub fn buffer(&self, capacity: usize) -> RecvBuf {
        self.core.inner.buffers.take(capacity)
    }

    /// Checks the data received so far (`received` is the whole upload up to
    /// now) once the header has passed [`Self::check_prefix`]: finiteness and
    /// the norm partials of every element that arrived since the last call.
    pub fn check_data(&mut self, received: &[u8]) -> Result<(), CoreError> {
        match &mut self.check {
            Some(check) => check
                .feed(received, &self.global.model)
                .map_err(CoreError::Rejected),
            None => Ok(()),
        }
    }

    /// Marks the upload refused on content (counts as the participant's reply).
    pub fn reject(mut self, error: &CoreError) {
        self.done = true;
        self.core.finish_rejected(&self.id, self.round, error);
    }

    /// Validates and records the complete update.
    pub async fn finish(mut self, bytes: RecvBuf) -> Result<UploadReceipt, CoreError> {
        let core = self.core.clone();
        let result = core.finish_upload(&mut self, bytes).await;
        match &result {
            Ok(_) | Err(CoreError::Refused(_)) => self.done = true,
            Err(e @ CoreError::Rejected(_)) => {
                self.done = true;
                core.finish_rejected(&self.id, self.round, e);
            }
            // Anything else was not the participant's fault: dropping the
            // ticket gives the slot back.
            Err(_) => {}
        }
        result
    }
}

impl Drop for UploadTicket {
    fn drop(&mut self) {
        if !self.done {
            self.core.abandon(&self.id, self.round);
        }
    }
}

impl Coordinator {
    /// Admits an upload's start: checks the round rules and the declared size
    /// before any tensor byte is received.
    pub fn begin_upload(
        &self,
        id: &ParticipantId,
        meta: UploadMeta,
    ) -> Result<UploadTicket, CoreError> {
        let now = self.now_ms();
        let mut s = self.lock();
        s.check_allowed(id, &self.inner.job.name)?;
        if !s.machine.participants().contains_key(id) {
            return Err(CoreError::UnknownParticipant { id: id.clone() });
        }
        if meta.num_examples == 0 {
            return Err(CoreError::ZeroExamples);
        }
        if meta.total_bytes > s.limits.max_update_bytes {
            return Err(CoreError::Rejected(UpdateRejection::Oversized {
                got: meta.total_bytes,
                limit: s.limits.max_update_bytes,
            }));
        }
        let round = s.machine.round();
        // The round rules come first: a stale update is reported as stale
        // even if its base version is also old.
        s.machine
            .begin_update(id, meta.round, now)
            .map_err(CoreError::Refused)?;
        let admitted = UploadTicket {
            core: self.clone(),
            id: id.clone(),
            round: meta.round,
            global: Arc::clone(&s.global),
            limits: s.limits.clone(),
            header: None,
            check: None,
            meta,
            done: false,
        };
        let refuse = if admitted.meta.base_version != s.global.version {
            Some(CoreError::StaleBase {
                got: admitted.meta.base_version,
                current: s.global.version,
                round,
            })
        } else if let Some(limit) = s.strategy.max_updates()
            && accepted_count(&s.machine) >= limit
        {
            Some(CoreError::Capacity { round, limit })
        } else {
            None
        };
        drop(s);
        match refuse {
            // Dropping the ticket puts the slot back to pending.
            Some(e) => Err(e),
            None => Ok(admitted),
        }
    }

    fn finish_rejected(&self, id: &ParticipantId, round: u64, error: &CoreError) {
        let reason = error.reason().to_string();
        let now = self.now_ms();
        let mut s = self.lock();
        let events = s
            .machine
            .finish_update(id, round, UpdateOutcome::Rejected { reason }, now)
            .unwrap_or_default();
        self.apply(&mut s, &events);
    }

    fn abandon(&self, id: &ParticipantId, round: u64) {
        let now = self.now_ms();
        let mut s = self.lock();
        let events = s
            .machine
            .finish_update(id, round, UpdateOutcome::Abandoned, now)
            .unwrap_or_default();
        self.apply(&mut s, &events);
    }

    /// Validates (off the lock) and records an upload's bytes.
    async fn finish_upload(
        &self,
        ticket: &mut UploadTicket,
        bytes: RecvBuf,
    ) -> Result<UploadReceipt, CoreError> {
        let (id, round) = (ticket.id.clone(), ticket.round);
        let meta = std::mem::take(&mut ticket.meta);
        let len = bytes.len() as u64;
        self.inner.metrics.update_bytes.inc_by(len);
        let (header, bytes) = validate_upload(ticket, bytes).await?;
        let held = Held {
            bytes,
            header,
            num_examples: meta.num_examples,
        };
        let this = self.clone();
        let accepted =
            tokio::task::spawn_blocking(move || this.record_upload(&id, round, held, meta.metrics))
                .await
                .map_err(|e| CoreError::internal("the update recording task", e))??;
        Ok(UploadReceipt {
            round,
            bytes: len,
            accepted_in_round: u32::try_from(accepted).unwrap_or(u32::MAX),
        })
    }

    /// Counts a validated update (under the lock) and folds a full arrival
    /// batch; returns the updates accepted in the round so far.
    fn record_upload(
        &self,
        id: &ParticipantId,
        round: u64,
        held: Held,
        metrics: BTreeMap<String, f64>,
    ) -> Result<usize, CoreError> {
        let now = self.now_ms();
        let mut guard = self.lock();
        let s = &mut *guard;
        // Revoked while its bytes were arriving: the update is not counted.
        s.check_allowed(id, &self.inner.job.name)?;
        s.machine
            .check_upload(id, round, now)
            .map_err(CoreError::Refused)?;
        if let Some(work) = s.work.as_mut().filter(|w| w.round == round) {
            work.metrics
                .insert(id.clone(), (metrics, held.num_examples));
            match self.inner.job.fold_order {
                FoldOrder::Canonical => {
                    work.held.insert(id.clone(), held);
                }
                FoldOrder::Arrival => work.arrived.push((id.clone(), held)),
            }
        }
        let events = s
            .machine
            .finish_update(id, round, UpdateOutcome::Accepted, now)
            .map_err(CoreError::Refused)?;
        let accepted = accepted_count(&s.machine);
        self.apply(s, &events);
        // A full batch is folded now, unless this upload closed the round:
        // then the aggregation folds it together with the division.
        if s.pending.is_none()
            && let Some(work) = s
                .work
                .as_mut()
                .filter(|w| w.round == round && w.arrived.len() >= ARRIVAL_FOLD_BATCH)
        {
            let batch = std::mem::take(&mut work.arrived);
            self.fold_batch(&mut s.strategy, &s.global, batch);
        }
        Ok(accepted)
    }
}

/// The checks left once all bytes are in: only the size and the norm bound
/// when the data was checked chunk by chunk as it arrived, else everything
/// (off the runtime).
async fn validate_upload(
    ticket: &mut UploadTicket,
    bytes: RecvBuf,
) -> Result<(UpdateHeader, RecvBuf), CoreError> {
    let (global, limits) = (Arc::clone(&ticket.global), ticket.limits.clone());
    match ticket.check.take() {
        // Checked chunk by chunk as it arrived: only the size and the
        // norm bound are left.
        Some(check) if check.is_complete() => Ok((
            check
                .finish(&bytes, &global.model)
                .map_err(CoreError::Rejected)?,
            bytes,
        )),
        check => tokio::task::spawn_blocking(move || {
            match check {
                Some(c) => c.finish(&bytes, &global.model),
                None => validate_update(&bytes, &global.model, &limits),
            }
            .map(|h| (h, bytes))
        })
        .await
        .map_err(|e| CoreError::internal("the update validation task", e))?
        .map_err(CoreError::Rejected),
    }
}

fn accepted_count(machine: &RoundMachine) -> usize {
    match machine.phase() {
        Phase::Collecting(open) => open
            .slots
            .values()
            .filter(|s| **s == Slot::Accepted)
            .count(),
        Phase::Aggregating { accepted } => accepted.len(),
        _ => 0,
    }
}
