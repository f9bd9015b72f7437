//! The layout of a model: tensor names, dtypes, shapes and flat offsets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DType, ModelError};

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
