//! Round rules: how many participants, how long to wait, how often to retry.

use serde::{Deserialize, Serialize};

use super::RoundError;

/// Parameters of the round state machine (from the FederatedJob spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundConfig {
    /// Rounds in the job.
    pub total_rounds: u64,
    /// Quorum: accepted updates a round needs to be aggregated.
    pub min_per_round: usize,
    /// Most participants sampled per round.
    pub max_per_round: usize,
    /// Connected participants needed before a round is sampled (≥ `min_per_round`),
    /// so the first round does not start with whoever registered first.
    pub min_available: usize,
    /// Time from a round's start to its deadline; stragglers after it are late.
    pub round_timeout_ms: u64,
    /// Silence after which a participant is considered gone.
    pub heartbeat_timeout_ms: u64,
    /// Attempts per round (first try included) before the job fails.
    pub max_round_attempts: u32,
    /// Seed of the participant sampling.
    pub seed: u64,
}

impl RoundConfig {
    /// Checks that the numbers can produce a round.
    pub fn validate(&self) -> Result<(), RoundError> {
        let bad = |field: &'static str, problem: String| {
            Err(RoundError::InvalidConfig { field, problem })
        };
        if self.total_rounds == 0 {
            return bad("totalRounds", "must be >= 1".into());
        }
        if self.min_per_round == 0 {
            return bad("minPerRound", "must be >= 1".into());
        }
        if self.max_per_round < self.min_per_round {
            return bad(
                "maxPerRound",
                format!(
                    "({}) must be >= minPerRound ({})",
                    self.max_per_round, self.min_per_round
                ),
            );
        }
        if self.min_available < self.min_per_round {
            return bad(
                "minAvailable",
                format!(
                    "({}) must be >= minPerRound ({})",
                    self.min_available, self.min_per_round
                ),
            );
        }
        if self.round_timeout_ms == 0 {
            return bad("roundTimeoutMs", "must be > 0".into());
        }
        if self.heartbeat_timeout_ms == 0 {
            return bad("heartbeatTimeoutMs", "must be > 0".into());
        }
        if self.max_round_attempts == 0 {
            return bad("maxRoundAttempts", "must be >= 1".into());
        }
        Ok(())
    }
}
