//! Starting a job: from the store's last checkpoint, or from the initial model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, watch};

use super::{Coordinator, CoreError, Inner, State};
use crate::buffers::BufferPool;
use crate::job::{JobConfig, JobConfigExt};
use crate::metrics::Metrics;
use crate::model::Model;
use crate::round::{RoundCheckpoint, RoundConfig, RoundMachine};
use crate::store::{Checkpoints, GlobalModel, Resumed, StoreError, VersionInfo};
use crate::strategy::AnyStrategy;
use crate::update::UpdateLimits;

/// Where the job starts from: the round machine, the strategy, the global
/// model and the versions known so far.
struct Origin {
    machine: RoundMachine,
    strategy: AnyStrategy,
    global: GlobalModel,
    versions: Vec<VersionInfo>,
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
        let origin = match resumed {
            Some(r) => resume(&job, round_config, &checkpoints, initial.as_ref(), r).await?,
            None => start_new(&job, round_config, &checkpoints, initial).await?,
        };
        Ok(Self::assemble(
            job,
            token,
            checkpoints,
            metrics,
            clock,
            origin,
        ))
    }

    /// Builds the coordinator around its starting state and prewarms one
    /// receive buffer.
    fn assemble(
        job: JobConfig,
        token: String,
        checkpoints: Checkpoints,
        metrics: Arc<Metrics>,
        clock: Instant,
        origin: Origin,
    ) -> Self {
        let Origin {
            machine,
            strategy,
            global,
            versions,
        } = origin;
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
            writing: BTreeMap::new(),
            allowed: super::allowlist::Allowlist::from_job(&job.participants),
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
        core
    }
}

/// Resumes from the store's last checkpoint, which must belong to this job,
/// strategy and model.
async fn resume(
    job: &JobConfig,
    round_config: RoundConfig,
    checkpoints: &Checkpoints,
    initial: Option<&Model>,
    r: Resumed,
) -> Result<Origin, CoreError> {
    check_compatible(job, initial, &r)?;
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
    Ok(Origin {
        machine,
        strategy,
        global: r.global,
        versions,
    })
}

/// Refuses a checkpoint made for another job, strategy or model.
fn check_compatible(
    job: &JobConfig,
    initial: Option<&Model>,
    r: &Resumed,
) -> Result<(), CoreError> {
    let incompatible = |detail: String| CoreError::Store(StoreError::Incompatible { detail });
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
    if let Some(initial) = initial
        && initial.spec() != r.global.model.spec()
    {
        return Err(incompatible(
            "the initial model's tensors differ from the checkpointed model's".into(),
        ));
    }
    Ok(())
}

/// Starts a new job from `initial`, committed as version 0.
async fn start_new(
    job: &JobConfig,
    round_config: RoundConfig,
    checkpoints: &Checkpoints,
    initial: Option<Model>,
) -> Result<Origin, CoreError> {
    let model = initial.ok_or(CoreError::NoInitialModel)?;
    let machine = RoundMachine::new(round_config).map_err(CoreError::Round)?;
    let strategy = AnyStrategy::from_config(&job.strategy).map_err(CoreError::Strategy)?;
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
    Ok(Origin {
        machine,
        strategy,
        global,
        versions: vec![info],
    })
}
