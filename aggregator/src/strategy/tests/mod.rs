//! Strategy tests, by rule; the helpers are shared.

mod config;
mod fedavg;
mod fedopt;
mod fold;
mod robust;

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::krum::{best_indices, krum_scores};
use super::median::median;
use super::trimmed_mean::trimmed_mean;
use super::*;
use crate::model::TensorData;
use crate::update::{UpdateLimits, decode_update};

fn model_f32(a: &[f32], b: &[f32]) -> Model {
    Model::new([
        ("a", vec![a.len()], TensorData::F32(a.to_vec())),
        ("b", vec![b.len()], TensorData::F32(b.to_vec())),
    ])
    .expect("valid model")
}

fn vector(values: &[f32]) -> Model {
    Model::new([("w", vec![values.len()], TensorData::F32(values.to_vec()))]).expect("valid model")
}

fn random_models(n: usize, len: usize, seed: u64) -> Vec<(Model, u64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..3).map(|_| rng.random_range(-1.0..1.0)).collect();
            (model_f32(&a, &b), rng.random_range(1..500))
        })
        .collect()
}

fn run(strategy: &mut dyn Strategy, round: u64, global: &Model, updates: &[(Model, u64)]) -> Model {
    strategy.begin_round(round, global).expect("begin");
    for (m, n) in updates {
        strategy.accept(&m.view(), *n).expect("accept");
    }
    strategy.finish().expect("finish")
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol * w.abs().max(1.0),
            "coordinate {i}: got {g}, want {w}"
        );
    }
}

/// Σ nᵢxᵢ / Σ nᵢ in f64 (reference) and in Flower's f32 operation order.
fn naive_means(updates: &[(Model, u64)]) -> (Vec<f64>, Vec<f32>) {
    let flats: Vec<Vec<f32>> = updates.iter().map(|(m, _)| m.to_flat_f32()).collect();
    let total: u64 = updates.iter().map(|(_, n)| n).sum();
    let len = flats[0].len();
    let mut exact = vec![0f64; len];
    let mut flower = vec![0f32; len];
    for (flat, (_, n)) in flats.iter().zip(updates) {
        for i in 0..len {
            exact[i] += f64::from(flat[i]) * *n as f64;
            flower[i] += flat[i] * *n as f32;
        }
    }
    exact.iter_mut().for_each(|x| *x /= total as f64);
    flower.iter_mut().for_each(|x| *x /= total as f32);
    (exact, flower)
}
