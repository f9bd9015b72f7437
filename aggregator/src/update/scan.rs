//! The scan of tensor data for non-finite values and the squared distance
//! to a reference, in blocks laid out the same way however the data arrives.

use rayon::prelude::*;

use crate::model::{DType, TensorView};

/// Chunk of elements scanned per task; large enough to amortise scheduling.
pub(super) const SCAN_CHUNK: usize = 1 << 16;
/// Below this many elements a tensor is scanned on the calling thread.
const PAR_MIN_ELEMENTS: usize = 1 << 22;
/// Elements converted per inner block (fits in L1 alongside the reference block).
pub(super) const BLOCK: usize = 1024;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Scan {
    pub(super) first_non_finite: Option<(usize, f32)>,
    pub(super) sum_sq_diff: f64,
}

/// Finds the first non-finite element and ‖t − reference‖² in one pass.
///
/// Chunks run in parallel but partial sums are combined in chunk order, so the
/// norm is identical on any number of threads.
pub(super) fn scan_tensor(t: &TensorView<'_>, reference: Option<&TensorView<'_>>) -> Scan {
    let n = t.len();
    let chunks = n.div_ceil(SCAN_CHUNK);
    let chunk = |c: usize| {
        let start = c * SCAN_CHUNK;
        let mut scan = Scan::default();
        scan_range(t, reference, start, (start + SCAN_CHUNK).min(n), &mut scan);
        scan
    };
    // Small tensors stay on this thread: a split costs more than it saves.
    let partials: Vec<Scan> = if n < PAR_MIN_ELEMENTS {
        (0..chunks).map(chunk).collect()
    } else {
        (0..chunks).into_par_iter().map(chunk).collect()
    };
    let mut out = Scan::default();
    for p in partials {
        if out.first_non_finite.is_none() {
            out.first_non_finite = p.first_non_finite;
        }
        out.sum_sq_diff += p.sum_sq_diff;
    }
    out
}

/// Scans elements `start..end` in blocks of [`BLOCK`] counted from `start`,
/// adding each block's sum to `out`; stops at the first non-finite value.
pub(super) fn scan_range(
    t: &TensorView<'_>,
    reference: Option<&TensorView<'_>>,
    start: usize,
    end: usize,
    out: &mut Scan,
) {
    if reference.is_none()
        && let Some(found) = first_non_finite_raw(t, start, end)
    {
        out.first_non_finite = found;
        return;
    }
    let mut vals = [0f32; BLOCK];
    let mut refs = [0f32; BLOCK];
    let mut at = start;
    while at < end {
        let len = BLOCK.min(end - at);
        let (vals, refs) = (&mut vals[..len], &mut refs[..len]);
        t.zip_f32(at, vals, |o, x| *o = x);
        // A branch-free OR over the block vectorises; the position is only
        // searched for in the rare block that holds a bad value.
        let any_bad = vals.iter().fold(false, |acc, x| acc | !x.is_finite());
        if any_bad && let Some(pos) = vals.iter().position(|x| !x.is_finite()) {
            out.first_non_finite = Some((at + pos, vals[pos]));
            return;
        }
        if let Some(r) = reference {
            r.zip_f32(at, refs, |o, x| *o = x);
            out.sum_sq_diff += vals
                .iter()
                .zip(refs.iter())
                .map(|(&a, &b)| {
                    let d = f64::from(a) - f64::from(b);
                    d * d
                })
                .sum::<f64>();
        }
        at += len;
    }
}

/// The finiteness scan without a norm, straight on the stored data: f32 by
/// [`any_non_finite_f32`], half types by their bits (an all-ones exponent is
/// NaN or ±inf); both vectorise. `None` when the view is not raw
/// little-endian data.
fn first_non_finite_raw(
    t: &TensorView<'_>,
    start: usize,
    end: usize,
) -> Option<Option<(usize, f32)>> {
    let (dtype, bytes): (DType, &[u8]) = match *t {
        TensorView::Bytes { dtype, bytes } => (dtype, bytes),
        #[cfg(target_endian = "little")]
        TensorView::F32(v) => (DType::F32, bytemuck::cast_slice(v)),
        _ => return None,
    };
    let size = dtype.size();
    let range = bytes.get(start.checked_mul(size)?..end.checked_mul(size)?)?;
    let at = |i: usize| {
        let mut v = [0f32; 1];
        t.zip_f32(start + i, &mut v, |o, x| *o = x);
        Some((start + i, v[0]))
    };
    Some(match dtype {
        DType::F32 => first_non_finite_f32(range.as_chunks::<4>().0).and_then(at),
        DType::F16 => first_all_ones(range.as_chunks::<2>().0, |w| {
            u16::from_le_bytes(*w) & 0x7c00 == 0x7c00
        })
        .and_then(at),
        DType::BF16 => first_all_ones(range.as_chunks::<2>().0, |w| {
            u16::from_le_bytes(*w) & 0x7f80 == 0x7f80
        })
        .and_then(at),
    })
}

/// Lanes of [`any_non_finite_f32`]: enough independent add chains to hide
/// the add latency.
pub(super) const CHECK_LANES: usize = 32;

/// Position of the first non-finite f32 (stored little-endian), testing
/// whole blocks with [`any_non_finite_f32`] and searching only a block that
/// has one.
pub(super) fn first_non_finite_f32(words: &[[u8; 4]]) -> Option<usize> {
    let bad = |w: &[u8; 4]| u32::from_le_bytes(*w) & 0x7f80_0000 == 0x7f80_0000;
    for (b, block) in words.chunks(BLOCK).enumerate() {
        if any_non_finite_f32(block) {
            return block.iter().position(bad).map(|p| b * BLOCK + p);
        }
    }
    None
}

/// Whether any value is NaN or ±inf: `x · 0` is NaN exactly for those and
/// ±0 otherwise, so per-lane sums of it turn NaN iff one is there. That is
/// two instructions per vector (a multiply with its load, an add) against
/// four for the mask-and-compare on the bits, and this scan runs on every
/// received byte.
#[inline(always)]
fn any_non_finite_f32(words: &[[u8; 4]]) -> bool {
    let (lanes, tail) = words.as_chunks::<CHECK_LANES>();
    let mut acc = [0f32; CHECK_LANES];
    for chunk in lanes {
        for (a, w) in acc.iter_mut().zip(chunk) {
            *a += f32::from_le_bytes(*w) * 0.0;
        }
    }
    acc.iter().any(|a| a.is_nan()) || tail.iter().any(|w| !f32::from_le_bytes(*w).is_finite())
}

/// Position of the first element for which `bad` holds, testing whole
/// blocks branch-free and searching only a block that has one.
#[inline(always)]
fn first_all_ones<W>(words: &[W], bad: impl Fn(&W) -> bool) -> Option<usize> {
    for (b, block) in words.chunks(BLOCK).enumerate() {
        let any = block.iter().fold(false, |acc, w| acc | bad(w));
        if any {
            return block.iter().position(&bad).map(|p| b * BLOCK + p);
        }
    }
    None
}
