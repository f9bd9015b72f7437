//! Header and layout checks: shapes, dtypes, offsets, sizes, norms.

use super::*;

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
