use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::model::{DType, TensorData};

/// Large enough that the fold runs in parallel blocks (and has a tail).
const BIG: usize = (1 << 18) + 7;

fn global() -> Model {
    Model::new([
        ("w", vec![BIG], TensorData::F32(vec![0.0; BIG])),
        ("b", vec![5], TensorData::F32(vec![0.0; 5])),
        ("h", vec![3], TensorData::from_f32(DType::BF16, &[0.0; 3])),
    ])
    .expect("valid model")
}

fn update(rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..BIG + 8)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

fn encode(flat: &[f32]) -> Vec<u8> {
    Model::new([
        ("w", vec![BIG], TensorData::F32(flat[..BIG].to_vec())),
        ("b", vec![5], TensorData::F32(flat[BIG..BIG + 5].to_vec())),
        (
            "h",
            vec![3],
            TensorData::from_f32(DType::BF16, &flat[BIG + 5..BIG + 8]),
        ),
    ])
    .expect("valid model")
    .to_safetensors()
    .expect("encode")
}

/// The reference: every update validated first, then folded as the
/// streaming server folds them.
fn validate_then_fold(global: &Model, updates: &[(&[u8], u64)]) -> Vec<f32> {
    let limits = UpdateLimits::for_spec(global.spec());
    let mut s = FedAvg::new();
    s.begin_round(1, global).expect("begin");
    let views: Vec<(ModelView<'_>, u64)> = updates
        .iter()
        .filter_map(|(b, n)| {
            validate_update(b, global, &limits)
                .ok()
                .map(|h| (view_validated(b, global, &h), *n))
        })
        .collect();
    for (v, n) in &views {
        s.accept(v, *n).expect("accept");
    }
    s.finish().expect("finish").to_flat_f32()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn round(updates: &[(&[u8], u64)]) -> Result<InMemoryRound, InMemoryError> {
    let g = global();
    let limits = UpdateLimits::for_spec(g.spec());
    fedavg_round(&mut FedAvg::new(), 1, &g, updates, &limits)
}

#[test]
fn one_sweep_is_bit_identical_to_validating_first() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let encoded: Vec<Vec<u8>> = (0..11).map(|_| encode(&update(&mut rng))).collect();
    let updates: Vec<(&[u8], u64)> = encoded
        .iter()
        .zip([3u64, 1, 40, 7, 7, 2, 9, 100, 5, 1, 13])
        .map(|(b, n)| (b.as_slice(), n))
        .collect();
    let out = round(&updates).expect("round");
    assert!(out.rejected.is_empty());
    assert_eq!(
        bits(&out.model.to_flat_f32()),
        bits(&validate_then_fold(&global(), &updates))
    );
}

#[test]
fn a_non_finite_update_is_rejected_precisely_and_the_rest_still_averaged() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut flats: Vec<Vec<f32>> = (0..6).map(|_| update(&mut rng)).collect();
    flats[2][BIG / 2] = f32::NAN;
    flats[4][BIG + 6] = f32::INFINITY; // in the bf16 tensor
    let encoded: Vec<Vec<u8>> = flats.iter().map(|f| encode(f)).collect();
    let updates: Vec<(&[u8], u64)> = encoded.iter().map(|b| (b.as_slice(), 10)).collect();
    let out = round(&updates).expect("round");
    let reasons: Vec<(usize, String)> = out
        .rejected
        .iter()
        .map(|(i, e)| (*i, e.to_string()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, 2);
    assert!(
        reasons[0]
            .1
            .contains(&format!("\"w\": element {}", BIG / 2)),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, 4);
    assert!(reasons[1].1.contains("\"h\": element 1"), "{reasons:?}");
    let good: Vec<(&[u8], u64)> = [0, 1, 3, 5].iter().map(|&i| updates[i]).collect();
    assert_eq!(
        bits(&out.model.to_flat_f32()),
        bits(&validate_then_fold(&global(), &good))
    );
}

#[test]
fn an_overflowing_mean_of_finite_updates_is_kept_as_validation_would() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut flats: Vec<Vec<f32>> = (0..3).map(|_| update(&mut rng)).collect();
    for f in &mut flats {
        f[17] = 3.0e38;
    }
    let encoded: Vec<Vec<u8>> = flats.iter().map(|f| encode(f)).collect();
    let updates: Vec<(&[u8], u64)> = encoded.iter().map(|b| (b.as_slice(), 4)).collect();
    let out = round(&updates).expect("round");
    assert!(out.rejected.is_empty());
    let w = out.model.tensor("w").expect("w").view();
    let mut x = [0f32; 1];
    w.zip_f32(17, &mut x, |o, v| *o = v);
    assert!(x[0].is_infinite(), "{}", x[0]);
    assert_eq!(
        bits(&out.model.to_flat_f32()),
        bits(&validate_then_fold(&global(), &updates))
    );
}

#[test]
fn layout_and_norm_refusals_name_the_update() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let good = encode(&update(&mut rng));
    let far: Vec<f32> = update(&mut rng).iter().map(|x| x * 1000.0).collect();
    let far = encode(&far);
    let truncated = &good[..good.len() - 3];
    let updates: Vec<(&[u8], u64)> = vec![(truncated, 1), (&good, 2), (&far, 3)];

    let out = round(&updates).expect("round");
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].0, 0);
    assert_eq!(out.rejected[0].1.reason(), "truncated");

    // With a norm bound every update is scanned first, and the far one goes.
    let g = global();
    let limits = UpdateLimits {
        max_update_norm: Some(1000.0),
        ..UpdateLimits::for_spec(g.spec())
    };
    let out = fedavg_round(&mut FedAvg::new(), 1, &g, &updates, &limits).expect("round");
    let reasons: Vec<(usize, &str)> = out.rejected.iter().map(|(i, e)| (*i, e.reason())).collect();
    assert_eq!(reasons, vec![(0, "truncated"), (2, "norm_exceeded")]);
    assert_eq!(
        bits(&out.model.to_flat_f32()),
        bits(&validate_then_fold(&g, &[(&good, 2)]))
    );
}

#[test]
fn a_round_with_nothing_valid_is_an_error_and_the_strategy_goes_on() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut bad = update(&mut rng);
    bad[0] = f32::NEG_INFINITY;
    let bad = encode(&bad);
    let g = global();
    let limits = UpdateLimits::for_spec(g.spec());
    let mut s = FedAvg::new();
    let err = fedavg_round(&mut s, 1, &g, &[(&bad, 1)], &limits).expect_err("nothing valid");
    assert!(
        matches!(
            err,
            InMemoryError::NoneAccepted {
                round: 1,
                count: 1,
                ..
            }
        ),
        "{err}"
    );
    // The same strategy runs the next round (its buffers were kept).
    let good = encode(&update(&mut rng));
    let out = fedavg_round(&mut s, 2, &g, &[(&good, 1)], &limits).expect("round 2");
    assert_eq!(
        bits(&out.model.to_flat_f32()),
        bits(&validate_then_fold(&g, &[(&good, 1)]))
    );
}

#[test]
fn recycled_buffers_give_the_same_bits() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let encoded: Vec<Vec<u8>> = (0..4).map(|_| encode(&update(&mut rng))).collect();
    let updates: Vec<(&[u8], u64)> = encoded.iter().map(|b| (b.as_slice(), 2)).collect();
    let g = global();
    let limits = UpdateLimits::for_spec(g.spec());
    let mut s = FedAvg::new();
    let first = fedavg_round(&mut s, 1, &g, &updates, &limits).expect("round 1");
    let expected = bits(&first.model.to_flat_f32());
    s.recycle(first.model);
    let second = fedavg_round(&mut s, 2, &g, &updates, &limits).expect("round 2");
    assert_eq!(bits(&second.model.to_flat_f32()), expected);
}
