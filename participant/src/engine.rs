//! The training engine: the model and the local data, driven from the
//! network side through a handle. It runs on a thread of its own because
//! libtorch's grad mode and autocast state are per thread and its work is
//! blocking; the async client keeps heartbeating while a round trains.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use tch::Device;
use tokio::sync::oneshot;

use crate::data::{
    self, CsvDataset, CsvOptions, DataError, DataRoot, Dataset, ImageFolder, ImageOptions, Loader,
    SharedDataset,
};
use crate::model::{ModelError, ModelSpec, Net};
use crate::params::{self, ParamsError, WireDtype};
use crate::train::{
    self, DpConfig, EvalReport, OptimizerKind, TrainConfig, TrainError, TrainReport,
};

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Local data is missing or malformed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model could not be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A received model does not fit, or the update could not be encoded.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The data and the model disagree.
    #[error("{0}")]
    Mismatch(String),
    /// The engine thread is gone (it panicked or was shut down).
    #[error("the training engine thread stopped")]
    Stopped,
}

/// Where the local data is and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub enum DataFormat {
    /// `<root>/train/<class>/*.png` and optionally `<root>/test/...`.
    ImageFolder(ImageOptions),
    /// `<root>/<train>` and optionally `<root>/<test>` CSV files.
    Csv {
        /// Training file, relative to the root.
        train: String,
        /// Test file, relative to the root.
        test: Option<String>,
        /// Parsing options.
        options: CsvOptions,
    },
}

/// Local data set-up.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// The mounted data volume.
    pub root: PathBuf,
    /// Format.
    pub format: DataFormat,
    /// Share of the training data held out for validation.
    pub val_fraction: f64,
    /// Seed of that split (fixed for the whole job).
    pub split_seed: u64,
}

/// Loaders over the local data.
#[derive(Debug, Clone)]
pub struct LocalData {
    /// Training samples (after the validation hold-out).
    pub train: Loader,
    /// Validation samples (held out from `train/`).
    pub validation: Loader,
    /// The `test/` split, if there is one.
    pub test: Option<Loader>,
}

impl LocalData {
    /// Opens and indexes the data; every problem is reported with the file.
    pub fn open(config: &DataConfig) -> Result<Self, DataError> {
        let root = DataRoot::new(&config.root)?;
        let (train, test): (SharedDataset, Option<SharedDataset>) = match &config.format {
            DataFormat::ImageFolder(options) => {
                let train = ImageFolder::open(&root, "train", options.clone())?;
                // The test split must number classes like the training split.
                let mut test_opts = options.clone();
                test_opts.classes = Some(train.classes().to_vec());
                let test = if root.path().join("test").exists() {
                    Some(Arc::new(ImageFolder::open(&root, "test", test_opts)?) as SharedDataset)
                } else {
                    None
                };
                (Arc::new(train), test)
            }
            DataFormat::Csv {
                train,
                test,
                options,
            } => {
                let tr = CsvDataset::open(&root, train, options)?;
                let mut test_opts = options.clone();
                test_opts.classes = Some(tr.classes().to_vec());
                let te = match test {
                    Some(t) => {
                        Some(Arc::new(CsvDataset::open(&root, t, &test_opts)?) as SharedDataset)
                    }
                    None => None,
                };
                (Arc::new(tr), te)
            }
        };
        let (tr_idx, val_idx) =
            data::split_indices(train.len(), config.val_fraction, config.split_seed);
        if tr_idx.is_empty() {
            return Err(DataError::Options(format!(
                "validation fraction {} leaves no training samples",
                config.val_fraction
            )));
        }
        Ok(Self {
            train: Loader::new(train.clone(), tr_idx, 32, true),
            validation: Loader::new(train, val_idx, 256, false),
            test: test.map(|t| {
                let n = t.len();
                Loader::new(t, (0..n).collect(), 256, false)
            }),
        })
    }

    /// Class names.
    pub fn classes(&self) -> &[String] {
        self.train.dataset().classes()
    }

    /// The set global models are evaluated on: `test/` if present, else the
    /// validation hold-out.
    pub fn eval_loader(&self) -> &Loader {
        match &self.test {
            Some(t) if !t.is_empty() => t,
            _ => &self.validation,
        }
    }
}

/// Engine settings that do not change between rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// Autocast on CUDA.
    pub mixed_precision: bool,
    /// Differential privacy of every update.
    pub dp: Option<DpConfig>,
    /// Seed of the initial weights (only matters for [`Engine::initial_model`]).
    pub init_seed: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            mixed_precision: true,
            dp: None,
            init_seed: 0,
        }
    }
}

/// Round hyper-parameters as the aggregator sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct FitParams {
    /// Local epochs.
    pub epochs: u32,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// FedProx mu.
    pub proximal_mu: f64,
    /// Seed for this participant and round.
    pub seed: u64,
    /// Optimiser.
    pub optimizer: OptimizerKind,
}

/// A trained update.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// Safetensors bytes, in the global model's dtypes.
    pub bytes: Vec<u8>,
    /// Training report.
    pub report: TrainReport,
}

/// Model plus data.
#[derive(Debug)]
pub struct Engine {
    net: Net,
    data: LocalData,
    options: EngineOptions,
}

impl Engine {
    /// Opens the data and builds the model (seeded with `options.init_seed`).
    pub fn new(
        spec: &ModelSpec,
        device: Device,
        data: LocalData,
        options: EngineOptions,
    ) -> Result<Self, EngineError> {
        let shape = data.train.dataset().input_shape();
        if shape != spec.input {
            return Err(EngineError::Mismatch(format!(
                "the data yields samples of shape {:?} but the model takes {:?}",
                shape.dims(),
                spec.input.dims()
            )));
        }
        let classes = data.classes().len() as i64;
        if classes != spec.num_classes {
            return Err(EngineError::Mismatch(format!(
                "the data has {classes} classes {:?} but the model has {} outputs",
                data.classes(),
                spec.num_classes
            )));
        }
        train::seed_everything(options.init_seed);
        let net = Net::new(spec, device)?;
        Ok(Self { net, data, options })
    }

    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The data.
    pub fn data(&self) -> &LocalData {
        &self.data
    }

    /// The current weights as safetensors (e.g. the job's initial model).
    pub fn initial_model(&self, dtype: WireDtype) -> Result<Vec<u8>, EngineError> {
        Ok(params::encode(&self.net, dtype)?)
    }

    /// Loads `global`, trains on the local training set, returns the update
    /// (the trained weights, in `global`'s dtypes).
    pub fn fit(&mut self, global: &[u8], p: &FitParams) -> Result<FitOutcome, EngineError> {
        let model = params::load_bytes(&self.net, global)?;
        let loader = self.data.train.clone().with_batch_size(p.batch_size);
        let config = TrainConfig {
            epochs: p.epochs,
            batch_size: p.batch_size,
            optimizer: p.optimizer,
            learning_rate: p.learning_rate,
            proximal_mu: p.proximal_mu,
            seed: p.seed,
            mixed_precision: self.options.mixed_precision,
            dp: self.options.dp,
        };
        let report = train::train(&mut self.net, &loader, &config)?;
        let bytes = params::encode_like(&self.net, &model.dtypes())?;
        Ok(FitOutcome { bytes, report })
    }

    /// Loads `global` and evaluates it on the evaluation set.
    pub fn evaluate(&mut self, global: &[u8]) -> Result<EvalReport, EngineError> {
        params::load_bytes(&self.net, global)?;
        let loader = self.data.eval_loader().clone();
        Ok(train::evaluate(&mut self.net, &loader)?)
    }
}

enum Job {
    Fit(
        Vec<u8>,
        FitParams,
        oneshot::Sender<Result<FitOutcome, EngineError>>,
    ),
    Evaluate(Vec<u8>, oneshot::Sender<Result<EvalReport, EngineError>>),
    Initial(WireDtype, oneshot::Sender<Result<Vec<u8>, EngineError>>),
}

/// Facts about the engine, fixed at start.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineInfo {
    /// Device label.
    pub device: String,
    /// Scalar parameters.
    pub parameters: usize,
    /// Local training samples.
    pub train_examples: usize,
    /// Evaluation samples.
    pub eval_examples: usize,
    /// Class names.
    pub classes: Vec<String>,
}

/// Handle on an engine running on its own thread (cheap to clone).
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    info: Arc<EngineInfo>,
}

impl EngineHandle {
    /// Builds the engine on a new thread with `build` and serves jobs there.
    /// Returns once it is built, with its error if building failed.
    pub fn spawn<F>(build: F) -> Result<Self, EngineError>
    where
        F: FnOnce() -> Result<Engine, EngineError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("fedsky-engine".into())
            .spawn(move || {
                let mut engine = match build() {
                    Ok(e) => {
                        let info = EngineInfo {
                            device: crate::device::device_label(e.net.device()),
                            parameters: e.net.num_parameters(),
                            train_examples: e.data.train.len(),
                            eval_examples: e.data.eval_loader().len(),
                            classes: e.data.classes().to_vec(),
                        };
                        let _ = ready_tx.send(Ok(info));
                        e
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                // Ends when every handle is dropped.
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Fit(bytes, p, reply) => {
                            let _ = reply.send(engine.fit(&bytes, &p));
                        }
                        Job::Evaluate(bytes, reply) => {
                            let _ = reply.send(engine.evaluate(&bytes));
                        }
                        Job::Initial(dtype, reply) => {
                            let _ = reply.send(engine.initial_model(dtype));
                        }
                    }
                }
            })
            .map_err(|_| EngineError::Stopped)?;
        let info = ready_rx.recv().map_err(|_| EngineError::Stopped)??;
        Ok(Self {
            tx,
            info: Arc::new(info),
        })
    }

    /// Facts about the engine.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Trains from `global`.
    pub async fn fit(&self, global: Vec<u8>, p: FitParams) -> Result<FitOutcome, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Fit(global, p, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Evaluates `global`.
    pub async fn evaluate(&self, global: Vec<u8>) -> Result<EvalReport, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Evaluate(global, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// The engine's current weights.
    pub async fn initial_model(&self, dtype: WireDtype) -> Result<Vec<u8>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Initial(dtype, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}

/// Metrics as the wire wants them.
pub fn to_wire_metrics(m: std::collections::BTreeMap<String, f64>) -> HashMap<String, f64> {
    m.into_iter().filter(|(_, v)| v.is_finite()).collect()
}
