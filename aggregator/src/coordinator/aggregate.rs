//! Closing a round: folding the held updates, running the strategy and
//! committing the new global model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{AggregationJob, Coordinator, Held, MetricSums, State};
use crate::model::{Model, ModelView};
use crate::round::{ParticipantId, RoundCheckpoint, Slot};
use crate::store::{GlobalModel, StoreError, VersionInfo};
use crate::strategy::{AnyStrategy, Strategy, StrategyCheckpoint, StrategyError};
use crate::update::view_validated;

/// A round folded and finished by the strategy, ready to commit.
struct FinishedRound {
    global: GlobalModel,
    /// The strategy's state before the round, to rewind to if the commit fails.
    before: StrategyCheckpoint,
    strategy: StrategyCheckpoint,
    machine: RoundCheckpoint,
    /// Training metrics of the accepted updates.
    train: MetricSums,
}

impl Coordinator {
    /// Finishes a closed round: fold what is held, run the strategy, commit
    /// to the store, then let the machine move on.
    pub(super) async fn aggregate(&self, job: AggregationJob) {
        let round = job.round;
        let accepted = job.accepted.clone();
        let started = Instant::now();
        let finished = match self.finish_round(job).await {
            Ok(finished) => finished,
            Err(detail) => return self.fail_aggregation(round, detail),
        };
        self.inner
            .metrics
            .aggregation_seconds
            .observe(started.elapsed().as_secs_f64());

        let info = finished
            .global
            .info(finished.train.means("train_"), accepted.clone());
        let rounds = RoundCheckpoint {
            completed_rounds: round,
            ..finished.machine
        };
        let committed = self
            .commit_with_retry(round, &finished.global, &info, rounds, finished.strategy)
            .await;
        let now = self.now_ms();
        let version = finished.global.version;
        {
            let mut s = self.lock();
            match committed {
                Ok(()) => {
                    tracing::info!(
                        round,
                        version,
                        sha256 = %finished.global.sha256,
                        contributors = accepted.len(),
                        "round committed"
                    );
                    self.install(&mut s, round, finished.global, info, now);
                }
                Err(e) => return self.rewind(&mut s, round, &finished.before, &e, now),
            }
        }
        // The committed version is what checkpoint.json names now.
        self.prune(version).await;
    }

    /// Folds what the round holds and runs the strategy (off the runtime,
    /// under the lock). The error is the reason the round attempt failed.
    async fn finish_round(&self, job: AggregationJob) -> Result<FinishedRound, String> {
        let round = job.round;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = this.lock();
            let s = &mut *guard;
            let (held, train) = take_round_work(s, &job.accepted);
            let before = s.strategy.checkpoint();
            let model = this
                .finish_with(&mut s.strategy, &s.global, held)
                .map_err(|e| e.to_string())
                .and_then(|m| GlobalModel::new(round, m).map_err(|e| e.to_string()));
            model.map(|global| FinishedRound {
                global,
                before,
                strategy: s.strategy.checkpoint(),
                machine: s.machine.checkpoint(),
                train,
            })
        })
        .await
        .map_err(|e| format!("aggregation task failed: {e}"))
        .and_then(|r| r)
    }

    /// The strategy could not aggregate: the round attempt fails.
    fn fail_aggregation(&self, round: u64, detail: String) {
        tracing::error!(round, %detail, "aggregation failed");
        let now = self.now_ms();
        let mut s = self.lock();
        s.strategy.abort_round();
        let events = s.machine.fail_round(round, detail, now).unwrap_or_default();
        self.apply(&mut s, &events);
    }

    /// Commits the round's model and state, retrying a failed write four
    /// times with growing pauses.
    async fn commit_with_retry(
        &self,
        round: u64,
        global: &GlobalModel,
        info: &VersionInfo,
        rounds: RoundCheckpoint,
        strategy: StrategyCheckpoint,
    ) -> Result<(), StoreError> {
        let commit_started = Instant::now();
        let mut tries = 0u32;
        let committed = loop {
            match self
                .inner
                .checkpoints
                .commit(
                    &self.inner.job.name,
                    global,
                    info,
                    rounds.clone(),
                    strategy.clone(),
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
        committed
    }

    /// Makes the committed model the global one and completes the round.
    fn install(&self, s: &mut State, round: u64, global: GlobalModel, info: VersionInfo, now: u64) {
        let old = std::mem::replace(&mut s.global, Arc::new(global));
        // Nobody else holds the replaced model (no upload against it is
        // in flight): its vectors become the next accumulator.
        if let Some(model) = Arc::into_inner(old).and_then(|g| Arc::into_inner(g.model)) {
            s.strategy.recycle(model);
        }
        s.versions.push(info);
        let events = s.machine.complete_round(round, now).unwrap_or_default();
        self.apply(s, &events);
    }

    /// The commit failed: the strategy goes back to its state before the
    /// round and the round attempt fails (it is retried).
    fn rewind(
        &self,
        s: &mut State,
        round: u64,
        before: &StrategyCheckpoint,
        error: &StoreError,
        now: u64,
    ) {
        tracing::error!(round, error = %error, "checkpoint failed; the round is retried");
        // The strategy already stepped its optimiser; rewind it so the
        // retried round does not apply the step twice.
        match AnyStrategy::restore(before) {
            Ok(restored) => s.strategy = restored,
            Err(err) => {
                tracing::error!(error = %err, "strategy state could not be rewound")
            }
        }
        let detail = format!("checkpoint failed: {error}");
        let events = s.machine.fail_round(round, detail, now).unwrap_or_default();
        self.apply(s, &events);
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
    pub(super) fn advance(&self, s: &mut State) {
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
        let last: Vec<(&ModelView<'_>, u64)> = views
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
    pub(super) fn fold_batch(
        &self,
        strategy: &mut AnyStrategy,
        global: &GlobalModel,
        batch: Vec<(ParticipantId, Held)>,
    ) {
        if batch.is_empty() {
            return;
        }
        let views = held_views(&batch, global);
        let pairs: Vec<(&ModelView<'_>, u64)> = views
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
}

/// Zero-copy views of held updates, validated against `global`.
fn held_views<'a>(
    held: &'a [(ParticipantId, Held)],
    global: &'a GlobalModel,
) -> Vec<ModelView<'a>> {
    held.iter()
        .map(|(_, h)| view_validated(&h.bytes, &global.model, &h.header))
        .collect()
}

/// Takes the round's held updates and sums the training metrics of the
/// `accepted` participants (in that order).
fn take_round_work(
    s: &mut State,
    accepted: &[ParticipantId],
) -> (Vec<(ParticipantId, Held)>, MetricSums) {
    let mut train = MetricSums::default();
    let mut held: Vec<(ParticipantId, Held)> = Vec::new();
    if let Some(mut work) = s.work.take() {
        // Only one of the two is in use (per foldOrder).
        held = std::mem::take(&mut work.held).into_iter().collect();
        held.append(&mut work.arrived);
        for id in accepted {
            if let Some((metrics, n)) = work.metrics.get(id) {
                train.add(metrics, *n);
            }
        }
    }
    (held, train)
}
