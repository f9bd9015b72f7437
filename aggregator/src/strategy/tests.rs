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

#[test]
fn fedavg_equals_naive_weighted_mean() {
    let updates = random_models(7, 50, 1);
    let global = &updates[0].0;
    let out = run(&mut FedAvg::new(), 1, global, &updates);
    let (exact, flower) = naive_means(&updates);
    assert_close(&out.to_flat_f32(), &exact, 1e-5);
    // Same operations in the same order as Flower's `aggregate`: bit-identical.
    assert_eq!(out.to_flat_f32(), flower);
}

#[test]
fn fedavg_parallel_chunks_match_sequential_bitwise() {
    // Large enough for several rayon chunks.
    let updates = random_models(4, 3 * sum::PAR_CHUNK + 17, 2);
    let out = run(&mut FedAvg::new(), 1, &updates[0].0, &updates);
    assert_eq!(out.to_flat_f32(), naive_means(&updates).1);
}

#[test]
fn fedavg_is_order_independent_within_tolerance_and_deterministic() {
    let updates = random_models(9, 200, 3);
    let global = &updates[0].0;
    let forward = run(&mut FedAvg::new(), 1, global, &updates);
    let again = run(&mut FedAvg::new(), 1, global, &updates);
    assert_eq!(forward, again, "a fixed order must give identical bits");

    let mut reversed = updates.clone();
    reversed.reverse();
    let backward = run(&mut FedAvg::new(), 1, global, &reversed);
    let want: Vec<f64> = forward
        .to_flat_f32()
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    assert_close(&backward.to_flat_f32(), &want, 1e-5);
}

#[test]
fn fedavg_accepts_decoded_bytes_like_owned_models() {
    let updates = random_models(3, 40, 4);
    let global = &updates[0].0;
    let from_models = run(&mut FedAvg::new(), 1, global, &updates);

    let encoded: Vec<(Vec<u8>, u64)> = updates
        .iter()
        .map(|(m, n)| (m.to_safetensors().expect("encode"), *n))
        .collect();
    let mut s = FedAvg::new();
    s.begin_round(1, global).expect("begin");
    for (bytes, n) in &encoded {
        let view = decode_update(bytes, global, &UpdateLimits::default()).expect("valid");
        s.accept(&view, *n).expect("accept");
    }
    assert_eq!(s.finish().expect("finish"), from_models);
}

#[test]
fn fedavg_output_keeps_global_dtypes() {
    let global = Model::new([
        ("h", vec![2], TensorData::F16(vec![f16::from_f32(0.0); 2])),
        ("b", vec![2], TensorData::BF16(vec![bf16::from_f32(0.0); 2])),
    ])
    .expect("valid");
    let upd = |x: f32| {
        Model::new([
            ("h", vec![2], TensorData::F16(vec![f16::from_f32(x); 2])),
            ("b", vec![2], TensorData::BF16(vec![bf16::from_f32(x); 2])),
        ])
        .expect("valid")
    };
    let out = run(
        &mut FedAvg::new(),
        1,
        &global,
        &[(upd(1.0), 1), (upd(2.0), 3)],
    );
    assert_eq!(
        out.tensor("h"),
        Some(&TensorData::F16(vec![f16::from_f32(1.75); 2]))
    );
    assert_eq!(
        out.tensor("b"),
        Some(&TensorData::BF16(vec![bf16::from_f32(1.75); 2]))
    );
}

#[test]
fn streaming_memory_is_one_model() {
    let updates = random_models(5, 1000, 5);
    let mut s = FedAvg::new();
    s.begin_round(1, &updates[0].0).expect("begin");
    for (m, n) in &updates {
        s.accept(&m.view(), *n).expect("accept");
        assert_eq!(
            s.buffered_bytes(),
            4 * 1003,
            "accumulator only, whatever the count"
        );
    }
    assert_eq!(s.accepted(), 5);
    assert_eq!(s.max_updates(), None);
}

#[test]
fn strategy_errors_are_precise() {
    let global = vector(&[0.0, 0.0]);
    let mut s = FedAvg::new();
    assert!(matches!(
        s.accept(&global.view(), 1),
        Err(StrategyError::NoRound)
    ));
    s.begin_round(3, &global).expect("begin");
    assert!(matches!(
        s.accept(&global.view(), 0),
        Err(StrategyError::ZeroExamples)
    ));
    let other = vector(&[0.0, 0.0, 0.0]);
    let err = s.accept(&other.view(), 1).expect_err("other layout");
    assert!(
        matches!(err, StrategyError::SpecMismatch { round: 3 }),
        "{err}"
    );
    assert_eq!(err.reason(), "spec_mismatch");
    assert!(matches!(
        s.finish(),
        Err(StrategyError::NoUpdates { round: 3 })
    ));
}

// ---- FedOpt: Flower's FedAdagrad / FedAdam / FedYogi formulas, computed by
// hand (in f64) for x = [0, 1, -0.5] and updates ([1, .5, -.5], n=1),
// ([.5, 1.5, .5], n=3), so avg = [.625, 1.25, .25], over two rounds.

fn fedopt_rounds(strategy: &mut dyn Strategy) -> (Model, Model) {
    let updates = vec![
        (vector(&[1.0, 0.5, -0.5]), 1),
        (vector(&[0.5, 1.5, 0.5]), 3),
    ];
    let x1 = run(strategy, 1, &vector(&[0.0, 1.0, -0.5]), &updates);
    let x2 = run(strategy, 2, &x1, &updates);
    (x1, x2)
}

#[test]
fn fedadagrad_matches_flower_formulas() {
    let mut s =
        FedOpt::new(ServerOptimizer::Adagrad, FedOptConfig::adagrad_default()).expect("valid");
    let (x1, x2) = fedopt_rounds(&mut s);
    assert_close(
        &x1.to_flat_f32(),
        &[0.09999999984, 1.0999999996, -0.4000000001333333],
        1e-6,
    );
    assert_close(
        &x2.to_flat_f32(),
        &[0.16431920841502085, 1.1514495750671636, -0.334506946349867],
        1e-6,
    );
    let v = s.state().v_t.clone().expect("state after two rounds");
    assert_close(
        &v,
        &[0.6662500001680001, 0.08500000011999999, 0.9850000001733332],
        1e-6,
    );
}

#[test]
fn fedadam_matches_flower_formulas() {
    let mut s = FedOpt::new(ServerOptimizer::Adam, FedOptConfig::adam_default()).expect("valid");
    let (x1, x2) = fedopt_rounds(&mut s);
    // Round 1 by hand: m = 0.1Δ, v = 0.01Δ², so m/√v = sign(Δ) and the step is
    // η·√(1−0.99²)/(1−0.9²) = 0.0742459776… per coordinate.
    assert_close(
        &x1.to_flat_f32(),
        &[
            0.07424597765241114,
            1.0742459758705079,
            -0.42575402214959956,
        ],
        1e-6,
    );
    assert_close(
        &x2.to_flat_f32(),
        &[0.1594716876971007, 1.1579224308226357, -0.34042894880686725],
        1e-6,
    );
    let st = s.state();
    assert_eq!(st.last_round, Some(2));
    assert_close(
        st.m_t.as_deref().expect("m"),
        &[
            0.11132540223475887,
            0.040075402412949206,
            0.13507540221495995,
        ],
        1e-6,
    );
    assert_close(
        st.v_t.as_deref().expect("v"),
        &[
            0.00690048743132049,
            0.0009276447699771019,
            0.010135184984513625,
        ],
        1e-5,
    );
}

#[test]
fn fedyogi_matches_flower_formulas() {
    let mut s = FedOpt::new(ServerOptimizer::Yogi, FedOptConfig::yogi_default()).expect("valid");
    let (x1, x2) = fedopt_rounds(&mut s);
    assert_close(
        &x1.to_flat_f32(),
        &[
            0.009842519685039365,
            1.0096153846153846,
            -0.4901315789473684,
        ],
        1e-6,
    );
    assert_close(
        &x2.to_flat_f32(),
        &[
            0.023120107440394014,
            1.0226579100195727,
            -0.47682778469823645,
        ],
        1e-6,
    );
    assert_close(
        s.state().v_t.as_deref().expect("v"),
        &[
            0.007690437255874519,
            0.001202847633136096,
            0.011102947541551255,
        ],
        1e-5,
    );
}

#[test]
fn fedopt_checkpoint_resume_is_bitwise_equal() {
    let config = StrategyConfig::FedAdam(FedOptConfig::adam_default());
    let updates = random_models(3, 64, 6);
    let global = updates[0].0.clone();

    let mut straight = config.build().expect("valid");
    let r1 = run(&mut straight, 1, &global, &updates);
    let r2 = run(&mut straight, 2, &r1, &updates);

    let mut first = config.build().expect("valid");
    let r1b = run(&mut first, 1, &global, &updates);
    let json = serde_json::to_string(&first.checkpoint()).expect("serialise");
    let checkpoint: StrategyCheckpoint = serde_json::from_str(&json).expect("deserialise");
    let mut resumed = AnyStrategy::restore(&checkpoint).expect("restore");
    let r2b = run(&mut resumed, 2, &r1b, &updates);
    assert_eq!(r2, r2b);
    assert_eq!(resumed.name(), "FedAdam");
}

#[test]
fn fedopt_rejects_state_of_another_model() {
    let state = FedOptState {
        last_round: Some(1),
        m_t: Some(vec![0.0; 5]),
        v_t: Some(vec![0.0; 5]),
    };
    let mut s = FedOpt::with_state(ServerOptimizer::Yogi, FedOptConfig::yogi_default(), state)
        .expect("valid");
    let err = s.begin_round(2, &vector(&[1.0, 2.0])).expect_err("5 != 2");
    assert!(
        matches!(
            err,
            StrategyError::StateMismatch {
                expected: 2,
                got: 5
            }
        ),
        "{err}"
    );
}

// ---- Robust rules.

#[test]
fn median_handles_odd_even_and_outlier() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    let updates: Vec<(Model, u64)> = [[1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [1000.0, 1e9]]
        .iter()
        .map(|v| (vector(v), 10))
        .collect();
    let out = run(&mut FedMedian::new(1 << 20), 1, &updates[0].0, &updates);
    // The byzantine 1000 / 1e9 does not move the median far.
    assert_eq!(out.to_flat_f32(), vec![2.5, -1.5]);
}

#[test]
fn trimmed_mean_cuts_beta_from_each_end() {
    assert_eq!(trimmed_mean(&mut [100.0, 2.0, 4.0, 3.0, 1.0], 1), 3.0);
    let updates: Vec<(Model, u64)> = [1.0, 2.0, 3.0, 4.0, -500.0]
        .iter()
        .map(|&v| (vector(&[v, v * 2.0]), 1))
        .collect();
    // beta 0.2 of 5 cuts one value from each end: mean(1, 2, 3) = 2.
    let mut s = TrimmedMean::new(0.2, 1 << 20).expect("valid beta");
    let out = run(&mut s, 1, &updates[0].0, &updates);
    assert_eq!(out.to_flat_f32(), vec![2.0, 4.0]);
    // beta 0 is the plain mean.
    let mut plain = TrimmedMean::new(0.0, 1 << 20).expect("valid beta");
    assert_eq!(
        run(&mut plain, 1, &updates[0].0, &updates).to_flat_f32(),
        vec![-98.0, -196.0]
    );
    assert!(TrimmedMean::new(0.5, 1).is_err());
}

#[test]
fn krum_scores_match_hand_computation() {
    // Points 0, 1, 3, 100 with f = 0: each score sums the 2 smallest squared
    // distances to the others.
    let updates: Vec<Vec<f32>> = [0.0, 1.0, 3.0, 100.0].iter().map(|&x| vec![x]).collect();
    let scores = krum_scores(&updates, 0);
    assert_eq!(
        scores,
        vec![1.0 + 9.0, 1.0 + 4.0, 4.0 + 9.0, 97.0 * 97.0 + 99.0 * 99.0]
    );
    assert_eq!(best_indices(&scores, 2), vec![1, 0]);
}

#[test]
fn krum_picks_central_update_and_ignores_byzantine() {
    let updates = vec![
        (vector(&[0.0, 0.0]), 1),
        (vector(&[1.0, 0.0]), 3),
        (vector(&[3.0, 0.0]), 1),
        (vector(&[100.0, -100.0]), 1000),
    ];
    let global = vector(&[0.0, 0.0]);
    let mut krum = Krum::new(0, 0, 1 << 20);
    assert_eq!(
        run(&mut krum, 1, &global, &updates).to_flat_f32(),
        vec![1.0, 0.0]
    );
    assert_eq!(krum.name(), "Krum");

    // Multi-Krum m = 2 averages the two best (1.0 with n=3, 0.0 with n=1).
    let mut multi = Krum::new(0, 2, 1 << 20);
    assert_eq!(
        run(&mut multi, 1, &global, &updates).to_flat_f32(),
        vec![0.75, 0.0]
    );

    // f = 1 with one honest cluster and one attacker still excludes the attacker.
    let mut robust = Krum::new(1, 3, 1 << 20);
    let out = run(&mut robust, 1, &global, &updates).to_flat_f32();
    assert!(
        out[0] < 3.0 && out[1] == 0.0,
        "byzantine update leaked in: {out:?}"
    );
}

#[test]
fn robust_rules_enforce_memory_bound() {
    let global = vector(&[0.0; 4]);
    let per_update = 4 * 4;
    let mut s = FedMedian::new(2 * per_update);
    s.begin_round(1, &global).expect("begin");
    assert_eq!(s.max_updates(), Some(2));
    s.accept(&vector(&[1.0; 4]).view(), 1).expect("first fits");
    s.accept(&vector(&[2.0; 4]).view(), 1).expect("second fits");
    let err = s
        .accept(&vector(&[3.0; 4]).view(), 1)
        .expect_err("third exceeds");
    assert!(
        matches!(
            err,
            StrategyError::MemoryBoundExceeded {
                needed: 48,
                limit: 32,
                buffered: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("maxBufferedBytes"));
    assert_eq!(s.accepted(), 2);
    assert_eq!(s.buffered_bytes(), 32);
    assert_eq!(
        s.finish().expect("two buffered").to_flat_f32(),
        vec![1.5; 4]
    );

    let mut k = Krum::new(0, 0, per_update - 1);
    k.begin_round(1, &global).expect("begin");
    assert!(matches!(
        k.accept(&global.view(), 1),
        Err(StrategyError::MemoryBoundExceeded { buffered: 0, .. })
    ));
}

#[test]
fn abort_discards_round() {
    let global = vector(&[0.0]);
    let mut s = AnyStrategy::from_config(&StrategyConfig::FedMedian {
        max_buffered_bytes: 1 << 10,
    })
    .expect("valid");
    s.begin_round(1, &global).expect("begin");
    s.accept(&vector(&[1.0]).view(), 1).expect("accept");
    s.abort_round();
    assert_eq!(s.accepted(), 0);
    assert!(matches!(s.finish(), Err(StrategyError::NoRound)));
}

// ---- Configuration.

#[test]
fn config_serde_and_validation() {
    let json =
        r#"{"kind":"FedYogi","eta":0.01,"etaL":0.0316,"beta1":0.9,"beta2":0.99,"tau":0.001}"#;
    let cfg: StrategyConfig = serde_json::from_str(json).expect("parse");
    assert_eq!(cfg, StrategyConfig::FedYogi(FedOptConfig::yogi_default()));
    assert_eq!(cfg.client_hints().learning_rate, Some(0.0316));

    let krum: StrategyConfig =
        serde_json::from_str(r#"{"kind":"Krum","numByzantine":1}"#).expect("parse");
    assert_eq!(
        krum,
        StrategyConfig::Krum {
            num_byzantine: 1,
            num_selected: 0,
            max_buffered_bytes: 4 << 30
        }
    );

    let prox = StrategyConfig::FedProx { proximal_mu: 0.01 };
    assert_eq!(prox.client_hints().proximal_mu, Some(0.01));
    let built = prox.build().expect("valid");
    assert_eq!(built.name(), "FedProx");
    assert_eq!(built.checkpoint().config, prox);

    for (bad, field) in [
        (
            StrategyConfig::TrimmedMean {
                beta: 0.5,
                max_buffered_bytes: 1,
            },
            "beta",
        ),
        (StrategyConfig::FedProx { proximal_mu: -1.0 }, "proximalMu"),
        (
            StrategyConfig::FedAdam(FedOptConfig {
                tau: 0.0,
                ..FedOptConfig::adam_default()
            }),
            "tau",
        ),
        (
            StrategyConfig::FedAdam(FedOptConfig {
                beta_1: 1.0,
                ..FedOptConfig::adam_default()
            }),
            "beta1",
        ),
        (
            StrategyConfig::FedMedian {
                max_buffered_bytes: 0,
            },
            "maxBufferedBytes",
        ),
    ] {
        match bad.build() {
            Err(StrategyError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{bad:?} should be invalid, got {other:?}"),
        }
    }
}

#[test]
fn every_config_builds_and_aggregates() {
    let updates = random_models(5, 10, 7);
    let global = updates[0].0.clone();
    for cfg in [
        StrategyConfig::FedAvg,
        StrategyConfig::FedProx { proximal_mu: 0.1 },
        StrategyConfig::FedAdagrad(FedOptConfig::adagrad_default()),
        StrategyConfig::FedAdam(FedOptConfig::adam_default()),
        StrategyConfig::FedYogi(FedOptConfig::yogi_default()),
        StrategyConfig::FedMedian {
            max_buffered_bytes: 1 << 20,
        },
        StrategyConfig::TrimmedMean {
            beta: 0.2,
            max_buffered_bytes: 1 << 20,
        },
        StrategyConfig::Krum {
            num_byzantine: 1,
            num_selected: 2,
            max_buffered_bytes: 1 << 20,
        },
    ] {
        let mut s = cfg.build().expect("valid");
        let out = run(&mut s, 1, &global, &updates);
        assert_eq!(out.spec(), global.spec(), "{cfg:?}");
        assert!(out.to_flat_f32().iter().all(|x| x.is_finite()), "{cfg:?}");
        let back: StrategyCheckpoint =
            serde_json::from_str(&serde_json::to_string(&s.checkpoint()).expect("ser"))
                .expect("de");
        assert_eq!(back.config, cfg);
    }
}

#[test]
fn batched_fold_is_bitwise_equal_to_one_at_a_time() {
    let updates = random_models(5, 2 * sum::PAR_CHUNK + 5, 9);
    let global = &updates[0].0;
    let configs = [
        StrategyConfig::FedAvg,
        StrategyConfig::FedAdam(FedOptConfig::adam_default()),
    ];
    for config in configs {
        let mut one = config.build().expect("strategy");
        let sequential = run(&mut one, 1, global, &updates);
        let mut batch = config.build().expect("strategy");
        batch.begin_round(1, global).expect("begin");
        let views: Vec<ModelView<'_>> = updates.iter().map(|(m, _)| m.view()).collect();
        let pairs: Vec<(&ModelView<'_>, u64)> =
            views.iter().zip(updates.iter().map(|(_, n)| *n)).collect();
        let (head, tail) = pairs.split_at(2);
        batch.accept_batch(head).expect("batch");
        batch.accept_batch(tail).expect("batch");
        assert_eq!(batch.accepted(), 5);
        assert_eq!(batch.finish().expect("finish"), sequential, "{config:?}");
    }
}

#[test]
fn fedavg_reuses_the_recycled_model_and_stays_bitwise_equal() {
    // Several groups of sources per sweep, a tensor over many parallel
    // chunks, and bytes views mixed with typed views.
    let updates = random_models(11, 3 * sum::PAR_CHUNK + 9, 21);
    let global = &updates[0].0;
    let (_, flower) = naive_means(&updates);
    let encoded: Vec<Vec<u8>> = updates
        .iter()
        .map(|(m, _)| m.to_safetensors().expect("encode"))
        .collect();
    let limits = UpdateLimits::default();
    let mut s = FedAvg::new();
    let mut previous: Option<Model> = None;
    for round in 1..=3 {
        s.begin_round(round, global).expect("begin");
        for (k, (m, n)) in updates.iter().enumerate() {
            if k % 2 == 0 {
                let view = decode_update(&encoded[k], global, &limits).expect("valid");
                s.accept(&view, *n).expect("accept");
            } else {
                s.accept(&m.view(), *n).expect("accept");
            }
        }
        let out = s.finish().expect("finish");
        assert_eq!(out.to_flat_f32(), flower, "round {round}");
        if let Some(p) = previous.take() {
            s.recycle(p);
        }
        previous = Some(out);
    }
}

#[test]
fn fedavg_matches_flower_on_half_precision_and_signed_zeros() {
    let mk = |a: &[f32], b: &[f32]| {
        Model::new([
            (
                "a",
                vec![a.len()],
                TensorData::from_f32(crate::model::DType::F16, a),
            ),
            ("b", vec![b.len()], TensorData::F32(b.to_vec())),
        ])
        .expect("valid model")
    };
    let updates = vec![
        (mk(&[1.5, -0.0, 2.0], &[-0.0, 1.0]), 3),
        (mk(&[0.25, -0.0, 1.0], &[-0.0, 2.0]), 5),
        (mk(&[3.0, -0.0, -1.0], &[-0.0, 3.0]), 7),
        (mk(&[1.0, -0.0, 0.5], &[-0.0, 4.0]), 1),
        (mk(&[2.0, -0.0, 0.0], &[-0.0, 5.0]), 2),
    ];
    let out = run(&mut FedAvg::new(), 1, &updates[0].0, &updates);
    let (_, flower) = naive_means(&updates);
    let want = Model::from_flat_f32(out.spec_arc(), &flower).expect("same layout");
    assert_eq!(out, want);
    // NumPy's reduce(np.add) starts from the first product, so a sum of
    // negative zeros stays negative.
    let b = out.tensor("b").expect("tensor b");
    assert!(matches!(b, TensorData::F32(v) if v[0].is_sign_negative()));
}

#[test]
fn fedavg_finish_unscanned_matches_accept_then_finish_or_declines() {
    let global = model_f32(&[0.0; 300_001], &[0.0; 3]);
    let updates = random_models(9, 300_001, 31);
    let expected = run(&mut FedAvg::new(), 1, &global, &updates).to_flat_f32();
    let views: Vec<(ModelView<'_>, u64)> = updates.iter().map(|(m, n)| (m.view(), *n)).collect();
    let pairs: Vec<(&ModelView<'_>, u64)> = views.iter().map(|(v, n)| (v, *n)).collect();

    let mut s = FedAvg::new();
    s.begin_round(1, &global).expect("begin");
    let got = s.finish_unscanned(&pairs).expect("sweep").expect("finite");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got.to_flat_f32()), bits(&expected));

    // Once something was accepted the one-sweep mean cannot start from empty.
    s.begin_round(2, &global).expect("begin");
    s.accept(pairs[0].0, pairs[0].1).expect("accept");
    assert!(s.finish_unscanned(&pairs[1..]).expect("declines").is_none());
    assert_eq!(s.accepted(), 1);

    // A NaN makes it decline having accepted nothing; the usual path then works.
    let mut bad = updates[3].0.to_flat_f32();
    bad[1234] = f32::NAN;
    let bad = Model::from_flat_f32(global.spec_arc(), &bad).expect("model");
    let mut with_bad = pairs.clone();
    let bad_view = bad.view();
    with_bad[3] = (&bad_view, 5);
    s.begin_round(3, &global).expect("begin");
    assert!(s.finish_unscanned(&with_bad).expect("declines").is_none());
    assert_eq!(s.accepted(), 0);
    s.accept_batch(&pairs).expect("accept");
    assert_eq!(
        bits(&s.finish().expect("finish").to_flat_f32()),
        bits(&expected)
    );
}

#[test]
fn fedavg_finish_with_folds_and_divides_in_one_pass_bit_for_bit() {
    let global = model_f32(&[0.0; 300_001], &[0.0; 3]);
    let updates = random_models(5, 300_001, 32);
    let expected = run(&mut FedAvg::new(), 1, &global, &updates).to_flat_f32();
    let views: Vec<(ModelView<'_>, u64)> = updates.iter().map(|(m, n)| (m.view(), *n)).collect();
    let pairs: Vec<(&ModelView<'_>, u64)> = views.iter().map(|(v, n)| (v, *n)).collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    // All of the round as the last batch, part of it, or none of it.
    for split in [0, 3, 5] {
        let mut s = FedAvg::new();
        s.begin_round(1, &global).expect("begin");
        s.accept_batch(&pairs[..split]).expect("accept");
        let out = s.finish_with(&pairs[split..]).expect("finish");
        assert_eq!(
            bits(&out.to_flat_f32()),
            bits(&expected),
            "split at {split}"
        );
        // The next round reuses the buffers and gives the same bits.
        s.recycle(out);
        s.begin_round(2, &global).expect("begin");
        let again = s.finish_with(&pairs).expect("finish");
        assert_eq!(bits(&again.to_flat_f32()), bits(&expected));
    }
    // A batch from another model is refused whole and the round stays open.
    let other = model_f32(&[0.0; 5], &[0.0; 3]);
    let mut s = FedAvg::new();
    s.begin_round(1, &global).expect("begin");
    s.accept(pairs[0].0, pairs[0].1).expect("accept");
    let other_view = other.view();
    assert!(s.finish_with(&[(pairs[1].0, 1), (&other_view, 1)]).is_err());
    assert_eq!(s.accepted(), 1);
    assert!(s.finish_with(&[]).is_ok());
}

/// The one-sweep mean divides inside the pass over the last group of
/// sources: for every size of that group (one to four, after zero to two
/// full groups) it matches Flower's operation order bit for bit, in the
/// vector lanes and the tail of each block, and a NaN or ±inf in any
/// source (first or last group, lane or tail) or a finite overflow makes it
/// decline, so that the caller scans instead.
#[test]
fn one_sweep_mean_divides_with_the_last_group_of_any_size() {
    // Two fold blocks and a tail that is not a whole number of lanes.
    let len = 70_001;
    let global = model_f32(&vec![0.0; len], &[0.0; 3]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let one_sweep = |updates: &[(Model, u64)]| {
        let views: Vec<(ModelView<'_>, u64)> =
            updates.iter().map(|(m, n)| (m.view(), *n)).collect();
        let pairs: Vec<(&ModelView<'_>, u64)> = views.iter().map(|(v, n)| (v, *n)).collect();
        let mut s = FedAvg::new();
        s.begin_round(1, &global).expect("begin");
        s.finish_unscanned(&pairs).expect("same layout")
    };
    for n in 1..=12 {
        let updates = random_models(n, len, 40 + n as u64);
        let got = one_sweep(&updates).expect("finite");
        assert_eq!(
            bits(&got.to_flat_f32()),
            bits(&naive_means(&updates).1),
            "{n} updates"
        );
        for (who, at, bad) in [
            (n - 1, 5, f32::NAN),
            (n - 1, len - 2, f32::INFINITY),
            (0, 40_000, f32::NEG_INFINITY),
            (n / 2, len + 1, f32::NAN),
        ] {
            let mut with_bad = updates.clone();
            let mut flat = with_bad[who].0.to_flat_f32();
            flat[at] = bad;
            with_bad[who].0 = Model::from_flat_f32(global.spec_arc(), &flat).expect("model");
            assert!(
                one_sweep(&with_bad).is_none(),
                "{n} updates, {bad} in update {who} at {at}"
            );
        }
    }
    // Finite updates whose weighted sum overflows are not proven finite.
    let big: Vec<(Model, u64)> = (0..5)
        .map(|_| (model_f32(&vec![f32::MAX / 2.0; len], &[1.0; 3]), 3))
        .collect();
    assert!(one_sweep(&big).is_none());
}
