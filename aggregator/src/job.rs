//! The job config file the operator renders for an aggregator (JSON or YAML).
//!
//! ```yaml
//! name: covid-xray
//! seed: 42
//! rounds: {total: 10, minPerRound: 2, maxPerRound: 3, roundTimeoutSeconds: 600}
//! strategy: {kind: FedProx, proximalMu: 0.01}
//! training: {localEpochs: 1, batchSize: 32, learningRate: 0.01, optimizer: sgd}
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::round::{RoundConfig, RoundError};
use crate::strategy::{StrategyConfig, StrategyError};
use crate::update::UpdateLimits;

/// Errors reading or checking a job config.
#[derive(Debug, thiserror::Error)]
pub enum JobConfigError {
    /// The file could not be read.
    #[error("reading job config {path} failed")]
    Read {
        /// File.
        path: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither valid JSON nor valid YAML of the expected shape.
    #[error("job config {path} is invalid")]
    Parse {
        /// File.
        path: String,
        /// Parser error.
        #[source]
        source: serde_yaml::Error,
    },
    /// Round rules out of range.
    #[error("job config: invalid rounds")]
    Rounds(#[source] RoundError),
    /// Strategy parameters out of range.
    #[error("job config: invalid strategy")]
    Strategy(#[source] StrategyError),
    /// Another field out of range.
    #[error("job config: {field} {problem}")]
    Invalid {
        /// Field as spelled in the file.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// A federated job as the aggregator runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobConfig {
    /// Job name (the FederatedJob's name).
    pub name: String,
    /// Seed of participant sampling and of the per-participant training seeds.
    #[serde(default)]
    pub seed: u64,
    /// Round rules.
    pub rounds: RoundsSpec,
    /// Aggregation strategy.
    #[serde(default = "default_strategy")]
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
    #[serde(default)]
    pub participants: Vec<String>,
    /// Job token (better passed with `--token-file` or `FEDSKY_JOB_TOKEN`).
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
}

fn default_strategy() -> StrategyConfig {
    StrategyConfig::FedAvg
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
    #[serde(default)]
    pub min_available: Option<usize>,
    /// Deadline of a round after its start, in seconds.
    pub round_timeout_seconds: f64,
    /// Silence after which a participant counts as gone, in seconds.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout_seconds: f64,
    /// Attempts per round before the job fails.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_heartbeat_timeout() -> f64 {
    30.0
}

fn default_attempts() -> u32 {
    3
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
    pub optimizer: String,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            local_epochs: 1,
            batch_size: 32,
            learning_rate: 0.01,
            optimizer: "sgd".into(),
        }
    }
}

/// Size limits of the data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest update in bytes; default: the model's size plus header room.
    #[serde(default)]
    pub max_update_bytes: Option<u64>,
    /// Optional bound on ‖update − global‖₂.
    #[serde(default)]
    pub max_update_norm: Option<f64>,
    /// Largest gRPC message (one chunk plus framing).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: u64,
    /// Chunk size of model downloads.
    #[serde(default = "default_chunk")]
    pub chunk_bytes: u64,
}

fn default_max_message() -> u64 {
    4 << 20
}

fn default_chunk() -> u64 {
    1 << 20
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_update_bytes: None,
            max_update_norm: None,
            max_message_bytes: default_max_message(),
            chunk_bytes: default_chunk(),
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

fn seconds_to_ms(field: &'static str, s: f64) -> Result<u64, JobConfigError> {
    if !(s.is_finite() && s > 0.0) {
        return Err(JobConfigError::Invalid {
            field,
            problem: format!("must be a positive number of seconds, got {s}"),
        });
    }
    Ok((s * 1000.0).ceil() as u64)
}

impl JobConfig {
    /// Reads JSON or YAML (YAML is a superset of JSON).
    pub fn from_file(path: &Path) -> Result<Self, JobConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| JobConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            JobConfigError::Parse { source, .. } => JobConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates a JSON or YAML document.
    pub fn parse(text: &str) -> Result<Self, JobConfigError> {
        let job: JobConfig =
            serde_yaml::from_str(text).map_err(|source| JobConfigError::Parse {
                path: "<inline>".into(),
                source,
            })?;
        job.validate()?;
        Ok(job)
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), JobConfigError> {
        self.round_config()?;
        self.strategy.validate().map_err(JobConfigError::Strategy)?;
        if self.limits.chunk_bytes == 0
            || self.limits.chunk_bytes + 1024 > self.limits.max_message_bytes
        {
            return Err(JobConfigError::Invalid {
                field: "limits.chunkBytes",
                problem: format!(
                    "({}) must be > 0 and at least 1 KiB below limits.maxMessageBytes ({})",
                    self.limits.chunk_bytes, self.limits.max_message_bytes
                ),
            });
        }
        if self.training.batch_size == 0 || self.training.local_epochs == 0 {
            return Err(JobConfigError::Invalid {
                field: "training",
                problem: "localEpochs and batchSize must be >= 1".into(),
            });
        }
        Ok(())
    }

    /// The round machine's rules.
    pub fn round_config(&self) -> Result<RoundConfig, JobConfigError> {
        let r = &self.rounds;
        let config = RoundConfig {
            total_rounds: r.total,
            min_per_round: r.min_per_round,
            max_per_round: r.max_per_round,
            min_available: r.min_available.unwrap_or(r.max_per_round),
            round_timeout_ms: seconds_to_ms("rounds.roundTimeoutSeconds", r.round_timeout_seconds)?,
            heartbeat_timeout_ms: seconds_to_ms(
                "rounds.heartbeatTimeoutSeconds",
                r.heartbeat_timeout_seconds,
            )?,
            max_round_attempts: r.max_attempts,
            seed: self.seed,
        };
        config.validate().map_err(JobConfigError::Rounds)?;
        Ok(config)
    }

    /// Update limits for a global model of `spec`'s layout.
    pub fn update_limits(&self, spec: &crate::ModelSpec) -> UpdateLimits {
        let mut limits = UpdateLimits::for_spec(spec);
        if let Some(max) = self.limits.max_update_bytes {
            limits.max_update_bytes = max;
        }
        limits.max_update_norm = self.limits.max_update_norm;
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_defaults() {
        let job = JobConfig::parse(
            "name: j\nseed: 3\nrounds: {total: 2, minPerRound: 1, maxPerRound: 2, roundTimeoutSeconds: 1.5}\nstrategy: {kind: FedProx, proximalMu: 0.1}\n",
        )
        .expect("valid");
        let rc = job.round_config().expect("rounds");
        assert_eq!(rc.round_timeout_ms, 1500);
        assert_eq!(rc.min_available, 2);
        assert_eq!(rc.heartbeat_timeout_ms, 30_000);
        assert_eq!(job.fold_order, FoldOrder::Canonical);
        assert_eq!(job.strategy.client_hints().proximal_mu, Some(0.1));
    }

    #[test]
    fn json_and_errors() {
        let ok = r#"{"name":"j","rounds":{"total":1,"minPerRound":1,"maxPerRound":1,"roundTimeoutSeconds":1},"strategy":{"kind":"FedAvg"}}"#;
        assert!(JobConfig::parse(ok).is_ok());
        let bad = ok.replace("\"minPerRound\":1", "\"minPerRound\":0");
        assert!(matches!(
            JobConfig::parse(&bad),
            Err(JobConfigError::Rounds(_))
        ));
        let unknown = ok.replace("\"name\"", "\"nmae\"");
        assert!(matches!(
            JobConfig::parse(&unknown),
            Err(JobConfigError::Parse { .. })
        ));
    }
}
