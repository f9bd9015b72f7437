//! Tensor data, owned ([`TensorData`]) or borrowed ([`TensorView`]).

use std::borrow::Cow;
use std::fmt;

use half::{bf16, f16};

use super::DType;

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
