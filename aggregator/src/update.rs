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
use crate::model::{DType, Model, ModelSpec, ModelView, TensorSpec, TensorView};

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

/// The checks of [`decode_update`], returning the header so the update can be
/// viewed again later with [`view_validated`] without a second scan (the
/// service holds validated updates until their turn to be aggregated).
pub fn validate_update(
    bytes: &[u8],
    global: &Model,
    limits: &UpdateLimits,
) -> Result<UpdateHeader, UpdateRejection> {
    check_size(bytes.len(), limits)?;
    let header = parse_update_header(bytes, global.spec(), limits)?;
    check_total(bytes.len(), header.total_len())?;
    let view = view_validated(bytes, global, &header);

    let base = limits.max_update_norm.map(|_| global.view());
    let mut sum_sq = 0f64;
    for (i, tensor) in view.tensors().iter().enumerate() {
        let reference = base.as_ref().and_then(|b| b.tensors().get(i));
        let scan = scan_tensor(tensor, reference);
        if let Some((index, value)) = scan.first_non_finite {
            return Err(UpdateRejection::NonFinite {
                tensor: global
                    .spec()
                    .tensors()
                    .get(i)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                index,
                value,
            });
        }
        sum_sq += scan.sum_sq_diff;
    }
    if let Some(limit) = limits.max_update_norm {
        let norm = sum_sq.sqrt();
        if norm > limit {
            return Err(UpdateRejection::NormExceeded { norm, limit });
        }
    }
    Ok(header)
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
    let partials: Vec<Scan> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let start = c * SCAN_CHUNK;
            scan_chunk(t, reference, start, (start + SCAN_CHUNK).min(n))
        })
        .collect();
    let mut out = Scan::default();
    for p in partials {
        if out.first_non_finite.is_none() {
            out.first_non_finite = p.first_non_finite;
        }
        out.sum_sq_diff += p.sum_sq_diff;
    }
    out
}

fn scan_chunk(
    t: &TensorView<'_>,
    reference: Option<&TensorView<'_>>,
    start: usize,
    end: usize,
) -> Scan {
    let mut vals = [0f32; BLOCK];
    let mut refs = [0f32; BLOCK];
    let mut out = Scan::default();
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
            return out;
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
    out
}

#[cfg(test)]
mod tests;
