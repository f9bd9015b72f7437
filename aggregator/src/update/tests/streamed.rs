//! The data check as bytes arrive, and the finiteness scan.

use super::*;
use crate::update::scan::{BLOCK, CHECK_LANES, SCAN_CHUNK, first_non_finite_f32};

/// A model with tensors spanning several scan blocks and chunks, in mixed
/// dtypes, and an update of it with values from `rng`.
fn big_pair(rng: &mut ChaCha8Rng) -> (Model, Vec<u8>) {
    let n = SCAN_CHUNK + 3 * BLOCK + 7;
    let mut random =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let g = Model::new([
        ("a", vec![n], TensorData::F32(random(n))),
        ("b", vec![5], TensorData::F32(random(5))),
        (
            "c",
            vec![2 * BLOCK + 1],
            TensorData::from_f32(DType::F16, &random(2 * BLOCK + 1)),
        ),
    ])
    .expect("valid model");
    let u = Model::new([
        ("a", vec![n], TensorData::F32(random(n))),
        ("b", vec![5], TensorData::F32(random(5))),
        (
            "c",
            vec![2 * BLOCK + 1],
            TensorData::from_f32(DType::F16, &random(2 * BLOCK + 1)),
        ),
    ])
    .expect("valid model");
    let bytes = u.to_safetensors().expect("encode");
    (g, bytes)
}

/// Feeds `bytes` to a [`DataCheck`] in random-sized pieces, as the network would.
fn check_streamed(
    bytes: &[u8],
    g: &Model,
    limits: &UpdateLimits,
    rng: &mut ChaCha8Rng,
) -> Result<UpdateHeader, UpdateRejection> {
    let header_len = declared_header_len(bytes, limits)?;
    let header = parse_update_header(&bytes[..8 + header_len], g.spec(), limits)?;
    let mut check = DataCheck::new(header, limits);
    let mut at = 8 + header_len;
    while at < bytes.len() {
        at = (at + rng.random_range(1..20_000)).min(bytes.len());
        check.feed(&bytes[..at], g)?;
    }
    assert!(check.is_complete());
    check.finish(bytes, g)
}

#[test]
fn streamed_check_agrees_with_validate_update_however_the_bytes_are_split() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..4 {
        let (g, bytes) = big_pair(&mut rng);
        let whole = validate_update(&bytes, &g, &UpdateLimits::for_spec(g.spec()));
        // The norm must be the very same number, so a bound just under it
        // rejects both ways and one just over accepts both ways.
        let norm = match validate_update(
            &bytes,
            &g,
            &UpdateLimits {
                max_update_norm: Some(0.0),
                ..UpdateLimits::for_spec(g.spec())
            },
        ) {
            Err(UpdateRejection::NormExceeded { norm, .. }) => norm,
            other => panic!("expected a norm rejection, got {other:?}"),
        };
        for bound in [norm, f64::from_bits(norm.to_bits() - 1)] {
            let limits = UpdateLimits {
                max_update_norm: Some(bound),
                ..UpdateLimits::for_spec(g.spec())
            };
            for _ in 0..3 {
                let streamed = check_streamed(&bytes, &g, &limits, &mut rng);
                assert_eq!(
                    streamed,
                    validate_update(&bytes, &g, &limits),
                    "bound {bound} (norm {norm})"
                );
            }
        }
        assert!(whole.is_ok());
    }
}

#[test]
fn streamed_check_rejects_non_finite_values_as_soon_as_they_arrive() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (g, mut bytes) = big_pair(&mut rng);
    let limits = UpdateLimits::for_spec(g.spec());
    let header_len = declared_header_len(&bytes, &limits).expect("prefix");
    let header = parse_update_header(&bytes[..8 + header_len], g.spec(), &limits).expect("header");
    // Poison one element in the middle of the data.
    let at = header.data_start() + (header.total_len() - header.data_start()) / 2 / 4 * 4;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut check = DataCheck::new(header, &limits);
    let err = check
        .feed(&bytes[..at + 4 + 4 * BLOCK], &g)
        .expect_err("the NaN is in a complete block");
    assert_eq!(err.reason(), "non_finite");
    assert_eq!(
        validate_update(&bytes, &g, &limits)
            .expect_err("same verdict")
            .reason(),
        "non_finite"
    );
}

#[test]
fn streamed_check_refuses_short_and_long_buffers() {
    let g = global();
    let bytes = update([1.0; 4], [2.0; 3]);
    let limits = UpdateLimits::default();
    let header_len = declared_header_len(&bytes, &limits).expect("prefix");
    let header = parse_update_header(&bytes[..8 + header_len], g.spec(), &limits).expect("header");
    let check = DataCheck::new(header, &limits);
    let short = check.clone().finish(&bytes[..bytes.len() - 1], &g);
    assert!(
        matches!(short, Err(UpdateRejection::Truncated { .. })),
        "{short:?}"
    );
    let mut long = bytes.clone();
    long.push(0);
    let long = check.clone().finish(&long, &g);
    assert!(
        matches!(long, Err(UpdateRejection::TrailingBytes { .. })),
        "{long:?}"
    );
    assert!(check.finish(&bytes, &g).is_ok());
}

/// The vector finiteness test agrees with the bit test for every kind of
/// non-finite value, in every lane, a later block and the tail, and lets
/// extreme finite values (largest, smallest subnormal, -0) through.
#[test]
fn f32_scan_finds_each_non_finite_value_in_lanes_blocks_and_tail() {
    let n = 2 * BLOCK + CHECK_LANES + 5;
    let finite = [f32::MAX, f32::MIN, f32::from_bits(1), -0.0, 1.5];
    let clean: Vec<[u8; 4]> = (0..n)
        .map(|i| finite[i % finite.len()].to_le_bytes())
        .collect();
    assert_eq!(first_non_finite_f32(&clean), None);
    let spots = (0..CHECK_LANES).chain([BLOCK + 7, n - 1, n - 3]);
    for at in spots {
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut words = clean.clone();
            words[at] = bad.to_le_bytes();
            // A second bad value later must not hide the first.
            words[n - 2] = f32::NAN.to_le_bytes();
            assert_eq!(
                first_non_finite_f32(&words),
                Some(at.min(n - 2)),
                "{bad} at {at}"
            );
        }
    }
}
