//! Bounded store of whole updates for the rules that need all of them at once.

use rayon::prelude::*;

use super::sum::PAR_CHUNK;
use super::{RoundCtx, StrategyError};
use crate::model::{Model, ModelView};

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
pub(crate) struct BufferedRound {
    pub ctx: RoundCtx,
    pub buffer: UpdateBuffer,
}

impl BufferedRound {
    pub fn new(round: u64, global: &Model, limit: u64) -> Self {
        Self {
            ctx: RoundCtx::new(round, global),
            buffer: UpdateBuffer::new(limit, global.spec().total_elements()),
        }
    }

    pub fn accept(
        &mut self,
        update: &ModelView<'_>,
        num_examples: u64,
    ) -> Result<(), StrategyError> {
        self.ctx.check(update, num_examples)?;
        self.buffer.push(update, num_examples)
    }

    /// Fails with `NoUpdates` when the round is empty.
    pub fn require_updates(&self) -> Result<(), StrategyError> {
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
    pub fn coordinatewise<F>(&self, reduce: F) -> Vec<f32>
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
