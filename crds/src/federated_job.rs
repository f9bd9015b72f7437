//! `FederatedJob`: one federated training run across participant sites.

use crate::aggregator_placement::{PlacementOption, PlacementRequirements};
use crate::common::{LocalObjectRef, ResourceAmounts, SecretKeyRef};
use crate::conditions::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A federated learning job: a model trained for a number of rounds by participants next
/// to their private data, aggregated by a server the operator places in a public cloud.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fl.fedsky.dev",
    version = "v1alpha1",
    kind = "FederatedJob",
    doc = "A federated learning job: a model trained for a number of rounds by participants next to their private data and aggregated in a placed public-cloud server.",
    plural = "federatedjobs",
    shortname = "fj",
    category = "fedsky",
    namespaced,
    status = "FederatedJobStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Round",
        type_ = "string",
        json_path = ".status.roundProgress",
        description = "Completed rounds k/N"
    ),
    printcolumn(
        name = "Accuracy",
        type_ = "number",
        json_path = ".status.latestModel.accuracy"
    ),
    printcolumn(
        name = "Placement",
        type_ = "string",
        json_path = ".status.placement.summary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.dataset.classes) || !has(self.model.builtin) || size(self.dataset.classes) == self.model.builtin.numClasses").message("spec.dataset.classes must list exactly spec.model.builtin.numClasses names"))]
// Krum's guarantee (Blanchard et al., 2017) needs n >= 2f + 3 updates in every round; the
// quorum is the fewest a round aggregates.
#[x_kube(validation = Rule::new("!(self.strategy.type in ['Krum', 'MultiKrum']) || self.participants.minPerRound >= 2 * (has(self.strategy.byzantine) ? self.strategy.byzantine : 0) + 3").message("spec.participants.minPerRound must be at least 2 * spec.strategy.byzantine + 3 for Krum and MultiKrum (n >= 2f + 3), or their guarantee does not hold"))]
// On the spec, not the field: a rule on an optional field never sees it added or removed.
#[x_kube(validation = Rule::new("has(self.images) == has(oldSelf.images) && (!has(self.images) || self.images == oldSelf.images)").message("spec.images is immutable once the job exists"))]
pub struct FederatedJobSpec {
    /// The model to train: a built-in architecture or a TorchScript module. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.model is immutable; create a new FederatedJob to train another model"))]
    pub model: ModelSpec,
    /// The dataset each participant reads from its site's data volume. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.dataset is immutable once the job exists"))]
    pub dataset: DatasetSpec,
    /// Training hyper-parameters.
    pub training: TrainingSpec,
    /// Aggregation strategy. Immutable: changing it mid-job would invalidate its state.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.strategy is immutable once the job exists"))]
    pub strategy: StrategySpec,
    /// Which participants take part, and how many per round.
    pub participants: ParticipantsSpec,
    /// Where the aggregator runs.
    #[serde(default)]
    pub placement: JobPlacement,
    /// Where global model versions are stored.
    #[serde(default)]
    pub model_store: ModelStore,
    /// Optional experiment tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
    /// Container images for this job's pods, overriding the operator's defaults (its
    /// `--aggregator-image` and `--participant-image`). Immutable: a running job keeps the
    /// images it started with. The process runtime runs local binaries and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<JobImages>,
}

/// An image reference: `[registry[:port]/]name[:tag][@sha256:digest]`, as the container
/// runtime reads it.
pub const IMAGE_REFERENCE_PATTERN: &str = r"^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$";

/// Per-job container images. Unset entries use the operator's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobImages {
    /// The aggregator's image, e.g. `registry.example/fedsky-aggregator:0.1.0` or pinned by
    /// digest (`...@sha256:<64 hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(IMAGE_REFERENCE_PATTERN))]
    pub aggregator: Option<String>,
    /// The participants' image (libtorch inside; a CUDA build for GPU sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(IMAGE_REFERENCE_PATTERN))]
    pub participant: Option<String>,
}

/// The model to train. Exactly one of `builtin` or `torchScript` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.builtin) != has(self.torchScript)").message("spec.model: set exactly one of builtin or torchScript"))]
pub struct ModelSpec {
    /// A built-in architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinModel>,
    /// A user TorchScript module, trained in place by the participants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_script: Option<TorchScriptModel>,
}

/// A built-in model architecture.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinModel {
    /// `SmallCNN` (a compact CNN for 1-channel X-rays) or `ResNet18`.
    pub architecture: Architecture,
    /// Number of output classes (3 for normal / COVID-19 / viral pneumonia).
    #[schemars(range(min = 2, max = 100000))]
    pub num_classes: i32,
    /// Input channels: 1 for grayscale, 3 for RGB.
    #[serde(default = "default_channels")]
    #[schemars(range(min = 1, max = 4))]
    pub input_channels: i32,
    /// Square input size in pixels; images are resized to it.
    #[serde(default = "default_image_size")]
    #[schemars(range(min = 8, max = 1024))]
    pub image_size: i32,
}

fn default_channels() -> i32 {
    1
}
fn default_image_size() -> i32 {
    64
}

/// Built-in architectures.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Architecture {
    // Small convolutional network.
    #[serde(rename = "SmallCNN")]
    SmallCnn,
    // ResNet-18.
    ResNet18,
}

/// A TorchScript module provided by the user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TorchScriptModel {
    /// Path of the `.pt` module inside the participant's data volume.
    #[schemars(length(min = 1, max = 4096), pattern(r"^[^/].*\.pt$"))]
    pub path: String,
    /// Expected sha256 of the module file (hex); participants refuse a different file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// The local dataset of each participant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.format != 'CSV' || has(self.labelColumn)").message("spec.dataset.labelColumn is required when format is CSV"))]
pub struct DatasetSpec {
    /// `ImageFolder` (one folder per class, `train/` and `test/`) or `CSV`.
    pub format: DatasetFormat,
    /// Path inside the site's data volume, relative, without `..`.
    #[schemars(length(min = 1, max = 4096), pattern(r"^[^/]"))]
    #[x_kube(validation = Rule::new("!self.split('/').exists(p, p == '..')").message("spec.dataset.path must not contain '..'"))]
    pub path: String,
    /// Fraction of the local training data held out for validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 0.5))]
    pub validation_split: Option<f64>,
    /// Column holding the label (CSV only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub label_column: Option<String>,
    /// Class names in label order (image folder names, or CSV label values). Set them so
    /// that every site numbers classes alike even when a site lacks one; by default each
    /// participant takes its own `train/` folder names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = Rule::new("self.all(c, !c.contains(','))").message("spec.dataset.classes: class names must not contain commas"))]
    pub classes: Vec<String>,
}

/// Dataset formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DatasetFormat {
    // One folder per class of PNG/JPEG images.
    ImageFolder,
    // Tabular CSV with a label column.
    #[serde(rename = "CSV")]
    Csv,
}

/// Training hyper-parameters sent to participants each round.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.rounds >= oldSelf.rounds").message("spec.training.rounds may only grow while the job exists"))]
pub struct TrainingSpec {
    /// Number of federated rounds.
    #[schemars(range(min = 1, max = 100000))]
    pub rounds: i32,
    /// Local epochs per round on each participant.
    #[serde(default = "default_local_epochs")]
    #[schemars(range(min = 1, max = 1000))]
    pub local_epochs: i32,
    /// Mini-batch size.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 65536))]
    pub batch_size: i32,
    /// Local optimiser: `SGD` or `Adam`.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Local learning rate.
    #[serde(default = "default_learning_rate")]
    #[schemars(range(min = 0.0, max = 10.0))]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.training.learningRate must be greater than 0"))]
    pub learning_rate: f64,
    /// FedProx proximal term mu (0 disables FedProx).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub fedprox_mu: f64,
    /// Seed for sampling, initialisation and data shuffling; fixed seeds make runs repeatable.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.training.seed is immutable"))]
    pub seed: Option<i64>,
}

fn default_local_epochs() -> i32 {
    1
}
fn default_batch_size() -> i32 {
    32
}
fn default_learning_rate() -> f64 {
    0.01
}

/// Local optimisers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Optimizer {
    // Stochastic gradient descent.
    #[default]
    #[serde(rename = "SGD")]
    Sgd,
    // Adam.
    Adam,
}

/// Server-side aggregation strategy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.trimFraction) || self.type == 'TrimmedMean'").message("spec.strategy.trimFraction applies only to type TrimmedMean"))]
#[x_kube(validation = Rule::new("!has(self.byzantine) || self.type == 'Krum' || self.type == 'MultiKrum'").message("spec.strategy.byzantine applies only to Krum and MultiKrum"))]
#[x_kube(validation = Rule::new("!has(self.multiKrumSelect) || self.type == 'MultiKrum'").message("spec.strategy.multiKrumSelect applies only to MultiKrum"))]
#[x_kube(validation = Rule::new("!(has(self.serverLearningRate) || has(self.beta1) || has(self.beta2) || has(self.tau)) || self.type in ['FedAdam', 'FedYogi', 'FedAdagrad']").message("spec.strategy server optimiser settings (serverLearningRate, beta1, beta2, tau) apply only to FedAdam, FedYogi and FedAdagrad"))]
pub struct StrategySpec {
    /// Aggregation rule.
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
    /// Server learning rate (eta) of FedAdam / FedYogi / FedAdagrad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub server_learning_rate: Option<f64>,
    /// First-moment decay of FedAdam / FedYogi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub beta1: Option<f64>,
    /// Second-moment decay of FedAdam / FedYogi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub beta2: Option<f64>,
    /// Adaptivity (tau) of the server optimisers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tau: Option<f64>,
    /// Fraction cut from each end per coordinate (TrimmedMean), below 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 0.49))]
    pub trim_fraction: Option<f64>,
    /// Number of byzantine participants tolerated (Krum, MultiKrum). The API server requires
    /// `spec.participants.minPerRound >= 2 * byzantine + 3` for these rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub byzantine: Option<i32>,
    /// Updates averaged by MultiKrum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub multi_krum_select: Option<i32>,
}

/// Aggregation rules.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StrategyType {
    // Weighted average by number of examples (also FedProx's server side).
    #[default]
    FedAvg,
    // Adaptive server optimisers.
    FedAdam,
    FedYogi,
    FedAdagrad,
    // Coordinate-wise median.
    FedMedian,
    // Coordinate-wise trimmed mean.
    TrimmedMean,
    // Krum and multi-Krum.
    Krum,
    MultiKrum,
}

/// Which participants train, and how rounds wait for them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minPerRound <= self.maxPerRound").message("spec.participants.minPerRound must be less than or equal to spec.participants.maxPerRound"))]
pub struct ParticipantsSpec {
    /// ParticipantPool to draw participants from. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.participants.poolRef is immutable"))]
    pub pool_ref: LocalObjectRef,
    /// Fewest participants whose updates complete a round (quorum).
    #[schemars(range(min = 1, max = 10000))]
    pub min_per_round: i32,
    /// Most participants sampled per round.
    #[schemars(range(min = 1, max = 10000))]
    pub max_per_round: i32,
    /// Seconds a round waits for stragglers before closing with the quorum it has.
    #[serde(default = "default_round_timeout")]
    #[schemars(range(min = 5, max = 86400))]
    pub round_timeout_seconds: i32,
    /// Resources a node must have free to run a participant of this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_resources: Option<ResourceAmounts>,
    /// Replacements the orchestrator may start for failed participants over the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_replacements: Option<i32>,
}

fn default_round_timeout() -> i32 {
    600
}

/// Aggregator placement: a reference to an AggregatorPlacement, or inline requirements
/// from which the operator creates one. At most one is set; neither means inline defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.placementRef) && has(self.requirements))").message("spec.placement: set at most one of placementRef or requirements"))]
pub struct JobPlacement {
    /// An existing AggregatorPlacement in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_ref: Option<LocalObjectRef>,
    /// Inline requirements; the operator creates an AggregatorPlacement named after the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<PlacementRequirements>,
}

/// Where model versions go. At most one of `volume` or `s3`; the default is a volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.volume) && has(self.s3))").message("spec.modelStore: set at most one of volume or s3"))]
pub struct ModelStore {
    /// A PersistentVolumeClaim the operator creates next to the aggregator (for an
    /// aggregator on a VM the operator provisioned: the VM's disk, and `size` and
    /// `storageClassName` do not apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeStore>,
    /// S3-compatible object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Store>,
    /// Model versions to keep. After each round the aggregator deletes the versions older
    /// than the newest `keepVersions`, except the best one by `eval_accuracy` reported so far
    /// (the model manager's `best`), which it keeps in addition. Unset keeps every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub keep_versions: Option<i32>,
    /// Whether the trained model outlives the job. When the job finishes, the operator
    /// copies its latest model version into the model archive in the hub, which the model
    /// API (`models.fedsky.dev`, `kubectl fedsky model download`) serves to users allowed
    /// `get models/content` in the namespace. `Retain` (the default): the archived model
    /// stays after the job is deleted (a job deleted before it finished has its latest
    /// version archived then, while its aggregator still answers). `Delete`: the archived
    /// model is deleted with the job. Either way the volume is deleted with the job and
    /// objects in S3 are left in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<ModelRetention>,
}

/// Whether the trained model outlives its job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ModelRetention {
    /// The latest model stays in the hub's model archive after the job is deleted.
    #[default]
    Retain,
    /// The archived model is deleted with the job.
    Delete,
}

/// A volume model store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStore {
    /// Size of the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// StorageClass of the volume; the cluster default if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

/// An S3-compatible model store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Store {
    /// Endpoint URL (for S3-compatible services); AWS's endpoint if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(r"^https?://"))]
    pub endpoint: Option<String>,
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix for this job's objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// Region of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub region: Option<String>,
    /// Secret in the job's namespace with the keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` for temporary credentials). Required:
    /// the aggregator signs its requests with these keys. `namespace`, if set, must be the
    /// job's; `key` is not used. The operator must be allowed to read Secrets there (chart
    /// value `rbac.secretNamespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

/// Experiment tracking.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tracking {
    /// MLflow tracking server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowTracking>,
}

/// MLflow settings. Once the job's aggregator runs, the operator creates one MLflow run
/// for the job (tagged `fedsky.dev/namespace`, `fedsky.dev/job` and `fedsky.dev/uid`)
/// with the job's parameters (strategy, rounds, participants per round, training settings,
/// placement, pool and sites), logs each round's `loss`, `accuracy`, `round_time_seconds`
/// and `participants` with the round as the step once the round's evaluation is in, and
/// when the job succeeds uploads the final model as the run's artifact
/// `model/model.safetensors`, registers it as a new version of `registeredModelName` and
/// ends the run (`FINISHED`, or `FAILED` for a failed job). `status.tracking.mlflow`
/// records the progress. A tracking server that cannot be reached never fails the job:
/// the operator reports why in `status.tracking.mlflow.message` and a `TrackingFailed`
/// Event, and tries again on the next reconcile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowTracking {
    /// Tracking server URL (`http://` or `https://`, with any path prefix the server is
    /// served under), e.g. `http://mlflow.mlflow:5000`. The operator calls its REST API and
    /// uploads the model through its artifact proxy, so the server must serve artifacts
    /// (`mlflow server`'s default; not `--no-serve-artifacts`).
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://"))]
    pub tracking_uri: String,
    /// Experiment the job's run goes into, created when missing; the job's name if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub experiment: Option<String>,
    /// Secret in the job's namespace with the credentials for the tracking server, under
    /// the keys MLflow's own clients read: `MLFLOW_TRACKING_USERNAME` and
    /// `MLFLOW_TRACKING_PASSWORD` for HTTP basic authentication (as `mlflow server
    /// --app-name basic-auth` expects), or `MLFLOW_TRACKING_TOKEN` for a bearer token. With
    /// both, basic authentication is used, as MLflow's clients do. Unset: requests carry
    /// no credentials. `namespace`, if set, must be the job's; `key` is not used. The
    /// operator must be allowed to read Secrets there (chart value `rbac.secretNamespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// Registered model (MLflow model registry) the job's final model becomes a new version
    /// of, created when missing; the job's name if unset. MLflow refuses names with `/` or
    /// `:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(r"^[^/:]+$"))]
    pub registered_model_name: Option<String>,
}

/// Lifecycle phase of a FederatedJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum JobPhase {
    // Accepted, nothing started.
    #[default]
    Pending,
    // Solving the aggregator placement.
    Placing,
    // Starting the aggregator and participants.
    Starting,
    // Rounds are running.
    Running,
    // All rounds finished.
    Succeeded,
    // The job cannot finish; see conditions.
    Failed,
}

/// Observed state of a FederatedJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederatedJobStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// Standard conditions: `Placed`, `AggregatorReady`, `ParticipantsReady`, `Progressing`,
    /// `Succeeded`, `Failed`, `Degraded`, `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// The aggregator placement in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<ChosenPlacement>,
    /// Where participants reach the aggregator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<AggregatorEndpoint>,
    /// State of each participant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 1000))]
    pub participants: Vec<ParticipantState>,
    /// Last completed round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_round: Option<i32>,
    /// Completed rounds over total, `k/N`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_progress: Option<String>,
    /// Metrics of the most recent rounds (bounded, oldest dropped first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub history: Vec<RoundMetrics>,
    /// Latest global model version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_model: Option<ModelVersion>,
    /// Replacements started for failed participants so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacements: Option<i32>,
    /// Position of the orchestrator's circular queue, so a restart continues fairly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_cursor: Option<i64>,
    /// Nodes whose participants failed recently; skipped until their cooldown passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub failure_marks: Vec<FailureMark>,
    /// When the job started running and when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What the operator has recorded in the experiment tracker of `spec.tracking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingStatus>,
}

/// Experiment tracking as recorded so far.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingStatus {
    /// The job's MLflow run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowStatus>,
}

/// The job's MLflow run as the operator has written it. The run itself is the reference:
/// after an interrupted write the operator finds the run by its `fedsky.dev/uid` tag and
/// the rounds logged by its metrics, so it never creates a second run or logs a round
/// twice.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowStatus {
    /// ID of the experiment the run is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
    /// ID of the job's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Last round whose metrics are in the run (0 is the initial model); unset before the
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_round: Option<i32>,
    /// Registered model the final model is a version of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_model: Option<String>,
    /// Version of `registeredModel` holding the final model, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// How the operator ended the run: `FINISHED` or `FAILED`; unset while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_status: Option<String>,
    /// Why the last attempt to write to the tracking server failed; it is tried again on
    /// the next reconcile. Unset once an attempt succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The placement a job runs with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChosenPlacement {
    /// Name of the AggregatorPlacement.
    pub name: String,
    /// `cloud/region/instanceType`, for display.
    pub summary: String,
    /// The chosen option with its objective values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option: Option<PlacementOption>,
    /// MemberCluster hosting the aggregator, if any; for an aggregator on a VM the
    /// operator provisioned, `vm/<cloud>/<region>/<instance id>` (never a MemberCluster
    /// name, which cannot contain `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_cluster: Option<String>,
}

/// How participants reach the aggregator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregatorEndpoint {
    /// gRPC endpoint (`host:port`).
    pub endpoint: String,
    /// The aggregator's model manager, `https://`; it admits the job's client certificates
    /// and token only. Users download finished models through the model API
    /// (`kubectl fedsky model download`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_url: Option<String>,
}

/// One participant of the job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantState {
    /// Participant name (unique in the job).
    pub name: String,
    /// Site it belongs to.
    pub site: String,
    /// Node it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Where the participant stands: `Pending` (started, not running yet, or its start
    /// failed: see `message`), `Running`, `Completed`, `Failed` (replaced while the job's
    /// replacement budget lasts) or `Replaced` (removed; kept for a while as history).
    pub state: ParticipantPhase,
    /// Why it is in that state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last heartbeat the aggregator saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
}

/// Where a participant stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ParticipantPhase {
    /// Started, not yet running (or its start failed; see the message).
    #[default]
    Pending,
    /// Running.
    Running,
    /// Finished its work.
    Completed,
    /// Failed; it is replaced while the job's replacement budget lasts.
    Failed,
    /// Removed and replaced by another participant (kept for a while as history).
    Replaced,
}

impl ParticipantPhase {
    /// Running or finished: it counts towards the participants a round can use.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Running | Self::Completed)
    }
}

/// Recent participant failures on one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureMark {
    /// Site of the node.
    pub site: String,
    /// Node name.
    pub node: String,
    /// Failures counted.
    pub count: i32,
    /// When the last failure was seen.
    pub last_failure_time: Time,
}

/// Metrics of one round.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoundMetrics {
    /// Round number (1-based).
    pub round: i32,
    /// Participants whose updates were aggregated.
    pub participants: i32,
    /// Mean evaluation loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Mean evaluation accuracy in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Wall time of the round in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

/// A stored global model version.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersion {
    /// Version number (the round that produced it).
    pub version: i32,
    /// Where the aggregator serves it (`https://`, the job's credentials only); once the
    /// job finishes, the model API serves it to users (`models.fedsky.dev`).
    pub uri: String,
    /// sha256 of the safetensors file (hex).
    pub sha256: String,
    /// Evaluation accuracy, if measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Evaluation loss, if measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Other metrics by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}
