//! fedsky's strategies against Flower's own implementations (`flwr` in the
//! workspace venv, see `requirements-dev.txt`) on the same arrays: FedAvg
//! (streaming and in-memory) bit for bit, the robust rules and the server
//! optimisers to float32 rounding.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use fedsky_aggregator::in_memory::fedavg_round;
use fedsky_aggregator::strategy::{FedAvg, FedMedian, FedOpt, Krum, ServerOptimizer, TrimmedMean};
use fedsky_aggregator::{FedOptConfig, Model, Strategy, TensorData, UpdateLimits};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPES: [(&str, [usize; 2]); 2] = [("a", [40, 25]), ("b", [1, 7])];
const WEIGHTS: [u64; 7] = [120, 3, 48, 300, 77, 5, 210];
const TRIM_BETA: f64 = 0.2;
const BYZANTINE: usize = 1;
const MULTI: usize = 3;

fn model(flat: &[f32]) -> Model {
    let mut at = 0;
    let tensors: Vec<_> = SHAPES
        .iter()
        .map(|(name, shape)| {
            let n = shape[0] * shape[1];
            let t = (
                *name,
                shape.to_vec(),
                TensorData::F32(flat[at..at + n].to_vec()),
            );
            at += n;
            t
        })
        .collect();
    Model::new(tensors).unwrap()
}

fn size() -> usize {
    SHAPES.iter().map(|(_, s)| s[0] * s[1]).sum()
}

fn run(s: &mut dyn Strategy, round: u64, global: &Model, updates: &[Model]) -> Vec<f32> {
    s.begin_round(round, global).unwrap();
    for (u, w) in updates.iter().zip(WEIGHTS) {
        s.accept(&u.view(), w).unwrap();
    }
    s.finish().unwrap().to_flat_f32()
}

fn assert_close(name: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs().max(1.0),
            "{name}: coordinate {i}: fedsky {g}, Flower {w}"
        );
    }
}

#[test]
fn strategies_match_flower_on_the_same_arrays() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut flat = |scale: f32| -> Vec<f32> {
        (0..size())
            .map(|_| rng.random_range(-1.0f32..1.0) * scale)
            .collect()
    };
    let global_flat = flat(1.0);
    // One update far from the rest, so Krum has an outlier to drop.
    let update_flats: Vec<Vec<f32>> = (0..WEIGHTS.len())
        .map(|k| flat(if k == 3 { 50.0 } else { 1.0 }))
        .collect();
    let opt = FedOptConfig {
        eta: 0.05,
        eta_l: 0.1,
        beta_1: 0.9,
        beta_2: 0.99,
        tau: 1e-3,
    };

    let dir = tempfile::tempdir().unwrap();
    let mut data: Vec<u8> = Vec::new();
    for f in std::iter::once(&global_flat).chain(&update_flats) {
        data.extend(f.iter().flat_map(|x| x.to_le_bytes()));
    }
    std::fs::write(dir.path().join("data.bin"), data).unwrap();
    let meta = serde_json::json!({
        "shapes": SHAPES.iter().map(|(_, s)| s.to_vec()).collect::<Vec<_>>(),
        "weights": WEIGHTS,
        "trim_beta": TRIM_BETA,
        "byzantine": BYZANTINE,
        "multi": MULTI,
        "fedopt": {"eta": opt.eta, "eta_l": opt.eta_l, "beta_1": opt.beta_1,
                   "beta_2": opt.beta_2, "tau": opt.tau},
    });
    std::fs::write(dir.path().join("meta.json"), meta.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flower_numerics.py");
    let out = Command::new(fedsky_e2e::moto::python())
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("the workspace venv's python runs (pip install -r requirements-dev.txt)");
    assert!(
        out.status.success(),
        "Flower reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flower = |name: &str| -> Vec<f32> {
        let bytes = std::fs::read(dir.path().join(format!("{name}.bin"))).unwrap();
        bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect()
    };

    let global = model(&global_flat);
    let updates: Vec<Model> = update_flats.iter().map(|f| model(f)).collect();

    // FedAvg: the same f32 operations in the same order, so the same bits,
    // both streaming and in memory.
    let fedavg = run(&mut FedAvg::new(), 1, &global, &updates);
    assert_eq!(fedavg, flower("fedavg"), "FedAvg");
    let encoded: Vec<Vec<u8>> = updates
        .iter()
        .map(|u| u.to_safetensors().unwrap())
        .collect();
    let in_memory: Vec<(&[u8], u64)> = encoded.iter().map(|b| b.as_slice()).zip(WEIGHTS).collect();
    let limits = UpdateLimits::for_spec(global.spec());
    let round = fedavg_round(&mut FedAvg::new(), 1, &global, &in_memory, &limits).unwrap();
    assert_eq!(
        round.model.to_flat_f32(),
        flower("fedavg"),
        "in-memory FedAvg"
    );

    let max = 1 << 30;
    assert_close(
        "FedMedian",
        &run(&mut FedMedian::new(max), 1, &global, &updates),
        &flower("median"),
        1e-6,
    );
    assert_close(
        "trimmed mean",
        &run(
            &mut TrimmedMean::new(TRIM_BETA, max).unwrap(),
            1,
            &global,
            &updates,
        ),
        &flower("trimmed"),
        1e-6,
    );
    assert_close(
        "Krum",
        &run(&mut Krum::new(BYZANTINE, 0, max), 1, &global, &updates),
        &flower("krum"),
        0.0,
    );
    assert_close(
        "multi-Krum",
        &run(&mut Krum::new(BYZANTINE, MULTI, max), 1, &global, &updates),
        &flower("multikrum"),
        1e-6,
    );

    for (name, optimizer) in [
        ("fedadagrad", ServerOptimizer::Adagrad),
        ("fedadam", ServerOptimizer::Adam),
        ("fedyogi", ServerOptimizer::Yogi),
    ] {
        let mut s = FedOpt::new(optimizer, opt).unwrap();
        let mut current = global.clone();
        for round in 1..=2 {
            let next = run(&mut s, round, &current, &updates);
            current = model(&next);
        }
        assert_close(name, &current.to_flat_f32(), &flower(name), 1e-5);
    }
}
