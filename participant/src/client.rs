//! The participant's side of the federated job: register, follow the
//! aggregator's instructions (train, evaluate, wait, stop), stream models
//! down and updates up, heartbeat, and reconnect with exponential backoff.
//!
//! Restarts on either side are routine. The aggregator resumes from its last
//! checkpoint and re-sends the open round's instruction; this loop
//! re-registers and follows it. A restarted participant finds the update it
//! trained for the open round in its [`StateDir`] and uploads those same
//! bytes; a half-sent upload is simply sent again (the aggregator discards
//! incomplete streams), so no round ever sees a partial or mixed update.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use fedsky_aggregator::client::{AggregatorClient, ClientError, DownloadedModel, UpdateToSend};
use fedsky_aggregator::proto::{self, instruction::Kind};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::Code;

use crate::engine::{EngineError, EngineHandle, FitParams, to_wire_metrics};
use crate::state::{PendingUpdate, StateDir, StateError};
use crate::train::{EvalReport, OptimizerKind, TrainError};

/// Why the participant stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The aggregator refused the job token.
    #[error("the aggregator rejected the job token")]
    Unauthenticated(#[source] ClientError),
    /// The aggregator does not admit this participant.
    #[error("the aggregator does not admit this participant")]
    NotAllowed(#[source] ClientError),
    /// The job failed on the aggregator.
    #[error("the federated job failed: {0}")]
    JobFailed(String),
    /// No contact with the aggregator for too long.
    #[error("no contact with the aggregator for {after:?} (last error: {last})")]
    GaveUp {
        /// Configured limit.
        after: Duration,
        /// The last error seen.
        last: String,
    },
    /// Local training or evaluation failed for a reason retrying cannot fix.
    #[error("local training failed")]
    Engine(#[source] EngineError),
    /// The state directory could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The instruction is malformed.
    #[error("malformed instruction from the aggregator: {0}")]
    Protocol(String),
}

/// Exponential backoff between reconnects and retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per failure.
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            factor: 2.0,
        }
    }
}

#[derive(Debug)]
struct BackoffState {
    config: Backoff,
    next: Duration,
}

impl BackoffState {
    fn new(config: Backoff) -> Self {
        Self {
            config,
            next: config.initial,
        }
    }

    fn reset(&mut self) {
        self.next = self.config.initial;
    }

    /// The next delay, with +-20 % jitter so that many participants cut off
    /// together do not reconnect in lockstep.
    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self
            .next
            .mul_f64(self.config.factor.max(1.0))
            .min(self.config.max);
        d.mul_f64(rand::rng().random_range(0.8..1.2))
    }
}

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Labels sent on registration (site, flavour, versions).
    pub labels: HashMap<String, String>,
    /// Reconnect and retry delays.
    pub backoff: Backoff,
    /// Evaluate each downloaded global model on local data and report it
    /// (so the model manager shows accuracy per version, not just at the end).
    pub evaluate_each_round: bool,
    /// Stop after this long without reaching the aggregator (`None`: never;
    /// the right choice under a Kubernetes Job that restarts anyway).
    pub give_up_after: Option<Duration>,
    /// Where the open round's update is kept across restarts.
    pub state_dir: Option<StateDir>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            labels: HashMap::new(),
            backoff: Backoff::default(),
            evaluate_each_round: true,
            give_up_after: None,
            state_dir: None,
        }
    }
}

/// One round this participant trained for.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    /// Round.
    pub round: u64,
    /// Global version trained from.
    pub base_version: u64,
    /// Training examples.
    pub examples: u64,
    /// Training metrics sent with the update.
    pub metrics: BTreeMap<String, f64>,
    /// Whether the update came from the state directory (after a restart).
    pub reused: bool,
}

/// What happened during [`run`].
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Identity the aggregator assigned.
    pub participant_id: String,
    /// Job name.
    pub job: String,
    /// Registrations (1 + reconnects that needed one).
    pub registrations: u32,
    /// Uploaded updates.
    pub rounds: Vec<RoundRecord>,
    /// Evaluations reported, by model version.
    pub evaluations: BTreeMap<u64, EvalReport>,
    /// The aggregator's closing message.
    pub message: String,
}

/// What to do after a failed step.
enum Step {
    /// Try the same instruction again after a delay.
    Retry(String),
    /// Register and reopen the instruction stream.
    Reconnect(String),
    /// Give up on this instruction and wait for the next one.
    Skip(String),
    /// Stop.
    Fatal(LoopError),
}

fn classify(e: ClientError) -> Step {
    let reason = e.reason().unwrap_or("").to_string();
    let msg = e.to_string();
    match e.code() {
        None => Step::Retry(msg),
        Some(Code::Unauthenticated) => Step::Fatal(LoopError::Unauthenticated(e)),
        Some(Code::PermissionDenied) if reason == "unknown_participant" => Step::Reconnect(msg),
        Some(Code::PermissionDenied) => Step::Fatal(LoopError::NotAllowed(e)),
        // The round moved on, or this update is not wanted (stale, duplicate,
        // rejected): the next instruction says what to do.
        Some(
            Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::OutOfRange
            | Code::InvalidArgument
            | Code::ResourceExhausted,
        ) => Step::Skip(format!("{msg} (reason {reason:?})")),
        Some(_) => Step::Retry(msg),
    }
}

fn engine_step(e: EngineError) -> Step {
    match e {
        // One bad round (e.g. too high a learning rate) should not end the job.
        EngineError::Train(TrainError::Diverged { .. }) => Step::Skip(e.to_string()),
        other => Step::Fatal(LoopError::Engine(other)),
    }
}

enum SessionEnd {
    Done,
    Reconnect(String),
    Fatal(LoopError),
}

/// Runs the participant until the job is done (or fails).
pub async fn run(
    client: AggregatorClient,
    engine: EngineHandle,
    options: ClientOptions,
) -> Result<RunSummary, LoopError> {
    let mut p = Participant {
        client,
        engine,
        options,
        summary: RunSummary::default(),
        handled: HashSet::new(),
    };
    let mut backoff = BackoffState::new(p.options.backoff);
    let mut last_contact = Instant::now();
    loop {
        let (end, registered) = p.session().await;
        if registered {
            backoff.reset();
            last_contact = Instant::now();
        }
        match end {
            SessionEnd::Done => return Ok(p.summary),
            SessionEnd::Fatal(e) => return Err(e),
            SessionEnd::Reconnect(why) => {
                if let Some(limit) = p.options.give_up_after
                    && last_contact.elapsed() > limit
                {
                    return Err(LoopError::GaveUp {
                        after: limit,
                        last: why,
                    });
                }
                let delay = backoff.next_delay();
                tracing::warn!(reason = %why, retry_in_ms = delay.as_millis() as u64, "reconnecting to the aggregator");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

struct Participant {
    client: AggregatorClient,
    engine: EngineHandle,
    options: ClientOptions,
    summary: RunSummary,
    /// (round, attempt, model version) of FIT instructions finished in this
    /// session. Cleared on re-registration: after an aggregator restart the
    /// same round may need the update again.
    handled: HashSet<(u64, u32, u64)>,
}

impl Participant {
    /// Registers, then follows the instruction stream until it ends.
    /// Returns how it ended and whether registration succeeded.
    async fn session(&mut self) -> (SessionEnd, bool) {
        let reg = match self.client.register(self.options.labels.clone()).await {
            Ok(r) => r,
            Err(e) => {
                return match classify(e) {
                    Step::Fatal(e) => (SessionEnd::Fatal(e), false),
                    Step::Retry(m) | Step::Reconnect(m) | Step::Skip(m) => {
                        (SessionEnd::Reconnect(m), false)
                    }
                };
            }
        };
        self.summary.registrations += 1;
        self.summary.participant_id = reg.participant_id.clone();
        self.summary.job = reg.job.clone();
        self.handled.clear();
        if let Some(l) = &reg.limits {
            // Stay under the server's message limit, leaving room for framing.
            let max_msg = usize::try_from(l.max_message_bytes).unwrap_or(usize::MAX);
            let chunk = usize::try_from(l.chunk_bytes).unwrap_or(0);
            if chunk > 0 {
                self.client
                    .set_chunk_bytes(chunk.min(max_msg.saturating_sub(64 << 10).max(1024)));
            }
        }
        tracing::info!(
            participant = %reg.participant_id,
            job = %reg.job,
            heartbeat_ms = reg.heartbeat_interval_ms,
            "registered with the aggregator"
        );
        let interval = Duration::from_millis(reg.heartbeat_interval_ms.clamp(50, 60_000));
        let (lost_tx, mut lost_rx) = watch::channel(false);
        let heartbeat = tokio::spawn(heartbeat(self.client.clone(), interval, lost_tx));
        let stream = match self.client.instructions().await {
            Ok(s) => s,
            Err(e) => {
                heartbeat.abort();
                return match classify(e) {
                    Step::Fatal(e) => (SessionEnd::Fatal(e), true),
                    Step::Retry(m) | Step::Reconnect(m) | Step::Skip(m) => {
                        (SessionEnd::Reconnect(m), true)
                    }
                };
            }
        };
        // Only the newest instruction matters: a participant that was busy
        // training acts on where the job is now, not on what it missed.
        let (ins_tx, mut ins_rx) = watch::channel::<Option<proto::Instruction>>(None);
        let reader = tokio::spawn(async move {
            let mut stream = stream;
            loop {
                match stream.message().await {
                    Ok(Some(i)) => {
                        if ins_tx.send(Some(i)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        tracing::debug!("the aggregator closed the instruction stream");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e.message(), "instruction stream failed");
                        return;
                    }
                }
            }
        });
        let end = self.follow(&mut ins_rx, &mut lost_rx).await;
        heartbeat.abort();
        reader.abort();
        (end, true)
    }

    async fn follow(
        &mut self,
        ins_rx: &mut watch::Receiver<Option<proto::Instruction>>,
        lost_rx: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let mut backoff = BackoffState::new(self.options.backoff);
        let mut retry: Option<Duration> = None;
        loop {
            let wait = retry.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                changed = ins_rx.changed() => {
                    if changed.is_err() {
                        return SessionEnd::Reconnect("instruction stream ended".into());
                    }
                    backoff.reset();
                }
                _ = lost_rx.changed() => {
                    return SessionEnd::Reconnect("the aggregator no longer knows this participant".into());
                }
                _ = tokio::time::sleep(wait), if retry.is_some() => {}
            }
            retry = None;
            let Some(ins) = ins_rx.borrow_and_update().clone() else {
                continue;
            };
            let kind = Kind::try_from(ins.kind).unwrap_or(Kind::Unspecified);
            let result = match kind {
                Kind::Wait | Kind::Unspecified => {
                    tracing::debug!(round = ins.round, message = %ins.message, "waiting");
                    Ok(())
                }
                Kind::Fit => self.fit(&ins).await,
                Kind::Evaluate => self.evaluate(ins.model_version, &ins.model_sha256).await,
                Kind::Done => {
                    tracing::info!(message = %ins.message, "job done");
                    self.summary.message = ins.message.clone();
                    return SessionEnd::Done;
                }
                Kind::Failed => {
                    return SessionEnd::Fatal(LoopError::JobFailed(ins.message.clone()));
                }
            };
            match result {
                Ok(()) => {}
                Err(Step::Retry(why)) => {
                    let d = backoff.next_delay();
                    tracing::warn!(round = ins.round, reason = %why, retry_in_ms = d.as_millis() as u64, "retrying");
                    retry = Some(d);
                }
                Err(Step::Skip(why)) => {
                    tracing::warn!(round = ins.round, reason = %why, "giving up on this instruction");
                    self.handled
                        .insert((ins.round, ins.attempt, ins.model_version));
                }
                Err(Step::Reconnect(why)) => return SessionEnd::Reconnect(why),
                Err(Step::Fatal(e)) => return SessionEnd::Fatal(e),
            }
        }
    }

    async fn download(&mut self, version: u64, sha256: &str) -> Result<DownloadedModel, Step> {
        let model = self
            .client
            .download_model(Some(version))
            .await
            .map_err(classify)?;
        if !sha256.is_empty() && model.sha256 != sha256 {
            return Err(Step::Retry(format!(
                "model version {version} has sha256 {} but the instruction announced {sha256}",
                model.sha256
            )));
        }
        Ok(model)
    }

    async fn evaluate(&mut self, version: u64, sha256: &str) -> Result<(), Step> {
        if self.summary.evaluations.contains_key(&version) {
            return Ok(());
        }
        let model = self.download(version, sha256).await?;
        self.evaluate_bytes(version, model.bytes.to_vec()).await
    }

    async fn evaluate_bytes(&mut self, version: u64, bytes: Vec<u8>) -> Result<(), Step> {
        let report = self.engine.evaluate(bytes).await.map_err(engine_step)?;
        tracing::info!(
            version,
            loss = report.loss,
            accuracy = report.accuracy,
            macro_recall = report.macro_recall(),
            "evaluated global model"
        );
        self.client
            .report_evaluation(
                version,
                report.examples as u64,
                to_wire_metrics(report.metrics()),
            )
            .await
            .map_err(classify)?;
        self.summary.evaluations.insert(version, report);
        Ok(())
    }

    async fn fit(&mut self, ins: &proto::Instruction) -> Result<(), Step> {
        let key = (ins.round, ins.attempt, ins.model_version);
        if self.handled.contains(&key) {
            return Ok(());
        }
        let hp = ins.hyper_parameters.clone().ok_or_else(|| {
            Step::Fatal(LoopError::Protocol(format!(
                "FIT for round {} without hyper-parameters",
                ins.round
            )))
        })?;
        let optimizer: OptimizerKind = hp
            .optimizer
            .parse()
            .map_err(|e: TrainError| Step::Fatal(LoopError::Protocol(e.to_string())))?;
        let params = FitParams {
            epochs: hp.local_epochs.max(1),
            batch_size: usize::try_from(hp.batch_size.max(1)).unwrap_or(32),
            learning_rate: hp.learning_rate,
            proximal_mu: hp.proximal_mu,
            seed: hp.seed,
            optimizer,
        };
        let state = self.options.state_dir.clone();
        let pending = state
            .as_ref()
            .and_then(|s| s.load_pending(ins.round, ins.model_version, &ins.model_sha256, hp.seed));
        let (meta, bytes, reused) = match pending {
            Some((meta, bytes)) => {
                tracing::info!(
                    round = ins.round,
                    "uploading the update stored before a restart"
                );
                (meta, bytes, true)
            }
            None => {
                let model = self.download(ins.model_version, &ins.model_sha256).await?;
                if self.options.evaluate_each_round
                    && !self.summary.evaluations.contains_key(&ins.model_version)
                {
                    // Informative only: a failed report must not cost the round.
                    if let Err(Step::Fatal(e)) = self
                        .evaluate_bytes(ins.model_version, model.bytes.to_vec())
                        .await
                    {
                        return Err(Step::Fatal(e));
                    }
                }
                tracing::info!(
                    round = ins.round,
                    attempt = ins.attempt,
                    base_version = ins.model_version,
                    epochs = params.epochs,
                    lr = params.learning_rate,
                    mu = params.proximal_mu,
                    "training"
                );
                let out = self
                    .engine
                    .fit(model.bytes.to_vec(), params)
                    .await
                    .map_err(engine_step)?;
                let r = &out.report;
                tracing::info!(
                    round = ins.round,
                    loss = r.loss,
                    accuracy = r.accuracy,
                    seconds = r.seconds,
                    samples_per_second = r.throughput(),
                    "trained"
                );
                let meta = PendingUpdate {
                    round: ins.round,
                    base_version: ins.model_version,
                    model_sha256: model.sha256.clone(),
                    seed: hp.seed,
                    num_examples: r.examples as u64,
                    metrics: r.metrics(),
                    update_sha256: hex::encode(Sha256::digest(&out.bytes)),
                };
                if let Some(s) = &state {
                    s.save_pending(&meta, &out.bytes)
                        .map_err(|e| Step::Fatal(e.into()))?;
                }
                (meta, out.bytes, false)
            }
        };
        let update = UpdateToSend {
            round: ins.round,
            base_version: ins.model_version,
            num_examples: meta.num_examples,
            metrics: to_wire_metrics(meta.metrics.clone()),
            bytes: bytes.into(),
        };
        let result = self.client.upload_update(update).await;
        match result {
            Ok(resp) => {
                tracing::info!(
                    round = ins.round,
                    bytes = resp.bytes,
                    accepted_in_round = resp.accepted_in_round,
                    "update accepted"
                );
                if let Some(s) = &state {
                    s.clear_pending();
                }
                self.handled.insert(key);
                self.summary.rounds.push(RoundRecord {
                    round: ins.round,
                    base_version: ins.model_version,
                    examples: meta.num_examples,
                    metrics: meta.metrics,
                    reused,
                });
                Ok(())
            }
            Err(e) => {
                let step = classify(e);
                if matches!(step, Step::Skip(_))
                    && let Some(s) = &state
                {
                    s.clear_pending();
                }
                Err(step)
            }
        }
    }
}

/// Sends heartbeats; flags `lost` when the aggregator no longer knows us
/// (it restarted without this registration), so the loop re-registers.
async fn heartbeat(mut client: AggregatorClient, interval: Duration, lost: watch::Sender<bool>) {
    loop {
        tokio::time::sleep(interval).await;
        match client.heartbeat().await {
            Ok(_) => {}
            Err(e) if e.code() == Some(Code::PermissionDenied) => {
                let _ = lost.send(true);
                return;
            }
            // Transport errors also end the instruction stream, which
            // triggers the reconnect; nothing to do here.
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut b = BackoffState::new(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            factor: 2.0,
        });
        let d: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert!((80..=120).contains(&d[0]), "{d:?}");
        assert!((160..=240).contains(&d[1]), "{d:?}");
        assert!((400..=600).contains(&d[4]), "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
