//! The running weighted sum behind FedAvg, the FedOpt family and multi-Krum.
//!
//! It computes `Σ nᵢ·xᵢ / Σ nᵢ` in f32 exactly as Flower's `aggregate` does
//! (multiply each update by its example count, add in arrival order, divide
//! once at the end), so a fixed arrival order gives bit-identical results.

use rayon::prelude::*;

use crate::model::{ModelView, TensorView};

/// Coordinates per parallel task: big enough to amortise scheduling, small
/// enough to balance a few large tensors across cores.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// Σ nᵢ·xᵢ over accepted updates, flat in canonical order.
#[derive(Debug)]
pub(crate) struct WeightedSum {
    sum: Vec<f32>,
    total_examples: u64,
    count: usize,
}

impl WeightedSum {
    pub fn new(elements: usize) -> Self {
        Self {
            sum: vec![0.0; elements],
            total_examples: 0,
            count: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn bytes(&self) -> u64 {
        (self.sum.len() as u64).saturating_mul(4)
    }

    /// Adds `weight · update`; the caller has checked the update's layout.
    pub fn add_view(&mut self, update: &ModelView<'_>, weight: u64) {
        let w = weight as f32;
        let spec = update.spec();
        for (i, t) in update.tensors().iter().enumerate() {
            let off = spec.offset_at(i);
            if let Some(acc) = self.sum.get_mut(off..off + t.len()) {
                add_scaled(acc, t, w);
            }
        }
        self.total_examples = self.total_examples.saturating_add(weight);
        self.count += 1;
    }

    /// Adds several updates at once, in slice order. Each accumulator chunk
    /// is visited once and receives every update while it sits in cache, so
    /// memory traffic per update is one read instead of a read of the update
    /// plus a read and write of the accumulator. Every coordinate sees the
    /// same additions in the same order as repeated [`Self::add_view`], so
    /// the result is bit-identical.
    pub fn add_views(&mut self, updates: &[(&ModelView<'_>, u64)]) {
        let Some((first, _)) = updates.first() else {
            return;
        };
        let spec = first.spec();
        for i in 0..spec.len() {
            let off = spec.offset_at(i);
            let len = spec.numel_at(i);
            let Some(acc) = self.sum.get_mut(off..off + len) else {
                continue;
            };
            let sources: Vec<(TensorView<'_>, f32)> = updates
                .iter()
                .filter_map(|(u, w)| u.tensors().get(i).map(|t| (*t, *w as f32)))
                .collect();
            acc.par_chunks_mut(PAR_CHUNK)
                .enumerate()
                .for_each(|(c, chunk)| {
                    for (src, w) in &sources {
                        src.zip_f32(c * PAR_CHUNK, chunk, |a, x| *a += x * *w);
                    }
                });
        }
        for (_, w) in updates {
            self.total_examples = self.total_examples.saturating_add(*w);
            self.count += 1;
        }
    }

    /// Adds `weight · flat` for an update already held as a flat f32 vector.
    pub fn add_flat(&mut self, flat: &[f32], weight: u64) {
        add_scaled(&mut self.sum, &TensorView::F32(flat), weight as f32);
        self.total_examples = self.total_examples.saturating_add(weight);
        self.count += 1;
    }

    /// The weighted mean; `None` when nothing was added.
    pub fn into_mean(self) -> Option<Vec<f32>> {
        if self.count == 0 || self.total_examples == 0 {
            return None;
        }
        let total = self.total_examples as f32;
        let mut mean = self.sum;
        mean.par_chunks_mut(PAR_CHUNK)
            .for_each(|c| c.iter_mut().for_each(|x| *x /= total));
        Some(mean)
    }
}

/// `acc[i] += w · src[i]`, in parallel over disjoint chunks.
fn add_scaled(acc: &mut [f32], src: &TensorView<'_>, w: f32) {
    if acc.len() <= PAR_CHUNK {
        src.zip_f32(0, acc, |a, x| *a += x * w);
        return;
    }
    acc.par_chunks_mut(PAR_CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| src.zip_f32(c * PAR_CHUNK, chunk, |a, x| *a += x * w));
}
