//! Shared helpers: synthetic datasets in temporary directories, engines on
//! the CPU, and a lock that keeps torch-heavy tests from sharing libtorch's
//! global RNG (and this machine's few cores) at the same time.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use fedsky_participant::data::ImageOptions;
use fedsky_participant::engine::{DataConfig, DataFormat, Engine, EngineOptions, LocalData};
use fedsky_participant::model::{Architecture, InputShape, ModelSpec};
use fedsky_participant::synth::{self, CLASSES, SynthConfig};
use fedsky_participant::{FitParams, OptimizerKind};

/// Serialises tests that train: libtorch's RNG is process-global, and
/// bitwise repeatability needs one intra-op thread.
pub fn torch_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fedsky_participant::configure_torch(1, true);
    g
}

/// The chest X-ray class list in label order.
pub fn classes() -> Vec<String> {
    CLASSES.iter().map(|s| s.to_string()).collect()
}

/// Writes a balanced synthetic dataset.
pub fn synth_balanced(
    dir: &Path,
    size: u32,
    train_per_class: usize,
    test_per_class: usize,
    seed: u64,
) {
    synth::write_dataset(
        dir,
        &SynthConfig::balanced(size, train_per_class, test_per_class, seed),
    )
    .expect("synthetic dataset");
}

/// A shared balanced 32x32 dataset (written once per test binary).
pub fn shared_dataset() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        synth_balanced(d.path(), 32, 40, 15, 1);
        d
    })
    .path()
}

/// Image-folder data config with the chest X-ray classes.
pub fn image_config(root: &Path, size: u32) -> DataConfig {
    DataConfig {
        root: root.to_path_buf(),
        format: DataFormat::ImageFolder(ImageOptions {
            classes: Some(classes()),
            size,
            ..ImageOptions::default()
        }),
        val_fraction: 0.1,
        split_seed: 0,
    }
}

/// An engine on the CPU for `arch` over an image folder.
pub fn engine(root: &Path, size: u32, arch: Architecture, options: EngineOptions) -> Engine {
    let data = LocalData::open(&image_config(root, size)).expect("data");
    let spec = ModelSpec {
        arch,
        input: InputShape::Image {
            channels: 1,
            height: i64::from(size),
            width: i64::from(size),
        },
        num_classes: 3,
    };
    Engine::new(&spec, tch::Device::Cpu, data, options).expect("engine")
}

/// CPU options without DP.
pub fn cpu_options() -> EngineOptions {
    EngineOptions {
        mixed_precision: false,
        dp: None,
        init_seed: 0,
    }
}

/// Typical round hyper-parameters.
pub fn fit_params(epochs: u32, seed: u64) -> FitParams {
    FitParams {
        epochs,
        batch_size: 16,
        learning_rate: 0.05,
        proximal_mu: 0.0,
        seed,
        optimizer: OptimizerKind::Sgd { momentum: 0.9 },
    }
}

/// The Python that has torch (the project venv when the Makefile runs the
/// tests: it puts `.venv/bin` first on PATH).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Exports the reference TorchScript model with the repository's script.
pub fn export_reference_model(out: &Path, size: u32) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export_reference_model.py");
    let status = std::process::Command::new(python())
        .arg(&script)
        .arg("--out")
        .arg(out)
        .args([
            "--image-size",
            &size.to_string(),
            "--num-classes",
            "3",
            "--seed",
            "0",
        ])
        .status()
        .expect("running python (set PYTHON to the venv's python with torch)");
    assert!(status.success(), "{} failed", script.display());
    out.to_path_buf()
}

/// L2 distance between two safetensors models.
pub fn distance(a: &[u8], b: &[u8]) -> f64 {
    let a = fedsky_participant::WireModel::decode(a).unwrap();
    let b = fedsky_participant::WireModel::decode(b).unwrap();
    let mut s = 0.0f64;
    for (name, ta) in &a.tensors {
        let tb = &b.tensors[name];
        for (x, y) in ta.values.iter().zip(&tb.values) {
            s += f64::from(x - y).powi(2);
        }
    }
    s.sqrt()
}
