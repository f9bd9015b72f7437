//! Bit-exactness of the fold paths: batched, recycled, one-sweep, half precision.

use super::*;

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
