//! Validation and zero-copy decoding of participant updates (safetensors).
//!
//! Everything that can be checked from the header is checked before the data
//! is touched, and the header itself is bounded before it is parsed, so a
//! hostile or broken participant can neither make the aggregator allocate
//! beyond its limits nor panic it. The network layer can run the first two
//! steps on the head of a stream ([`declared_header_len`],
//! [`parse_update_header`]) and refuse an upload before receiving its body.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod rejection;
mod scan;
mod stream;

pub use rejection::UpdateRejection;
use scan::scan_tensor;
pub use stream::DataCheck;

use crate::header::{self, RawEntry};
pub use crate::header::{HEADER_LEN_BYTES, declared_header_len};
use crate::model::{DType, Model, ModelSpec, ModelView, TensorSpec, TensorView};

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

#[cfg(test)]
mod tests;
