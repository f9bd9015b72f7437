//! Validation and zero-copy decoding of participant updates (safetensors).
//!
//! Everything that can be checked from the header is checked before the data
//! is touched, and the header itself is bounded before it is parsed, so a
//! hostile or broken participant can neither make the aggregator allocate
//! beyond its limits nor panic it. The network layer can run the first two
//! steps on the head of a stream ([`declared_header_len`],
//! [`parse_update_header`]) and refuse an upload before receiving its body.

use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::header::{self, RawEntry};
pub use crate::header::{HEADER_LEN_BYTES, declared_header_len};
use crate::model::{DType, Model, ModelSpec, ModelView, TensorData, TensorSpec, TensorView};

/// Why an update (or a stored model) was refused. Messages name the tensor and
/// the expected and received values; [`UpdateRejection::reason`] is the stable
/// metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpdateRejection {
    /// The buffer, or the size its header declares, is over the configured limit.
    #[error("update of {got} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Actual or declared size in bytes.
        got: u64,
        /// Configured `max_update_bytes`.
        limit: u64,
    },
    /// The 8-byte prefix announces a header longer than allowed.
    #[error("safetensors header length {claimed} exceeds the limit of {limit} bytes")]
    HeaderTooLarge {
        /// Header length read from the prefix.
        claimed: u64,
        /// Configured `max_header_bytes`.
        limit: u64,
    },
    /// The buffer ends before something the header promised.
    #[error("update truncated: the {what} needs {expected} bytes but only {got} arrived")]
    Truncated {
        /// Which part is cut short.
        what: &'static str,
        /// Bytes needed up to the end of that part.
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// The header is not valid UTF-8 JSON of the safetensors shape.
    #[error("safetensors header is invalid: {detail}")]
    HeaderInvalid {
        /// Parser message.
        detail: String,
    },
    /// A tensor's `data_offsets` are inconsistent with its size or its neighbours.
    #[error("tensor {tensor:?}: data_offsets [{begin}, {end}] invalid: {problem}")]
    OffsetsInvalid {
        /// Tensor name.
        tensor: String,
        /// Declared start.
        begin: u64,
        /// Declared end.
        end: u64,
        /// What is wrong.
        problem: String,
    },
    /// Bytes follow the last tensor's data.
    #[error("update has {} unexpected bytes after the tensor data (expected {expected} bytes in total, got {got})", got - expected)]
    TrailingBytes {
        /// Size the header implies.
        expected: u64,
        /// Size received.
        got: u64,
    },
    /// The update has a tensor the global model lacks.
    #[error("tensor {tensor:?} is not part of the global model")]
    UnknownTensor {
        /// Tensor name.
        tensor: String,
    },
    /// The update lacks a tensor of the global model.
    #[error("tensor {tensor:?} of the global model is missing from the update")]
    MissingTensor {
        /// Tensor name.
        tensor: String,
    },
    /// A tensor's dtype differs from the global model's (or is not a float type).
    #[error("tensor {tensor:?}: dtype {got} but the global model has {expected}")]
    DtypeMismatch {
        /// Tensor name.
        tensor: String,
        /// Global model's dtype.
        expected: DType,
        /// Dtype named in the update.
        got: String,
    },
    /// A stored model uses a dtype the aggregator does not handle.
    #[error("tensor {tensor:?}: dtype {got} is not supported (use F32, F16 or BF16)")]
    UnsupportedDtype {
        /// Tensor name.
        tensor: String,
        /// Dtype named in the header.
        got: String,
    },
    /// A tensor's shape differs from the global model's.
    #[error("tensor {tensor:?}: shape {got:?} but the global model has {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        tensor: String,
        /// Global model's shape.
        expected: Vec<usize>,
        /// Shape in the update.
        got: Vec<u64>,
    },
    /// A value is NaN or infinite.
    #[error("tensor {tensor:?}: element {index} is {value} (only finite values are accepted)")]
    NonFinite {
        /// Tensor name.
        tensor: String,
        /// Flat index within the tensor of the first offending element.
        index: usize,
        /// The value (NaN, inf or -inf).
        value: f32,
    },
    /// The update is too far from the global model.
    #[error(
        "update differs from the global model by L2 norm {norm:.6e}, over the bound {limit:.6e}"
    )]
    NormExceeded {
        /// ‖update − global‖₂.
        norm: f64,
        /// Configured `max_update_norm`.
        limit: f64,
    },
}

impl UpdateRejection {
    /// Every label [`UpdateRejection::reason`] can return, for pre-registering metrics.
    pub const REASONS: &'static [&'static str] = &[
        "oversized",
        "header_invalid",
        "truncated",
        "offsets_invalid",
        "unknown_tensor",
        "missing_tensor",
        "dtype_mismatch",
        "shape_mismatch",
        "non_finite",
        "norm_exceeded",
    ];

    /// Stable, low-cardinality label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            UpdateRejection::Oversized { .. } => "oversized",
            UpdateRejection::HeaderTooLarge { .. }
            | UpdateRejection::HeaderInvalid { .. }
            | UpdateRejection::TrailingBytes { .. } => "header_invalid",
            UpdateRejection::Truncated { .. } => "truncated",
            UpdateRejection::OffsetsInvalid { .. } => "offsets_invalid",
            UpdateRejection::UnknownTensor { .. } => "unknown_tensor",
            UpdateRejection::MissingTensor { .. } => "missing_tensor",
            UpdateRejection::DtypeMismatch { .. } | UpdateRejection::UnsupportedDtype { .. } => {
                "dtype_mismatch"
            }
            UpdateRejection::ShapeMismatch { .. } => "shape_mismatch",
            UpdateRejection::NonFinite { .. } => "non_finite",
            UpdateRejection::NormExceeded { .. } => "norm_exceeded",
        }
    }
}

/// Bounds applied to every received update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateLimits {
    /// Largest accepted safetensors buffer (prefix + header + data), in bytes.
    pub max_update_bytes: u64,
    /// Largest accepted JSON header, in bytes.
    pub max_header_bytes: u64,
    /// Optional bound on ‖update − global‖₂; `None` disables the check.
    pub max_update_norm: Option<f64>,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            max_update_bytes: 2 << 30,
            max_header_bytes: 1 << 20,
            max_update_norm: None,
        }
    }
}

impl UpdateLimits {
    /// Limits sized for `spec`: its data plus a header allowance of 1 KiB per
    /// tensor (ample for the JSON of one entry) on top of 64 KiB.
    pub fn for_spec(spec: &ModelSpec) -> Self {
        let header = (64u64 << 10).saturating_add((spec.len() as u64).saturating_mul(1 << 10));
        Self {
            max_update_bytes: (HEADER_LEN_BYTES as u64)
                .saturating_add(header)
                .saturating_add(spec.total_bytes() as u64),
            max_header_bytes: header,
            max_update_norm: None,
        }
    }
}

/// A header that passed every check against the global model's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateHeader {
    header_len: usize,
    data_len: usize,
    /// Byte range of each tensor within the data section, in spec order.
    spans: Vec<(usize, usize)>,
}

impl UpdateHeader {
    /// Byte offset where tensor data starts (prefix + JSON header).
    pub fn data_start(&self) -> usize {
        HEADER_LEN_BYTES + self.header_len
    }

    /// Exact size the whole update must have.
    pub fn total_len(&self) -> usize {
        self.data_start() + self.data_len
    }
}

/// Validates a safetensors header against the global model's spec.
///
/// `prefix` needs only the first `8 + header length` bytes of the update, so a
/// streaming receiver can call this before the tensor data arrives; the
/// returned [`UpdateHeader::total_len`] is then checked against the limit.
pub fn parse_update_header(
    prefix: &[u8],
    global: &ModelSpec,
    limits: &UpdateLimits,
) -> Result<UpdateHeader, UpdateRejection> {
    // Headroom over the spec so an extra tensor is reported by name, while a
    // header listing thousands of entries is still cut off early.
    let max_entries = global.len().saturating_mul(2).saturating_add(16);
    let (header_len, entries) = header::parse_entries(prefix, limits, max_entries)?;

    let mut by_position: Vec<Option<&RawEntry>> = vec![None; global.len()];
    for entry in &entries {
        let (pos, spec) = global
            .position(&entry.name)
            .and_then(|p| global.tensors().get(p).map(|s| (p, s)))
            .ok_or_else(|| UpdateRejection::UnknownTensor {
                tensor: entry.name.clone(),
            })?;
        check_against_spec(entry, spec)?;
        header::check_span(entry, spec.dtype)?;
        if let Some(slot) = by_position.get_mut(pos) {
            *slot = Some(entry);
        }
    }
    let present = by_position
        .iter()
        .zip(global.tensors())
        .map(|(e, spec)| {
            e.ok_or_else(|| UpdateRejection::MissingTensor {
                tensor: spec.name.clone(),
            })
        })
        .collect::<Result<Vec<&RawEntry>, _>>()?;

    let data_len = header::check_tiling(&present)?;
    let total = (HEADER_LEN_BYTES as u64)
        .saturating_add(header_len as u64)
        .saturating_add(data_len);
    if total > limits.max_update_bytes {
        return Err(UpdateRejection::Oversized {
            got: total,
            limit: limits.max_update_bytes,
        });
    }
    // Every bound below fits in usize: each is at most `total`, which is at
    // most `max_update_bytes`, and the caller holds (or will hold) that buffer.
    let to_usize = |v: u64| {
        usize::try_from(v).map_err(|_| UpdateRejection::Oversized {
            got: total,
            limit: limits.max_update_bytes,
        })
    };
    let spans = present
        .iter()
        .map(|e| Ok((to_usize(e.begin)?, to_usize(e.end)?)))
        .collect::<Result<_, UpdateRejection>>()?;
    Ok(UpdateHeader {
        header_len,
        data_len: to_usize(data_len)?,
        spans,
    })
}

fn check_against_spec(entry: &RawEntry, spec: &TensorSpec) -> Result<(), UpdateRejection> {
    if DType::from_safetensors_name(&entry.dtype) != Some(spec.dtype) {
        return Err(UpdateRejection::DtypeMismatch {
            tensor: entry.name.clone(),
            expected: spec.dtype,
            got: entry.dtype.clone(),
        });
    }
    let same_shape = entry.shape.len() == spec.shape.len()
        && entry
            .shape
            .iter()
            .zip(&spec.shape)
            .all(|(&a, &b)| a == b as u64);
    if !same_shape {
        return Err(UpdateRejection::ShapeMismatch {
            tensor: entry.name.clone(),
            expected: spec.shape.clone(),
            got: entry.shape.clone(),
        });
    }
    Ok(())
}

/// Checks the buffer's total size against what the header promised.
fn check_total(got: usize, expected: usize) -> Result<(), UpdateRejection> {
    if got < expected {
        return Err(UpdateRejection::Truncated {
            what: "tensor data",
            expected: expected as u64,
            got: got as u64,
        });
    }
    if got > expected {
        return Err(UpdateRejection::TrailingBytes {
            expected: expected as u64,
            got: got as u64,
        });
    }
    Ok(())
}

fn check_size(len: usize, limits: &UpdateLimits) -> Result<(), UpdateRejection> {
    if len as u64 > limits.max_update_bytes {
        return Err(UpdateRejection::Oversized {
            got: len as u64,
            limit: limits.max_update_bytes,
        });
    }
    Ok(())
}

/// Validates a complete update against the global model and returns a
/// zero-copy view of it, ready for [`crate::strategy::Strategy::accept`].
///
/// Checks, in order: size limit, header (see [`parse_update_header`]), exact
/// buffer length, finiteness of every value, and the optional norm bound.
pub fn decode_update<'a>(
    bytes: &'a [u8],
    global: &'a Model,
    limits: &UpdateLimits,
) -> Result<ModelView<'a>, UpdateRejection> {
    validate_update(bytes, global, limits).map(|header| view_validated(bytes, global, &header))
}

/// Everything [`validate_update`] checks except the tensor data: the size
/// limit, the header against the global model's names, dtypes and shapes,
/// and the exact length. For callers that prove the data finite another way
/// (an in-memory round reads each update once: [`crate::in_memory`]).
pub fn validate_layout(
    bytes: &[u8],
    global: &Model,
    limits: &UpdateLimits,
) -> Result<UpdateHeader, UpdateRejection> {
    check_size(bytes.len(), limits)?;
    let header = parse_update_header(bytes, global.spec(), limits)?;
    check_total(bytes.len(), header.total_len())?;
    Ok(header)
}

/// The checks of [`decode_update`], returning the header so the update can be
/// viewed again later with [`view_validated`] without a second scan (the
/// service holds validated updates until their turn to be aggregated).
pub fn validate_update(
    bytes: &[u8],
    global: &Model,
    limits: &UpdateLimits,
) -> Result<UpdateHeader, UpdateRejection> {
    let header = validate_layout(bytes, global, limits)?;
    let view = view_validated(bytes, global, &header);

    let base = limits.max_update_norm.map(|_| global.view());
    let mut sum_sq = 0f64;
    for (i, tensor) in view.tensors().iter().enumerate() {
        let reference = base.as_ref().and_then(|b| b.tensors().get(i));
        let scan = scan_tensor(tensor, reference);
        if let Some((index, value)) = scan.first_non_finite {
            return Err(non_finite(global, i, index, value));
        }
        sum_sq += scan.sum_sq_diff;
    }
    check_norm(sum_sq, limits)?;
    Ok(header)
}

fn non_finite(global: &Model, tensor: usize, index: usize, value: f32) -> UpdateRejection {
    UpdateRejection::NonFinite {
        tensor: global
            .spec()
            .tensors()
            .get(tensor)
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        index,
        value,
    }
}

fn check_norm(sum_sq: f64, limits: &UpdateLimits) -> Result<(), UpdateRejection> {
    if let Some(limit) = limits.max_update_norm {
        let norm = sum_sq.sqrt();
        if norm > limit {
            return Err(UpdateRejection::NormExceeded { norm, limit });
        }
    }
    Ok(())
}

/// The checks of [`validate_update`] that follow the header, run on the data
/// as it arrives, so each received chunk is checked while still in cache
/// instead of in a second pass over the whole update.
///
/// Elements are scanned in whole blocks laid out exactly as
/// [`validate_update`] lays them out, so the norm is the same number however
/// the network splits the stream. The first non-finite value reported is the
/// first in data order.
#[derive(Debug, Clone)]
pub struct DataCheck {
    header: UpdateHeader,
    max_update_norm: Option<f64>,
    /// `(spec position, begin, end)` of each tensor in data order.
    order: Vec<(usize, usize, usize)>,
    /// Tensor in `order` being scanned, and elements of it done.
    pos: usize,
    elem: usize,
    /// Norm partial of the current scan chunk and of the current tensor.
    chunk: Scan,
    tensor_sum: f64,
    /// Finished tensors' ‖t − global‖², by spec position.
    sums: Vec<f64>,
}

impl DataCheck {
    /// Starts checking the data of an update whose header passed
    /// [`parse_update_header`].
    pub fn new(header: UpdateHeader, limits: &UpdateLimits) -> Self {
        let mut order: Vec<(usize, usize, usize)> = header
            .spans
            .iter()
            .enumerate()
            .map(|(i, &(b, e))| (i, b, e))
            .collect();
        order.sort_by_key(|&(_, b, e)| (b, e));
        let sums = vec![0.0; header.spans.len()];
        Self {
            header,
            max_update_norm: limits.max_update_norm,
            order,
            pos: 0,
            elem: 0,
            chunk: Scan::default(),
            tensor_sum: 0.0,
            sums,
        }
    }

    /// The header the data is checked against.
    pub fn header(&self) -> &UpdateHeader {
        &self.header
    }

    /// Checks what arrived since the last call; `received` is the whole
    /// update so far (prefix and header included).
    pub fn feed(&mut self, received: &[u8], global: &Model) -> Result<(), UpdateRejection> {
        let data = received.get(self.header.data_start()..).unwrap_or(&[]);
        while let Some(&(idx, begin, end)) = self.order.get(self.pos) {
            let Some(spec) = global.spec().tensors().get(idx) else {
                break;
            };
            let size = spec.dtype.size();
            let numel = (end - begin) / size;
            let have = data.len().saturating_sub(begin).min(end - begin) / size;
            let bytes = data.get(begin..begin + have * size).unwrap_or(&[]);
            let t = TensorView::Bytes {
                dtype: spec.dtype,
                bytes,
            };
            let reference = self
                .max_update_norm
                .and_then(|_| global.data().get(idx))
                .map(TensorData::view);
            while self.elem < numel {
                let chunk_start = self.elem / SCAN_CHUNK * SCAN_CHUNK;
                let chunk_end = (chunk_start + SCAN_CHUNK).min(numel);
                // Whole blocks only (or the chunk's end), as scan_tensor cuts them.
                let target = if have >= chunk_end {
                    chunk_end
                } else {
                    chunk_start + (have.saturating_sub(chunk_start)) / BLOCK * BLOCK
                };
                if target <= self.elem {
                    return Ok(());
                }
                scan_range(&t, reference.as_ref(), self.elem, target, &mut self.chunk);
                if let Some((index, value)) = self.chunk.first_non_finite {
                    return Err(non_finite(global, idx, index, value));
                }
                self.elem = target;
                if target == chunk_end {
                    self.tensor_sum += self.chunk.sum_sq_diff;
                    self.chunk = Scan::default();
                }
            }
            if let Some(s) = self.sums.get_mut(idx) {
                *s = self.tensor_sum;
            }
            self.tensor_sum = 0.0;
            self.elem = 0;
            self.pos += 1;
        }
        Ok(())
    }

    /// Whether every tensor has been scanned.
    pub fn is_complete(&self) -> bool {
        self.pos >= self.order.len()
    }

    /// Final checks once the stream has ended: exact size, every element
    /// scanned, the norm bound. Returns the header for [`view_validated`].
    pub fn finish(
        mut self,
        received: &[u8],
        global: &Model,
    ) -> Result<UpdateHeader, UpdateRejection> {
        check_total(received.len(), self.header.total_len())?;
        self.feed(received, global)?;
        // Sum in spec order, as validate_update does.
        let sum_sq: f64 = self.sums.iter().sum();
        let limits = UpdateLimits {
            max_update_norm: self.max_update_norm,
            ..UpdateLimits::default()
        };
        check_norm(sum_sq, &limits)?;
        Ok(self.header)
    }
}

/// A zero-copy view of `bytes`, which must have passed [`validate_update`]
/// against `global` with the returned `header` (otherwise tensors may come
/// out empty; nothing panics).
pub fn view_validated<'a>(
    bytes: &'a [u8],
    global: &'a Model,
    header: &UpdateHeader,
) -> ModelView<'a> {
    let data = bytes.get(header.data_start()..).unwrap_or(&[]);
    let tensors = global
        .spec()
        .tensors()
        .iter()
        .zip(&header.spans)
        .map(|(spec, &(begin, end))| TensorView::Bytes {
            dtype: spec.dtype,
            bytes: data.get(begin..end).unwrap_or(&[]),
        })
        .collect();
    ModelView::from_parts(global.spec(), tensors)
}

/// Decodes a stored (global) model: same structural and finiteness checks as
/// for updates, with the spec taken from the header.
pub fn decode_model(bytes: &[u8], limits: &UpdateLimits) -> Result<Model, UpdateRejection> {
    check_size(bytes.len(), limits)?;
    let (header_len, entries) = header::parse_entries(bytes, limits, usize::MAX)?;
    let mut specs = Vec::with_capacity(entries.len());
    for e in &entries {
        let dtype = DType::from_safetensors_name(&e.dtype).ok_or_else(|| {
            UpdateRejection::UnsupportedDtype {
                tensor: e.name.clone(),
                got: e.dtype.clone(),
            }
        })?;
        header::check_span(e, dtype)?;
        // check_span proved the shape's element count fits in usize.
        let shape = e.shape.iter().map(|&d| d as usize).collect();
        specs.push(TensorSpec {
            name: e.name.clone(),
            dtype,
            shape,
        });
    }
    let refs: Vec<&RawEntry> = entries.iter().collect();
    let data_len = header::check_tiling(&refs)?;
    let total = (HEADER_LEN_BYTES as u64)
        .saturating_add(header_len as u64)
        .saturating_add(data_len);
    if total > limits.max_update_bytes {
        return Err(UpdateRejection::Oversized {
            got: total,
            limit: limits.max_update_bytes,
        });
    }
    check_total(bytes.len(), total as usize)?;
    let spec = ModelSpec::new(specs).map_err(|e| UpdateRejection::HeaderInvalid {
        detail: e.to_string(),
    })?;
    let data_start = HEADER_LEN_BYTES + header_len;
    // `entries` and the spec are both name-sorted, so they pair up in order.
    let mut data = Vec::with_capacity(entries.len());
    for (e, spec_t) in entries.iter().zip(spec.tensors()) {
        let bytes = bytes
            .get(data_start + e.begin as usize..data_start + e.end as usize)
            .unwrap_or(&[]);
        let view = TensorView::Bytes {
            dtype: spec_t.dtype,
            bytes,
        };
        if let Some((index, value)) = scan_tensor(&view, None).first_non_finite {
            return Err(UpdateRejection::NonFinite {
                tensor: e.name.clone(),
                index,
                value,
            });
        }
        data.push(view.to_data());
    }
    Ok(Model::from_parts(Arc::new(spec), data))
}

/// Chunk of elements scanned per task; large enough to amortise scheduling.
const SCAN_CHUNK: usize = 1 << 16;
/// Below this many elements a tensor is scanned on the calling thread.
const PAR_MIN_ELEMENTS: usize = 1 << 22;
/// Elements converted per inner block (fits in L1 alongside the reference block).
const BLOCK: usize = 1024;

#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    first_non_finite: Option<(usize, f32)>,
    sum_sq_diff: f64,
}

/// Finds the first non-finite element and ‖t − reference‖² in one pass.
///
/// Chunks run in parallel but partial sums are combined in chunk order, so the
/// norm is identical on any number of threads.
fn scan_tensor(t: &TensorView<'_>, reference: Option<&TensorView<'_>>) -> Scan {
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
fn scan_range(
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
const CHECK_LANES: usize = 32;

/// Position of the first non-finite f32 (stored little-endian), testing
/// whole blocks with [`any_non_finite_f32`] and searching only a block that
/// has one.
fn first_non_finite_f32(words: &[[u8; 4]]) -> Option<usize> {
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

#[cfg(test)]
mod tests;
