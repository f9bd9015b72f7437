//! The `fedsky-participant` command line.
//!
//! ```text
//! fedsky-participant run --aggregator https://agg:50051 --token-file /var/run/fedsky/token \
//!     --ca ca.pem --cert tls.crt --key tls.key --data /data --device auto
//! fedsky-participant synth --out ./data/site-a --dominant-class 0
//! fedsky-participant train-local --data ./data/site-a --epochs 5
//! fedsky-participant init-model --out initial.safetensors
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fedsky_aggregator::client::{AggregatorClient, ClientConfig, ClientError, ClientTls};

use crate::bench::{BenchConfig, BenchError};
use crate::client::{self, Backoff, ClientOptions, LoopError, RunSummary};
use crate::data::{ChannelMode, CsvOptions, DataError, ImageOptions};
use crate::device::{DeviceChoice, DeviceError, device_label};
use crate::engine::{
    DataConfig, DataFormat, Engine, EngineError, EngineHandle, EngineOptions, LocalData,
};
use crate::model::{Architecture, InputShape, ModelError, ModelSpec, Net};
use crate::params::{self, ParamsError, WireDtype};
use crate::state::{StateDir, StateError};
use crate::synth::{self, SynthConfig, SynthError};
use crate::train::{self, DpConfig, OptimizerKind, TrainConfig, TrainError};

/// Errors of the command line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value is invalid.
    #[error("{0}")]
    Usage(String),
    /// Reading a file named on the command line failed.
    #[error("reading {path} failed")]
    ReadFile {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an output file failed.
    #[error("writing {path} failed")]
    WriteFile {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Device selection.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Parameters.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// Engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Training.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Benchmark.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// Synthetic data.
    #[error(transparent)]
    Synth(#[from] SynthError),
    /// State directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// Connecting to the aggregator.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The round loop.
    #[error(transparent)]
    Loop(#[from] LoopError),
}

/// fedsky participant: trains the federated model on local data with libtorch.
#[derive(Debug, Parser)]
#[command(name = "fedsky-participant", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (`RUST_LOG` syntax).
    #[arg(long, env = "FEDSKY_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join a federated job and train until it is done.
    Run(Box<RunArgs>),
    /// Train and evaluate on local data only (no aggregator).
    TrainLocal(Box<TrainLocalArgs>),
    /// Write a job's initial model (safetensors) from a seeded initialisation.
    InitModel(Box<InitModelArgs>),
    /// Write a synthetic chest-X-ray-like image-folder dataset.
    Synth(SynthArgs),
    /// Training throughput of tch against the same model in PyTorch eager.
    Bench(BenchArgs),
}

/// `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Image side (1-channel synthetic X-rays).
    #[arg(long, default_value_t = 64)]
    pub image_size: i64,
    /// Classes.
    #[arg(long, default_value_t = 3)]
    pub num_classes: i64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// SGD learning rate (momentum 0.9).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Seed of weights, data and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads on both sides (0: the CPUs this process may use).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Directory for the shared weight and batch files (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Python with torch for the PyTorch side.
    #[arg(long, env = "PYTHON", default_value = "python3")]
    pub python: String,
    /// The PyTorch side's script.
    #[arg(long, default_value = "participant/scripts/bench_pytorch.py")]
    pub script: PathBuf,
    /// Skip the PyTorch side.
    #[arg(long)]
    pub tch_only: bool,
    /// Alternate the two sides this many times and pool their step times,
    /// so that load from other processes hits both alike.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

/// libtorch set-up.
#[derive(Debug, Clone, Args)]
pub struct TorchArgs {
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, env = "FEDSKY_DEVICE", default_value = "auto")]
    pub device: DeviceChoice,
    /// Intra-op CPU threads (0: the CPUs this process may use, cgroup quota
    /// included). Lower it when several participants share a machine.
    #[arg(long, env = "FEDSKY_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Single-threaded CPU and no cuDNN autotuning: bitwise-repeatable CPU
    /// training for a given seed.
    #[arg(long)]
    pub deterministic: bool,
    /// Disable mixed precision (autocast) on CUDA.
    #[arg(long)]
    pub no_amp: bool,
}

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `train/<class>/*.png|jpg` (and `test/...`).
    ImageFolder,
    /// CSV files with a label column.
    Csv,
}

/// Channel handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Channels {
    /// One channel.
    Gray,
    /// Three channels.
    Rgb,
}

/// Local data.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data root (the mounted data volume); nothing outside it is read.
    #[arg(long, env = "FEDSKY_DATA")]
    pub data: PathBuf,
    /// Dataset format.
    #[arg(long, value_enum, default_value = "image-folder")]
    pub format: Format,
    /// Class names in label order, comma separated. Give them explicitly in
    /// federated jobs: a site lacking a class would otherwise number the
    /// others differently. Default: the folder names of `train/`.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Images are resized to SIZE x SIZE.
    #[arg(long, default_value_t = 64)]
    pub image_size: u32,
    /// Channels fed to the model.
    #[arg(long, value_enum, default_value = "gray")]
    pub channels: Channels,
    /// Per-channel normalisation mean (after scaling pixels to 0..1).
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    pub mean: Vec<f32>,
    /// Per-channel normalisation standard deviation.
    #[arg(long, value_delimiter = ',', default_value = "0.25")]
    pub std: Vec<f32>,
    /// CSV training file (relative to the data root).
    #[arg(long, default_value = "train.csv")]
    pub csv_train: String,
    /// CSV test file (relative to the data root).
    #[arg(long)]
    pub csv_test: Option<String>,
    /// CSV label column.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Multiply CSV features by this.
    #[arg(long, default_value_t = 1.0)]
    pub csv_scale: f32,
    /// Share of `train/` held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Seed of the train/validation split (fixed for the whole job).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
}

impl DataArgs {
    /// The engine's data configuration.
    pub fn config(&self) -> DataConfig {
        let format = match self.format {
            Format::ImageFolder => DataFormat::ImageFolder(ImageOptions {
                classes: self.classes.clone(),
                channels: match self.channels {
                    Channels::Gray => ChannelMode::Gray,
                    Channels::Rgb => ChannelMode::Rgb,
                },
                size: self.image_size,
                mean: self.mean.clone(),
                std: self.std.clone(),
            }),
            Format::Csv => DataFormat::Csv {
                train: self.csv_train.clone(),
                test: self.csv_test.clone(),
                options: CsvOptions {
                    label_column: self.label_column.clone(),
                    classes: self.classes.clone(),
                    scale: self.csv_scale,
                },
            },
        };
        DataConfig {
            root: self.data.clone(),
            format,
            val_fraction: self.val_fraction,
            split_seed: self.split_seed,
        }
    }
}

/// Model choice.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// small-cnn, resnet18, mlp, or torchscript:<path to a scripted module>.
    #[arg(long, default_value = "small-cnn")]
    pub arch: String,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 0)]
    pub init_seed: u64,
}

impl ModelArgs {
    fn architecture(&self) -> Result<Architecture, CliError> {
        Ok(self.arch.parse()?)
    }
}

/// Differential privacy.
#[derive(Debug, Clone, Args)]
pub struct DpArgs {
    /// Clip every update (model delta) to this L2 norm; enables DP.
    #[arg(long)]
    pub dp_clip_norm: Option<f64>,
    /// Gaussian noise standard deviation relative to the clip norm.
    #[arg(long, default_value_t = 0.0, requires = "dp_clip_norm")]
    pub dp_noise_multiplier: f64,
}

impl DpArgs {
    fn config(&self) -> Option<DpConfig> {
        self.dp_clip_norm.map(|clip_norm| DpConfig {
            clip_norm,
            noise_multiplier: self.dp_noise_multiplier,
        })
    }
}

/// `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Aggregator gRPC endpoint: https://host:port (mTLS) or http://host:port
    /// (with --insecure-plaintext).
    #[arg(long, env = "FEDSKY_AGGREGATOR")]
    pub aggregator: String,
    /// Job token.
    #[arg(
        long,
        env = "FEDSKY_JOB_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the job token (a mounted Secret).
    #[arg(long, env = "FEDSKY_JOB_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA bundle that signed the aggregator's certificate (PEM).
    #[arg(long, env = "FEDSKY_TLS_CA")]
    pub ca: Option<PathBuf>,
    /// This participant's client certificate (PEM); its CN is its identity.
    #[arg(long, env = "FEDSKY_TLS_CERT")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "FEDSKY_TLS_KEY")]
    pub key: Option<PathBuf>,
    /// Name to verify the aggregator's certificate against (default: the URL's host).
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// Plaintext gRPC for local development; the identity is --participant-id.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Identity in plaintext mode.
    #[arg(long, env = "FEDSKY_PARTICIPANT_ID")]
    pub participant_id: Option<String>,
    /// Extra registration labels, key=value.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Keeps the open round's update across restarts.
    #[arg(long, env = "FEDSKY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not evaluate each round's global model on local data.
    #[arg(long)]
    pub no_eval_each_round: bool,
    /// Exit after this many seconds without reaching the aggregator (default: never).
    #[arg(long)]
    pub give_up_after_secs: Option<u64>,
    /// First reconnect delay in milliseconds (doubles up to --backoff-max-ms).
    #[arg(long, default_value_t = 200)]
    pub backoff_initial_ms: u64,
    /// Largest reconnect delay in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub backoff_max_ms: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub torch: TorchArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data: DataArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub model: ModelArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub dp: DpArgs,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// `train-local`.
#[derive(Debug, Clone, Args)]
pub struct TrainLocalArgs {
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: u32,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// sgd, sgd:<momentum>, adam, adamw.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Training seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the trained parameters here (safetensors).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object per epoch instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub torch: TorchArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data: DataArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub model: ModelArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub dp: DpArgs,
}

/// `init-model`.
#[derive(Debug, Clone, Args)]
pub struct InitModelArgs {
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Wire dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Number of classes.
    #[arg(long, default_value_t = 3)]
    pub num_classes: i64,
    /// Image side (image models).
    #[arg(long, default_value_t = 64)]
    pub image_size: i64,
    /// Image channels (image models).
    #[arg(long, default_value_t = 1)]
    pub channels: i64,
    /// Input features (the mlp).
    #[arg(long)]
    pub features: Option<i64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub model: ModelArgs,
}

/// `synth`.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Output directory (gets `train/` and `test/`).
    #[arg(long)]
    pub out: PathBuf,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Training images in total.
    #[arg(long, default_value_t = 300)]
    pub train: usize,
    /// Test images per class.
    #[arg(long, default_value_t = 30)]
    pub test_per_class: usize,
    /// Class that dominates this site's training data (0 Covid, 1 Normal,
    /// 2 Viral Pneumonia); omit for balanced classes.
    #[arg(long)]
    pub dominant_class: Option<usize>,
    /// Share of the dominant class.
    #[arg(long, default_value_t = 0.6)]
    pub share: f64,
    /// Seed (use a different one per site).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs a parsed command line.
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => {
            let summary = run_participant(*args).await?;
            println!(
                "job {} done for {}: {} updates, {} evaluations; {}",
                summary.job,
                summary.participant_id,
                summary.rounds.len(),
                summary.evaluations.len(),
                summary.message
            );
            Ok(())
        }
        Command::TrainLocal(args) => train_local(&args),
        Command::InitModel(args) => init_model(&args),
        Command::Bench(args) => bench(&args),
        Command::Synth(args) => {
            let config = match args.dominant_class {
                Some(d) => SynthConfig::skewed(
                    args.size,
                    args.train,
                    args.test_per_class,
                    d,
                    args.share,
                    args.seed,
                ),
                None => {
                    SynthConfig::balanced(args.size, args.train / 3, args.test_per_class, args.seed)
                }
            };
            let s = synth::write_dataset(&args.out, &config)?;
            println!(
                "wrote {} training and {} test images to {} (train per class {:?})",
                s.train,
                s.test,
                args.out.display(),
                config.train_per_class
            );
            Ok(())
        }
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::ReadFile {
        path: path.clone(),
        source,
    })
}

/// Builds the engine for `run` and `train-local` on its own thread.
fn spawn_engine(
    torch: &TorchArgs,
    data: &DataArgs,
    model: &ModelArgs,
    dp: &DpArgs,
) -> Result<EngineHandle, CliError> {
    crate::configure_torch(torch.threads, torch.deterministic);
    let device = torch.device.resolve()?;
    let arch = model.architecture()?;
    let data_config = data.config();
    let options = EngineOptions {
        mixed_precision: !torch.no_amp,
        dp: dp.config(),
        init_seed: model.init_seed,
    };
    Ok(EngineHandle::spawn(move || {
        let data = LocalData::open(&data_config)?;
        let spec = ModelSpec {
            arch,
            input: data.train.dataset().input_shape(),
            num_classes: data.classes().len() as i64,
        };
        Engine::new(&spec, device, data, options)
    })?)
}

/// `run`: joins the job and trains until it is done.
pub async fn run_participant(args: RunArgs) -> Result<RunSummary, CliError> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => String::from_utf8_lossy(&read(f)?).trim().to_string(),
        (None, None) => {
            return Err(CliError::Usage(
                "a job token is required (--token, --token-file or FEDSKY_JOB_TOKEN)".into(),
            ));
        }
    };
    let mut config = if args.insecure_plaintext {
        let id = args
            .participant_id
            .clone()
            .ok_or_else(|| CliError::Usage("--insecure-plaintext needs --participant-id".into()))?;
        ClientConfig::insecure(args.aggregator.clone(), token, id)
    } else {
        let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
            return Err(CliError::Usage(
                "mTLS needs --ca, --cert and --key (or --insecure-plaintext for local development)"
                    .into(),
            ));
        };
        ClientConfig::mtls(
            args.aggregator.clone(),
            token,
            ClientTls {
                ca: read(ca)?,
                cert: read(cert)?,
                key: read(key)?,
                domain: args.tls_domain.clone(),
            },
        )
    };
    config.connect_timeout = Duration::from_secs(10);
    let engine = spawn_engine(&args.torch, &args.data, &args.model, &args.dp)?;
    let info = engine.info().clone();
    tracing::info!(
        device = %info.device,
        parameters = info.parameters,
        train_examples = info.train_examples,
        eval_examples = info.eval_examples,
        classes = ?info.classes,
        "engine ready"
    );
    let mut labels: HashMap<String, String> = args.labels.iter().cloned().collect();
    labels.entry("device".into()).or_insert(info.device.clone());
    labels
        .entry("arch".into())
        .or_insert(args.model.arch.clone());
    labels
        .entry("train_examples".into())
        .or_insert(info.train_examples.to_string());
    labels
        .entry("participant_version".into())
        .or_insert(env!("CARGO_PKG_VERSION").to_string());
    let options = ClientOptions {
        labels,
        backoff: Backoff {
            initial: Duration::from_millis(args.backoff_initial_ms.max(1)),
            max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_initial_ms.max(1))),
            factor: 2.0,
        },
        evaluate_each_round: !args.no_eval_each_round,
        give_up_after: args.give_up_after_secs.map(Duration::from_secs),
        state_dir: args.state_dir.as_ref().map(StateDir::open).transpose()?,
    };
    let client = AggregatorClient::connect_lazy(&config)?;
    Ok(client::run(client, engine, options).await?)
}

/// `train-local`: local epochs with evaluation after each, no aggregator.
pub fn train_local(args: &TrainLocalArgs) -> Result<(), CliError> {
    crate::configure_torch(args.torch.threads, args.torch.deterministic);
    let device = args.torch.device.resolve()?;
    let data = LocalData::open(&args.data.config())?;
    let spec = ModelSpec {
        arch: args.model.architecture()?,
        input: data.train.dataset().input_shape(),
        num_classes: data.classes().len() as i64,
    };
    train::seed_everything(args.model.init_seed);
    let mut net = Net::new(&spec, device)?;
    let loader = data.train.clone().with_batch_size(args.batch_size);
    let optimizer: OptimizerKind = args.optimizer.parse()?;
    if !args.json {
        println!(
            "{} on {}: {} parameters, {} training / {} evaluation samples, classes {:?}",
            spec.arch,
            device_label(device),
            net.num_parameters(),
            loader.len(),
            data.eval_loader().len(),
            data.classes()
        );
    }
    for epoch in 0..args.epochs {
        let config = TrainConfig {
            epochs: 1,
            batch_size: args.batch_size,
            optimizer,
            learning_rate: args.lr,
            proximal_mu: 0.0,
            seed: args.seed.wrapping_add(u64::from(epoch)),
            mixed_precision: !args.torch.no_amp,
            dp: args.dp.config(),
        };
        let r = train::train(&mut net, &loader, &config)?;
        let e = train::evaluate(&mut net, data.eval_loader())?;
        if args.json {
            let line = serde_json::json!({
                "epoch": epoch + 1,
                "train_loss": r.loss,
                "train_accuracy": r.accuracy,
                "eval_loss": e.loss,
                "eval_accuracy": e.accuracy,
                "eval_macro_recall": e.macro_recall(),
                "seconds": r.seconds,
                "samples_per_second": r.throughput(),
                "device": device_label(device),
            });
            println!("{line}");
        } else {
            println!(
                "epoch {:>3}: train loss {:.4} acc {:.3} | eval loss {:.4} acc {:.3} macro recall {:.3} | {:.1} samples/s",
                epoch + 1,
                r.loss,
                r.accuracy,
                e.loss,
                e.accuracy,
                e.macro_recall(),
                r.throughput()
            );
        }
        if epoch + 1 == args.epochs && !args.json {
            print!("{}", e.confusion_table());
        }
    }
    if let Some(out) = &args.out {
        let bytes = params::encode(&net, WireDtype::F32)?;
        std::fs::write(out, bytes).map_err(|source| CliError::WriteFile {
            path: out.clone(),
            source,
        })?;
    }
    Ok(())
}

/// `init-model`: seeded initial weights as safetensors.
pub fn init_model(args: &InitModelArgs) -> Result<(), CliError> {
    let arch = args.model.architecture()?;
    let input = match (&arch, args.features) {
        (Architecture::Mlp { .. }, Some(n)) => InputShape::Features(n),
        (Architecture::Mlp { .. }, None) => {
            return Err(CliError::Usage("the mlp needs --features".into()));
        }
        _ => InputShape::Image {
            channels: args.channels,
            height: args.image_size,
            width: args.image_size,
        },
    };
    let dtype: WireDtype = args.dtype.parse().map_err(CliError::Usage)?;
    train::seed_everything(args.model.init_seed);
    let net = Net::new(
        &ModelSpec {
            arch,
            input,
            num_classes: args.num_classes,
        },
        tch::Device::Cpu,
    )?;
    let bytes = params::encode(&net, dtype)?;
    std::fs::write(&args.out, &bytes).map_err(|source| CliError::WriteFile {
        path: args.out.clone(),
        source,
    })?;
    println!(
        "wrote {} ({} tensors, {} parameters, {} bytes)",
        args.out.display(),
        net.named_variables().len(),
        net.num_parameters(),
        bytes.len()
    );
    Ok(())
}

/// `bench`: tch and PyTorch eager side by side.
pub fn bench(args: &BenchArgs) -> Result<(), CliError> {
    // Both sides get the same explicit thread count.
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        args.threads
    };
    crate::configure_torch(threads, false);
    let device = args.device.resolve()?;
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("fedsky-bench-{}", std::process::id()))
    });
    let config = BenchConfig {
        spec: ModelSpec {
            arch: Architecture::SmallCnn,
            input: InputShape::Image {
                channels: 1,
                height: args.image_size,
                width: args.image_size,
            },
            num_classes: args.num_classes,
        },
        batch_size: args.batch_size.max(1),
        steps: args.steps.max(1),
        warmup: args.warmup,
        learning_rate: args.lr,
        seed: args.seed,
        threads,
        dir,
    };
    let (init, data) = crate::bench::prepare(&config)?;
    let mut results: Vec<crate::bench::BenchResult> = Vec::new();
    for rep in 0..args.repeat.max(1) {
        let mut this = vec![crate::bench::run_tch(&config, &init, &data, device)?];
        if !args.tch_only {
            this.push(crate::bench::run_pytorch(
                &config,
                &args.python,
                &args.script,
                &init,
                &data,
                device,
            )?);
        }
        if rep == 0 {
            results = this;
        } else {
            for (r, t) in results.iter_mut().zip(&this) {
                r.absorb(t);
            }
        }
    }
    println!(
        "small CNN, {}x{} grayscale, {} classes, SGD(lr {}, momentum 0.9), {} timed steps after {} warm-up, x{} alternating repetitions, threads {}\n",
        args.image_size,
        args.image_size,
        args.num_classes,
        args.lr,
        config.steps,
        config.warmup,
        args.repeat.max(1),
        threads
    );
    print!("{}", crate::bench::table(&results));
    if let [a, b] = &results[..] {
        println!(
            "\nloss curves from the same weights: largest per-step difference {:.2e} over {} steps (first {:.4} vs {:.4}, last {:.4} vs {:.4})",
            crate::bench::max_loss_gap(a, b),
            a.losses.len(),
            a.losses.first().copied().unwrap_or(f64::NAN),
            b.losses.first().copied().unwrap_or(f64::NAN),
            a.losses.last().copied().unwrap_or(f64::NAN),
            b.losses.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// Starts `tracing` output.
pub fn init_tracing(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
