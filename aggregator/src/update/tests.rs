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

#[test]
fn valid_update_decodes_without_copy() {
    let g = global();
    let bytes = update([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0]);
    let view = decode_update(&bytes, &g, &UpdateLimits::default()).expect("valid");
    assert_eq!(view.to_flat_f32(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert!(matches!(view.tensors()[0], TensorView::Bytes { .. }));
    // A hand-written header with the same layout is just as valid.
    assert!(decode_update(&raw(&good_header(), 28), &g, &UpdateLimits::default()).is_ok());
}

#[test]
fn header_can_be_checked_before_the_body_arrives() {
    let g = global();
    let bytes = update([1.0; 4], [1.0; 3]);
    let limits = UpdateLimits::default();
    let header_len = declared_header_len(&bytes[..8], &limits).expect("prefix");
    let prefix = &bytes[..8 + header_len];
    let header = parse_update_header(prefix, g.spec(), &limits).expect("header");
    assert_eq!(header.total_len(), bytes.len());
    assert_eq!(header.data_start(), 8 + header_len);

    // The declared size is enforced from the header alone.
    let small = UpdateLimits {
        max_update_bytes: bytes.len() as u64 - 1,
        ..limits
    };
    let err = parse_update_header(prefix, g.spec(), &small).expect_err("declared too big");
    assert_eq!(err.reason(), "oversized");
}

#[test]
fn rejects_nan_and_infinities_naming_the_element() {
    for (value, shown) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let err = reject(&update([0.0; 4], [1.0, value, 2.0]));
        assert!(
            matches!(&err, UpdateRejection::NonFinite { tensor, index: 1, .. } if tensor == "b"),
            "{err}"
        );
        assert_eq!(err.reason(), "non_finite");
        assert!(err.to_string().contains(shown), "{err}");
    }
}

#[test]
fn rejects_non_finite_half_precision() {
    let g = Model::new([("h", vec![2], TensorData::F16(vec![f16::ZERO; 2]))]).expect("valid");
    let bad = Model::new([("h", vec![2], TensorData::F16(vec![f16::ONE, f16::INFINITY]))])
        .expect("valid")
        .to_safetensors()
        .expect("encode");
    let err = decode_update(&bad, &g, &UpdateLimits::default()).expect_err("inf");
    assert!(
        matches!(err, UpdateRejection::NonFinite { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn rejects_wrong_shape() {
    let header = format!(
        "{{{},{}}}",
        entry("a", "F32", "[4]", 0, 16),
        entry("b", "F32", "[3]", 16, 28)
    );
    let err = reject(&raw(&header, 28));
    assert_eq!(
        err,
        UpdateRejection::ShapeMismatch {
            tensor: "a".into(),
            expected: vec![2, 2],
            got: vec![4]
        }
    );
    assert_eq!(err.reason(), "shape_mismatch");
    assert!(
        err.to_string()
            .contains("[4] but the global model has [2, 2]"),
        "{err}"
    );
}

#[test]
fn rejects_wrong_dtype() {
    let header = format!(
        "{{{},{}}}",
        entry("a", "F16", "[2,2]", 0, 8),
        entry("b", "F32", "[3]", 8, 20)
    );
    let err = reject(&raw(&header, 20));
    assert!(
        matches!(&err, UpdateRejection::DtypeMismatch { tensor, expected: DType::F32, got } if tensor == "a" && got == "F16"),
        "{err}"
    );
    assert_eq!(err.reason(), "dtype_mismatch");
    // Integer dtypes the aggregator never handles are a dtype mismatch too.
    let header = format!(
        "{{{},{}}}",
        entry("a", "I64", "[2,2]", 0, 32),
        entry("b", "F32", "[3]", 32, 44)
    );
    assert_eq!(reject(&raw(&header, 44)).reason(), "dtype_mismatch");
}

#[test]
fn rejects_truncated_buffers_at_every_length() {
    let bytes = update([1.0; 4], [2.0; 3]);
    let err = reject(&bytes[..bytes.len() - 1]);
    assert!(
        matches!(
            err,
            UpdateRejection::Truncated {
                what: "tensor data",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "truncated");
    // Every prefix is refused, none panics.
    for cut in 0..bytes.len() {
        assert!(decode_update(&bytes[..cut], &global(), &UpdateLimits::default()).is_err());
    }
    assert!(matches!(
        reject(&bytes[..5]),
        UpdateRejection::Truncated {
            what: "header length prefix",
            expected: 8,
            got: 5
        }
    ));
}

#[test]
fn rejects_lying_header_length() {
    let mut bytes = update([1.0; 4], [2.0; 3]);
    let real = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));

    // Longer than the buffer: the header is "truncated".
    bytes[..8].copy_from_slice(&(real + 1000).to_le_bytes());
    let err = reject(&bytes);
    assert!(
        matches!(err, UpdateRejection::Truncated { what: "header", .. }),
        "{err}"
    );

    // Absurdly long: refused before anything is read or allocated.
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = reject(&bytes);
    assert!(
        matches!(
            err,
            UpdateRejection::HeaderTooLarge {
                claimed: u64::MAX,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "header_invalid");

    // Shorter than the real header: the JSON is cut and invalid.
    bytes[..8].copy_from_slice(&(real - 10).to_le_bytes());
    let err = reject(&bytes);
    assert!(
        matches!(err, UpdateRejection::HeaderInvalid { .. }),
        "{err}"
    );
}

#[test]
fn rejects_overlapping_gapped_and_inconsistent_offsets() {
    let overlapping = format!(
        "{{{},{}}}",
        entry("a", "F32", "[2,2]", 0, 16),
        entry("b", "F32", "[3]", 8, 20)
    );
    let err = reject(&raw(&overlapping, 20));
    assert!(
        matches!(&err, UpdateRejection::OffsetsInvalid { tensor, problem, .. } if tensor == "b" && problem.contains("overlaps \"a\"")),
        "{err}"
    );
    assert_eq!(err.reason(), "offsets_invalid");

    let out_of_range = format!(
        "{{{},{}}}",
        entry("a", "F32", "[2,2]", 0, 16),
        entry("b", "F32", "[3]", 1_000_000, 1_000_012)
    );
    let err = reject(&raw(&out_of_range, 28));
    assert!(
        matches!(&err, UpdateRejection::OffsetsInvalid { problem, .. } if problem.contains("gap")),
        "{err}"
    );

    let wrong_span = format!(
        "{{{},{}}}",
        entry("a", "F32", "[2,2]", 0, 12),
        entry("b", "F32", "[3]", 12, 24)
    );
    let err = reject(&raw(&wrong_span, 24));
    assert!(
        matches!(&err, UpdateRejection::OffsetsInvalid { problem, .. } if problem.contains("needs 16")),
        "{err}"
    );

    let reversed = format!(
        "{{{},{}}}",
        entry("a", "F32", "[2,2]", 16, 0),
        entry("b", "F32", "[3]", 16, 28)
    );
    let err = reject(&raw(&reversed, 28));
    assert!(
        matches!(&err, UpdateRejection::OffsetsInvalid { problem, .. } if problem.contains("end before begin")),
        "{err}"
    );

    // Offsets beyond the buffer with a consistent layout: the data is truncated.
    let err = reject(&raw(&good_header(), 20));
    assert!(
        matches!(
            err,
            UpdateRejection::Truncated {
                what: "tensor data",
                ..
            }
        ),
        "{err}"
    );

    // Bytes past the last tensor.
    let err = reject(&raw(&good_header(), 29));
    assert!(
        matches!(err, UpdateRejection::TrailingBytes { expected, got } if got == expected + 1),
        "{err}"
    );
}

#[test]
fn rejects_oversized_updates() {
    let bytes = update([1.0; 4], [2.0; 3]);
    let limits = UpdateLimits {
        max_update_bytes: 32,
        ..UpdateLimits::default()
    };
    let err = reject_with(&bytes, &limits);
    assert_eq!(
        err,
        UpdateRejection::Oversized {
            got: bytes.len() as u64,
            limit: 32
        }
    );
    assert_eq!(err.reason(), "oversized");
    // Sized for the spec, a real update fits.
    let g = global();
    assert!(decode_update(&bytes, &g, &UpdateLimits::for_spec(g.spec())).is_ok());
}

#[test]
fn rejects_missing_and_extra_tensors() {
    let missing = format!("{{{}}}", entry("a", "F32", "[2,2]", 0, 16));
    let err = reject(&raw(&missing, 16));
    assert_eq!(err, UpdateRejection::MissingTensor { tensor: "b".into() });
    assert_eq!(err.reason(), "missing_tensor");

    let extra = format!(
        "{{{},{},{},{}}}",
        entry("a", "F32", "[2,2]", 0, 16),
        entry("b", "F32", "[3]", 16, 28),
        entry("c", "F32", "[1]", 28, 32),
        r#""__metadata__":{"k":"v"}"#
    );
    let err = reject(&raw(&extra, 32));
    assert_eq!(err, UpdateRejection::UnknownTensor { tensor: "c".into() });
    assert_eq!(err.reason(), "unknown_tensor");
}

#[test]
fn rejects_malformed_headers() {
    let dup = format!(
        "{{{},{},{}}}",
        entry("a", "F32", "[2,2]", 0, 16),
        entry("b", "F32", "[3]", 16, 28),
        entry("a", "F32", "[2,2]", 0, 16)
    );
    let err = reject(&raw(&dup, 28));
    assert!(err.to_string().contains("listed twice"), "{err}");

    for header in [
        "not json",
        "[1,2,3]",
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16],"extra":1}}"#,
        r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,16]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2,2]}}"#,
        "{} trailing",
    ] {
        let err = reject(&raw(header, 28));
        assert_eq!(err.reason(), "header_invalid", "{header}: {err}");
    }
    let mut not_utf8 = raw("{}", 0);
    not_utf8[9] = 0xFF;
    assert_eq!(reject(&not_utf8).reason(), "header_invalid");

    // A shape whose size overflows is caught, not multiplied blindly.
    let huge = format!(
        "{{{},{}}}",
        entry("a", "F32", "[2,2]", 0, 16),
        entry("b", "F32", "[3]", 16, 28)
    )
    .replace("[3]", "[18446744073709551615,18446744073709551615]");
    assert_eq!(reject(&raw(&huge, 28)).reason(), "shape_mismatch");
}

#[test]
fn enforces_norm_bound_against_global() {
    let g = global();
    // ‖update − 0‖ = ‖(3, 4, 0…)‖ = 5.
    let bytes = update([3.0, 4.0, 0.0, 0.0], [0.0; 3]);
    let tight = UpdateLimits {
        max_update_norm: Some(4.9),
        ..UpdateLimits::default()
    };
    let err = decode_update(&bytes, &g, &tight).expect_err("norm 5 > 4.9");
    assert!(
        matches!(err, UpdateRejection::NormExceeded { norm, limit } if norm == 5.0 && limit == 4.9),
        "{err}"
    );
    assert_eq!(err.reason(), "norm_exceeded");
    let loose = UpdateLimits {
        max_update_norm: Some(5.1),
        ..UpdateLimits::default()
    };
    assert!(decode_update(&bytes, &g, &loose).is_ok());
}

#[test]
fn half_precision_round_trips_through_safetensors() {
    let h: Vec<f16> = [0.5f32, -1.25, 65504.0, 1e-4]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let b: Vec<bf16> = [0.5f32, -1.25, 3.0e38, 1e-30]
        .iter()
        .map(|&x| bf16::from_f32(x))
        .collect();
    let m = Model::new([
        ("h", vec![2, 2], TensorData::F16(h)),
        ("b", vec![4], TensorData::BF16(b)),
        ("f", vec![1], TensorData::F32(vec![std::f32::consts::PI])),
    ])
    .expect("valid");
    let bytes = m.to_safetensors().expect("encode");

    // Readable by the reference implementation…
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("reference decoder");
    assert_eq!(st.tensor("h").expect("h").dtype(), safetensors::Dtype::F16);
    // …and back through ours, bit for bit.
    let back = decode_model(&bytes, &UpdateLimits::default()).expect("decode");
    assert_eq!(back, m);
    let view = decode_update(&bytes, &m, &UpdateLimits::default()).expect("as update");
    assert_eq!(view.to_model(), m);
}

#[test]
fn decode_model_rejects_unsupported_dtypes() {
    let header = format!("{{{}}}", entry("i", "I32", "[2]", 0, 8));
    let err = decode_model(&raw(&header, 8), &UpdateLimits::default()).expect_err("I32");
    assert!(
        matches!(err, UpdateRejection::UnsupportedDtype { .. }),
        "{err}"
    );
    let header = format!(
        "{{{}}}",
        entry("f", "F32", "[4294967296,4294967296,16]", 0, 8)
    );
    let err = decode_model(&raw(&header, 8), &UpdateLimits::default()).expect_err("overflow");
    assert_eq!(err.reason(), "offsets_invalid", "{err}");
}

#[test]
fn random_corruption_never_panics() {
    let g = global();
    let good = update([1.0; 4], [2.0; 3]);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for _ in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        // Either accepted (e.g. a flipped mantissa bit) or rejected, never a panic.
        let _ = decode_update(&bytes, &g, &UpdateLimits::default());
    }
}

#[test]
fn every_reason_is_listed() {
    let samples = [
        UpdateRejection::Oversized { got: 1, limit: 0 },
        UpdateRejection::HeaderInvalid {
            detail: String::new(),
        },
        UpdateRejection::Truncated {
            what: "header",
            expected: 1,
            got: 0,
        },
        UpdateRejection::NormExceeded {
            norm: 1.0,
            limit: 0.0,
        },
    ];
    for s in samples {
        assert!(UpdateRejection::REASONS.contains(&s.reason()));
    }
}

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
