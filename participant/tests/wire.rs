//! Parameters on the wire: names stable across participants, safetensors
//! round trips (built-in and TorchScript models), F16/BF16, and the
//! aggregator's own decoder accepting what the participant sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use fedsky_aggregator::{UpdateLimits, decode_model, decode_update};
use fedsky_participant::model::{Architecture, InputShape, ModelSpec, Net};
use fedsky_participant::params::{self, ParamsError, WireDtype, WireModel};
use fedsky_participant::train::seed_everything;
use tch::Device;

fn net(arch: Architecture, seed: u64) -> Net {
    seed_everything(seed);
    Net::new(
        &ModelSpec {
            arch,
            input: InputShape::Image {
                channels: 1,
                height: 32,
                width: 32,
            },
            num_classes: 3,
        },
        Device::Cpu,
    )
    .unwrap()
}

fn names(bytes: &[u8]) -> Vec<String> {
    WireModel::decode(bytes)
        .unwrap()
        .tensors
        .into_keys()
        .collect()
}

#[test]
fn builtin_models_round_trip_with_stable_names() {
    let _g = torch_lock();
    for arch in [Architecture::SmallCnn, Architecture::ResNet18] {
        let a = net(arch.clone(), 1);
        let b = net(arch.clone(), 2);
        let (ea, eb) = (
            params::encode(&a, WireDtype::F32).unwrap(),
            params::encode(&b, WireDtype::F32).unwrap(),
        );
        assert!(ea != eb, "{arch}: different seeds, different weights");
        assert_eq!(
            names(&ea),
            names(&eb),
            "{arch}: same names on every participant"
        );
        // Encoding is a pure function of the values.
        assert!(ea == params::encode(&a, WireDtype::F32).unwrap());
        params::load_bytes(&b, &ea).unwrap();
        assert!(
            params::encode(&b, WireDtype::F32).unwrap() == ea,
            "{arch}: round trip"
        );
        // The aggregator reads the same tensors.
        let m = decode_model(&ea, &UpdateLimits::default()).unwrap();
        assert_eq!(m.spec().tensors().len(), names(&ea).len());
    }
    let n = names(&params::encode(&net(Architecture::SmallCnn, 0), WireDtype::F32).unwrap());
    assert_eq!(
        n,
        [
            "conv1.bias",
            "conv1.weight",
            "conv2.bias",
            "conv2.weight",
            "conv3.bias",
            "conv3.weight",
            "fc1.bias",
            "fc1.weight",
            "fc2.bias",
            "fc2.weight"
        ]
    );
    let r = names(&params::encode(&net(Architecture::ResNet18, 0), WireDtype::F32).unwrap());
    for expected in [
        "conv1.weight",
        "bn1.running_mean",
        "layer4.1.bn2.weight",
        "layer2.0.downsample.0.weight",
        "fc.weight",
    ] {
        assert!(
            r.iter().any(|x| x == expected),
            "{expected} missing from {r:?}"
        );
    }
}

#[test]
fn half_precision_wire_formats() {
    let _g = torch_lock();
    let a = net(Architecture::SmallCnn, 1);
    let f32_bytes = params::encode(&a, WireDtype::F32).unwrap();
    for dtype in [WireDtype::F16, WireDtype::Bf16] {
        let bytes = params::encode(&a, dtype).unwrap();
        assert!(
            bytes.len() < f32_bytes.len() * 6 / 10,
            "{dtype:?} halves the payload"
        );
        let m = WireModel::decode(&bytes).unwrap();
        assert!(m.tensors.values().all(|t| t.dtype == dtype));
        decode_model(&bytes, &UpdateLimits::default()).unwrap();
        let b = net(Architecture::SmallCnn, 2);
        params::load(&b, &m).unwrap();
        let tol = if dtype == WireDtype::F16 { 1e-3 } else { 1e-2 };
        let back = WireModel::decode(&params::encode(&b, WireDtype::F32).unwrap()).unwrap();
        let orig = WireModel::decode(&f32_bytes).unwrap();
        for (name, t) in &orig.tensors {
            for (x, y) in t.values.iter().zip(&back.tensors[name].values) {
                assert!(
                    (x - y).abs() <= tol * x.abs().max(1e-2),
                    "{name}: {x} vs {y}"
                );
            }
        }
        // An update is encoded in the global model's dtypes.
        let like = params::encode_like(&b, &m.dtypes()).unwrap();
        assert!(
            WireModel::decode(&like)
                .unwrap()
                .tensors
                .values()
                .all(|t| t.dtype == dtype)
        );
    }
}

#[test]
fn a_mismatched_model_is_refused_by_tensor_name() {
    let _g = torch_lock();
    let cnn = net(Architecture::SmallCnn, 1);
    let mut m = WireModel::decode(&params::encode(&cnn, WireDtype::F32).unwrap()).unwrap();
    let mut t = m.tensors.remove("fc2.weight").unwrap();
    let err = params::load(&cnn, &m).unwrap_err();
    assert!(
        matches!(&err, ParamsError::Missing { tensor } if tensor == "fc2.weight"),
        "{err}"
    );
    t.shape = vec![4, 128];
    t.values = vec![0.0; 512];
    m.tensors.insert("fc2.weight".into(), t);
    let err = params::load(&cnn, &m).unwrap_err();
    assert!(
        err.to_string().contains("fc2.weight") && err.to_string().contains("[4, 128]"),
        "{err}"
    );
    assert!(matches!(
        params::load_bytes(&cnn, b"not safetensors"),
        Err(ParamsError::Format(_))
    ));
}

#[test]
fn torchscript_reference_model_loads_trains_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = export_reference_model(&dir.path().join("reference.pt"), 32);
    let _g = torch_lock();
    let arch = Architecture::TorchScript(path);
    let mut e = engine(shared_dataset(), 32, arch.clone(), cpu_options());
    let global = e.initial_model(WireDtype::F32).unwrap();
    let n = names(&global);
    assert!(
        n.contains(&"conv1_weight".to_string()) && n.contains(&"fc2_bias".to_string()),
        "{n:?}"
    );
    let before = e.evaluate(&global).unwrap();
    let p = fit_params(15, 2);
    let out = e.fit(&global, &p).unwrap();
    let after = e.evaluate(&out.bytes).unwrap();
    println!(
        "TorchScript reference: loss {:.3} -> {:.3}, acc {:.3} -> {:.3}",
        before.loss, after.loss, before.accuracy, after.accuracy
    );
    assert!(after.loss < before.loss, "the module trains in place");
    assert!(after.accuracy > 0.5, "{}", after.accuracy);
    assert_eq!(names(&out.bytes), n, "names survive training");
    // Another participant loading the same file gets the same names and
    // accepts the update.
    let other = engine(shared_dataset(), 32, arch, cpu_options());
    params::load_bytes(other.net(), &out.bytes).unwrap();
    assert!(params::encode(other.net(), WireDtype::F32).unwrap() == out.bytes);
    let global_model = decode_model(&global, &UpdateLimits::default()).unwrap();
    decode_update(&out.bytes, &global_model, &UpdateLimits::default()).unwrap();
    // The trained module can be saved back as TorchScript.
    assert!(
        other
            .net()
            .save_script(&dir.path().join("trained.pt"))
            .unwrap()
    );
}
