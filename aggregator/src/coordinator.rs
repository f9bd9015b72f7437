//! The coordinator: the pure core (round machine + strategy + global model)
//! behind one lock, driven by the data plane's calls and by a timer, with
//! every completed round committed to the model store.
//!
//! Nothing here knows about gRPC or HTTP; the service and the model manager
//! call these methods and convert results to their wire types.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::buffers::{BufferPool, RecvBuf};
use crate::job::{FoldOrder, JobConfig, JobConfigError, JobConfigExt};
use crate::metrics::Metrics;
use crate::model::Model;
use crate::round::{
    ParticipantId, Phase, RoundCheckpoint, RoundError, RoundEvent, RoundMachine, Slot,
    UpdateOutcome, UpdateRefusal,
};
use crate::store::{Checkpoints, GlobalModel, StoreError, VersionInfo};
use crate::strategy::{AnyStrategy, Strategy, StrategyError};
use crate::update::{
    DataCheck, HEADER_LEN_BYTES, UpdateHeader, UpdateLimits, UpdateRejection, declared_header_len,
    parse_update_header, validate_update, view_validated,
};

/// Updates folded together in `foldOrder: arrival`: holding one accepted
/// update until the next arrives halves the accumulator traffic per update
/// (memory: one more update, so accumulator + two updates = 3x the model).
const ARRIVAL_FOLD_BATCH: usize = 2;

/// Why a data-plane call or the start-up failed. [`CoreError::reason`] is
/// the metric label; the gRPC layer maps each variant to a status code.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The caller is not registered (or was removed).
    #[error("participant {id} is not registered with this job; call Register first")]
    UnknownParticipant {
        /// Caller.
        id: ParticipantId,
    },
    /// The caller's identity is not on the job's participant list.
    #[error("participant {id} is not allowed to join job {job}")]
    NotAllowed {
        /// Caller.
        id: ParticipantId,
        /// Job name.
        job: String,
    },
    /// The round rules refused the upload.
    #[error(transparent)]
    Refused(UpdateRefusal),
    /// The update's content was refused.
    #[error(transparent)]
    Rejected(UpdateRejection),
    /// The upload did not follow the protocol (message order, empty stream).
    #[error("upload protocol violated: {detail}")]
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// A gRPC message exceeded the configured maximum message size.
    #[error("message exceeds the maximum gRPC message size; send smaller chunks ({detail})")]
    MessageTooLarge {
        /// Transport message.
        detail: String,
    },
    /// The update claims no training examples.
    #[error("update reports 0 training examples; its FedAvg weight would be 0")]
    ZeroExamples,
    /// The update was trained from another global model version.
    #[error(
        "update was trained from model version {got}, but round {round} starts from version {current}; download the current model"
    )]
    StaleBase {
        /// Version named by the update.
        got: u64,
        /// Version of the round in progress.
        current: u64,
        /// Round in progress.
        round: u64,
    },
    /// A robust strategy holds as many updates as its memory bound allows.
    #[error("round {round} already holds the {limit} updates the strategy's memory bound allows")]
    Capacity {
        /// Round.
        round: u64,
        /// Most updates per round.
        limit: usize,
    },
    /// The requested model version does not exist.
    #[error("model version {version} does not exist (latest is {latest})")]
    VersionNotFound {
        /// Requested.
        version: u64,
        /// Latest version.
        latest: u64,
    },
    /// The model store failed.
    #[error("model store failed")]
    Store(#[source] StoreError),
    /// Neither a checkpoint nor an initial model to start from.
    #[error("the model store holds no checkpoint and no initial model was given")]
    NoInitialModel,
    /// The job config is invalid.
    #[error("invalid job config")]
    Job(#[source] JobConfigError),
    /// The strategy could not be built or restored.
    #[error("strategy cannot be set up")]
    Strategy(#[source] StrategyError),
    /// The round machine could not be built or resumed.
    #[error("round machine cannot be set up")]
    Round(#[source] RoundError),
    /// The initial model cannot be encoded.
    #[error("initial model cannot be encoded")]
    Model(#[source] crate::model::ModelError),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Internal(String),
}

impl CoreError {
    /// Stable label for metrics and the `fedsky-reason` metadata.
    pub fn reason(&self) -> &'static str {
        match self {
            CoreError::UnknownParticipant { .. } => "unknown_participant",
            CoreError::NotAllowed { .. } => "permission_denied",
            CoreError::Refused(r) => r.reason(),
            CoreError::Rejected(r) => r.reason(),
            CoreError::Protocol { .. } => "protocol",
            CoreError::MessageTooLarge { .. } => "message_too_large",
            CoreError::ZeroExamples => "zero_examples",
            CoreError::StaleBase { .. } => "stale_base",
            CoreError::Capacity { .. } => "capacity",
            CoreError::VersionNotFound { .. } => "version_not_found",
            CoreError::Store(_) => "store",
            CoreError::NoInitialModel => "no_initial_model",
            CoreError::Job(_) => "job_config",
            CoreError::Strategy(_) => "strategy",
            CoreError::Round(_) => "round",
            CoreError::Model(_) => "model",
            CoreError::Internal(_) => "internal",
        }
    }
}

/// What an instruction tells a participant to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InstructionKind {
    /// Nothing to do now.
    Wait,
    /// Train from `model_version` and upload.
    Fit,
    /// Evaluate `model_version` and report.
    Evaluate,
    /// Job over.
    Done,
    /// Job failed.
    Failed,
}

/// Local training hyper-parameters of one participant in one round.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HyperParameters {
    /// Local epochs.
    pub local_epochs: u32,
    /// Batch size.
    pub batch_size: u32,
    /// Learning rate.
    pub learning_rate: f64,
    /// FedProx μ (0 when not FedProx).
    pub proximal_mu: f64,
    /// Training seed for this participant and round.
    pub seed: u64,
    /// Local optimiser.
    pub optimizer: String,
}

/// The instruction for one participant now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instruction {
    /// What to do.
    pub kind: InstructionKind,
    /// Round (1-based).
    pub round: u64,
    /// Attempt (0-based).
    pub attempt: u32,
    /// Rounds in the job.
    pub total_rounds: u64,
    /// Model version to start from or evaluate.
    pub model_version: u64,
    /// Its sha256.
    pub model_sha256: String,
    /// Time to the round's deadline.
    pub deadline_in_ms: u64,
    /// Hyper-parameters (FIT only).
    pub hyper_parameters: Option<HyperParameters>,
    /// Human-readable context.
    pub message: String,
}

impl Instruction {
    /// Whether `other` asks for something different (ignoring the clock).
    pub fn differs(&self, other: &Instruction) -> bool {
        (self.kind, self.round, self.attempt, self.model_version)
            != (other.kind, other.round, other.attempt, other.model_version)
    }
}

/// What the service tells a participant at registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Job name.
    pub job: String,
    /// Heartbeat at least this often.
    pub heartbeat_interval_ms: u64,
}

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

pub use fedsky_contract::{AggregatorPhase, ParticipantStatus, StatusView};

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

/// SplitMix64 finaliser (as in sampling): spreads seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Training seed of `id` in `round`: stable across processes and restarts.
pub fn participant_seed(job_seed: u64, round: u64, id: &ParticipantId) -> u64 {
    let digest = Sha256::digest(id.0.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    mix(mix(job_seed ^ mix(round)) ^ u64::from_le_bytes(first))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Coordinator {
    /// Starts from the store's last checkpoint, or from `initial` (committed
    /// as version 0) when the store is empty.
    pub async fn start(
        job: JobConfig,
        token: String,
        checkpoints: Checkpoints,
        initial: Option<Model>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CoreError> {
        job.validate().map_err(CoreError::Job)?;
        let round_config = job.round_config().map_err(CoreError::Job)?;
        let clock = Instant::now();
        let resumed = checkpoints.load().await.map_err(CoreError::Store)?;
        let (machine, strategy, global, versions) = match resumed {
            Some(r) => {
                let incompatible =
                    |detail: String| CoreError::Store(StoreError::Incompatible { detail });
                if r.record.job != job.name {
                    return Err(incompatible(format!(
                        "the store belongs to job {:?}, not {:?}",
                        r.record.job, job.name
                    )));
                }
                if r.strategy.config != job.strategy {
                    return Err(incompatible(format!(
                        "the checkpoint was made with strategy {:?} but the job now asks for {:?}; restore the config or use a new store",
                        r.strategy.config, job.strategy
                    )));
                }
                if let Some(initial) = &initial
                    && initial.spec() != r.global.model.spec()
                {
                    return Err(incompatible(
                        "the initial model's tensors differ from the checkpointed model's".into(),
                    ));
                }
                let rounds = RoundCheckpoint {
                    config: round_config,
                    ..r.record.rounds.clone()
                };
                let machine = RoundMachine::resume(rounds, 0).map_err(CoreError::Round)?;
                let strategy = AnyStrategy::restore(&r.strategy).map_err(CoreError::Strategy)?;
                let versions = checkpoints
                    .list_versions()
                    .await
                    .map_err(CoreError::Store)?;
                tracing::info!(
                    job = %job.name,
                    completed_rounds = machine.completed_rounds(),
                    version = r.global.version,
                    store = %checkpoints.store().describe(),
                    "resumed from checkpoint"
                );
                (machine, strategy, r.global, versions)
            }
            None => {
                let model = initial.ok_or(CoreError::NoInitialModel)?;
                let machine = RoundMachine::new(round_config).map_err(CoreError::Round)?;
                let strategy =
                    AnyStrategy::from_config(&job.strategy).map_err(CoreError::Strategy)?;
                let global = GlobalModel::new(0, model).map_err(CoreError::Model)?;
                let info = global.info(BTreeMap::new(), Vec::new());
                checkpoints
                    .commit(
                        &job.name,
                        &global,
                        &info,
                        machine.checkpoint(),
                        strategy.checkpoint(),
                    )
                    .await
                    .map_err(CoreError::Store)?;
                tracing::info!(job = %job.name, store = %checkpoints.store().describe(), "starting a new job from the initial model");
                (machine, strategy, global, vec![info])
            }
        };
        let limits = job.update_limits(global.model.spec());
        // What one update of this model takes (the prewarmed receive buffer).
        let update_size = usize::try_from(
            UpdateLimits::for_spec(global.model.spec())
                .max_update_bytes
                .min(limits.max_update_bytes),
        )
        .unwrap_or(0);
        metrics.current_round.set(machine.round() as i64);
        let state = State {
            machine,
            strategy,
            global: Arc::new(global),
            limits,
            work: None,
            pending: None,
            versions,
            evaluations: BTreeMap::new(),
            evaluated: BTreeSet::new(),
            labels: BTreeMap::new(),
        };
        // A round holds at most one buffer per sampled participant plus one
        // being received by a late or retrying participant.
        let buffers = BufferPool::new(job.rounds.max_per_round.saturating_add(1));
        let core = Self {
            inner: Arc::new(Inner {
                buffers,
                job,
                token,
                state: Mutex::new(state),
                epoch: watch::channel(0).0,
                wake: Notify::new(),
                clock,
                metrics,
                checkpoints,
            }),
        };
        // One receive buffer touched while the participants train, so the
        // first upload of the job does not pay for page faults.
        let warm = core.clone();
        tokio::task::spawn_blocking(move || warm.inner.buffers.prewarm(update_size));
        Ok(core)
    }

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
        if !job.participants.is_empty() && !job.participants.contains(&id.0) {
            return Err(CoreError::NotAllowed {
                id: id.clone(),
                job: job.name.clone(),
            });
        }
        let now = self.now_ms();
        let mut s = self.lock();
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

    /// The instruction for `id` now.
    pub fn instruction(&self, id: &ParticipantId) -> Instruction {
        let now = self.now_ms();
        let s = self.lock();
        let m = &s.machine;
        let job = &self.inner.job;
        let mut out = Instruction {
            kind: InstructionKind::Wait,
            round: m.round(),
            attempt: m.attempt(),
            total_rounds: m.config().total_rounds,
            model_version: s.global.version,
            model_sha256: s.global.sha256.clone(),
            deadline_in_ms: 0,
            hyper_parameters: None,
            message: String::new(),
        };
        match m.phase() {
            Phase::Waiting => {
                out.message = format!(
                    "waiting for {} connected participants (have {})",
                    m.config().min_available,
                    m.connected()
                );
            }
            Phase::Collecting(open) => match open.slots.get(id) {
                Some(Slot::Pending | Slot::Uploading) => {
                    let hints = job.strategy.client_hints();
                    out.kind = InstructionKind::Fit;
                    out.deadline_in_ms = open.deadline_ms.saturating_sub(now);
                    out.hyper_parameters = Some(HyperParameters {
                        local_epochs: job.training.local_epochs,
                        batch_size: job.training.batch_size,
                        learning_rate: hints.learning_rate.unwrap_or(job.training.learning_rate),
                        proximal_mu: hints.proximal_mu.unwrap_or(0.0),
                        seed: participant_seed(job.seed, m.round(), id),
                        optimizer: job.training.optimizer.to_string(),
                    });
                }
                Some(slot) => out.message = format!("round {} slot: {slot:?}", m.round()),
                None => out.message = format!("not sampled for round {}", m.round()),
            },
            Phase::Aggregating { .. } => out.message = format!("aggregating round {}", m.round()),
            Phase::Completed => {
                let v = s.global.version;
                if s.evaluated.contains(&(id.clone(), v)) {
                    out.kind = InstructionKind::Done;
                    out.message = format!("job completed after {} rounds", m.completed_rounds());
                } else {
                    out.kind = InstructionKind::Evaluate;
                    out.message = format!("evaluate the final model (version {v})");
                }
            }
            Phase::Failed { reason } => {
                out.kind = InstructionKind::Failed;
                out.message = format!("job failed in round {}: {reason}", m.round());
            }
        }
        out
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

    /// Admits an upload's start: checks the round rules and the declared size
    /// before any tensor byte is received.
    pub fn begin_upload(
        &self,
        id: &ParticipantId,
        meta: UploadMeta,
    ) -> Result<UploadTicket, CoreError> {
        let now = self.now_ms();
        let mut s = self.lock();
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
            info
        };
        if let Some(info) = info {
            // Metrics are informative; a failed write is logged, not fatal.
            if let Err(e) = self.inner.checkpoints.save_version_info(&info).await {
                tracing::warn!(error = %e, version, "could not store evaluation metrics");
            }
        }
        Ok(())
    }

    /// Known versions, oldest first.
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

    /// Finishes a closed round: fold what is held, run the strategy, commit
    /// to the store, then let the machine move on.
    async fn aggregate(&self, job: AggregationJob) {
        let round = job.round;
        let accepted = job.accepted.clone();
        let started = Instant::now();
        let this = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut guard = this.lock();
            let s = &mut *guard;
            let mut train = MetricSums::default();
            let mut held: Vec<(ParticipantId, Held)> = Vec::new();
            if let Some(mut work) = s.work.take() {
                // Only one of the two is in use (per foldOrder).
                held = std::mem::take(&mut work.held).into_iter().collect();
                held.append(&mut work.arrived);
                for id in &job.accepted {
                    if let Some((metrics, n)) = work.metrics.get(id) {
                        train.add(metrics, *n);
                    }
                }
            }
            let before = s.strategy.checkpoint();
            let model = this
                .finish_with(&mut s.strategy, &s.global, held)
                .map_err(|e| e.to_string())
                .and_then(|m| GlobalModel::new(round, m).map_err(|e| e.to_string()));
            model.map(|g| {
                (
                    g,
                    before,
                    s.strategy.checkpoint(),
                    s.machine.checkpoint(),
                    train,
                )
            })
        })
        .await
        .map_err(|e| format!("aggregation task failed: {e}"))
        .and_then(|r| r);

        let (global, before, strategy_ck, machine_ck, train) = match done {
            Ok(parts) => parts,
            Err(detail) => {
                tracing::error!(round, %detail, "aggregation failed");
                let now = self.now_ms();
                let mut s = self.lock();
                s.strategy.abort_round();
                let events = s.machine.fail_round(round, detail, now).unwrap_or_default();
                self.apply(&mut s, &events);
                return;
            }
        };
        self.inner
            .metrics
            .aggregation_seconds
            .observe(started.elapsed().as_secs_f64());

        let info = global.info(train.means("train_"), accepted.clone());
        let rounds = RoundCheckpoint {
            completed_rounds: round,
            ..machine_ck
        };
        let commit_started = Instant::now();
        let mut tries = 0u32;
        let committed = loop {
            match self
                .inner
                .checkpoints
                .commit(
                    &self.inner.job.name,
                    &global,
                    &info,
                    rounds.clone(),
                    strategy_ck.clone(),
                )
                .await
            {
                Ok(()) => break Ok(()),
                Err(e) if tries < 4 => {
                    tries += 1;
                    tracing::warn!(round, error = %e, tries, "checkpoint failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                }
                Err(e) => break Err(e),
            }
        };
        self.inner
            .metrics
            .checkpoint_seconds
            .observe(commit_started.elapsed().as_secs_f64());
        let now = self.now_ms();
        let mut s = self.lock();
        match committed {
            Ok(()) => {
                tracing::info!(
                    round,
                    version = global.version,
                    sha256 = %global.sha256,
                    contributors = accepted.len(),
                    "round committed"
                );
                let old = std::mem::replace(&mut s.global, Arc::new(global));
                // Nobody else holds the replaced model (no upload against it is
                // in flight): its vectors become the next accumulator.
                if let Some(model) = Arc::into_inner(old).and_then(|g| Arc::into_inner(g.model)) {
                    s.strategy.recycle(model);
                }
                s.versions.push(info);
                let events = s.machine.complete_round(round, now).unwrap_or_default();
                self.apply(&mut s, &events);
            }
            Err(e) => {
                tracing::error!(round, error = %e, "checkpoint failed; the round is retried");
                // The strategy already stepped its optimiser; rewind it so the
                // retried round does not apply the step twice.
                match AnyStrategy::restore(&before) {
                    Ok(restored) => s.strategy = restored,
                    Err(err) => {
                        tracing::error!(error = %err, "strategy state could not be rewound")
                    }
                }
                let detail = format!("checkpoint failed: {e}");
                let events = s.machine.fail_round(round, detail, now).unwrap_or_default();
                self.apply(&mut s, &events);
            }
        }
    }

    /// Folds one held update into the strategy.
    fn fold(
        &self,
        strategy: &mut AnyStrategy,
        global: &GlobalModel,
        id: &ParticipantId,
        held: &Held,
    ) {
        let view = view_validated(&held.bytes, &global.model, &held.header);
        match strategy.accept(&view, held.num_examples) {
            Ok(()) => {
                self.inner.metrics.updates_accepted.inc();
            }
            // Admission checked the strategy's limits, so this is a bug; the
            // round goes on without the update.
            Err(e) => {
                tracing::error!(participant = %id, error = %e, "strategy refused a validated update");
                self.inner.metrics.reject(e.reason());
            }
        }
    }

    /// Folds accepted updates at the head of the canonical order. A lone
    /// ready update waits while later ones are still outstanding, so updates
    /// go in at least two per pass over the accumulator (half the memory
    /// traffic of one at a time); the aggregation step folds what is left
    /// (everything once the round has closed, see [`Self::finish_with`]).
    fn advance(&self, s: &mut State) {
        let State {
            machine,
            strategy,
            global,
            work,
            pending,
            ..
        } = s;
        // The round has closed: the aggregation folds what is left together
        // with the division.
        if pending.is_some() {
            return;
        }
        let Some(work) = work.as_mut() else {
            return;
        };
        let mut cursor = work.cursor;
        let mut ready = Vec::new();
        let mut outstanding = false;
        while let Some(id) = work.order.get(cursor) {
            match machine.slot(id) {
                Some(Slot::Accepted) => {
                    if work.held.contains_key(id) {
                        ready.push(id.clone());
                    }
                }
                Some(Slot::Rejected { .. } | Slot::Dropped) => {}
                _ => {
                    outstanding = true;
                    break;
                }
            }
            cursor += 1;
        }
        if ready.len() < 2 && outstanding {
            return;
        }
        work.cursor = cursor;
        let batch = ready
            .into_iter()
            .filter_map(|id| work.held.remove(&id).map(|h| (id, h)))
            .collect();
        self.fold_batch(strategy, global, batch);
    }

    /// Ends the round with the updates still held. FedAvg folds them and
    /// divides in one pass ([`crate::strategy::FedAvg::finish_with`]); the
    /// other strategies fold them (see [`Self::fold_batch`]) and finish.
    fn finish_with(
        &self,
        strategy: &mut AnyStrategy,
        global: &GlobalModel,
        held: Vec<(ParticipantId, Held)>,
    ) -> Result<Model, StrategyError> {
        let AnyStrategy::FedAvg(fedavg) = strategy else {
            self.fold_batch(strategy, global, held);
            return strategy.finish();
        };
        let views = held_views(&held, global);
        let last: Vec<(&crate::model::ModelView<'_>, u64)> = views
            .iter()
            .zip(held.iter().map(|(_, h)| h.num_examples))
            .collect();
        // Admission and validation checked every held update against this
        // round's model, so a refusal here is a bug: the round fails (and is
        // retried) rather than going on without updates it accepted.
        let result = fedavg.finish_with(&last);
        if result.is_ok() {
            self.inner
                .metrics
                .updates_accepted
                .inc_by(last.len() as u64);
        }
        drop(views);
        self.give_buffers(held);
        result
    }

    fn give_buffers(&self, held: Vec<(ParticipantId, Held)>) {
        for (_, h) in held {
            self.inner.buffers.give(h.bytes);
        }
    }

    /// Folds validated updates in slice order, in one pass over the
    /// strategy's accumulator; falls back to one at a time on an error so
    /// one refused update does not cost the others. The receive buffers go
    /// back to the pool.
    fn fold_batch(
        &self,
        strategy: &mut AnyStrategy,
        global: &GlobalModel,
        batch: Vec<(ParticipantId, Held)>,
    ) {
        if batch.is_empty() {
            return;
        }
        let views = held_views(&batch, global);
        let pairs: Vec<(&crate::model::ModelView<'_>, u64)> = views
            .iter()
            .zip(batch.iter().map(|(_, h)| h.num_examples))
            .collect();
        let before = strategy.accepted();
        let result = strategy.accept_batch(&pairs);
        let taken = strategy.accepted().saturating_sub(before);
        self.inner.metrics.updates_accepted.inc_by(taken as u64);
        if let Err(e) = result {
            tracing::warn!(error = %e, "batched fold refused; folding one at a time");
            for (id, held) in batch.iter().skip(taken) {
                self.fold(strategy, global, id, held);
            }
        }
        drop(views);
        self.give_buffers(batch);
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
        let (global, limits) = (Arc::clone(&ticket.global), ticket.limits.clone());
        let (meta, check) = (std::mem::take(&mut ticket.meta), ticket.check.take());
        let len = bytes.len() as u64;
        self.inner.metrics.update_bytes.inc_by(len);
        let (header, bytes) = match check {
            // Checked chunk by chunk as it arrived: only the size and the
            // norm bound are left.
            Some(check) if check.is_complete() => (
                check
                    .finish(&bytes, &global.model)
                    .map_err(CoreError::Rejected)?,
                bytes,
            ),
            check => tokio::task::spawn_blocking(move || {
                match check {
                    Some(c) => c.finish(&bytes, &global.model),
                    None => validate_update(&bytes, &global.model, &limits),
                }
                .map(|h| (h, bytes))
            })
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?
            .map_err(CoreError::Rejected)?,
        };

        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = this.now_ms();
            let mut guard = this.lock();
            let s = &mut *guard;
            s.machine
                .check_upload(&id, round, now)
                .map_err(CoreError::Refused)?;
            let held = Held {
                bytes,
                header,
                num_examples: meta.num_examples,
            };
            if let Some(work) = s.work.as_mut().filter(|w| w.round == round) {
                work.metrics
                    .insert(id.clone(), (meta.metrics, meta.num_examples));
                match this.inner.job.fold_order {
                    FoldOrder::Canonical => {
                        work.held.insert(id.clone(), held);
                    }
                    FoldOrder::Arrival => work.arrived.push((id.clone(), held)),
                }
            }
            let events = s
                .machine
                .finish_update(&id, round, UpdateOutcome::Accepted, now)
                .map_err(CoreError::Refused)?;
            let accepted = accepted_count(&s.machine);
            this.apply(s, &events);
            // A full batch is folded now, unless this upload closed the round:
            // then the aggregation folds it together with the division.
            if s.pending.is_none()
                && let Some(work) = s
                    .work
                    .as_mut()
                    .filter(|w| w.round == round && w.arrived.len() >= ARRIVAL_FOLD_BATCH)
            {
                let batch = std::mem::take(&mut work.arrived);
                this.fold_batch(&mut s.strategy, &s.global, batch);
            }
            Ok(UploadReceipt {
                round,
                bytes: len,
                accepted_in_round: u32::try_from(accepted).unwrap_or(u32::MAX),
            })
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
    }
}

/// Zero-copy views of held updates, validated against `global`.
fn held_views<'a>(
    held: &'a [(ParticipantId, Held)],
    global: &'a GlobalModel,
) -> Vec<crate::model::ModelView<'a>> {
    held.iter()
        .map(|(_, h)| view_validated(&h.bytes, &global.model, &h.header))
        .collect()
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
