//! Models as the aggregator sees them: an ordered set of named floating-point
//! tensors, owned ([`Model`]) or borrowed from a received buffer ([`ModelView`]).
//!
//! Tensors are kept in name order so that every flattened view of a model (Krum
//! distances, optimiser state) has one canonical coordinate order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

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

/// Name, dtype and shape of one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name (unique within a model).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first (row-major).
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Element count implied by the shape, or `None` on overflow.
    pub fn checked_numel(&self) -> Option<usize> {
        numel(&self.shape)
    }
}

pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The layout of a model: tensors in name order, with their flat offsets.
///
/// Two models with equal specs can be aggregated coordinate by coordinate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    tensors: Vec<TensorSpec>,
    /// Element count of each tensor (same order as `tensors`).
    numels: Vec<usize>,
    /// Flat element offset of each tensor in the canonical order.
    offsets: Vec<usize>,
    index: BTreeMap<String, usize>,
    total_elements: usize,
    total_bytes: usize,
}

impl ModelSpec {
    /// Builds a spec, sorting tensors by name and checking names and sizes.
    pub fn new(mut tensors: Vec<TensorSpec>) -> Result<Self, ModelError> {
        if tensors.is_empty() {
            return Err(ModelError::Empty);
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let mut index = BTreeMap::new();
        let mut numels = Vec::with_capacity(tensors.len());
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut total_elements = 0usize;
        let mut total_bytes = 0usize;
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(ModelError::DuplicateTensor {
                    name: t.name.clone(),
                });
            }
            let overflow = || ModelError::ShapeOverflow {
                name: t.name.clone(),
                shape: t.shape.clone(),
            };
            let n = t.checked_numel().ok_or_else(overflow)?;
            let bytes = n.checked_mul(t.dtype.size()).ok_or_else(overflow)?;
            offsets.push(total_elements);
            numels.push(n);
            total_elements = total_elements.checked_add(n).ok_or_else(overflow)?;
            total_bytes = total_bytes.checked_add(bytes).ok_or_else(overflow)?;
        }
        Ok(Self {
            tensors,
            numels,
            offsets,
            index,
            total_elements,
            total_bytes,
        })
    }

    /// Tensors in canonical (name) order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Always false: a spec has at least one tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Position of a tensor in canonical order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Spec of the tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.position(name).and_then(|i| self.tensors.get(i))
    }

    /// Element count of the tensor at canonical position `i` (0 if out of range).
    pub fn numel_at(&self, i: usize) -> usize {
        self.numels.get(i).copied().unwrap_or(0)
    }

    /// Flat element offset of the tensor at canonical position `i`.
    pub fn offset_at(&self, i: usize) -> usize {
        self.offsets.get(i).copied().unwrap_or(self.total_elements)
    }

    /// Total parameters over all tensors.
    pub fn total_elements(&self) -> usize {
        self.total_elements
    }

    /// Bytes of tensor data in the spec's own dtypes (safetensors payload size).
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Bytes a flat f32 copy of one model takes (what robust strategies buffer).
    pub fn f32_bytes(&self) -> usize {
        self.total_elements.saturating_mul(4)
    }
}

/// Owned tensor data in its storage dtype.
#[derive(Clone, PartialEq)]
pub enum TensorData {
    /// f32 elements.
    F32(Vec<f32>),
    /// f16 elements.
    F16(Vec<f16>),
    /// bf16 elements.
    BF16(Vec<bf16>),
}

impl fmt::Debug for TensorData {
    // Models hold millions of elements; print the shape of the data, not the data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TensorData::{}[{}]", self.dtype(), self.len())
    }
}

impl TensorData {
    /// Storage dtype.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
        }
    }

    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::BF16(v) => v.len(),
        }
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Converts f32 values into `dtype` (round-to-nearest-even for f16/bf16).
    pub fn from_f32(dtype: DType, values: &[f32]) -> Self {
        match dtype {
            DType::F32 => TensorData::F32(values.to_vec()),
            DType::F16 => TensorData::F16(values.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::BF16 => TensorData::BF16(values.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    /// A borrowed view.
    pub fn view(&self) -> TensorView<'_> {
        match self {
            TensorData::F32(v) => TensorView::F32(v),
            TensorData::F16(v) => TensorView::F16(v),
            TensorData::BF16(v) => TensorView::BF16(v),
        }
    }

    /// Little-endian bytes, borrowed where the host layout already matches.
    pub fn le_bytes(&self) -> Cow<'_, [u8]> {
        #[cfg(target_endian = "little")]
        {
            match self {
                TensorData::F32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
                TensorData::F16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
                TensorData::BF16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            }
        }
        #[cfg(not(target_endian = "little"))]
        {
            match self {
                TensorData::F32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TensorData::F16(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TensorData::BF16(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            }
        }
    }
}

/// Borrowed tensor elements: either typed slices (from a [`Model`]) or raw
/// little-endian bytes straight from a validated safetensors buffer, so a
/// received update is never copied before it is folded into an aggregate.
#[derive(Clone, Copy)]
pub enum TensorView<'a> {
    /// Typed f32 slice.
    F32(&'a [f32]),
    /// Typed f16 slice.
    F16(&'a [f16]),
    /// Typed bf16 slice.
    BF16(&'a [bf16]),
    /// Little-endian bytes of `dtype`; length is a multiple of `dtype.size()`.
    Bytes {
        /// Element type of the bytes.
        dtype: DType,
        /// Raw little-endian data.
        bytes: &'a [u8],
    },
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TensorView::{}[{}]", self.dtype(), self.len())
    }
}

impl<'a> TensorView<'a> {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorView::F32(_) => DType::F32,
            TensorView::F16(_) => DType::F16,
            TensorView::BF16(_) => DType::BF16,
            TensorView::Bytes { dtype, .. } => *dtype,
        }
    }

    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            TensorView::F32(v) => v.len(),
            TensorView::F16(v) => v.len(),
            TensorView::BF16(v) => v.len(),
            TensorView::Bytes { dtype, bytes } => bytes.len() / dtype.size(),
        }
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f(acc[i], element[start + i] as f32)` for every `i` in `acc`.
    ///
    /// Elements past the end of the tensor are skipped (callers pass in-range
    /// chunks; this keeps a wrong range from panicking). Generic over `f` so each
    /// dtype gets its own tight, vectorisable loop.
    #[inline]
    pub fn zip_f32<A, F>(&self, start: usize, acc: &mut [A], mut f: F)
    where
        F: FnMut(&mut A, f32),
    {
        let end = start.saturating_add(acc.len());
        match *self {
            TensorView::F32(v) => {
                if let Some(src) = v.get(start..end.min(v.len())) {
                    acc.iter_mut().zip(src).for_each(|(a, &x)| f(a, x));
                }
            }
            TensorView::F16(v) => {
                if let Some(src) = v.get(start..end.min(v.len())) {
                    acc.iter_mut().zip(src).for_each(|(a, &x)| f(a, x.to_f32()));
                }
            }
            TensorView::BF16(v) => {
                if let Some(src) = v.get(start..end.min(v.len())) {
                    acc.iter_mut().zip(src).for_each(|(a, &x)| f(a, x.to_f32()));
                }
            }
            TensorView::Bytes { dtype, bytes } => {
                let size = dtype.size();
                let lo = start.saturating_mul(size).min(bytes.len());
                let hi = end.saturating_mul(size).min(bytes.len());
                let Some(src) = bytes.get(lo..hi) else {
                    return;
                };
                match dtype {
                    DType::F32 => acc
                        .iter_mut()
                        .zip(src.as_chunks::<4>().0)
                        .for_each(|(a, c)| f(a, f32::from_le_bytes(*c))),
                    DType::F16 => acc
                        .iter_mut()
                        .zip(src.as_chunks::<2>().0)
                        .for_each(|(a, c)| f(a, f16::from_le_bytes(*c).to_f32())),
                    DType::BF16 => acc
                        .iter_mut()
                        .zip(src.as_chunks::<2>().0)
                        .for_each(|(a, c)| f(a, bf16::from_le_bytes(*c).to_f32())),
                }
            }
        }
    }

    /// Copies all elements into `out` as f32 (`out` must have `len()` slots).
    pub fn copy_to_f32(&self, out: &mut [f32]) {
        self.zip_f32(0, out, |o, x| *o = x);
    }

    /// Owned data in this view's dtype.
    pub fn to_data(&self) -> TensorData {
        let n = self.len();
        match self.dtype() {
            DType::F32 => {
                let mut v = vec![0f32; n];
                self.zip_f32(0, &mut v, |o, x| *o = x);
                TensorData::F32(v)
            }
            // Going through f32 is exact for f16/bf16, both widen losslessly.
            DType::F16 => {
                let mut v = vec![f16::ZERO; n];
                self.zip_f32(0, &mut v, |o, x| *o = f16::from_f32(x));
                TensorData::F16(v)
            }
            DType::BF16 => {
                let mut v = vec![bf16::ZERO; n];
                self.zip_f32(0, &mut v, |o, x| *o = bf16::from_f32(x));
                TensorData::BF16(v)
            }
        }
    }
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
mod tests {
    use super::*;

    #[test]
    fn spec_sorts_by_name_and_rejects_duplicates() {
        let t = |n: &str| TensorSpec {
            name: n.into(),
            dtype: DType::F32,
            shape: vec![2],
        };
        let spec = ModelSpec::new(vec![t("b"), t("a")]).expect("valid spec");
        assert_eq!(spec.tensors()[0].name, "a");
        assert_eq!(spec.offset_at(1), 2);
        assert_eq!(spec.total_bytes(), 16);
        assert!(matches!(
            ModelSpec::new(vec![t("a"), t("a")]),
            Err(ModelError::DuplicateTensor { .. })
        ));
        assert!(matches!(ModelSpec::new(vec![]), Err(ModelError::Empty)));
    }

    #[test]
    fn model_rejects_length_mismatch() {
        let err = Model::new([("w", vec![2, 2], TensorData::F32(vec![1.0; 3]))])
            .expect_err("3 elements cannot fill a 2x2 tensor");
        assert!(err.to_string().contains("needs 4 elements"), "{err}");
    }

    #[test]
    fn flat_round_trip_converts_dtypes() {
        let m = Model::new([
            ("a", vec![2], TensorData::F16(vec![f16::from_f32(1.5); 2])),
            ("b", vec![1], TensorData::BF16(vec![bf16::from_f32(-2.0)])),
            ("c", vec![1], TensorData::F32(vec![0.25])),
        ])
        .expect("valid model");
        let flat = m.to_flat_f32();
        assert_eq!(flat, vec![1.5, 1.5, -2.0, 0.25]);
        let back = Model::from_flat_f32(m.spec_arc(), &flat).expect("same length");
        assert_eq!(back, m);
    }

    #[test]
    fn bytes_view_reads_little_endian() {
        let bytes: Vec<u8> = [1.0f32, -3.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let v = TensorView::Bytes {
            dtype: DType::F32,
            bytes: &bytes,
        };
        let mut out = [0f32; 2];
        v.copy_to_f32(&mut out);
        assert_eq!(out, [1.0, -3.5]);
        // An out-of-range chunk is skipped instead of panicking.
        let mut tail = [9f32; 4];
        v.zip_f32(1, &mut tail, |o, x| *o = x);
        assert_eq!(tail, [-3.5, 9.0, 9.0, 9.0]);
    }
}
