//! The plan of a reconcile, from what was dereferenced and observed: where the aggregator
//! goes, which participants to start and replace, and what the status says of them. Pure:
//! no client, no clock (`now` is given); [`super::apply`] carries the plan out through
//! [`crate::workloads::Workloads`].

use super::FINALIZER;
use super::participants::{self, Observed, Plan};
use super::status::{self, AggregatorObs, Observation, PlacementObs};
use super::validate::ValidJob;
use crate::capacity::NodeView;
use crate::orchestrator::{Candidate, FailureMark, QueueState, SelectError, Slot};
use crate::workloads::{DesiredAggregator, ParticipantObs};
use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::conditions;
use fedsky_crds::federated_job::ParticipantPhase;
use fedsky_crds::federated_job::{FederatedJobStatus, ParticipantState};
use fedsky_crds::member_cluster::ClusterTier;
use fedsky_crds::{FederatedJob, MemberCluster};
use kube::ResourceExt;

/// What is known of a job before anything is looked at.
pub fn initial_observation(job: &FederatedJob) -> Observation {
    Observation {
        invalid: None,
        placement: PlacementObs::Pending(String::new()),
        aggregator: AggregatorObs::Waiting(
            "WaitingForPlacement",
            "the placement is not solved yet".into(),
        ),
        participants: Vec::new(),
        running: 0,
        min_per_round: usize::try_from(job.spec.participants.min_per_round).unwrap_or(1),
        max_per_round: usize::try_from(job.spec.participants.max_per_round).unwrap_or(1),
        shortfall: None,
        budget_exhausted: false,
        rounds: job.spec.training.rounds,
        progress: None,
    }
}

/// The job has not been placed before and nothing runs for it yet.
pub fn first_placement(prev: &FederatedJobStatus) -> bool {
    !conditions::is_true(&prev.conditions, status::types::PLACED) && prev.participants.is_empty()
}

/// A job not placed yet, without our finalizer and not being deleted: nothing of it
/// exists outside the hub, and it is the placer's.
pub fn hub_only(job: &FederatedJob) -> bool {
    job.metadata.deletion_timestamp.is_none()
        && !job.finalizers().iter().any(|f| f == FINALIZER)
        && job.status.as_ref().is_none_or(first_placement)
}

/// What the aggregator waits for once the job is placed.
pub fn realising(option: &PlacementOption) -> AggregatorObs {
    AggregatorObs::Waiting(
        "Starting",
        format!(
            "applying the aggregator in {}/{}",
            option.cloud, option.region
        ),
    )
}

/// Where the aggregator goes: the placed option and the first (by name) public, Ready
/// MemberCluster in its cloud and region, if any.
pub fn desired_aggregator(
    members: &[MemberCluster],
    option: &PlacementOption,
) -> DesiredAggregator {
    let mut matching: Vec<&MemberCluster> = members
        .iter()
        .filter(|mc| {
            mc.spec.tier == ClusterTier::Public
                && serde_json::to_value(mc.spec.provider)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    == Some(option.cloud.clone())
                && mc.spec.region == option.region
                && mc
                    .status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
        })
        .collect();
    matching.sort_by_key(|mc| mc.name_any());
    DesiredAggregator {
        option: option.clone(),
        cluster: matching.first().map(|mc| mc.name_any()),
    }
}

/// The queue state (cursor and failure marks) the status recorded.
pub fn queue_state(prev: &FederatedJobStatus) -> QueueState {
    QueueState {
        cursor: prev
            .queue_cursor
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0),
        failures: prev
            .failure_marks
            .iter()
            .map(|m| {
                let slot = Slot {
                    site: m.site.clone(),
                    node: m.node.clone(),
                };
                let mark = FailureMark {
                    count: u32::try_from(m.count).unwrap_or(0),
                    last: m.last_failure_time.0.as_second(),
                };
                (slot, mark)
            })
            .collect(),
    }
}

/// One site as observed: its nodes and the job's participants there, or why they could
/// not be read.
#[derive(Debug, Clone)]
pub struct SiteObs {
    /// Site name.
    pub site: String,
    /// Nodes and participants, or the error.
    pub seen: Result<(Vec<NodeView>, Vec<ParticipantObs>), String>,
}

/// The participants' plan and the status entries known before it is carried out.
#[derive(Debug)]
pub struct ParticipantsPlan {
    /// Starts and replacements.
    pub plan: Plan,
    /// Status entries: sites not read (last known), replaced and observed participants;
    /// the apply step adds the started ones.
    pub states: Vec<ParticipantState>,
    /// Sites that could not be read.
    unobserved: Vec<String>,
    /// Why, per site.
    unreachable: Vec<String>,
}

/// What happened to participants this reconcile.
#[derive(Debug)]
pub struct ParticipantsOutcome {
    /// The plan that was applied.
    pub plan: Plan,
    /// Participants running after it.
    pub running: usize,
    /// Status entries.
    pub states: Vec<ParticipantState>,
}

/// Plans starts and replacements from `sites`. `prev` is the status's participant list. A
/// site that cannot be read (its nodes or its participants) keeps its last known
/// participants, counted as still there: starting others in their place would run more
/// participants than the job asks for once the site answers again (a member API timeout
/// is not a failed participant).
pub fn participants(
    job: &ValidJob,
    sites: &[SiteObs],
    queue: &mut QueueState,
    replacements: u32,
    prev: &[ParticipantState],
    now: i64,
) -> ParticipantsPlan {
    let mut candidates = Vec::new();
    let mut observed = Vec::new();
    let mut unreachable = Vec::new();
    let mut unobserved: Vec<String> = Vec::new();
    for s in sites {
        let (views, found) = match &s.seen {
            Ok(seen) => seen,
            Err(e) => {
                unreachable.push(format!("{}: {e}", s.site));
                unobserved.push(s.site.clone());
                continue;
            }
        };
        observed.extend(found.iter().map(|p| Observed {
            name: p.name.clone(),
            site: p.site.clone(),
            node: p.node.clone(),
            n: p.n,
            phase: p.phase,
            node_ready: views.iter().any(|v| v.name == p.node && v.ready),
        }));
        candidates.extend(views.iter().map(|v| Candidate {
            site: s.site.clone(),
            node: v.name.clone(),
            healthy: v.ready && v.schedulable && v.matches_selector,
            free: v.free,
        }));
    }
    let floor = participants::sequence_floor(
        &job.key,
        prev.iter().map(|p| (p.site.as_str(), p.name.as_str())),
    );
    // What runs at an unreadable site is its last known state, kept in the status.
    let unobserved_refs: Vec<&str> = unobserved.iter().map(String::as_str).collect();
    let (mut states, assumed) = participants::last_known(prev, &unobserved_refs);
    let plan = participants::plan(
        &observed,
        &floor,
        &candidates,
        &job.need,
        job.policy,
        queue,
        job.max_per_round.saturating_sub(assumed),
        replacements,
        job.max_replacements,
        now,
    );
    for (o, why) in &plan.replaced {
        states.push(state(
            &o.name,
            &o.site,
            &o.node,
            ParticipantPhase::Replaced,
            Some(why.clone()),
        ));
    }
    let replaced: Vec<&str> = plan.replaced.iter().map(|(o, _)| o.name.as_str()).collect();
    for o in observed
        .iter()
        .filter(|o| !replaced.contains(&o.name.as_str()))
    {
        let s = match o.phase {
            participants::Phase::Pending => ParticipantPhase::Pending,
            participants::Phase::Running => ParticipantPhase::Running,
            participants::Phase::Succeeded => ParticipantPhase::Completed,
            participants::Phase::Failed => ParticipantPhase::Failed,
        };
        states.push(state(&o.name, &o.site, &o.node, s, None));
    }
    ParticipantsPlan {
        plan,
        states,
        unobserved,
        unreachable,
    }
}

/// The outcome once the plan was carried out: participants running (at sites that were
/// read) and, when unreadable sites kept the job short, why.
pub fn settle(job: &ValidJob, planned: ParticipantsPlan) -> ParticipantsOutcome {
    let ParticipantsPlan {
        mut plan,
        mut states,
        unobserved,
        unreachable,
    } = planned;
    let running = states
        .iter()
        .filter(|s| !unobserved.contains(&s.site))
        .filter(|s| s.state.is_live())
        .count();
    if plan.shortfall.is_none() && !unreachable.is_empty() && running < job.max_per_round {
        plan.shortfall = Some(SelectError::NotEnough {
            wanted: job.max_per_round,
            found: running,
            reason: format!("unreachable sites: {}", unreachable.join("; ")),
        });
    }
    states.sort_by(|a, b| a.name.cmp(&b.name));
    ParticipantsOutcome {
        plan,
        running,
        states,
    }
}

/// A status entry.
pub fn state(
    name: &str,
    site: &str,
    node: &str,
    s: ParticipantPhase,
    message: Option<String>,
) -> ParticipantState {
    ParticipantState {
        name: name.into(),
        site: site.into(),
        node: Some(node.into()),
        state: s,
        message,
        last_heartbeat: None,
    }
}

/// Keeps replaced participants visible (bounded) next to the live ones.
pub fn merge_participants(
    prev: &[ParticipantState],
    now: Vec<ParticipantState>,
) -> Vec<ParticipantState> {
    let mut out = now;
    for p in prev
        .iter()
        .filter(|p| p.state == ParticipantPhase::Replaced)
    {
        if !out.iter().any(|q| q.name == p.name) {
            out.push(p.clone());
        }
    }
    // Over the bound, the oldest replaced entries go (they are last); live ones never.
    while out.len() > MAX_PARTICIPANT_ENTRIES {
        match out
            .iter()
            .rposition(|p| p.state == ParticipantPhase::Replaced)
        {
            Some(i) => {
                out.remove(i);
            }
            None => break,
        }
    }
    out
}

/// Participant entries kept in the status, live ones first.
const MAX_PARTICIPANT_ENTRIES: usize = 100;

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
