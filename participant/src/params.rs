//! Parameters on the wire: safetensors (never pickle), one tensor per
//! [`VarStore`](tch::nn::VarStore) variable, named by its variable name.
//!
//! Tensors are written in name order so the bytes of a model depend only on
//! its values. Values are F32 by default; F16 and BF16 halve the traffic. An
//! update is encoded with the dtypes of the global model it started from
//! ([`encode_like`]), because the aggregator requires them to match.

use std::collections::{BTreeMap, HashMap};

use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};
use tch::{Kind, Tensor};

use crate::model::Net;

/// Errors encoding or decoding parameters.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// The bytes are not a valid safetensors file.
    #[error("model bytes are not valid safetensors")]
    Format(#[source] safetensors::SafeTensorError),
    /// A tensor uses a dtype other than F32, F16 or BF16.
    #[error("tensor {tensor:?} has dtype {dtype}; only F32, F16 and BF16 are exchanged")]
    Dtype {
        /// Tensor name.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// The model lacks a tensor the local network has.
    #[error("tensor {tensor:?} of the local model is missing from the received model")]
    Missing {
        /// Tensor name.
        tensor: String,
    },
    /// The model has a tensor the local network lacks.
    #[error("received tensor {tensor:?} is not part of the local model")]
    Unknown {
        /// Tensor name.
        tensor: String,
    },
    /// A tensor's shape differs from the local network's.
    #[error("tensor {tensor:?} has shape {got:?}; the local model has {expected:?}")]
    Shape {
        /// Tensor name.
        tensor: String,
        /// Local shape.
        expected: Vec<i64>,
        /// Received shape.
        got: Vec<usize>,
    },
    /// A received value is NaN or infinite.
    #[error("tensor {tensor:?} holds a non-finite value")]
    NonFinite {
        /// Tensor name.
        tensor: String,
    },
    /// Reading or writing tensor data through libtorch failed.
    #[error("copying tensor {tensor:?} failed")]
    Torch {
        /// Tensor name.
        tensor: String,
        /// libtorch's message.
        #[source]
        source: tch::TchError,
    },
}

/// Element type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireDtype {
    /// 32-bit float.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl WireDtype {
    fn safetensors(self) -> Dtype {
        match self {
            WireDtype::F32 => Dtype::F32,
            WireDtype::F16 => Dtype::F16,
            WireDtype::Bf16 => Dtype::BF16,
        }
    }

    fn from_safetensors(d: Dtype) -> Option<Self> {
        match d {
            Dtype::F32 => Some(WireDtype::F32),
            Dtype::F16 => Some(WireDtype::F16),
            Dtype::BF16 => Some(WireDtype::Bf16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            WireDtype::F32 => 4,
            WireDtype::F16 | WireDtype::Bf16 => 2,
        }
    }

    fn encode(self, values: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * self.size());
        match self {
            WireDtype::F32 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            WireDtype::F16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            WireDtype::Bf16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        }
        out
    }

    fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            WireDtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            WireDtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            WireDtype::Bf16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }
}

impl std::str::FromStr for WireDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(WireDtype::F32),
            "f16" | "float16" | "half" => Ok(WireDtype::F16),
            "bf16" | "bfloat16" => Ok(WireDtype::Bf16),
            _ => Err(format!("unknown wire dtype {s:?} (f32, f16, bf16)")),
        }
    }
}

/// One decoded tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct WireTensor {
    /// Dtype it travelled as.
    pub dtype: WireDtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values widened to f32.
    pub values: Vec<f32>,
}

/// A decoded model: tensors by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WireModel {
    /// Tensors, sorted by name.
    pub tensors: BTreeMap<String, WireTensor>,
}

impl WireModel {
    /// Decodes safetensors bytes; only F32/F16/BF16 tensors are accepted.
    pub fn decode(bytes: &[u8]) -> Result<Self, ParamsError> {
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(ParamsError::Format)?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let dtype =
                WireDtype::from_safetensors(view.dtype()).ok_or_else(|| ParamsError::Dtype {
                    tensor: name.to_string(),
                    dtype: format!("{:?}", view.dtype()),
                })?;
            tensors.insert(
                name.to_string(),
                WireTensor {
                    dtype,
                    shape: view.shape().to_vec(),
                    values: dtype.decode(view.data()),
                },
            );
        }
        Ok(Self { tensors })
    }

    /// Encodes as safetensors, every tensor in its own dtype.
    pub fn encode(&self) -> Result<Vec<u8>, ParamsError> {
        let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    t.dtype.safetensors(),
                    t.shape.clone(),
                    t.dtype.encode(&t.values),
                )
            })
            .collect();
        serialize(&data)
    }

    /// The dtype of each tensor, for [`encode_like`].
    pub fn dtypes(&self) -> HashMap<String, WireDtype> {
        self.tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.dtype))
            .collect()
    }

    /// Total number of values.
    pub fn numel(&self) -> usize {
        self.tensors.values().map(|t| t.values.len()).sum()
    }
}

fn serialize(data: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Result<Vec<u8>, ParamsError> {
    let views = data
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.as_str(), v))
                .map_err(ParamsError::Format)
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(ParamsError::Format)
}

/// Reads a tensor's values as f32 on the CPU.
pub fn tensor_values(name: &str, t: &Tensor) -> Result<Vec<f32>, ParamsError> {
    let flat = t
        .f_detach()
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_to_device(tch::Device::Cpu))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_flatten(0, -1))
        .map_err(|source| ParamsError::Torch {
            tensor: name.to_string(),
            source,
        })?;
    Vec::<f32>::try_from(&flat).map_err(|source| ParamsError::Torch {
        tensor: name.to_string(),
        source,
    })
}

/// The network's variables as a [`WireModel`], every tensor as `dtype`.
pub fn snapshot(net: &Net, dtype: WireDtype) -> Result<WireModel, ParamsError> {
    let mut tensors = BTreeMap::new();
    for (name, t) in net.named_variables() {
        let values = tensor_values(&name, &t)?;
        let shape = t
            .size()
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect();
        tensors.insert(
            name,
            WireTensor {
                dtype,
                shape,
                values,
            },
        );
    }
    Ok(WireModel { tensors })
}

/// Encodes the network's variables with one dtype for all.
pub fn encode(net: &Net, dtype: WireDtype) -> Result<Vec<u8>, ParamsError> {
    snapshot(net, dtype)?.encode()
}

/// Encodes the network's variables with the per-tensor dtypes of `template`
/// (the global model the update started from); tensors it lacks go as F32.
pub fn encode_like(
    net: &Net,
    template: &HashMap<String, WireDtype>,
) -> Result<Vec<u8>, ParamsError> {
    let mut m = snapshot(net, WireDtype::F32)?;
    for (name, t) in &mut m.tensors {
        if let Some(d) = template.get(name) {
            t.dtype = *d;
        }
    }
    m.encode()
}

/// Copies `model` into the network's variables in place. Names and shapes
/// must match exactly in both directions, and values must be finite, so a
/// mismatched global model fails here with the tensor's name instead of
/// training garbage.
pub fn load(net: &Net, model: &WireModel) -> Result<(), ParamsError> {
    let vars: HashMap<String, Tensor> = net.var_store().variables();
    if let Some(name) = model.tensors.keys().find(|n| !vars.contains_key(*n)) {
        return Err(ParamsError::Unknown {
            tensor: name.clone(),
        });
    }
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let wire = model
            .tensors
            .get(name)
            .ok_or_else(|| ParamsError::Missing {
                tensor: name.clone(),
            })?;
        let expected = var.size();
        let got_i64: Vec<i64> = wire.shape.iter().map(|&d| d as i64).collect();
        if expected != got_i64 {
            return Err(ParamsError::Shape {
                tensor: name.clone(),
                expected,
                got: wire.shape.clone(),
            });
        }
        if wire.values.iter().any(|v| !v.is_finite()) {
            return Err(ParamsError::NonFinite {
                tensor: name.clone(),
            });
        }
        let torch_err = |source| ParamsError::Torch {
            tensor: name.clone(),
            source,
        };
        let src = Tensor::f_from_slice(&wire.values)
            .and_then(|t| t.f_reshape(expected.as_slice()))
            .and_then(|t| t.f_to_kind(var.kind()))
            .and_then(|t| t.f_to_device(var.device()))
            .map_err(torch_err)?;
        let mut dst = var.shallow_clone();
        // In place, so optimisers and TorchScript modules that hold the same
        // storage see the new values.
        tch::no_grad(|| dst.f_copy_(&src)).map_err(|source| ParamsError::Torch {
            tensor: name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Decodes `bytes` and loads them into the network.
pub fn load_bytes(net: &Net, bytes: &[u8]) -> Result<WireModel, ParamsError> {
    let model = WireModel::decode(bytes)?;
    load(net, &model)?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_round_trip_is_close() {
        let v = [0.0f32, 1.5, -2.25, 1e-3, 65000.0];
        for d in [WireDtype::F32, WireDtype::F16, WireDtype::Bf16] {
            let back = d.decode(&d.encode(&v));
            for (a, b) in v.iter().zip(&back) {
                assert!((a - b).abs() <= a.abs() * 1e-2 + 1e-6, "{d:?}: {a} vs {b}");
            }
        }
    }
}
