//! fedsky participant: the federated-learning client that runs next to
//! private data. It trains the global model on local data with libtorch
//! (through `tch`) and sends only parameters, as safetensors, to the
//! aggregator over gRPC.
//!
//! * [`model`]: built-in networks (a small CNN for chest X-rays, ResNet-18,
//!   an MLP for tables) and user TorchScript modules trained in place;
//! * [`params`]: parameters on the wire (safetensors, F32/F16/BF16);
//! * [`data`]: image-folder and CSV datasets, seeded splits, a prefetching
//!   loader;
//! * [`train`]: local training (SGD/Adam, FedProx, mixed precision, DP) and
//!   evaluation (accuracy, per-class recall, confusion matrix);
//! * [`engine`]: model + data on a thread of their own;
//! * [`client`]: the round loop against the aggregator; [`state`]: what
//!   survives a restart;
//! * [`synth`]: a synthetic chest-X-ray-like dataset for tests and demos;
//! * [`bench`]: training throughput against PyTorch eager;
//! * [`cli`]: the `fedsky-participant` command line.
//!
//! Run-time note: the binary and the tests load libtorch dynamically; put
//! the torch wheel's `lib` directory on `LD_LIBRARY_PATH` (the Makefile's
//! `participant-*` targets and `participant/scripts/env.sh` do).

pub mod bench;
pub mod cli;
pub mod client;
pub mod data;
pub mod device;
pub mod engine;
pub mod model;
pub mod params;
pub mod state;
pub mod synth;
pub mod train;

pub use client::{Backoff, ClientOptions, LoopError, RunSummary, run};
pub use data::{DataError, DataRoot, Dataset, Loader};
pub use device::DeviceChoice;
pub use engine::{
    DataConfig, DataFormat, Engine, EngineHandle, EngineOptions, FitParams, LocalData,
};
pub use model::{Architecture, InputShape, ModelSpec, Net};
pub use params::{WireDtype, WireModel};
pub use train::{DpConfig, EvalReport, OptimizerKind, TrainConfig, TrainReport};

/// Configures libtorch's CPU threading. `threads = 0` uses the CPUs this
/// process may actually use ([`std::thread::available_parallelism`], which
/// honours cgroup quotas and affinity): libtorch's own default is one thread
/// per core of the node, and a pod limited to two CPUs on a large node
/// would then spin dozens of OpenMP threads against its quota. With
/// `deterministic`, the CPU runs single threaded, which (with a fixed seed)
/// makes training bitwise repeatable; it also turns off cuDNN autotuning,
/// whose choice of kernels varies between runs.
pub fn configure_torch(threads: usize, deterministic: bool) {
    let n = if deterministic {
        1
    } else if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
    if tch::Cuda::is_available() {
        tch::Cuda::cudnn_set_benchmark(!deterministic);
    }
}
