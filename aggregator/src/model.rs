//! Models as the aggregator sees them: an ordered set of named floating-point
//! tensors, owned ([`Model`]) or borrowed from a received buffer ([`ModelView`]).
//!
//! Tensors are kept in name order so that every flattened view of a model (Krum
//! distances, optimiser state) has one canonical coordinate order.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod spec;
mod tensor;

pub(crate) use spec::numel;
pub use spec::{ModelSpec, TensorSpec};
pub use tensor::{TensorData, TensorView};

/// Element type of a tensor. Only floating-point types are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The dtype's name in a safetensors header (`"F32"`, `"F16"`, `"BF16"`).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    /// Parses a safetensors dtype name; `None` for any type we do not aggregate.
    pub fn from_safetensors_name(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }

    pub(crate) fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// Errors building a model or its spec from in-memory parts.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Two tensors share one name.
    #[error("tensor {name:?} appears twice in the model")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
    },
    /// The element count of a shape overflows `usize`.
    #[error("tensor {name:?}: shape {shape:?} has more elements than this machine can address")]
    ShapeOverflow {
        /// Tensor name.
        name: String,
        /// The offending shape.
        shape: Vec<usize>,
    },
    /// The data length does not match the shape.
    #[error("tensor {name:?}: shape {shape:?} needs {expected} elements but the data holds {got}")]
    LengthMismatch {
        /// Tensor name.
        name: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Elements the shape implies.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// A flat buffer does not match the spec's total element count.
    #[error("flat parameter vector has {got} elements but the model spec needs {expected}")]
    FlatLengthMismatch {
        /// Elements the spec implies.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// Per-tensor data does not line up with the spec's tensors.
    #[error("{got} data vectors for a model spec of {expected} tensors")]
    TensorCountMismatch {
        /// Tensors in the spec.
        expected: usize,
        /// Data vectors supplied.
        got: usize,
    },
    /// A data vector's dtype is not its tensor's.
    #[error("tensor {name:?}: data of dtype {got} but the spec says {expected}")]
    DtypeMismatch {
        /// Tensor name.
        name: String,
        /// Dtype in the spec.
        expected: DType,
        /// Dtype of the data.
        got: DType,
    },
    /// The model has no tensors.
    #[error("a model needs at least one tensor")]
    Empty,
    /// Encoding to safetensors failed.
    #[error("encoding the model as safetensors failed")]
    Encode(#[source] safetensors::SafeTensorError),
}

/// An owned model: a spec plus one data vector per tensor, in spec order.
#[derive(Clone, PartialEq)]
pub struct Model {
    spec: Arc<ModelSpec>,
    data: Vec<TensorData>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("tensors", &self.spec.len())
            .field("elements", &self.spec.total_elements())
            .finish()
    }
}

impl Model {
    /// Builds a model from named tensors; checks names and that data matches shapes.
    pub fn new<I, S>(tensors: I) -> Result<Self, ModelError>
    where
        I: IntoIterator<Item = (S, Vec<usize>, TensorData)>,
        S: Into<String>,
    {
        let mut parts: Vec<(TensorSpec, TensorData)> = Vec::new();
        for (name, shape, data) in tensors {
            let name = name.into();
            let expected = numel(&shape).ok_or_else(|| ModelError::ShapeOverflow {
                name: name.clone(),
                shape: shape.clone(),
            })?;
            if expected != data.len() {
                return Err(ModelError::LengthMismatch {
                    name,
                    shape,
                    expected,
                    got: data.len(),
                });
            }
            let spec = TensorSpec {
                name,
                dtype: data.dtype(),
                shape,
            };
            parts.push((spec, data));
        }
        parts.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let spec = ModelSpec::new(parts.iter().map(|(s, _)| s.clone()).collect())?;
        Ok(Self {
            spec: Arc::new(spec),
            data: parts.into_iter().map(|(_, d)| d).collect(),
        })
    }

    /// Builds a model in `spec`'s dtypes from a flat f32 vector in canonical order.
    pub fn from_flat_f32(spec: Arc<ModelSpec>, flat: &[f32]) -> Result<Self, ModelError> {
        if flat.len() != spec.total_elements() {
            return Err(ModelError::FlatLengthMismatch {
                expected: spec.total_elements(),
                got: flat.len(),
            });
        }
        let data = spec
            .tensors()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let off = spec.offset_at(i);
                let slice = flat.get(off..off + spec.numel_at(i)).unwrap_or(&[]);
                TensorData::from_f32(t.dtype, slice)
            })
            .collect();
        Ok(Self { spec, data })
    }

    /// Built from parts already known to match (used by the decoder).
    pub(crate) fn from_parts(spec: Arc<ModelSpec>, data: Vec<TensorData>) -> Self {
        Self { spec, data }
    }

    /// Builds a model from one data vector per tensor of `spec` (spec order),
    /// taking the vectors as they are (no copy).
    pub fn from_data(spec: Arc<ModelSpec>, data: Vec<TensorData>) -> Result<Self, ModelError> {
        if data.len() != spec.len() {
            return Err(ModelError::TensorCountMismatch {
                expected: spec.len(),
                got: data.len(),
            });
        }
        for (i, (t, d)) in spec.tensors().iter().zip(&data).enumerate() {
            if d.dtype() != t.dtype {
                return Err(ModelError::DtypeMismatch {
                    name: t.name.clone(),
                    expected: t.dtype,
                    got: d.dtype(),
                });
            }
            if d.len() != spec.numel_at(i) {
                return Err(ModelError::LengthMismatch {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    expected: spec.numel_at(i),
                    got: d.len(),
                });
            }
        }
        Ok(Self { spec, data })
    }

    /// The data vectors, in spec order (to reuse their memory).
    pub fn into_data(self) -> Vec<TensorData> {
        self.data
    }

    /// The model's layout.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The layout as a shareable handle.
    pub fn spec_arc(&self) -> Arc<ModelSpec> {
        Arc::clone(&self.spec)
    }

    /// Data of each tensor, in spec order.
    pub fn data(&self) -> &[TensorData] {
        &self.data
    }

    /// Data of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorData> {
        self.spec.position(name).and_then(|i| self.data.get(i))
    }

    /// A borrowed view, usable wherever a received update is.
    pub fn view(&self) -> ModelView<'_> {
        ModelView {
            spec: &self.spec,
            tensors: self.data.iter().map(TensorData::view).collect(),
        }
    }

    /// All parameters as one f32 vector in canonical order.
    pub fn to_flat_f32(&self) -> Vec<f32> {
        self.view().to_flat_f32()
    }

    /// Encodes as safetensors (tensors ordered by dtype alignment, then name,
    /// as the safetensors crate writes them).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ModelError> {
        let views = self
            .spec
            .tensors()
            .iter()
            .zip(&self.data)
            .map(|(t, d)| (t.name.as_str(), EncodeView { spec: t, data: d }));
        safetensors::serialize(views, None).map_err(ModelError::Encode)
    }
}

struct EncodeView<'a> {
    spec: &'a TensorSpec,
    data: &'a TensorData,
}

impl safetensors::View for EncodeView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.spec.dtype.to_safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.spec.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        self.data.le_bytes()
    }
    fn data_len(&self) -> usize {
        self.data.len() * self.spec.dtype.size()
    }
}

/// A borrowed model whose tensors follow `spec` order; what strategies consume.
#[derive(Debug, Clone)]
pub struct ModelView<'a> {
    spec: &'a ModelSpec,
    tensors: Vec<TensorView<'a>>,
}

impl<'a> ModelView<'a> {
    /// Pairs a spec with views; crate-internal because callers must guarantee
    /// the views match the spec (the decoder and [`Model::view`] do).
    pub(crate) fn from_parts(spec: &'a ModelSpec, tensors: Vec<TensorView<'a>>) -> Self {
        Self { spec, tensors }
    }

    /// The layout the view follows.
    pub fn spec(&self) -> &'a ModelSpec {
        self.spec
    }

    /// Tensor views in spec order.
    pub fn tensors(&self) -> &[TensorView<'a>] {
        &self.tensors
    }

    /// Copies the view into an owned model.
    pub fn to_model(&self) -> Model {
        Model::from_parts(
            Arc::new(self.spec.clone()),
            self.tensors.iter().map(TensorView::to_data).collect(),
        )
    }

    /// All parameters as one f32 vector in canonical order.
    pub fn to_flat_f32(&self) -> Vec<f32> {
        let mut flat = vec![0f32; self.spec.total_elements()];
        self.write_flat_f32(&mut flat);
        flat
    }

    /// Writes all parameters into `out` (length `spec().total_elements()`).
    pub fn write_flat_f32(&self, out: &mut [f32]) {
        for (i, t) in self.tensors.iter().enumerate() {
            let off = self.spec.offset_at(i);
            if let Some(dst) = out.get_mut(off..off + t.len()) {
                t.copy_to_f32(dst);
            }
        }
    }
}

#[cfg(test)]
mod tests;
