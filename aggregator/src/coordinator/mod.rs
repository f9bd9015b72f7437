//! The coordinator: the pure core (round machine + strategy + global model)
//! behind one lock, driven by the data plane's calls and by a timer, with
//! every completed round committed to the model store.
//!
//! Nothing here knows about gRPC or HTTP; the service and the model manager
//! call these methods and convert results to their wire types.

mod aggregate;
mod allowlist;
mod error;
mod instruction;
mod prune;
mod start;
#[cfg(test)]
mod tests;
mod upload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, watch};

pub use error::CoreError;
pub use fedsky_contract::{AggregatorPhase, ParticipantStatus, StatusView};
pub use instruction::{HyperParameters, Instruction, InstructionKind, participant_seed};
pub use upload::{UploadMeta, UploadReceipt, UploadTicket};

use crate::buffers::{BufferPool, RecvBuf};
use crate::job::JobConfig;
use crate::metrics::Metrics;
use crate::round::{ParticipantId, Phase, RoundEvent, RoundMachine};
use crate::store::{Checkpoints, GlobalModel, VersionInfo};
use crate::strategy::{AnyStrategy, Strategy};
use crate::update::{UpdateHeader, UpdateLimits};

/// What the service tells a participant at registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Job name.
    pub job: String,
    /// Heartbeat at least this often.
    pub heartbeat_interval_ms: u64,
}

/// Data-plane limits, as announced to participants.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    /// Largest update.
    pub max_update_bytes: u64,
    /// Largest gRPC message.
    pub max_message_bytes: u64,
    /// Chunk size of downloads.
    pub chunk_bytes: u64,
}

/// A model version's bytes for download.
#[derive(Debug, Clone)]
pub struct ModelBlob {
    /// Version.
    pub version: u64,
    /// Safetensors bytes.
    pub bytes: Bytes,
    /// sha256 (hex).
    pub sha256: String,
}

/// A validated update waiting for its turn in canonical fold order.
#[derive(Debug)]
struct Held {
    bytes: RecvBuf,
    header: UpdateHeader,
    num_examples: u64,
}

/// Σ n·metric and Σ n per metric name.
#[derive(Debug, Default, Clone)]
struct MetricSums(BTreeMap<String, (f64, f64)>);

impl MetricSums {
    fn add(&mut self, metrics: &BTreeMap<String, f64>, weight: u64) {
        for (k, v) in metrics.iter().filter(|(_, v)| v.is_finite()) {
            let e = self.0.entry(k.clone()).or_default();
            e.0 += v * weight as f64;
            e.1 += weight as f64;
        }
    }

    fn means(&self, prefix: &str) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (s, w))| (format!("{prefix}{k}"), s / w))
            .collect()
    }
}

/// Per-round bookkeeping beside the machine's slots.
#[derive(Debug)]
struct RoundWork {
    round: u64,
    /// Sampled participants in fold order.
    order: Vec<ParticipantId>,
    /// Position of the next participant to fold.
    cursor: usize,
    held: BTreeMap<ParticipantId, Held>,
    /// `foldOrder: arrival`: accepted updates waiting for a batch, in arrival order.
    arrived: Vec<(ParticipantId, Held)>,
    /// Training metrics by participant, summed in fold order at the end.
    metrics: BTreeMap<ParticipantId, (BTreeMap<String, f64>, u64)>,
}

#[derive(Debug)]
struct AggregationJob {
    round: u64,
    accepted: Vec<ParticipantId>,
}

struct State {
    machine: RoundMachine,
    strategy: AnyStrategy,
    global: Arc<GlobalModel>,
    limits: UpdateLimits,
    work: Option<RoundWork>,
    pending: Option<AggregationJob>,
    versions: Vec<VersionInfo>,
    evaluations: BTreeMap<u64, MetricSums>,
    evaluated: BTreeSet<(ParticipantId, u64)>,
    labels: BTreeMap<ParticipantId, BTreeMap<String, String>>,
    /// Versions whose info is being rewritten now, with how many writes:
    /// pruning leaves them alone (see [`prune::Writing`]).
    writing: BTreeMap<u64, usize>,
    /// The participants admitted (see [`allowlist`]); under the same lock as the
    /// machine, so a revocation and a registration cannot interleave.
    allowed: allowlist::Allowlist,
}

struct Inner {
    job: JobConfig,
    token: String,
    state: Mutex<State>,
    epoch: watch::Sender<u64>,
    wake: Notify,
    clock: Instant,
    metrics: Arc<Metrics>,
    checkpoints: Checkpoints,
    /// Receive buffers kept (pages touched) between rounds.
    buffers: BufferPool,
}

/// The aggregator's core; cheap to clone (a handle).
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("job", &self.inner.job.name)
            .finish_non_exhaustive()
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the machine half
        // updated in a way later calls would trip over worse than a restart
        // would; keep serving rather than cascade the panic.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Milliseconds on the coordinator's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The job.
    pub fn job(&self) -> &JobConfig {
        &self.inner.job
    }

    /// Metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The checkpoint store.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.inner.checkpoints
    }

    /// Whether `token` is the job token.
    pub fn token_matches(&self, token: &str) -> bool {
        same_secret(token.as_bytes(), self.inner.token.as_bytes())
    }

    /// Limits announced to participants.
    pub fn wire_limits(&self) -> WireLimits {
        let s = self.lock();
        WireLimits {
            max_update_bytes: s.limits.max_update_bytes,
            max_message_bytes: self.inner.job.limits.max_message_bytes,
            chunk_bytes: self.inner.job.limits.chunk_bytes,
        }
    }

    /// A receiver that changes whenever instructions may have changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.epoch.subscribe()
    }

    /// Registers (or re-registers) a participant.
    pub fn register(
        &self,
        id: &ParticipantId,
        labels: BTreeMap<String, String>,
    ) -> Result<Registration, CoreError> {
        let job = &self.inner.job;
        let now = self.now_ms();
        let mut s = self.lock();
        s.check_allowed(id, &job.name)?;
        s.labels.insert(id.clone(), labels);
        let events = s.machine.register(id.clone(), now);
        self.apply(&mut s, &events);
        let timeout = s.machine.config().heartbeat_timeout_ms;
        Ok(Registration {
            job: job.name.clone(),
            heartbeat_interval_ms: (timeout / 3).max(1),
        })
    }

    /// Records a heartbeat; returns the round and phase label.
    pub fn heartbeat(&self, id: &ParticipantId) -> Result<(u64, &'static str), CoreError> {
        let now = self.now_ms();
        let mut s = self.lock();
        s.check_allowed(id, &self.inner.job.name)?;
        let events = s
            .machine
            .heartbeat(id, now)
            .map_err(|_| CoreError::UnknownParticipant { id: id.clone() })?;
        self.apply(&mut s, &events);
        Ok((s.machine.round(), s.machine.phase().public().as_str()))
    }

    /// Whether `id` is registered.
    pub fn is_registered(&self, id: &ParticipantId) -> bool {
        self.lock().machine.participants().contains_key(id)
    }

    /// A model version's bytes (`None`: the current global model).
    pub async fn model(&self, version: Option<u64>) -> Result<ModelBlob, CoreError> {
        let (global, info) = {
            let s = self.lock();
            let info = version.and_then(|v| s.versions.iter().find(|i| i.version == v).cloned());
            (Arc::clone(&s.global), info)
        };
        let wanted = version.unwrap_or(global.version);
        if wanted == global.version {
            return Ok(ModelBlob {
                version: global.version,
                bytes: global.bytes.clone(),
                sha256: global.sha256.clone(),
            });
        }
        let not_found = CoreError::VersionNotFound {
            version: wanted,
            latest: global.version,
        };
        let Some(info) = info else {
            return Err(not_found);
        };
        let bytes = self
            .inner
            .checkpoints
            .read_model(wanted)
            .await
            .map_err(CoreError::Store)?
            .ok_or(not_found)?;
        Ok(ModelBlob {
            version: wanted,
            bytes,
            sha256: info.sha256,
        })
    }

    /// Records a participant's evaluation of a model version.
    pub async fn report_evaluation(
        &self,
        id: &ParticipantId,
        version: u64,
        num_examples: u64,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), CoreError> {
        let info = {
            let mut s = self.lock();
            s.check_allowed(id, &self.inner.job.name)?;
            if !s.machine.participants().contains_key(id) {
                return Err(CoreError::UnknownParticipant { id: id.clone() });
            }
            let latest = s.global.version;
            if !s.versions.iter().any(|i| i.version == version) {
                return Err(CoreError::VersionNotFound { version, latest });
            }
            if num_examples == 0 {
                return Err(CoreError::ZeroExamples);
            }
            if !s.evaluated.insert((id.clone(), version)) {
                // A repeated report (a retry) must not count twice.
                return Ok(());
            }
            let means = {
                let sums = s.evaluations.entry(version).or_default();
                sums.add(&metrics, num_examples);
                sums.means("eval_")
            };
            let info = s
                .versions
                .iter_mut()
                .find(|i| i.version == version)
                .map(|i| {
                    i.metrics.extend(means);
                    i.clone()
                });
            // EVALUATE → DONE for this participant.
            self.inner.epoch.send_modify(|e| *e += 1);
            // Marked under the same lock that found the version, so pruning
            // either removed it before (and this report was refused) or sees
            // the write and keeps it.
            info.map(|info| (prune::Writing::start(self, &mut s, version), info))
        };
        if let Some((_writing, info)) = info {
            // Metrics are informative; a failed write is logged, not fatal.
            if let Err(e) = self.inner.checkpoints.save_version_info(&info).await {
                tracing::warn!(error = %e, version, "could not store evaluation metrics");
            }
        }
        Ok(())
    }

    /// Stored versions, oldest first (pruned ones are gone from the list
    /// before their objects are deleted).
    pub fn versions(&self) -> Vec<VersionInfo> {
        self.lock().versions.clone()
    }

    /// Status for the operator.
    pub fn status(&self) -> StatusView {
        let now = self.now_ms();
        let s = self.lock();
        let m = &s.machine;
        let participants = m
            .participants()
            .iter()
            .map(|(id, p)| ParticipantStatus {
                id: id.clone(),
                connected: p.connected,
                last_seen_ms_ago: now.saturating_sub(p.last_seen_ms),
                slot: m.slot(id).cloned(),
                labels: s.labels.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        let latest = s.versions.last().cloned();
        StatusView {
            job: self.inner.job.name.clone(),
            phase: m.phase().public(),
            round: m.round(),
            attempt: m.attempt(),
            total_rounds: m.config().total_rounds,
            completed_rounds: m.completed_rounds(),
            strategy: s.strategy.name().into(),
            connected: m.connected(),
            participants,
            deadline_in_ms: match m.phase() {
                Phase::Collecting(open) => Some(open.deadline_ms.saturating_sub(now)),
                _ => None,
            },
            last_metrics: latest
                .as_ref()
                .map(|v| v.metrics.clone())
                .unwrap_or_default(),
            latest_version: latest,
            failure: match m.phase() {
                Phase::Failed { reason } => Some(reason.to_string()),
                _ => None,
            },
        }
    }

    /// Runs the round timer and aggregations until the task is dropped.
    pub async fn run(self) {
        loop {
            let (wake_at, job) = {
                let mut s = self.lock();
                (s.machine.next_wakeup_ms(), s.pending.take())
            };
            if let Some(job) = job {
                self.aggregate(job).await;
                continue;
            }
            let notified = self.inner.wake.notified();
            match wake_at {
                Some(at) => {
                    let now = self.now_ms();
                    if at > now {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                            () = notified => {}
                        }
                    }
                }
                None => notified.await,
            }
            let now = self.now_ms();
            let mut s = self.lock();
            let events = s.machine.tick(now);
            self.apply(&mut s, &events);
        }
    }

    /// Acts on the machine's events (under the lock).
    fn apply(&self, s: &mut State, events: &[RoundEvent]) {
        if events.is_empty() {
            return;
        }
        let metrics = &self.inner.metrics;
        for event in events {
            match event {
                RoundEvent::RoundStarted {
                    round,
                    attempt,
                    sampled,
                    deadline_ms,
                } => {
                    if let Err(e) = s.strategy.begin_round(*round, &s.global.model) {
                        tracing::error!(round, error = %e, "strategy cannot begin the round");
                    }
                    s.work = Some(RoundWork {
                        round: *round,
                        order: sampled.clone(),
                        cursor: 0,
                        held: BTreeMap::new(),
                        arrived: Vec::new(),
                        metrics: BTreeMap::new(),
                    });
                    metrics.current_round.set(*round as i64);
                    tracing::info!(round, attempt, sampled = ?sampled, deadline_ms, "round started");
                }
                RoundEvent::RoundReady {
                    round,
                    accepted,
                    stragglers,
                    ..
                } => {
                    if !stragglers.is_empty() {
                        tracing::warn!(round, stragglers = ?stragglers, "round closed without stragglers");
                    }
                    s.pending = Some(AggregationJob {
                        round: *round,
                        accepted: accepted.clone(),
                    });
                    self.inner.wake.notify_one();
                }
                RoundEvent::RoundFailed {
                    round,
                    attempt,
                    reason,
                    will_retry,
                } => {
                    s.strategy.abort_round();
                    s.work = None;
                    metrics.round_finished("failed");
                    tracing::warn!(round, attempt, %reason, will_retry, "round attempt failed");
                }
                RoundEvent::RoundCompleted { round } => {
                    metrics.round_finished("completed");
                    tracing::info!(round, "round completed");
                }
                RoundEvent::JobCompleted { rounds } => {
                    tracing::info!(rounds, "job completed");
                }
                RoundEvent::JobFailed { round, reason } => {
                    tracing::error!(round, %reason, "job failed");
                }
                RoundEvent::ParticipantVanished { id } => {
                    tracing::warn!(participant = %id, "participant vanished (no heartbeat)");
                }
                RoundEvent::ParticipantDropped { round, id } => {
                    tracing::warn!(participant = %id, round, "participant dropped from the round");
                }
                other => tracing::debug!(event = ?other, "round event"),
            }
        }
        self.advance(s);
        metrics
            .connected_participants
            .set(s.machine.connected() as i64);
        self.inner.epoch.send_modify(|e| *e += 1);
        // Deadlines and heartbeat expiries may have moved: the timer re-reads them.
        self.inner.wake.notify_one();
    }
}
