//! Local training on the CPU: learning the synthetic X-rays, bitwise
//! repeatability, FedProx, differential privacy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use fedsky_participant::engine::EngineOptions;
use fedsky_participant::model::Architecture;
use fedsky_participant::{DpConfig, FitParams, WireDtype};

#[test]
fn small_cnn_learns_synthetic_xrays_well_above_chance() {
    let _g = torch_lock();
    let started = Instant::now();
    let mut e = engine(shared_dataset(), 32, Architecture::SmallCnn, cpu_options());
    let initial = e.initial_model(WireDtype::F32).unwrap();
    let before = e.evaluate(&initial).unwrap();
    // Learning rate 0.01, as the case study's job. At the shared 0.05 (momentum 0.9) this
    // small run is unstable and the outcome hangs on the CPU's kernels: on an AVX-512
    // machine seeds 7, 1, 2, 3, 4 reached 0.756, 0.333, 1.000, 0.978, 0.333; at 0.01
    // 1.000, 1.000, 1.000, 1.000, 0.978. The assertions are unchanged.
    let params = FitParams {
        learning_rate: 0.01,
        ..fit_params(10, 7)
    };
    let out = e.fit(&initial, &params).unwrap();
    let after = e.evaluate(&out.bytes).unwrap();
    println!(
        "before: acc {:.3}; after 10 epochs: acc {:.3} loss {:.3} macro recall {:.3} ({:.1} s, {:.0} samples/s)\n{}",
        before.accuracy,
        after.accuracy,
        after.loss,
        after.macro_recall(),
        started.elapsed().as_secs_f64(),
        out.report.throughput(),
        after.confusion_table()
    );
    assert_eq!(after.examples, 45, "the balanced test split");
    assert!(
        after.accuracy >= 0.8,
        "accuracy {} (chance is 0.33)",
        after.accuracy
    );
    assert!(after.loss < before.loss);
    assert!(
        after.recall.iter().all(|r| r.is_some_and(|r| r > 0.5)),
        "{:?}",
        after.recall
    );
    let counts: u64 = after.confusion.iter().flatten().sum();
    assert_eq!(counts, 45);
    let m = after.metrics();
    assert!(
        m.contains_key("recall_viral_pneumonia") && m.contains_key("macro_recall"),
        "{m:?}"
    );
    assert!(out.report.metrics().contains_key("samples_per_second"));
}

#[test]
fn the_same_seed_gives_the_same_update_bit_for_bit() {
    let _g = torch_lock();
    let mut a = engine(shared_dataset(), 32, Architecture::SmallCnn, cpu_options());
    let initial = a.initial_model(WireDtype::F32).unwrap();
    let u1 = a.fit(&initial, &fit_params(2, 11)).unwrap();
    let u2 = a.fit(&initial, &fit_params(2, 11)).unwrap();
    assert!(u1.bytes == u2.bytes, "same engine, same seed");
    // A fresh engine (another "process") with the same initial weights.
    let mut b = engine(shared_dataset(), 32, Architecture::SmallCnn, cpu_options());
    assert!(
        b.initial_model(WireDtype::F32).unwrap() == initial,
        "seeded initial weights"
    );
    let u3 = b.fit(&initial, &fit_params(2, 11)).unwrap();
    assert!(u1.bytes == u3.bytes, "fresh engine, same seed");
    assert_eq!(u1.report.loss.to_bits(), u3.report.loss.to_bits());
    let other = a.fit(&initial, &fit_params(2, 12)).unwrap();
    assert!(u1.bytes != other.bytes, "another seed");
}

#[test]
fn fedprox_pulls_the_update_towards_the_global_model() {
    let _g = torch_lock();
    let mut e = engine(shared_dataset(), 32, Architecture::SmallCnn, cpu_options());
    let global = e.initial_model(WireDtype::F32).unwrap();
    let plain = e.fit(&global, &fit_params(2, 5)).unwrap();
    let mut p = fit_params(2, 5);
    p.proximal_mu = 5.0;
    let prox = e.fit(&global, &p).unwrap();
    assert!(plain.bytes != prox.bytes, "mu changes the update");
    let (d_plain, d_prox) = (
        distance(&plain.bytes, &global),
        distance(&prox.bytes, &global),
    );
    println!("distance to the global model: mu=0 {d_plain:.4}, mu=5 {d_prox:.4}");
    assert!(d_prox < d_plain * 0.9, "mu=5: {d_prox} vs mu=0: {d_plain}");
    assert!(prox.report.proximal_term > 0.0);
    assert_eq!(plain.report.proximal_term, 0.0);
}

#[test]
fn dp_clips_the_update_and_reports_the_noise() {
    let _g = torch_lock();
    let clip = 0.5;
    let opts = |noise| EngineOptions {
        dp: Some(DpConfig {
            clip_norm: clip,
            noise_multiplier: noise,
        }),
        ..cpu_options()
    };
    let mut e = engine(shared_dataset(), 32, Architecture::SmallCnn, opts(0.0));
    let global = e.initial_model(WireDtype::F32).unwrap();
    let out = e.fit(&global, &fit_params(2, 3)).unwrap();
    let dp = out.report.dp.expect("dp report");
    let d = distance(&out.bytes, &global);
    println!(
        "update norm before clipping {:.4}, after {d:.4}",
        dp.update_norm
    );
    assert!(dp.update_norm > clip, "the test must actually clip");
    assert!(d <= clip * (1.0 + 1e-4), "clipped norm {d} exceeds {clip}");
    assert!(d >= clip * 0.99, "clipped to the bound, not below: {d}");

    let mut noisy = engine(shared_dataset(), 32, Architecture::SmallCnn, opts(0.01));
    let out2 = noisy.fit(&global, &fit_params(2, 3)).unwrap();
    let m = out2.report.metrics();
    assert_eq!(m.get("dp_noise_multiplier"), Some(&0.01));
    assert_eq!(m.get("dp_clip_norm"), Some(&clip));
    assert!(out2.bytes != out.bytes, "noise was added");
    // Noise std 0.005 per coordinate: the norm grows by about sqrt(n) * 0.005.
    let n = noisy.net().num_parameters() as f64;
    let d2 = distance(&out2.bytes, &global);
    let expected = (clip * clip + n * 0.005f64.powi(2)).sqrt();
    assert!((d2 - expected).abs() < expected * 0.1, "{d2} vs {expected}");
}

#[test]
fn resnet18_trains_a_step_on_grayscale_input() {
    let _g = torch_lock();
    let mut e = engine(shared_dataset(), 32, Architecture::ResNet18, cpu_options());
    assert!(e.net().num_parameters() > 11_000_000);
    let global = e.initial_model(WireDtype::F32).unwrap();
    let mut p = fit_params(1, 1);
    p.learning_rate = 0.01;
    let out = e.fit(&global, &p).unwrap();
    assert!(out.report.loss.is_finite());
    assert!(out.bytes != global);
}

#[test]
fn tch_and_pytorch_eager_loss_curves_agree_from_the_same_weights() {
    use fedsky_participant::bench::{self, BenchConfig};
    use fedsky_participant::model::{InputShape, ModelSpec};
    let dir = tempfile::tempdir().unwrap();
    let _g = torch_lock();
    let config = BenchConfig {
        spec: ModelSpec {
            arch: Architecture::SmallCnn,
            input: InputShape::Image {
                channels: 1,
                height: 16,
                width: 16,
            },
            num_classes: 3,
        },
        batch_size: 8,
        steps: 6,
        warmup: 1,
        learning_rate: 0.05,
        seed: 3,
        threads: 1,
        dir: dir.path().to_path_buf(),
    };
    let (init, data) = bench::prepare(&config).unwrap();
    let rust = bench::run_tch(&config, &init, &data, tch::Device::Cpu).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_pytorch.py");
    let py =
        bench::run_pytorch(&config, &python(), &script, &init, &data, tch::Device::Cpu).unwrap();
    print!("{}", bench::table(&[rust.clone(), py.clone()]));
    assert_eq!(rust.losses.len(), 7);
    assert_eq!(py.losses.len(), 7);
    let gap = bench::max_loss_gap(&rust, &py);
    assert!(
        gap < 1e-4,
        "loss curves differ by {gap}: {:?} vs {:?}",
        rust.losses,
        py.losses
    );
    assert!(rust.losses[6] < rust.losses[0], "{:?}", rust.losses);
}
