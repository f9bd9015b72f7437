//! The running weighted sum behind FedAvg, the FedOpt family and multi-Krum.
//!
//! It computes `Σ nᵢ·xᵢ / Σ nᵢ` in f32 exactly as Flower's `aggregate` does
//! (`reduce(np.add, [nᵢ·xᵢ])`: the first weighted update, each further one
//! added in order, one division at the end), so a fixed order gives
//! bit-identical results on any number of threads.
//!
//! Speed is memory traffic. Each sweep over an accumulator block folds up to
//! [`GROUP`] updates while the block sits in cache, so a batch of updates
//! costs one read of each plus one read and write of the accumulator per
//! [`GROUP`] updates; the first sweep of a round only writes. The
//! accumulators are one vector per tensor, so the mean is handed out as the
//! new model's tensors without a copy, and a strategy can take the previous
//! global model's vectors back ([`WeightedSum::with_buffers`]) so warm rounds
//! never page-fault.

use rayon::prelude::*;

use crate::model::{DType, ModelSpec, ModelView, TensorView};

/// Coordinates per parallel task in the element-wise passes of the strategies.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// Coordinates of the accumulator block one fold task owns (128 KiB of
/// f32): small enough to stay in L2 while four sources stream through it
/// (with 512 KiB blocks, in-memory rounds of 10 x 25M measured 18-23 GB/s
/// against 21-26 GB/s).
const FOLD_CHUNK: usize = 1 << 15;

/// Below this many elements touched (accumulator plus sources), a fold runs
/// on the calling thread: splitting it costs more than it saves, and on a
/// busy or CPU-limited host a descheduled helper thread stalls the join.
const PAR_MIN_ELEMENTS: usize = 1 << 22;

/// Updates folded per sweep over an accumulator block: four concurrent read
/// streams ran at ~80 % of a plain read on the benchmark machine, one at ~55 %.
const GROUP: usize = 4;

/// Lanes processed together by the fold kernel: fixed-size arrays let the
/// compiler drop bounds checks and vectorise across lanes.
const LANES: usize = 16;

/// Σ nᵢ·xᵢ over accepted updates, one accumulator per tensor in spec order.
#[derive(Debug)]
pub(crate) struct WeightedSum {
    acc: Vec<Vec<f32>>,
    total_examples: u64,
    count: usize,
}

impl WeightedSum {
    /// A sum for models of `spec`, with fresh accumulators.
    pub fn new(spec: &ModelSpec) -> Self {
        Self::with_buffers(spec, Vec::new())
    }

    /// A sum for models of `spec` that reuses `spare` vectors (matched by
    /// position and length; their contents are overwritten by the first
    /// update). Missing or mismatched ones are allocated.
    pub fn with_buffers(spec: &ModelSpec, spare: Vec<Vec<f32>>) -> Self {
        let mut spare = spare.into_iter();
        let acc = (0..spec.len())
            .map(|i| {
                let n = spec.numel_at(i);
                match spare.next() {
                    Some(v) if v.len() == n => v,
                    // Zeroed pages are mapped lazily: nothing is touched here.
                    _ => vec![0.0; n],
                }
            })
            .collect();
        Self {
            acc,
            total_examples: 0,
            count: 0,
        }
    }

    /// Gives the accumulators back for reuse.
    pub fn into_buffers(self) -> Vec<Vec<f32>> {
        self.acc
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn bytes(&self) -> u64 {
        let elements: usize = self.acc.iter().map(Vec::len).sum();
        (elements as u64).saturating_mul(4)
    }

    /// Adds `weight · update`; the caller has checked the update's layout.
    pub fn add_view(&mut self, update: &ModelView<'_>, weight: u64) {
        self.add_views(&[(update, weight)]);
    }

    /// Adds several updates at once, in slice order, in one pass over the
    /// accumulators. Every coordinate sees the same operations in the same
    /// order as repeated [`Self::add_view`], so the result is bit-identical.
    pub fn add_views(&mut self, updates: &[(&ModelView<'_>, u64)]) {
        if updates.is_empty() {
            return;
        }
        let sweep = Sweep {
            overwrite: self.count == 0,
            divide_by: None,
        };
        self.sweep(updates, sweep);
        self.count_in(updates);
    }

    /// Adds the last `updates` and divides in the same sweep, one pass over
    /// the accumulators fewer than [`Self::add_views`] then
    /// [`Self::into_mean_tensors`] and bit-identical to them. `None` when
    /// nothing was added.
    ///
    /// The mean says whether every coordinate came out finite. A NaN or ±inf
    /// in an update always reaches it (weights are finite and ≥ 1), so for a
    /// sum that held nothing before, `finite` proves the data of `updates`
    /// finite without scanning it; otherwise it means a non-finite update or
    /// an overflow, and the caller decides which.
    pub fn into_mean_with(mut self, updates: &[(&ModelView<'_>, u64)]) -> Option<Mean> {
        self.count_in(updates);
        if self.count == 0 || self.total_examples == 0 {
            return None;
        }
        let sweep = Sweep {
            overwrite: self.count == updates.len(),
            divide_by: Some(self.total_examples as f32),
        };
        let finite = self.sweep(updates, sweep);
        Some(Mean {
            tensors: self.acc,
            finite,
        })
    }

    fn count_in(&mut self, updates: &[(&ModelView<'_>, u64)]) {
        for (_, w) in updates {
            self.total_examples = self.total_examples.saturating_add(*w);
            self.count += 1;
        }
    }

    /// One sweep of `updates` over every accumulator; whether all came out
    /// finite (known only when dividing).
    fn sweep(&mut self, updates: &[(&ModelView<'_>, u64)], sweep: Sweep) -> bool {
        let mut finite = true;
        for (i, acc) in self.acc.iter_mut().enumerate() {
            let sources: Vec<(TensorView<'_>, f32)> = updates
                .iter()
                .filter_map(|(u, w)| u.tensors().get(i).map(|t| (*t, *w as f32)))
                .collect();
            finite &= fold_tensor(acc, &sources, sweep);
        }
        finite
    }

    /// Adds `weight · flat` for an update held as one f32 vector in
    /// canonical order (tensor after tensor).
    pub fn add_flat(&mut self, flat: &[f32], weight: u64) {
        let overwrite = self.count == 0;
        let mut offset = 0;
        for acc in &mut self.acc {
            let end = offset + acc.len();
            if let Some(src) = flat.get(offset..end) {
                let sweep = Sweep {
                    overwrite,
                    divide_by: None,
                };
                fold_tensor(acc, &[(TensorView::F32(src), weight as f32)], sweep);
            }
            offset = end;
        }
        self.total_examples = self.total_examples.saturating_add(weight);
        self.count += 1;
    }

    /// The weighted mean per tensor, divided in place; `None` when nothing
    /// was added.
    pub fn into_mean_tensors(self) -> Option<Vec<Vec<f32>>> {
        self.into_mean_with(&[]).map(|m| m.tensors)
    }

    /// The weighted mean as one vector in canonical order.
    pub fn into_mean(self) -> Option<Vec<f32>> {
        let mut tensors = self.into_mean_tensors()?;
        if tensors.len() == 1 {
            return tensors.pop();
        }
        Some(tensors.concat())
    }
}

/// A weighted mean per tensor, from [`WeightedSum::into_mean_with`].
#[derive(Debug)]
pub(crate) struct Mean {
    pub tensors: Vec<Vec<f32>>,
    /// No coordinate is NaN or ±inf.
    pub finite: bool,
}

/// What one sweep over the accumulators does besides adding.
#[derive(Debug, Clone, Copy)]
struct Sweep {
    /// The first source overwrites the accumulator (the sum was empty).
    overwrite: bool,
    /// Divide each block by this once every source is in, and report
    /// whether it came out finite.
    divide_by: Option<f32>,
}

/// `acc ← [acc +] Σₖ wₖ·srcₖ [/ total]`, sources in slice order, over
/// disjoint parallel chunks; false when dividing left a non-finite value.
fn fold_tensor(acc: &mut [f32], sources: &[(TensorView<'_>, f32)], sweep: Sweep) -> bool {
    let touched = acc.len().saturating_mul(sources.len() + 1);
    if touched < PAR_MIN_ELEMENTS {
        return acc
            .chunks_mut(FOLD_CHUNK)
            .enumerate()
            .fold(true, |ok, (c, block)| {
                fold_block(block, c * FOLD_CHUNK, sources, sweep) && ok
            });
    }
    acc.par_chunks_mut(FOLD_CHUNK)
        .enumerate()
        .map(|(c, block)| fold_block(block, c * FOLD_CHUNK, sources, sweep))
        .reduce(|| true, |a, b| a && b)
}

/// Folds every source into one cache-sized block starting at element
/// `start`, and divides it if asked: in the pass over the last group of
/// sources when they are f32 (the division then overlaps their reads: a
/// separate pass over the cached block cost 6-8 % of a 10-update round),
/// otherwise in a pass of its own.
fn fold_block(
    acc: &mut [f32],
    start: usize,
    sources: &[(TensorView<'_>, f32)],
    sweep: Sweep,
) -> bool {
    let mut overwrite = sweep.overwrite;
    let mut groups = sources.chunks(GROUP).peekable();
    while let Some(group) = groups.next() {
        let divide = groups.peek().map_or(sweep.divide_by, |_| None);
        match fold_group_f32(acc, start, group, overwrite, divide) {
            Some(finite) if divide.is_some() => return finite,
            Some(_) => {}
            None => fold_group_any(acc, start, group, overwrite),
        }
        overwrite = false;
    }
    match sweep.divide_by {
        Some(total) => divide_checked(acc, total),
        None => true,
    }
}

/// The slow path for a group with a source that is not f32.
fn fold_group_any(acc: &mut [f32], start: usize, group: &[(TensorView<'_>, f32)], overwrite: bool) {
    for (k, (src, w)) in group.iter().enumerate() {
        let w = *w;
        if overwrite && k == 0 {
            src.zip_f32(start, acc, |a, x| *a = x * w);
        } else {
            src.zip_f32(start, acc, |a, x| *a += x * w);
        }
    }
}

/// `acc /= total`, and whether every result is finite: the kernel's
/// division with no sources to fold.
fn divide_checked(acc: &mut [f32], total: f32) -> bool {
    kernel::<0, true>(acc, [], [], false, total)
}

/// The fast path for f32 sources (all of them, in practice): `None`, having
/// done nothing, when a source is another dtype or out of range. With
/// `divide`, the block is divided in the same pass and the answer is
/// whether it came out finite (otherwise always true).
fn fold_group_f32(
    acc: &mut [f32],
    start: usize,
    group: &[(TensorView<'_>, f32)],
    overwrite: bool,
    divide: Option<f32>,
) -> Option<bool> {
    let n = acc.len();
    let mut raw: [&[[u8; 4]]; GROUP] = [&[]; GROUP];
    let mut w = [0f32; GROUP];
    for (k, (src, weight)) in group.iter().enumerate() {
        let (Some(r), Some(slot), Some(ws)) = (le_f32(src, start, n), raw.get_mut(k), w.get_mut(k))
        else {
            return None;
        };
        *slot = r;
        *ws = *weight;
    }
    let sources = Sources {
        len: group.len(),
        raw,
        w,
    };
    Some(match divide {
        None => sources.fold::<false>(acc, overwrite, 1.0),
        Some(total) => sources.fold::<true>(acc, overwrite, total),
    })
}

/// Up to [`GROUP`] f32 sources of one block, with their weights.
struct Sources<'a> {
    len: usize,
    raw: [&'a [[u8; 4]]; GROUP],
    w: [f32; GROUP],
}

impl Sources<'_> {
    /// Runs the kernel for exactly this many sources (the count and the
    /// division are constants there, so each variant is its own tight loop).
    fn fold<const DIVIDE: bool>(&self, acc: &mut [f32], overwrite: bool, total: f32) -> bool {
        let (r, w) = (self.raw, self.w);
        match self.len {
            1 => kernel::<1, DIVIDE>(acc, [r[0]], [w[0]], overwrite, total),
            2 => kernel::<2, DIVIDE>(acc, [r[0], r[1]], [w[0], w[1]], overwrite, total),
            3 => kernel::<3, DIVIDE>(
                acc,
                [r[0], r[1], r[2]],
                [w[0], w[1], w[2]],
                overwrite,
                total,
            ),
            _ => kernel::<4, DIVIDE>(acc, r, w, overwrite, total),
        }
    }
}

/// Elements `start..start + len` of an f32 tensor as little-endian words.
fn le_f32<'a>(t: &TensorView<'a>, start: usize, len: usize) -> Option<&'a [[u8; 4]]> {
    let bytes: &'a [u8] = match *t {
        TensorView::Bytes {
            dtype: DType::F32,
            bytes,
        } => bytes,
        // A typed slice is host order: its bytes are little-endian only here.
        #[cfg(target_endian = "little")]
        TensorView::F32(v) => bytemuck::cast_slice(v),
        _ => return None,
    };
    let words = bytes.as_chunks::<4>().0;
    words.get(start..start.checked_add(len)?)
}

/// One pass over `acc` folding `K` sources of exactly `acc.len()` elements,
/// [`LANES`] coordinates at a time, then (with `DIVIDE`) dividing by `total`
/// and reporting whether every result is finite (a NaN-propagating `x · 0`
/// per lane, so it vectorises). Separate multiply and add (no FMA)
/// keep Flower's rounding; each coordinate sees its sources in order.
#[inline(always)]
fn kernel<const K: usize, const DIVIDE: bool>(
    acc: &mut [f32],
    src: [&[[u8; 4]]; K],
    w: [f32; K],
    overwrite: bool,
    total: f32,
) -> bool {
    let n = acc.len();
    // Callers pass exact lengths; anything else is refused, never cut, and
    // reported as not finite so that nothing relies on the block.
    let src = src.map(|s| s.get(..n).unwrap_or(&[]));
    if src.iter().any(|s| s.len() != n) {
        return false;
    }
    let (acc_lanes, acc_tail) = acc.as_chunks_mut::<LANES>();
    let src_lanes = src.map(|s| s.as_chunks::<LANES>().0);
    let mut probe = [0f32; LANES];
    for (j, a) in acc_lanes.iter_mut().enumerate() {
        let mut x = *a;
        for (k, (lanes, wk)) in src_lanes.iter().zip(w).enumerate() {
            let Some(s) = lanes.get(j) else {
                return false;
            };
            if overwrite && k == 0 {
                for (xl, sl) in x.iter_mut().zip(s) {
                    *xl = f32::from_le_bytes(*sl) * wk;
                }
            } else {
                for (xl, sl) in x.iter_mut().zip(s) {
                    *xl += f32::from_le_bytes(*sl) * wk;
                }
            }
        }
        if DIVIDE {
            for (xl, p) in x.iter_mut().zip(probe.iter_mut()) {
                *xl /= total;
                *p += *xl * 0.0;
            }
        }
        *a = x;
    }
    let done = n - acc_tail.len();
    let mut tail_finite = true;
    for (i, a) in acc_tail.iter_mut().enumerate() {
        let mut x = *a;
        for (k, (s, wk)) in src.iter().zip(w).enumerate() {
            let v = s.get(done + i).map_or(0.0, |b| f32::from_le_bytes(*b)) * wk;
            x = if overwrite && k == 0 { v } else { x + v };
        }
        if DIVIDE {
            x /= total;
            tail_finite &= x.is_finite();
        }
        *a = x;
    }
    probe.iter().all(|p| !p.is_nan()) && tail_finite
}
