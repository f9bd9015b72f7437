//! FedAvg: the weighted mean, its parallel and batched folds, dtypes and errors.

use super::*;

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
