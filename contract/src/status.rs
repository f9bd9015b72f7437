//! The model manager's views: `GET /v1/status` and `GET /v1/versions`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A participant's identity (from its mTLS certificate).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub String);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ParticipantId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// Where a sampled participant stands in the open round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Slot {
    /// Sampled, nothing received yet.
    Pending,
    /// An upload is in progress.
    Uploading,
    /// Its update was aggregated.
    Accepted,
    /// Its update was refused on content (it counts as replied).
    Rejected {
        /// The rejection's metric label.
        reason: String,
    },
    /// It vanished or was removed before replying.
    Dropped,
}

impl Slot {
    /// Still expected to reply in this round.
    pub fn outstanding(&self) -> bool {
        matches!(self, Slot::Pending | Slot::Uploading)
    }
}

/// Where the aggregator's job stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregatorPhase {
    /// Waiting for enough participants to sample a round.
    #[default]
    Waiting,
    /// A round is open for updates.
    Collecting,
    /// A round's updates are being aggregated.
    Aggregating,
    /// Every round is done; the final model is stored.
    Completed,
    /// The job gave up (see [`StatusView::failure`]).
    Failed,
}

impl AggregatorPhase {
    /// The name on the wire (`waiting`, `collecting`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Collecting => "collecting",
            Self::Aggregating => "aggregating",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Completed or failed: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl fmt::Display for AggregatorPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status for the operator (`GET /v1/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// Job name.
    pub job: String,
    /// Where the job stands.
    pub phase: AggregatorPhase,
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
    #[serde(default)]
    pub participants: Vec<ParticipantStatus>,
    /// Time to the open round's deadline.
    #[serde(default)]
    pub deadline_in_ms: Option<u64>,
    /// Latest model version.
    #[serde(default)]
    pub latest_version: Option<VersionInfo>,
    /// Metrics of the latest version.
    #[serde(default)]
    pub last_metrics: BTreeMap<String, f64>,
    /// Why the job failed.
    #[serde(default)]
    pub failure: Option<String>,
}

/// One participant in [`StatusView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantStatus {
    /// Identity.
    pub id: ParticipantId,
    /// Heard from within the heartbeat timeout.
    pub connected: bool,
    /// Time since last heard from.
    pub last_seen_ms_ago: u64,
    /// Slot in the open round, if sampled.
    #[serde(default)]
    pub slot: Option<Slot>,
    /// Labels it registered with.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A global model version as the model manager lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Version number: 0 is the initial model, k the model after round k.
    pub version: u64,
    /// sha256 (hex) of the safetensors bytes.
    pub sha256: String,
    /// Size of the safetensors bytes.
    pub size: u64,
    /// When the version was written (Unix milliseconds).
    pub created_at_unix_ms: u64,
    /// Metrics: `train_*` averaged (by examples) over the updates that made
    /// this version, `eval_*` averaged over participants' evaluations of it.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Participants whose updates were aggregated into it.
    #[serde(default)]
    pub contributors: Vec<ParticipantId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_back_as_it_was_written() {
        let status = StatusView {
            job: "ns/j".into(),
            phase: AggregatorPhase::Collecting,
            round: 2,
            attempt: 1,
            total_rounds: 5,
            completed_rounds: 1,
            strategy: "FedAvg".into(),
            connected: 1,
            participants: vec![ParticipantStatus {
                id: "p-1".into(),
                connected: true,
                last_seen_ms_ago: 12,
                slot: Some(Slot::Rejected {
                    reason: "nan".into(),
                }),
                labels: BTreeMap::from([("site".into(), "eu".into())]),
            }],
            deadline_in_ms: Some(900),
            latest_version: Some(VersionInfo {
                version: 1,
                sha256: "ab".into(),
                size: 10,
                created_at_unix_ms: 1_000,
                metrics: BTreeMap::from([("eval_accuracy".into(), 0.5)]),
                contributors: vec!["p-1".into()],
            }),
            last_metrics: BTreeMap::new(),
            failure: None,
        };
        let json = serde_json::to_value(&status).expect("serialises");
        assert_eq!(json["phase"], "collecting");
        assert_eq!(json["participants"][0]["slot"]["state"], "rejected");
        assert_eq!(json["latestVersion"]["createdAtUnixMs"], 1_000);
        let back: StatusView = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, status);
    }

    #[test]
    fn phases_are_lowercase_and_unknown_ones_are_refused() {
        for (p, s) in [
            (AggregatorPhase::Waiting, "\"waiting\""),
            (AggregatorPhase::Completed, "\"completed\""),
            (AggregatorPhase::Failed, "\"failed\""),
        ] {
            assert_eq!(serde_json::to_string(&p).expect("serialises"), s);
            assert_eq!(format!("\"{}\"", p.as_str()), s);
        }
        assert!(serde_json::from_str::<AggregatorPhase>("\"Completed\"").is_err());
        assert!(AggregatorPhase::Failed.is_terminal());
        assert!(!AggregatorPhase::Aggregating.is_terminal());
    }
}
