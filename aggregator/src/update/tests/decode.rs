//! Decoding stored models, corruption and the reason labels.

use super::*;

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
