//! The status the operator reads (`GET /v1/status`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::round::{ParticipantId, Phase, Slot};
use crate::store::VersionInfo;

/// Status for the operator (`GET /v1/status`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// Job name.
    pub job: String,
    /// `waiting`, `collecting`, `aggregating`, `completed` or `failed`.
    pub phase: String,
    /// Round in progress or waited for.
    pub round: u64,
    /// Attempt of that round.
    pub attempt: u32,
    /// Rounds in the job.
    pub total_rounds: u64,
    /// Rounds whose model is final.
    pub completed_rounds: u64,
    /// Strategy name.
    pub strategy: String,
    /// Connected participants.
    pub connected: usize,
    /// Registered participants.
    pub participants: Vec<ParticipantStatus>,
    /// Time to the open round's deadline.
    pub deadline_in_ms: Option<u64>,
    /// Latest model version.
    pub latest_version: Option<VersionInfo>,
    /// Metrics of the latest version.
    pub last_metrics: BTreeMap<String, f64>,
    /// Why the job failed.
    pub failure: Option<String>,
}

/// One participant in [`StatusView`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantStatus {
    /// Identity.
    pub id: ParticipantId,
    /// Heard from within the heartbeat timeout.
    pub connected: bool,
    /// Time since last heard from.
    pub last_seen_ms_ago: u64,
    /// Slot in the open round, if sampled.
    pub slot: Option<Slot>,
    /// Labels it registered with.
    pub labels: BTreeMap<String, String>,
}

pub(crate) fn phase_label(phase: &Phase) -> &'static str {
    match phase {
        Phase::Waiting => "waiting",
        Phase::Collecting(_) => "collecting",
        Phase::Aggregating { .. } => "aggregating",
        Phase::Completed => "completed",
        Phase::Failed { .. } => "failed",
    }
}
