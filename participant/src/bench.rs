//! Training throughput of this participant against the same model in
//! PyTorch eager Python, side by side: the same initial weights, the same
//! batches, the same optimiser and seed, the same number of CPU threads.
//! Batches are prepared on the device before timing in both, so the figures
//! compare the training step itself (forward, backward, optimiser).
//!
//! The Rust side writes the initial weights and the batches as safetensors,
//! runs its steps, then runs `scripts/bench_pytorch.py` on the same files
//! and prints one table and the largest difference between the loss curves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Reduction, Tensor};

use crate::device::device_label;
use crate::model::{ModelError, ModelSpec, Net};
use crate::params::{self, ParamsError, WireDtype};
use crate::synth;
use crate::train::seed_everything;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Encoding weights.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// libtorch.
    #[error("libtorch failed while {what}")]
    Torch {
        /// The step.
        what: &'static str,
        /// libtorch's message.
        #[source]
        source: tch::TchError,
    },
    /// Writing a file.
    #[error("writing {path} failed")]
    Write {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding the batches.
    #[error("encoding the benchmark batches failed")]
    Encode(#[source] safetensors::SafeTensorError),
    /// The Python side failed.
    #[error("the PyTorch side ({script}) failed: {detail}")]
    Python {
        /// Script.
        script: PathBuf,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// Options out of range.
    #[error("invalid benchmark options: {0}")]
    Options(String),
}

/// The pinned binding and the libtorch it expects.
pub const TCH_VERSION: &str = "tch 0.24.0, libtorch 2.11.0";

fn torch(what: &'static str) -> impl FnOnce(tch::TchError) -> BenchError {
    move |source| BenchError::Torch { what, source }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Model (its input must be a 1-channel image).
    pub spec: ModelSpec,
    /// Samples per step.
    pub batch_size: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    pub warmup: usize,
    /// SGD learning rate (momentum 0.9).
    pub learning_rate: f64,
    /// Seed of the weights, the data and dropout.
    pub seed: u64,
    /// CPU threads for both sides (0: the CPUs this process may use).
    pub threads: usize,
    /// Where the shared files go.
    pub dir: PathBuf,
}

/// One side's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// `tch (Rust)` or `PyTorch eager`.
    pub implementation: String,
    /// Device label.
    pub device: String,
    /// Version of the library doing the work.
    pub version: String,
    /// Loss of every step (warm-up included).
    pub losses: Vec<f64>,
    /// Seconds of every timed step.
    pub step_seconds: Vec<f64>,
    /// Batch size.
    pub batch_size: usize,
}

impl BenchResult {
    /// Median step time in milliseconds.
    pub fn median_step_ms(&self) -> f64 {
        let mut v = self.step_seconds.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN) * 1000.0
    }

    /// Images per second at the median step time (robust to the odd slow
    /// step on a shared machine).
    pub fn images_per_second(&self) -> f64 {
        self.batch_size as f64 / (self.median_step_ms() / 1000.0).max(1e-12)
    }

    /// Adds another repetition's timed steps (its losses are the same run
    /// again and are not kept).
    pub fn absorb(&mut self, other: &BenchResult) {
        self.step_seconds.extend_from_slice(&other.step_seconds);
    }
}

/// Writes the initial weights and the batches, returns their paths.
pub fn prepare(config: &BenchConfig) -> Result<(PathBuf, PathBuf), BenchError> {
    let (channels, size) = match config.spec.input {
        crate::model::InputShape::Image {
            channels, height, ..
        } if channels == 1 => (channels, height),
        _ => {
            return Err(BenchError::Options(
                "the benchmark feeds 1-channel images".into(),
            ));
        }
    };
    std::fs::create_dir_all(&config.dir).map_err(|source| BenchError::Write {
        path: config.dir.clone(),
        source,
    })?;
    seed_everything(config.seed);
    let net = Net::new(&config.spec, Device::Cpu)?;
    let init = config.dir.join("init.safetensors");
    write(&init, &params::encode(&net, WireDtype::F32)?)?;

    let n = config.batch_size * (config.steps + config.warmup);
    let classes = config.spec.num_classes.max(1) as usize;
    let px = (size * size) as usize;
    let mut xs: Vec<u8> = Vec::with_capacity(n * px * 4);
    let mut ys: Vec<u8> = Vec::with_capacity(n * 8);
    for i in 0..n {
        let label = i % classes;
        let img = synth::render(
            label % 3,
            size as u32,
            0.06,
            config.seed ^ ((i as u64) << 8),
        );
        for p in img.pixels() {
            let v = (f32::from(p.0[0]) / 255.0 - 0.5) / 0.25;
            xs.extend_from_slice(&v.to_le_bytes());
        }
        ys.extend_from_slice(&(label as i64).to_le_bytes());
    }
    let views = vec![
        (
            "x",
            TensorView::new(
                Dtype::F32,
                vec![n, channels as usize, size as usize, size as usize],
                &xs,
            )
            .map_err(BenchError::Encode)?,
        ),
        (
            "y",
            TensorView::new(Dtype::I64, vec![n], &ys).map_err(BenchError::Encode)?,
        ),
    ];
    let data = config.dir.join("batches.safetensors");
    write(
        &data,
        &safetensors::serialize(views, None).map_err(BenchError::Encode)?,
    )?;
    Ok((init, data))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    std::fs::write(path, bytes).map_err(|source| BenchError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Trains with tch on the prepared files.
pub fn run_tch(
    config: &BenchConfig,
    init: &Path,
    data: &Path,
    device: Device,
) -> Result<BenchResult, BenchError> {
    let net = Net::new(&config.spec, device)?;
    let bytes = std::fs::read(init).map_err(|source| BenchError::Write {
        path: init.to_path_buf(),
        source,
    })?;
    params::load_bytes(&net, &bytes)?;
    let tensors = Tensor::read_safetensors(data).map_err(torch("reading the batches"))?;
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .ok_or_else(|| BenchError::Options(format!("{} lacks {name}", data.display())))
    };
    let b = config.batch_size as i64;
    let xs = get("x")?.to_device(device);
    let ys = get("y")?.to_device(device);
    let mut opt = tch::nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(net.var_store(), config.learning_rate)
    .map_err(torch("building the optimizer"))?;
    // Same seed as the Python side right before the first step: dropout
    // then draws the same masks from libtorch's generator on both sides.
    seed_everything(config.seed);
    let mut losses = Vec::new();
    let mut step_seconds = Vec::new();
    for step in 0..(config.warmup + config.steps) {
        let s = step as i64 * b;
        let x = xs.narrow(0, s, b);
        let y = ys.narrow(0, s, b);
        let t0 = Instant::now();
        let logits = net.forward_t(&x, true)?;
        let loss = logits
            .f_cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0)
            .map_err(torch("computing the loss"))?;
        opt.zero_grad();
        loss.f_backward().map_err(torch("back-propagating"))?;
        opt.step();
        let l = f64::try_from(&loss.to_kind(Kind::Double)).map_err(torch("reading the loss"))?;
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        if step >= config.warmup {
            step_seconds.push(t0.elapsed().as_secs_f64());
        }
        losses.push(l);
    }
    Ok(BenchResult {
        implementation: "tch (Rust)".into(),
        device: device_label(device),
        version: TCH_VERSION.into(),
        losses,
        step_seconds,
        batch_size: config.batch_size,
    })
}

/// Runs the PyTorch side (`python scripts/bench_pytorch.py ...`).
pub fn run_pytorch(
    config: &BenchConfig,
    python: &str,
    script: &Path,
    init: &Path,
    data: &Path,
    device: Device,
) -> Result<BenchResult, BenchError> {
    let fail = |detail: String| BenchError::Python {
        script: script.to_path_buf(),
        detail,
    };
    let out = Command::new(python)
        .arg(script)
        .arg("--init")
        .arg(init)
        .arg("--data")
        .arg(data)
        .args([
            "--batch-size",
            &config.batch_size.to_string(),
            "--steps",
            &config.steps.to_string(),
            "--warmup",
            &config.warmup.to_string(),
            "--lr",
            &config.learning_rate.to_string(),
            "--seed",
            &config.seed.to_string(),
            "--threads",
            &config.threads.to_string(),
            "--num-classes",
            &config.spec.num_classes.to_string(),
            "--device",
            &device_label(device),
        ])
        .output()
        .map_err(|e| fail(format!("could not start {python}: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| fail(format!("no JSON result in its output: {stdout}")))?;
    serde_json::from_str(line).map_err(|e| fail(format!("bad JSON result: {e}")))
}

/// The side-by-side table (markdown).
pub fn table(results: &[BenchResult]) -> String {
    let base = results.last().map(BenchResult::images_per_second);
    let mut s = String::from(
        "| implementation | device | batch | median step (ms) | images/s | vs PyTorch | final loss |\n|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let ratio = base.map(|b| r.images_per_second() / b).unwrap_or(f64::NAN);
        s.push_str(&format!(
            "| {} ({}) | {} | {} | {:.2} | {:.0} | {:.2}x | {:.4} |\n",
            r.implementation,
            r.version,
            r.device,
            r.batch_size,
            r.median_step_ms(),
            r.images_per_second(),
            ratio,
            r.losses.last().copied().unwrap_or(f64::NAN)
        ));
    }
    s
}

/// Largest absolute difference between two loss curves.
pub fn max_loss_gap(a: &BenchResult, b: &BenchResult) -> f64 {
    a.losses
        .iter()
        .zip(&b.losses)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
