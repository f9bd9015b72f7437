//! Local training (epochs of SGD/Adam with an optional FedProx proximal
//! term, mixed precision on CUDA, optional differential privacy) and
//! evaluation (loss, accuracy, per-class recall, confusion matrix).
//!
//! Reproducibility: [`train`] seeds libtorch's generators and the loader's
//! shuffle from [`TrainConfig::seed`], so on the CPU the same seed, model
//! and data give bitwise-identical parameters **when libtorch runs
//! single-threaded** (`tch::set_num_threads(1)`, the binary's
//! `--deterministic`): with several intra-op threads some reductions split
//! their work differently from run to run and the last bits can differ.
//! CUDA kernels (cuDNN convolution backward, atomics) are not bitwise
//! reproducible at all.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Instant;

use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, TchError, Tensor};

use crate::data::{Batch, DataError, Loader};
use crate::model::{InputShape, ModelError, Net};

/// Errors while training or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading a batch failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model refused a batch.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A libtorch operation failed.
    #[error("libtorch failed while {what}")]
    Torch {
        /// The step.
        what: &'static str,
        /// libtorch's message.
        #[source]
        source: TchError,
    },
    /// Nothing to train or evaluate on.
    #[error("the {0} set is empty")]
    Empty(&'static str),
    /// The loss became NaN or infinite.
    #[error("training diverged in epoch {epoch} (loss is not finite); lower the learning rate")]
    Diverged {
        /// 0-based epoch.
        epoch: u32,
    },
    /// Hyper-parameters out of range.
    #[error("invalid training configuration: {0}")]
    Config(String),
}

fn torch(what: &'static str) -> impl FnOnce(TchError) -> TrainError {
    move |source| TrainError::Torch { what, source }
}

/// Local optimiser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// SGD with momentum.
    Sgd {
        /// Momentum (0 for plain SGD).
        momentum: f64,
    },
    /// Adam.
    Adam,
    /// AdamW (weight decay 0.01).
    AdamW,
}

impl Default for OptimizerKind {
    fn default() -> Self {
        OptimizerKind::Sgd { momentum: 0.9 }
    }
}

impl FromStr for OptimizerKind {
    type Err = TrainError;

    /// `sgd` (momentum 0.9, as in the usual PyTorch FL clients), `sgd:<momentum>`,
    /// `adam`, `adamw`; empty means the default.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "" | "sgd" => Ok(OptimizerKind::default()),
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            other => other
                .strip_prefix("sgd:")
                .and_then(|m| m.parse::<f64>().ok())
                .filter(|m| (0.0..1.0).contains(m))
                .map(|momentum| OptimizerKind::Sgd { momentum })
                .ok_or_else(|| {
                    TrainError::Config(format!(
                        "unknown optimizer {s:?} (sgd, sgd:<momentum>, adam, adamw)"
                    ))
                }),
        }
    }
}

/// Differential privacy of the update (local DP as in DP-FedAvg's client
/// side): the whole model delta is clipped to `clip_norm` in L2, then
/// Gaussian noise with standard deviation `noise_multiplier * clip_norm` is
/// added to every coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpConfig {
    /// L2 bound of the update.
    pub clip_norm: f64,
    /// Noise standard deviation relative to `clip_norm` (sigma).
    pub noise_multiplier: f64,
}

/// What differential privacy did to an update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpReport {
    /// L2 norm of the delta before clipping.
    pub update_norm: f64,
    /// The clipping bound.
    pub clip_norm: f64,
    /// Factor applied to the delta (1 when it was within the bound).
    pub clip_scale: f64,
    /// Sigma.
    pub noise_multiplier: f64,
    /// Noise standard deviation actually added (`sigma * clip_norm`).
    pub noise_std: f64,
}

/// Hyper-parameters of one local training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the local training set.
    pub epochs: u32,
    /// Samples per step.
    pub batch_size: usize,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub learning_rate: f64,
    /// FedProx coefficient: `mu/2 * ||w - w_global||^2` is added to the loss.
    pub proximal_mu: f64,
    /// Seeds the model's random ops (dropout), the shuffle and the DP noise.
    pub seed: u64,
    /// Autocast (fp16) with dynamic loss scaling; only takes effect on CUDA.
    pub mixed_precision: bool,
    /// Optional differential privacy of the resulting update.
    pub dp: Option<DpConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 32,
            optimizer: OptimizerKind::default(),
            learning_rate: 0.01,
            proximal_mu: 0.0,
            seed: 0,
            mixed_precision: true,
            dp: None,
        }
    }
}

impl TrainConfig {
    fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "learning rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(self.proximal_mu.is_finite() && self.proximal_mu >= 0.0) {
            return bad(format!(
                "proximal mu must be >= 0, got {}",
                self.proximal_mu
            ));
        }
        if let Some(dp) = self.dp {
            if !(dp.clip_norm.is_finite() && dp.clip_norm > 0.0) {
                return bad(format!(
                    "DP clip norm must be positive, got {}",
                    dp.clip_norm
                ));
            }
            if !(dp.noise_multiplier.is_finite() && dp.noise_multiplier >= 0.0) {
                return bad(format!(
                    "DP noise multiplier must be >= 0, got {}",
                    dp.noise_multiplier
                ));
            }
        }
        Ok(())
    }
}

/// Outcome of [`train`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Mean cross-entropy over all steps (without the proximal term).
    pub loss: f64,
    /// Training accuracy over all steps.
    pub accuracy: f64,
    /// Mean proximal term (0 without FedProx).
    pub proximal_term: f64,
    /// Local training set size (the FedAvg weight).
    pub examples: usize,
    /// Samples processed (examples x epochs).
    pub samples_seen: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Steps skipped by the loss scaler because gradients overflowed.
    pub skipped_steps: usize,
    /// Wall time.
    pub seconds: f64,
    /// Whether autocast was on.
    pub mixed_precision: bool,
    /// Differential privacy applied, if any.
    pub dp: Option<DpReport>,
}

impl TrainReport {
    /// Samples per second.
    pub fn throughput(&self) -> f64 {
        self.samples_seen as f64 / self.seconds.max(1e-9)
    }

    /// Metrics sent with the update (`loss`, `accuracy`, ...).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::from([
            ("loss".to_string(), self.loss),
            ("accuracy".to_string(), self.accuracy),
            ("seconds".to_string(), self.seconds),
            ("samples_per_second".to_string(), self.throughput()),
        ]);
        if self.proximal_term > 0.0 {
            m.insert("proximal_term".into(), self.proximal_term);
        }
        if let Some(dp) = &self.dp {
            m.insert("dp_noise_multiplier".into(), dp.noise_multiplier);
            m.insert("dp_clip_norm".into(), dp.clip_norm);
            m.insert("dp_update_norm".into(), dp.update_norm);
        }
        m
    }
}

/// Seeds libtorch's CPU and CUDA generators.
pub fn seed_everything(seed: u64) {
    // libtorch takes an i64; the bit pattern is what matters.
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
}

/// Host batch → tensors on `device`.
pub fn batch_tensors(
    b: &Batch,
    shape: &InputShape,
    device: Device,
) -> Result<(Tensor, Tensor), TrainError> {
    let n = b.len() as i64;
    let mut dims = vec![n];
    dims.extend(shape.dims());
    if b.xs.len() != b.len() * shape.numel() {
        return Err(TrainError::Config(format!(
            "batch holds {} values for {} samples of shape {:?}",
            b.xs.len(),
            b.len(),
            shape.dims()
        )));
    }
    let xs = Tensor::f_from_slice(&b.xs)
        .and_then(|t| t.f_view(dims.as_slice()))
        .and_then(|t| t.f_to_device(device))
        .map_err(torch("copying a batch to the device"))?;
    let ys = Tensor::f_from_slice(&b.ys)
        .and_then(|t| t.f_to_device(device))
        .map_err(torch("copying labels to the device"))?;
    Ok((xs, ys))
}

/// Dynamic loss scaling for fp16 autocast (what `torch.cuda.amp.GradScaler`
/// does): scale the loss so small gradients survive fp16, unscale before the
/// step, skip steps whose gradients overflowed and back off the scale.
struct GradScaler {
    enabled: bool,
    scale: f64,
    good_steps: u32,
}

impl GradScaler {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            scale: 65536.0,
            good_steps: 0,
        }
    }

    fn backward(&self, loss: &Tensor) -> Result<(), TrainError> {
        let scaled = if self.enabled {
            loss.f_mul_scalar(self.scale)
                .map_err(torch("scaling the loss"))?
        } else {
            loss.shallow_clone()
        };
        scaled.f_backward().map_err(torch("back-propagating"))
    }

    /// Unscales the gradients; false when the step must be skipped.
    fn unscale(&mut self, params: &[Tensor]) -> Result<bool, TrainError> {
        if !self.enabled {
            return Ok(true);
        }
        let device = params.first().map(Tensor::device).unwrap_or(Device::Cpu);
        let mut found_inf = Tensor::zeros([1], (Kind::Float, device));
        let inv = Tensor::from_slice(&[(1.0 / self.scale) as f32]).to_device(device);
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                g.f_internal_amp_non_finite_check_and_unscale(&mut found_inf, &inv)
                    .map_err(torch("unscaling gradients"))?;
            }
        }
        let overflow = f64::try_from(&found_inf).map_err(torch("reading the overflow flag"))? > 0.0;
        if overflow {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
            Ok(false)
        } else {
            self.good_steps += 1;
            if self.good_steps >= 2000 {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            Ok(true)
        }
    }
}

/// Detached copies of all variables by name (the starting point of a round).
fn snapshot(net: &Net) -> Result<Vec<(String, Tensor, Tensor)>, TrainError> {
    // Outside autograd: the copies are constants of the proximal term.
    tch::no_grad(|| {
        net.named_variables()
            .into_iter()
            .map(|(n, t)| {
                let copy = t
                    .f_detach_copy()
                    .map_err(torch("copying the global model"))?;
                Ok((n, t, copy))
            })
            .collect()
    })
}

/// Trains `net` in place on `loader` for `config.epochs` epochs.
pub fn train(
    net: &mut Net,
    loader: &Loader,
    config: &TrainConfig,
) -> Result<TrainReport, TrainError> {
    config.check()?;
    if loader.is_empty() {
        return Err(TrainError::Empty("training"));
    }
    let started = Instant::now();
    let device = net.device();
    let amp = config.mixed_precision && device.is_cuda();
    seed_everything(config.seed);
    let shape = net.spec().input;
    let global = snapshot(net)?;
    // (variable, its value at the start) for the trainable ones.
    let trainable: Vec<(Tensor, Tensor)> = global
        .iter()
        .filter(|(_, v, _)| v.requires_grad())
        .map(|(_, v, g)| (v.shallow_clone(), g.shallow_clone()))
        .collect();
    let params: Vec<Tensor> = trainable.iter().map(|(v, _)| v.shallow_clone()).collect();
    let vs = net.var_store();
    let lr = config.learning_rate;
    let mut opt = match config.optimizer {
        OptimizerKind::Sgd { momentum } => nn::Sgd {
            momentum,
            ..Default::default()
        }
        .build(vs, lr),
        OptimizerKind::Adam => nn::Adam::default().build(vs, lr),
        OptimizerKind::AdamW => nn::AdamW::default().build(vs, lr),
    }
    .map_err(torch("building the optimizer"))?;
    net.set_train(true)?;
    let mut scaler = GradScaler::new(amp);
    // Sums stay on the device so no step waits for a host copy.
    let scalar: &[i64] = &[];
    let zeros = || Tensor::zeros(scalar, (Kind::Double, device));
    let (mut loss_sum, mut correct, mut prox_sum) = (zeros(), zeros(), zeros());
    let (mut steps, mut skipped, mut seen) = (0usize, 0usize, 0usize);
    for epoch in 0..config.epochs {
        for batch in loader.epoch(config.seed, u64::from(epoch)) {
            let batch = batch?;
            let n = batch.len();
            let (xs, ys) = batch_tensors(&batch, &shape, device)?;
            let logits = tch::autocast(amp, || net.forward_t(&xs, true))?
                .f_to_kind(Kind::Float)
                .map_err(torch("casting logits"))?;
            let ce = logits
                .f_cross_entropy_loss::<Tensor>(&ys, None, Reduction::Mean, -100, 0.0)
                .map_err(torch(
                    "computing the loss (are labels within the class count?)",
                ))?;
            let mut loss = ce.shallow_clone();
            if config.proximal_mu > 0.0 {
                let mut prox = Tensor::zeros(scalar, (Kind::Float, device));
                for (w, w0) in &trainable {
                    // Out of place throughout: `loss` shares its tensor with
                    // `ce`, whose value is reported without the term.
                    prox = w
                        .f_sub(w0)
                        .and_then(|d| d.f_square())
                        .and_then(|d| d.f_sum(Kind::Float))
                        .and_then(|d| prox.f_add(&d))
                        .map_err(torch("computing the proximal term"))?;
                }
                let prox = prox * (config.proximal_mu / 2.0);
                prox_sum += prox.detach().to_kind(Kind::Double);
                loss = loss
                    .f_add(&prox)
                    .map_err(torch("adding the proximal term"))?;
            }
            opt.zero_grad();
            scaler.backward(&loss)?;
            if scaler.unscale(&params)? {
                opt.step();
            } else {
                skipped += 1;
            }
            steps += 1;
            seen += n;
            let hits = logits
                .f_argmax(-1, false)
                .and_then(|p| p.f_eq_tensor(&ys))
                .and_then(|h| h.f_sum(Kind::Double))
                .map_err(torch("counting correct predictions"))?;
            correct += hits;
            loss_sum += ce.detach().to_kind(Kind::Double) * (n as f64);
        }
        let total = f64::try_from(&loss_sum).map_err(torch("reading the loss"))?;
        if !total.is_finite() {
            return Err(TrainError::Diverged { epoch });
        }
    }
    net.set_train(false)?;
    let dp = match config.dp {
        Some(dp) => Some(privatize(&global, dp, config.seed)?),
        None => None,
    };
    let read = |t: &Tensor| f64::try_from(t).map_err(torch("reading metrics"));
    let seen_f = seen.max(1) as f64;
    Ok(TrainReport {
        loss: read(&loss_sum)? / seen_f,
        accuracy: read(&correct)? / seen_f,
        proximal_term: read(&prox_sum)? / steps.max(1) as f64,
        examples: loader.len(),
        samples_seen: seen,
        steps,
        skipped_steps: skipped,
        seconds: started.elapsed().as_secs_f64(),
        mixed_precision: amp,
        dp,
    })
}

/// Clips the delta of every variable from its start value to `clip_norm`
/// (jointly, in L2) and adds seeded Gaussian noise, in place.
fn privatize(
    vars: &[(String, Tensor, Tensor)],
    dp: DpConfig,
    seed: u64,
) -> Result<DpReport, TrainError> {
    tch::no_grad(|| {
        let mut sq = 0.0f64;
        let mut deltas = Vec::with_capacity(vars.len());
        for (_, v, g) in vars {
            let d = v
                .f_detach()
                .and_then(|v| v.f_sub(g))
                .and_then(|d| d.f_to_kind(Kind::Double))
                .map_err(torch("computing the update"))?;
            let s = d
                .f_square()
                .and_then(|s| s.f_sum(Kind::Double))
                .map_err(torch("computing the update norm"))?;
            sq += f64::try_from(&s).map_err(torch("reading the update norm"))?;
            deltas.push(d);
        }
        let norm = sq.sqrt();
        let clip_scale = if norm > dp.clip_norm {
            dp.clip_norm / norm
        } else {
            1.0
        };
        let noise_std = dp.noise_multiplier * dp.clip_norm;
        // Its own stream, so the noise does not depend on how many random
        // numbers training drew.
        seed_everything(seed ^ 0xD1FF_E2E1_7A11_5EED);
        for ((_, v, g), d) in vars.iter().zip(deltas) {
            let mut new = d
                .f_mul_scalar(clip_scale)
                .and_then(|d| d.f_add(&g.f_to_kind(Kind::Double)?))
                .map_err(torch("clipping the update"))?;
            if noise_std > 0.0 {
                let noise = new
                    .f_randn_like()
                    .map_err(torch("drawing DP noise"))?
                    .f_mul_scalar(noise_std)
                    .map_err(torch("drawing DP noise"))?;
                new = new.f_add(&noise).map_err(torch("adding DP noise"))?;
            }
            let new = new
                .f_to_kind(v.kind())
                .map_err(torch("casting the update"))?;
            v.shallow_clone()
                .f_copy_(&new)
                .map_err(torch("writing the privatized update"))?;
        }
        Ok(DpReport {
            update_norm: norm,
            clip_norm: dp.clip_norm,
            clip_scale,
            noise_multiplier: dp.noise_multiplier,
            noise_std,
        })
    })
}

/// Outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Samples evaluated.
    pub examples: usize,
    /// Class names.
    pub classes: Vec<String>,
    /// Recall (sensitivity) per class; `None` where the class has no samples.
    pub recall: Vec<Option<f64>>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

impl EvalReport {
    /// Mean recall over classes that have samples.
    pub fn macro_recall(&self) -> f64 {
        let r: Vec<f64> = self.recall.iter().flatten().copied().collect();
        if r.is_empty() {
            0.0
        } else {
            r.iter().sum::<f64>() / r.len() as f64
        }
    }

    /// Metrics reported to the aggregator: `loss`, `accuracy`,
    /// `macro_recall` and `recall_<class>` (class lower-cased, non
    /// alphanumerics as `_`).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::from([
            ("loss".to_string(), self.loss),
            ("accuracy".to_string(), self.accuracy),
            ("macro_recall".to_string(), self.macro_recall()),
        ]);
        for (c, r) in self.classes.iter().zip(&self.recall) {
            if let Some(r) = r {
                m.insert(format!("recall_{}", metric_name(c)), *r);
            }
        }
        m
    }

    /// The confusion matrix as an aligned text table.
    pub fn confusion_table(&self) -> String {
        let w = self
            .classes
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(4)
            .max(6);
        let mut s = format!("{:w$} |", "true\\pred");
        for c in &self.classes {
            s.push_str(&format!(" {c:>w$}"));
        }
        s.push('\n');
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            s.push_str(&format!("{c:w$} |"));
            for v in row {
                s.push_str(&format!(" {v:>w$}"));
            }
            s.push('\n');
        }
        s
    }
}

/// `Viral Pneumonia` → `viral_pneumonia`.
pub fn metric_name(class: &str) -> String {
    class
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Evaluates `net` on `loader` (no gradients, evaluation mode).
pub fn evaluate(net: &mut Net, loader: &Loader) -> Result<EvalReport, TrainError> {
    if loader.is_empty() {
        return Err(TrainError::Empty("evaluation"));
    }
    let classes = loader.dataset().classes().to_vec();
    let k = classes.len();
    let device = net.device();
    let shape = net.spec().input;
    net.set_train(false)?;
    let mut confusion = vec![vec![0u64; k]; k];
    let mut loss_sum = 0.0f64;
    let mut n_total = 0usize;
    tch::no_grad(|| -> Result<(), TrainError> {
        for batch in loader.epoch(0, 0) {
            let batch = batch?;
            let (xs, ys) = batch_tensors(&batch, &shape, device)?;
            let logits = net
                .forward_t(&xs, false)?
                .f_to_kind(Kind::Float)
                .map_err(torch("casting logits"))?;
            let loss = logits
                .f_cross_entropy_loss::<Tensor>(&ys, None, Reduction::Sum, -100, 0.0)
                .map_err(torch(
                    "computing the loss (are labels within the class count?)",
                ))?;
            loss_sum += f64::try_from(&loss).map_err(torch("reading the loss"))?;
            let preds = logits
                .f_argmax(-1, false)
                .and_then(|p| p.f_to_device(Device::Cpu))
                .map_err(torch("reading predictions"))?;
            let preds = Vec::<i64>::try_from(&preds).map_err(torch("reading predictions"))?;
            for (&t, &p) in batch.ys.iter().zip(&preds) {
                if let (Ok(t), Ok(p)) = (usize::try_from(t), usize::try_from(p))
                    && t < k
                    && p < k
                {
                    confusion[t][p] += 1;
                }
            }
            n_total += batch.len();
        }
        Ok(())
    })?;
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let recall = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let n: u64 = row.iter().sum();
            (n > 0).then(|| row[i] as f64 / n as f64)
        })
        .collect();
    Ok(EvalReport {
        loss: loss_sum / n_total.max(1) as f64,
        accuracy: correct as f64 / n_total.max(1) as f64,
        examples: n_total,
        classes,
        recall,
        confusion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizer_names() {
        assert_eq!(
            "sgd".parse::<OptimizerKind>().ok(),
            Some(OptimizerKind::Sgd { momentum: 0.9 })
        );
        assert_eq!(
            "SGD:0".parse::<OptimizerKind>().ok(),
            Some(OptimizerKind::Sgd { momentum: 0.0 })
        );
        assert_eq!(
            "adam".parse::<OptimizerKind>().ok(),
            Some(OptimizerKind::Adam)
        );
        assert!("lbfgs".parse::<OptimizerKind>().is_err());
        assert_eq!(metric_name("Viral Pneumonia"), "viral_pneumonia");
    }
}
