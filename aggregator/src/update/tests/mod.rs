//! Update validation tests, by topic; the helpers are shared.

mod decode;
mod layout;
mod streamed;

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::model::TensorData;

/// Global model: a = F32[2,2], b = F32[3] (28 data bytes).
fn global() -> Model {
    Model::new([
        ("a", vec![2, 2], TensorData::F32(vec![0.0, 0.0, 0.0, 0.0])),
        ("b", vec![3], TensorData::F32(vec![0.0, 0.0, 0.0])),
    ])
    .expect("valid model")
}

fn update(a: [f32; 4], b: [f32; 3]) -> Vec<u8> {
    Model::new([
        ("a", vec![2, 2], TensorData::F32(a.to_vec())),
        ("b", vec![3], TensorData::F32(b.to_vec())),
    ])
    .expect("valid model")
    .to_safetensors()
    .expect("encode")
}

/// A safetensors buffer with a hand-written header.
fn raw(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data_len));
    v
}

fn entry(name: &str, dtype: &str, shape: &str, begin: u64, end: u64) -> String {
    format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}"#)
}

fn good_header() -> String {
    format!(
        "{{{},{}}}",
        entry("a", "F32", "[2,2]", 0, 16),
        entry("b", "F32", "[3]", 16, 28)
    )
}

fn reject(bytes: &[u8]) -> UpdateRejection {
    reject_with(bytes, &UpdateLimits::default())
}

fn reject_with(bytes: &[u8], limits: &UpdateLimits) -> UpdateRejection {
    let g = global();
    match decode_update(bytes, &g, limits) {
        Ok(_) => panic!("update should have been rejected"),
        Err(e) => e,
    }
}
