//! Why an update (or a stored model) was refused.

use crate::model::DType;

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
