//! The models a participant trains: built-in architectures defined with
//! `tch::nn` and user TorchScript modules trained in place.
//!
//! Every model lives in one [`VarStore`]; its variable names are what cross
//! the wire (see [`crate::params`]), so two participants that build the same
//! [`ModelSpec`] exchange parameters under identical names.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tch::nn::{self, ModuleT, VarStore};
use tch::{Device, Kind, TchError, Tensor, TrainableCModule};

/// Errors building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The TorchScript file could not be loaded.
    #[error("loading TorchScript module {path} failed")]
    LoadScript {
        /// File.
        path: PathBuf,
        /// libtorch's message.
        #[source]
        source: TchError,
    },
    /// The TorchScript module has no trainable parameters.
    #[error("TorchScript module {path} has no trainable parameters")]
    NoParameters {
        /// File.
        path: PathBuf,
    },
    /// A probe forward pass did not produce `[batch, num_classes]` logits.
    #[error("model output has shape {got:?} for input {input:?}; expected [N, {num_classes}]")]
    OutputShape {
        /// Shape produced.
        got: Vec<i64>,
        /// Shape fed.
        input: Vec<i64>,
        /// Classes the spec declares.
        num_classes: i64,
    },
    /// A batch does not have the shape the model was built for.
    #[error("input batch has shape {got:?}; the model expects [N, {expected}]")]
    InputShape {
        /// Shape received.
        got: Vec<i64>,
        /// Per-sample shape expected (e.g. `1, 64, 64`).
        expected: String,
    },
    /// The spec is out of range.
    #[error("invalid model spec: {0}")]
    Spec(String),
    /// libtorch failed during a forward pass.
    #[error("forward pass failed")]
    Forward(#[source] TchError),
}

/// Which network to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Architecture {
    /// A small CNN for 1-channel chest X-rays (any image size; adaptive pooling).
    SmallCnn,
    /// ResNet-18 from `tch::vision` (1-channel input is repeated to 3 channels).
    ResNet18,
    /// A two-layer perceptron for tabular data.
    Mlp {
        /// Hidden units.
        hidden: i64,
    },
    /// A user TorchScript module (`torch.jit.script`/`trace` output), trained in place.
    TorchScript(PathBuf),
}

impl FromStr for Architecture {
    type Err = ModelError;

    /// `small-cnn`, `resnet18`, `mlp`, or `torchscript:<path>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "small-cnn" | "smallcnn" | "cnn" => Ok(Architecture::SmallCnn),
            "resnet18" | "resnet-18" => Ok(Architecture::ResNet18),
            "mlp" => Ok(Architecture::Mlp { hidden: 64 }),
            other => other
                .strip_prefix("torchscript:")
                .map(|p| Architecture::TorchScript(PathBuf::from(p)))
                .ok_or_else(|| {
                    ModelError::Spec(format!(
                        "unknown architecture {s:?} (small-cnn, resnet18, mlp, torchscript:<path>)"
                    ))
                }),
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Architecture::SmallCnn => f.write_str("small-cnn"),
            Architecture::ResNet18 => f.write_str("resnet18"),
            Architecture::Mlp { .. } => f.write_str("mlp"),
            Architecture::TorchScript(p) => write!(f, "torchscript:{}", p.display()),
        }
    }
}

/// Shape of one input sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    /// An image, channels first.
    Image {
        /// 1 (grayscale) or 3 (RGB).
        channels: i64,
        /// Height in pixels.
        height: i64,
        /// Width in pixels.
        width: i64,
    },
    /// A feature vector.
    Features(i64),
}

impl InputShape {
    /// The per-sample dimensions (without the batch dimension).
    pub fn dims(&self) -> Vec<i64> {
        match *self {
            InputShape::Image {
                channels,
                height,
                width,
            } => vec![channels, height, width],
            InputShape::Features(n) => vec![n],
        }
    }

    /// Values per sample.
    pub fn numel(&self) -> usize {
        self.dims()
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .product()
    }
}

/// Everything needed to build the same model on every participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Network.
    pub arch: Architecture,
    /// Input sample shape.
    pub input: InputShape,
    /// Output classes.
    pub num_classes: i64,
}

impl ModelSpec {
    /// The small CNN for square grayscale images of `size` pixels.
    pub fn small_cnn(size: i64, num_classes: i64) -> Self {
        Self {
            arch: Architecture::SmallCnn,
            input: InputShape::Image {
                channels: 1,
                height: size,
                width: size,
            },
            num_classes,
        }
    }
}

enum Inner {
    Builtin(Box<dyn ModuleT>),
    Script(TrainableCModule),
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inner::Builtin(_) => f.write_str("Builtin"),
            Inner::Script(_) => f.write_str("TorchScript"),
        }
    }
}

/// A model and its parameters.
#[derive(Debug)]
pub struct Net {
    vs: VarStore,
    inner: Inner,
    spec: ModelSpec,
}

impl Net {
    /// Builds `spec` on `device`. Built-in models are initialised from
    /// libtorch's global RNG, so call [`tch::manual_seed`] first for
    /// reproducible initial weights.
    pub fn new(spec: &ModelSpec, device: Device) -> Result<Self, ModelError> {
        if spec.num_classes < 2 {
            return Err(ModelError::Spec(format!(
                "num_classes must be at least 2, got {}",
                spec.num_classes
            )));
        }
        let vs = VarStore::new(device);
        let root = vs.root();
        let inner = match (&spec.arch, spec.input) {
            (Architecture::SmallCnn, InputShape::Image { channels, .. }) => {
                Inner::Builtin(Box::new(small_cnn(&root, channels, spec.num_classes)))
            }
            (Architecture::ResNet18, InputShape::Image { channels, .. }) => {
                if channels != 1 && channels != 3 {
                    return Err(ModelError::Spec(format!(
                        "resnet18 takes 1 or 3 channels, got {channels}"
                    )));
                }
                let net = tch::vision::resnet::resnet18(&root, spec.num_classes);
                Inner::Builtin(Box::new(nn::func_t(move |xs, train| {
                    // Grayscale X-rays reuse the RGB stem: the channel is
                    // repeated instead of changing conv1, so ImageNet-style
                    // weights stay loadable.
                    let xs = if xs.size().get(1) == Some(&1) {
                        xs.expand([-1, 3, -1, -1], false)
                    } else {
                        xs.shallow_clone()
                    };
                    xs.apply_t(&net, train)
                })))
            }
            (Architecture::Mlp { hidden }, InputShape::Features(n)) => {
                Inner::Builtin(Box::new(mlp(&root, n, *hidden, spec.num_classes)))
            }
            (Architecture::TorchScript(path), _) => {
                let module = TrainableCModule::load(path, root).map_err(|source| {
                    ModelError::LoadScript {
                        path: path.clone(),
                        source,
                    }
                })?;
                if vs.trainable_variables().is_empty() {
                    return Err(ModelError::NoParameters { path: path.clone() });
                }
                Inner::Script(module)
            }
            (arch, input) => {
                return Err(ModelError::Spec(format!(
                    "{arch} cannot take inputs of shape {:?}",
                    input.dims()
                )));
            }
        };
        let net = Net {
            vs,
            inner,
            spec: spec.clone(),
        };
        net.probe()?;
        Ok(net)
    }

    /// Runs one zero sample through the model to check the output shape now,
    /// not in the middle of the first round.
    fn probe(&self) -> Result<(), ModelError> {
        let mut dims = vec![2];
        dims.extend(self.spec.input.dims());
        let xs = Tensor::zeros(dims.as_slice(), (Kind::Float, self.vs.device()));
        let ys = tch::no_grad(|| self.forward_t(&xs, false))?;
        let got = ys.size();
        if got != [2, self.spec.num_classes] {
            return Err(ModelError::OutputShape {
                got,
                input: dims,
                num_classes: self.spec.num_classes,
            });
        }
        Ok(())
    }

    /// Forward pass; `train` switches dropout and batch-norm behaviour.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let size = xs.size();
        let expected = self.spec.input.dims();
        if size.len() != expected.len() + 1 || size[1..] != expected[..] {
            return Err(ModelError::InputShape {
                got: size,
                expected: expected
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        match &self.inner {
            Inner::Builtin(m) => Ok(m.forward_t(xs, train)),
            Inner::Script(m) => m.forward_ts(&[xs]).map_err(ModelError::Forward),
        }
    }

    /// Switches TorchScript modules between training and evaluation mode
    /// (built-in modules take `train` per call).
    pub fn set_train(&mut self, train: bool) -> Result<(), ModelError> {
        if let Inner::Script(m) = &mut self.inner {
            let r = if train {
                m.f_set_train()
            } else {
                m.f_set_eval()
            };
            r.map_err(ModelError::Forward)?;
        }
        Ok(())
    }

    /// The parameter store.
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Device it lives on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// All variables (trainable parameters and buffers such as batch-norm
    /// running statistics), sorted by name: the wire order.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of scalar parameters (all variables).
    pub fn num_parameters(&self) -> usize {
        self.vs.variables().values().map(Tensor::numel).sum()
    }

    /// Saves the TorchScript module (with its trained parameters) to `path`.
    /// Built-in models are saved with [`crate::params`] instead.
    pub fn save_script(&self, path: &Path) -> Result<bool, ModelError> {
        match &self.inner {
            Inner::Script(m) => {
                m.save(path)
                    .map(|()| true)
                    .map_err(|source| ModelError::LoadScript {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            Inner::Builtin(_) => Ok(false),
        }
    }
}

/// Three conv blocks and a two-layer head. Adaptive pooling makes it work at
/// any input size (32x32 in tests, 64x64 or more for real X-rays).
fn small_cnn(p: &nn::Path, channels: i64, num_classes: i64) -> nn::FuncT<'static> {
    let conv = |name: &str, cin, cout| {
        nn::conv2d(
            p / name,
            cin,
            cout,
            3,
            nn::ConvConfig {
                padding: 1,
                ..Default::default()
            },
        )
    };
    let conv1 = conv("conv1", channels, 16);
    let conv2 = conv("conv2", 16, 32);
    let conv3 = conv("conv3", 32, 64);
    let fc1 = nn::linear(p / "fc1", 64 * 4 * 4, 128, Default::default());
    let fc2 = nn::linear(p / "fc2", 128, num_classes, Default::default());
    nn::func_t(move |xs, train| {
        xs.apply(&conv1)
            .relu()
            .max_pool2d_default(2)
            .apply(&conv2)
            .relu()
            .max_pool2d_default(2)
            .apply(&conv3)
            .relu()
            .adaptive_avg_pool2d([4, 4])
            .flat_view()
            .apply(&fc1)
            .relu()
            .dropout(0.25, train)
            .apply(&fc2)
    })
}

fn mlp(p: &nn::Path, inputs: i64, hidden: i64, num_classes: i64) -> nn::FuncT<'static> {
    let fc1 = nn::linear(p / "fc1", inputs, hidden, Default::default());
    let fc2 = nn::linear(p / "fc2", hidden, num_classes, Default::default());
    nn::func_t(move |xs, _train| xs.apply(&fc1).relu().apply(&fc2))
}
