//! Bounded store of whole updates for the rules that need all of them at
//! once, and the one [`Strategy`] that drives every such rule.

use rayon::prelude::*;

use super::sum::PAR_CHUNK;
use super::{RoundCtx, Strategy, StrategyError};
use crate::model::{Model, ModelView};

/// The math of a robust rule (median, trimmed mean, Krum): what it is called
/// and how it combines a round's buffered updates. Buffering under the byte
/// bound and the round's life cycle are [`Buffered`]'s; a rule checks its
/// parameters when it is built.
pub trait RobustRule: std::fmt::Debug + Send {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;

    /// The new global model from the round's buffered updates (at least one).
    fn combine(&self, round: &BufferedRound) -> Result<Model, StrategyError>;
}

/// A robust rule whose updates are buffered as f32, under
/// `max_buffered_bytes`, until the round finishes.
#[derive(Debug)]
pub struct Buffered<R> {
    rule: R,
    max_buffered_bytes: u64,
    round: Option<BufferedRound>,
}

impl<R: RobustRule> Buffered<R> {
    /// `rule` with updates buffered up to `max_buffered_bytes`.
    pub fn with_rule(rule: R, max_buffered_bytes: u64) -> Self {
        Self {
            rule,
            max_buffered_bytes,
            round: None,
        }
    }

    /// The rule.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    /// The configured buffer bound.
    pub fn max_buffered_bytes(&self) -> u64 {
        self.max_buffered_bytes
    }
}

impl<R: RobustRule> Strategy for Buffered<R> {
    fn name(&self) -> &'static str {
        self.rule.name()
    }

    fn begin_round(&mut self, round: u64, global: &Model) -> Result<(), StrategyError> {
        self.round = Some(BufferedRound::new(round, global, self.max_buffered_bytes));
        Ok(())
    }

    fn accept(&mut self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError> {
        self.round
            .as_mut()
            .ok_or(StrategyError::NoRound)?
            .accept(update, num_examples)
    }

    fn accepted(&self) -> usize {
        self.round.as_ref().map_or(0, |r| r.buffer.len())
    }

    fn buffered_bytes(&self) -> u64 {
        self.round.as_ref().map_or(0, |r| r.buffer.bytes())
    }

    fn max_updates(&self) -> Option<usize> {
        self.round.as_ref().map(|r| r.buffer.capacity())
    }

    fn finish(&mut self) -> Result<Model, StrategyError> {
        let round = self.round.take().ok_or(StrategyError::NoRound)?;
        round.require_updates()?;
        self.rule.combine(&round)
    }

    fn abort_round(&mut self) {
        self.round = None;
    }
}

/// Flat f32 copies of a round's updates, never more than `limit` bytes.
///
/// The bound covers the update copies; a round additionally needs one
/// model-sized output vector while finishing.
#[derive(Debug)]
pub(crate) struct UpdateBuffer {
    limit: u64,
    per_update: u64,
    updates: Vec<Vec<f32>>,
    examples: Vec<u64>,
}

impl UpdateBuffer {
    pub fn new(limit: u64, elements: usize) -> Self {
        Self {
            limit,
            per_update: (elements as u64).saturating_mul(4),
            updates: Vec::new(),
            examples: Vec::new(),
        }
    }

    /// Copies the update in, or refuses before allocating if it would not fit.
    pub fn push(&mut self, update: &ModelView<'_>, num_examples: u64) -> Result<(), StrategyError> {
        let needed = self.bytes().saturating_add(self.per_update);
        if needed > self.limit {
            return Err(StrategyError::MemoryBoundExceeded {
                needed,
                limit: self.limit,
                buffered: self.updates.len(),
            });
        }
        self.updates.push(update.to_flat_f32());
        self.examples.push(num_examples);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.updates.len()
    }

    pub fn bytes(&self) -> u64 {
        (self.updates.len() as u64).saturating_mul(self.per_update)
    }

    /// How many updates fit under the bound.
    pub fn capacity(&self) -> usize {
        if self.per_update == 0 {
            return usize::MAX;
        }
        usize::try_from(self.limit / self.per_update).unwrap_or(usize::MAX)
    }

    pub fn updates(&self) -> &[Vec<f32>] {
        &self.updates
    }

    pub fn examples(&self) -> &[u64] {
        &self.examples
    }
}

/// A robust rule's round: context plus buffer.
#[derive(Debug)]
pub struct BufferedRound {
    pub(crate) ctx: RoundCtx,
    pub(crate) buffer: UpdateBuffer,
}

impl BufferedRound {
    pub(crate) fn new(round: u64, global: &Model, limit: u64) -> Self {
        Self {
            ctx: RoundCtx::new(round, global),
            buffer: UpdateBuffer::new(limit, global.spec().total_elements()),
        }
    }

    pub(crate) fn accept(
        &mut self,
        update: &ModelView<'_>,
        num_examples: u64,
    ) -> Result<(), StrategyError> {
        self.ctx.check(update, num_examples)?;
        self.buffer.push(update, num_examples)
    }

    /// Fails with `NoUpdates` when the round is empty.
    pub(crate) fn require_updates(&self) -> Result<(), StrategyError> {
        if self.buffer.len() == 0 {
            return Err(StrategyError::NoUpdates {
                round: self.ctx.round,
            });
        }
        Ok(())
    }

    /// Applies `reduce` to the values of every coordinate across updates.
    ///
    /// Coordinates are split into disjoint chunks for rayon; `reduce` sees the
    /// values in update order and may reorder its scratch slice freely.
    pub(crate) fn coordinatewise<F>(&self, reduce: F) -> Vec<f32>
    where
        F: Fn(&mut [f32]) -> f32 + Sync,
    {
        let n = self.ctx.spec.total_elements();
        let updates = self.buffer.updates();
        let mut out = vec![0f32; n];
        out.par_chunks_mut(PAR_CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let base = c * PAR_CHUNK;
                let mut scratch = vec![0f32; updates.len()];
                for (j, o) in chunk.iter_mut().enumerate() {
                    for (s, u) in scratch.iter_mut().zip(updates) {
                        *s = u.get(base + j).copied().unwrap_or(0.0);
                    }
                    *o = reduce(&mut scratch);
                }
            });
        out
    }
}
