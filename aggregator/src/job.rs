//! The job config file the operator renders for an aggregator (JSON or YAML): the types are
//! the operator–aggregator contract's ([`fedsky_contract::JobConfig`]); reading and checking
//! them against the round machine is the aggregator's.

use std::path::Path;

pub use fedsky_contract::{FoldOrder, JobConfig, LimitsSpec, Optimizer, RoundsSpec, TrainingSpec};

use crate::round::{RoundConfig, RoundError};
use crate::strategy::StrategyError;
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
    #[error("job config: invalid field")]
    Invalid(#[source] fedsky_contract::FieldError),
}

/// Reading and checking a [`JobConfig`] on the aggregator's side.
pub trait JobConfigExt: Sized {
    /// Reads JSON or YAML (YAML is a superset of JSON).
    fn from_file(path: &Path) -> Result<Self, JobConfigError>;
    /// Parses and validates a JSON or YAML document.
    fn parse(text: &str) -> Result<Self, JobConfigError>;
    /// Checks every section.
    fn validate(&self) -> Result<(), JobConfigError>;
    /// The round machine's rules.
    fn round_config(&self) -> Result<RoundConfig, JobConfigError>;
    /// Update limits for a global model of `spec`'s layout.
    fn update_limits(&self, spec: &crate::ModelSpec) -> UpdateLimits;
}

impl JobConfigExt for JobConfig {
    /// Reads JSON or YAML (YAML is a superset of JSON).
    fn from_file(path: &Path) -> Result<Self, JobConfigError> {
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
    fn parse(text: &str) -> Result<Self, JobConfigError> {
        let job: JobConfig =
            serde_yaml::from_str(text).map_err(|source| JobConfigError::Parse {
                path: "<inline>".into(),
                source,
            })?;
        job.validate()?;
        Ok(job)
    }

    /// Checks every section.
    fn validate(&self) -> Result<(), JobConfigError> {
        self.round_config()?;
        self.strategy
            .validate()
            .map_err(|e| JobConfigError::Strategy(e.into()))?;
        self.check_fields().map_err(JobConfigError::Invalid)
    }

    /// The round machine's rules.
    fn round_config(&self) -> Result<RoundConfig, JobConfigError> {
        let r = &self.rounds;
        let config = RoundConfig {
            total_rounds: r.total,
            min_per_round: r.min_per_round,
            max_per_round: r.max_per_round,
            min_available: r.min_available.unwrap_or(r.max_per_round),
            round_timeout_ms: r.round_timeout_ms().map_err(JobConfigError::Invalid)?,
            heartbeat_timeout_ms: r.heartbeat_timeout_ms().map_err(JobConfigError::Invalid)?,
            max_round_attempts: r.max_attempts,
            seed: self.seed,
        };
        config.validate().map_err(JobConfigError::Rounds)?;
        Ok(config)
    }

    /// Update limits for a global model of `spec`'s layout.
    fn update_limits(&self, spec: &crate::ModelSpec) -> UpdateLimits {
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
