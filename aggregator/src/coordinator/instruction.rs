//! What a participant is told to do next, and its training seed.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Coordinator;
use crate::round::{ParticipantId, Phase, Slot};

/// What an instruction tells a participant to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InstructionKind {
    /// Nothing to do now.
    Wait,
    /// Train from `model_version` and upload.
    Fit,
    /// Evaluate `model_version` and report.
    Evaluate,
    /// Job over.
    Done,
    /// Job failed.
    Failed,
}

/// Local training hyper-parameters of one participant in one round.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HyperParameters {
    /// Local epochs.
    pub local_epochs: u32,
    /// Batch size.
    pub batch_size: u32,
    /// Learning rate.
    pub learning_rate: f64,
    /// FedProx μ (0 when not FedProx).
    pub proximal_mu: f64,
    /// Training seed for this participant and round.
    pub seed: u64,
    /// Local optimiser.
    pub optimizer: String,
}

/// The instruction for one participant now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instruction {
    /// What to do.
    pub kind: InstructionKind,
    /// Round (1-based).
    pub round: u64,
    /// Attempt (0-based).
    pub attempt: u32,
    /// Rounds in the job.
    pub total_rounds: u64,
    /// Model version to start from or evaluate.
    pub model_version: u64,
    /// Its sha256.
    pub model_sha256: String,
    /// Time to the round's deadline.
    pub deadline_in_ms: u64,
    /// Hyper-parameters (FIT only).
    pub hyper_parameters: Option<HyperParameters>,
    /// Human-readable context.
    pub message: String,
}

impl Instruction {
    /// Whether `other` asks for something different (ignoring the clock).
    pub fn differs(&self, other: &Instruction) -> bool {
        (self.kind, self.round, self.attempt, self.model_version)
            != (other.kind, other.round, other.attempt, other.model_version)
    }
}

/// SplitMix64 finaliser (as in sampling): spreads seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Training seed of `id` in `round`: stable across processes and restarts.
pub fn participant_seed(job_seed: u64, round: u64, id: &ParticipantId) -> u64 {
    let digest = Sha256::digest(id.0.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    mix(mix(job_seed ^ mix(round)) ^ u64::from_le_bytes(first))
}

impl Coordinator {
    /// The instruction for `id` now.
    pub fn instruction(&self, id: &ParticipantId) -> Instruction {
        let now = self.now_ms();
        let s = self.lock();
        let m = &s.machine;
        let job = &self.inner.job;
        let mut out = Instruction {
            kind: InstructionKind::Wait,
            round: m.round(),
            attempt: m.attempt(),
            total_rounds: m.config().total_rounds,
            model_version: s.global.version,
            model_sha256: s.global.sha256.clone(),
            deadline_in_ms: 0,
            hyper_parameters: None,
            message: String::new(),
        };
        match m.phase() {
            Phase::Waiting => {
                out.message = format!(
                    "waiting for {} connected participants (have {})",
                    m.config().min_available,
                    m.connected()
                );
            }
            Phase::Collecting(open) => match open.slots.get(id) {
                Some(Slot::Pending | Slot::Uploading) => {
                    let hints = job.strategy.client_hints();
                    out.kind = InstructionKind::Fit;
                    out.deadline_in_ms = open.deadline_ms.saturating_sub(now);
                    out.hyper_parameters = Some(HyperParameters {
                        local_epochs: job.training.local_epochs,
                        batch_size: job.training.batch_size,
                        learning_rate: hints.learning_rate.unwrap_or(job.training.learning_rate),
                        proximal_mu: hints.proximal_mu.unwrap_or(0.0),
                        seed: participant_seed(job.seed, m.round(), id),
                        optimizer: job.training.optimizer.to_string(),
                    });
                }
                Some(slot) => out.message = format!("round {} slot: {slot:?}", m.round()),
                None => out.message = format!("not sampled for round {}", m.round()),
            },
            Phase::Aggregating { .. } => out.message = format!("aggregating round {}", m.round()),
            Phase::Completed => {
                let v = s.global.version;
                if s.evaluated.contains(&(id.clone(), v)) {
                    out.kind = InstructionKind::Done;
                    out.message = format!("job completed after {} rounds", m.completed_rounds());
                } else {
                    out.kind = InstructionKind::Evaluate;
                    out.message = format!("evaluate the final model (version {v})");
                }
            }
            Phase::Failed { reason } => {
                out.kind = InstructionKind::Failed;
                out.message = format!("job failed in round {}: {reason}", m.round());
            }
        }
        out
    }
}
