use half::{bf16, f16};

use super::*;

#[test]
fn spec_sorts_by_name_and_rejects_duplicates() {
    let t = |n: &str| TensorSpec {
        name: n.into(),
        dtype: DType::F32,
        shape: vec![2],
    };
    let spec = ModelSpec::new(vec![t("b"), t("a")]).expect("valid spec");
    assert_eq!(spec.tensors()[0].name, "a");
    assert_eq!(spec.offset_at(1), 2);
    assert_eq!(spec.total_bytes(), 16);
    assert!(matches!(
        ModelSpec::new(vec![t("a"), t("a")]),
        Err(ModelError::DuplicateTensor { .. })
    ));
    assert!(matches!(ModelSpec::new(vec![]), Err(ModelError::Empty)));
}

#[test]
fn model_rejects_length_mismatch() {
    let err = Model::new([("w", vec![2, 2], TensorData::F32(vec![1.0; 3]))])
        .expect_err("3 elements cannot fill a 2x2 tensor");
    assert!(err.to_string().contains("needs 4 elements"), "{err}");
}

#[test]
fn flat_round_trip_converts_dtypes() {
    let m = Model::new([
        ("a", vec![2], TensorData::F16(vec![f16::from_f32(1.5); 2])),
        ("b", vec![1], TensorData::BF16(vec![bf16::from_f32(-2.0)])),
        ("c", vec![1], TensorData::F32(vec![0.25])),
    ])
    .expect("valid model");
    let flat = m.to_flat_f32();
    assert_eq!(flat, vec![1.5, 1.5, -2.0, 0.25]);
    let back = Model::from_flat_f32(m.spec_arc(), &flat).expect("same length");
    assert_eq!(back, m);
}

#[test]
fn bytes_view_reads_little_endian() {
    let bytes: Vec<u8> = [1.0f32, -3.5]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let v = TensorView::Bytes {
        dtype: DType::F32,
        bytes: &bytes,
    };
    let mut out = [0f32; 2];
    v.copy_to_f32(&mut out);
    assert_eq!(out, [1.0, -3.5]);
    // An out-of-range chunk is skipped instead of panicking.
    let mut tail = [9f32; 4];
    v.zip_f32(1, &mut tail, |o, x| *o = x);
    assert_eq!(tail, [-3.5, 9.0, 9.0, 9.0]);
}
