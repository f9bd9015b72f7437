//! The job file the operator renders for an aggregator (JSON or YAML).
//!
//! ```yaml
//! name: covid-xray
//! seed: 42
//! rounds: {total: 10, minPerRound: 2, maxPerRound: 3, roundTimeoutSeconds: 600}
//! strategy: {kind: FedProx, proximalMu: 0.01}
//! training: {localEpochs: 1, batchSize: 32, learningRate: 0.01, optimizer: sgd}
//! ```

use serde::{Deserialize, Serialize};

use crate::{FieldError, StrategyConfig};

/// A federated job as the aggregator runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobConfig {
    /// Job name (the FederatedJob's `namespace/name`).
    pub name: String,
    /// Seed of participant sampling and of the per-participant training seeds.
    #[serde(default)]
    pub seed: u64,
    /// Round rules.
    pub rounds: RoundsSpec,
    /// Aggregation strategy.
    #[serde(default)]
    pub strategy: StrategyConfig,
    /// Local training hyper-parameters sent to participants.
    #[serde(default)]
    pub training: TrainingSpec,
    /// Upload and message limits.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Order in which accepted updates are folded into the aggregate.
    #[serde(default)]
    pub fold_order: FoldOrder,
    /// Participants allowed to register (certificate identities); empty
    /// admits any holder of a certificate from the job's CA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    /// Job token (better passed with `--token-file` or `FEDSKY_JOB_TOKEN`); never written
    /// into a rendered job file.
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
}

/// Round rules in the units people write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoundsSpec {
    /// Rounds in the job.
    pub total: u64,
    /// Quorum per round.
    pub min_per_round: usize,
    /// Most participants sampled per round.
    pub max_per_round: usize,
    /// Connected participants needed before sampling (default: `maxPerRound`,
    /// so every round samples from the full set and runs are reproducible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<usize>,
    /// Deadline of a round after its start, in seconds.
    pub round_timeout_seconds: f64,
    /// Silence after which a participant counts as gone, in seconds.
    #[serde(default = "RoundsSpec::default_heartbeat_timeout")]
    pub heartbeat_timeout_seconds: f64,
    /// Attempts per round before the job fails.
    #[serde(default = "RoundsSpec::default_attempts")]
    pub max_attempts: u32,
}

impl RoundsSpec {
    /// Default silence before a participant counts as gone.
    pub const DEFAULT_HEARTBEAT_TIMEOUT_SECONDS: f64 = 30.0;
    /// Default attempts per round.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

    fn default_heartbeat_timeout() -> f64 {
        Self::DEFAULT_HEARTBEAT_TIMEOUT_SECONDS
    }

    fn default_attempts() -> u32 {
        Self::DEFAULT_MAX_ATTEMPTS
    }

    /// Rules with the defaults for everything but the round counts and deadline.
    pub fn new(total: u64, min_per_round: usize, max_per_round: usize, timeout_s: f64) -> Self {
        Self {
            total,
            min_per_round,
            max_per_round,
            min_available: None,
            round_timeout_seconds: timeout_s,
            heartbeat_timeout_seconds: Self::DEFAULT_HEARTBEAT_TIMEOUT_SECONDS,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The round deadline in milliseconds (rounded up).
    pub fn round_timeout_ms(&self) -> Result<u64, FieldError> {
        seconds_to_ms("rounds.roundTimeoutSeconds", self.round_timeout_seconds)
    }

    /// The heartbeat timeout in milliseconds (rounded up).
    pub fn heartbeat_timeout_ms(&self) -> Result<u64, FieldError> {
        seconds_to_ms(
            "rounds.heartbeatTimeoutSeconds",
            self.heartbeat_timeout_seconds,
        )
    }
}

fn seconds_to_ms(field: &'static str, s: f64) -> Result<u64, FieldError> {
    if !(s.is_finite() && s > 0.0) {
        return Err(FieldError::new(
            field,
            format!("must be a positive number of seconds, got {s}"),
        ));
    }
    // Finite and positive: the cast saturates only beyond u64 milliseconds.
    Ok((s * 1000.0).ceil() as u64)
}

/// The participants' local optimiser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Plain SGD.
    #[default]
    Sgd,
    /// Adam.
    Adam,
}

impl Optimizer {
    /// The name participants are sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sgd => "sgd",
            Self::Adam => "adam",
        }
    }
}

impl std::fmt::Display for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Local training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingSpec {
    /// Local epochs per round.
    pub local_epochs: u32,
    /// Mini-batch size.
    pub batch_size: u32,
    /// Local learning rate (FedOpt strategies override it with their `etaL`).
    pub learning_rate: f64,
    /// Local optimiser.
    pub optimizer: Optimizer,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            local_epochs: 1,
            batch_size: 32,
            learning_rate: 0.01,
            optimizer: Optimizer::Sgd,
        }
    }
}

/// Size limits of the data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest update in bytes; default: the model's size plus header room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_update_bytes: Option<u64>,
    /// Optional bound on ‖update − global‖₂.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_update_norm: Option<f64>,
    /// Largest gRPC message (one chunk plus framing).
    #[serde(default = "LimitsSpec::default_max_message")]
    pub max_message_bytes: u64,
    /// Chunk size of model downloads.
    #[serde(default = "LimitsSpec::default_chunk")]
    pub chunk_bytes: u64,
}

impl LimitsSpec {
    /// Default largest gRPC message: 4 MiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 4 << 20;
    /// Default download chunk: 1 MiB.
    pub const DEFAULT_CHUNK_BYTES: u64 = 1 << 20;

    fn default_max_message() -> u64 {
        Self::DEFAULT_MAX_MESSAGE_BYTES
    }

    fn default_chunk() -> u64 {
        Self::DEFAULT_CHUNK_BYTES
    }
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_update_bytes: None,
            max_update_norm: None,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            chunk_bytes: Self::DEFAULT_CHUNK_BYTES,
        }
    }
}

/// When accepted updates enter the strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FoldOrder {
    /// In participant-id order, holding early arrivals until the ones before
    /// them are in or out: float sums are then independent of network
    /// timing, so a resumed run is bitwise equal to an uninterrupted one.
    /// Costs up to one held update per sampled participant.
    #[default]
    Canonical,
    /// As they arrive: memory stays O(model), the last bits depend on timing.
    Arrival,
}

impl JobConfig {
    /// Checks the fields that need nothing but the file: strategy ranges, limits, training
    /// and round deadlines. (The aggregator checks the round rules as a whole.)
    pub fn check_fields(&self) -> Result<(), FieldError> {
        self.strategy.validate()?;
        self.rounds.round_timeout_ms()?;
        self.rounds.heartbeat_timeout_ms()?;
        let l = &self.limits;
        if l.chunk_bytes == 0 || l.chunk_bytes.saturating_add(1024) > l.max_message_bytes {
            return Err(FieldError::new(
                "limits.chunkBytes",
                format!(
                    "({}) must be > 0 and at least 1 KiB below limits.maxMessageBytes ({})",
                    l.chunk_bytes, l.max_message_bytes
                ),
            ));
        }
        if self.training.batch_size == 0 || self.training.local_epochs == 0 {
            return Err(FieldError::new(
                "training",
                "localEpochs and batchSize must be >= 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> JobConfig {
        serde_json::from_str(json).expect("valid job file")
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let job = parse(
            r#"{"name":"j","rounds":{"total":2,"minPerRound":1,"maxPerRound":2,"roundTimeoutSeconds":1.5}}"#,
        );
        assert_eq!(job.strategy, StrategyConfig::FedAvg);
        assert_eq!(job.training, TrainingSpec::default());
        assert_eq!(job.limits.max_message_bytes, 4 << 20);
        assert_eq!(job.fold_order, FoldOrder::Canonical);
        assert_eq!(job.rounds.heartbeat_timeout_seconds, 30.0);
        assert_eq!(job.rounds.max_attempts, 3);
        assert_eq!(job.rounds.round_timeout_ms(), Ok(1500));
        assert_eq!(job.check_fields(), Ok(()));
    }

    #[test]
    fn a_rendered_file_reads_back_equal_and_without_the_token() {
        let mut job = parse(
            r#"{"name":"ns/j","seed":7,"rounds":{"total":3,"minPerRound":2,"maxPerRound":3,"roundTimeoutSeconds":60},
                "strategy":{"kind":"FedYogi","eta":0.01,"etaL":0.0316,"beta1":0.9,"beta2":0.99,"tau":0.001},
                "training":{"localEpochs":2,"batchSize":16,"learningRate":0.05,"optimizer":"adam"}}"#,
        );
        job.token = Some("secret".into());
        let text = serde_json::to_string(&job).expect("serialises");
        assert!(!text.contains("secret"), "{text}");
        let back: JobConfig = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, JobConfig { token: None, ..job });
    }

    #[test]
    fn field_errors_name_the_field() {
        let mut job = parse(
            r#"{"name":"j","rounds":{"total":1,"minPerRound":1,"maxPerRound":1,"roundTimeoutSeconds":1}}"#,
        );
        job.rounds.round_timeout_seconds = 0.0;
        assert_eq!(
            job.check_fields().map_err(|e| e.field),
            Err("rounds.roundTimeoutSeconds")
        );
        job.rounds.round_timeout_seconds = 1.0;
        job.limits.chunk_bytes = job.limits.max_message_bytes;
        assert_eq!(
            job.check_fields().map_err(|e| e.field),
            Err("limits.chunkBytes")
        );
        job.limits = LimitsSpec::default();
        job.training.batch_size = 0;
        assert_eq!(job.check_fields().map_err(|e| e.field), Err("training"));
    }

    #[test]
    fn unknown_fields_and_optimizers_are_refused() {
        let ok = r#"{"name":"j","rounds":{"total":1,"minPerRound":1,"maxPerRound":1,"roundTimeoutSeconds":1}}"#;
        assert!(serde_json::from_str::<JobConfig>(&ok.replace("\"name\"", "\"nmae\"")).is_err());
        let rmsprop = ok.replace(
            "}}",
            r#"},"training":{"localEpochs":1,"batchSize":1,"learningRate":0.1,"optimizer":"rmsprop"}}"#,
        );
        assert!(serde_json::from_str::<JobConfig>(&rmsprop).is_err());
    }
}
