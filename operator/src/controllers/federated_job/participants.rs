//! Planning participants: fill the job up to `maxPerRound` on eligible nodes, replace
//! failed ones (Job failed, pod evicted, node NotReady) within the retry budget. Pure; the
//! caller observes the member clusters and applies the plan.

use super::build::ParticipantPlan;
use crate::capacity::Resources;
use crate::orchestrator::{self, Candidate, Policy, QueueState, SelectError, Slot};
use fedsky_crds::federated_job::ParticipantPhase;
use fedsky_crds::federated_job::ParticipantState;
use std::collections::{BTreeMap, BTreeSet};

/// How a participant Job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, pod not running yet.
    Pending,
    /// Pod running.
    Running,
    /// Finished its work.
    Succeeded,
    /// Pod failed or was evicted.
    Failed,
}

/// A participant Job found in a site's cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Job name.
    pub name: String,
    /// Site.
    pub site: String,
    /// Node it is pinned to.
    pub node: String,
    /// Sequence number at the site.
    pub n: u32,
    /// Job phase.
    pub phase: Phase,
    /// Whether its node is Ready (false also when the node is gone).
    pub node_ready: bool,
}

/// What to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Participants to start.
    pub create: Vec<ParticipantPlan>,
    /// Failed participant Jobs to remove, with why.
    pub replaced: Vec<(Observed, String)>,
    /// Why fewer participants than wanted could be started, if so.
    pub shortfall: Option<SelectError>,
    /// Replacements started by this plan.
    pub new_replacements: u32,
}

fn failure(o: &Observed) -> Option<String> {
    match (o.phase, o.node_ready) {
        (Phase::Succeeded, _) => None,
        (Phase::Failed, _) => Some(format!(
            "participant {} on {}/{} failed",
            o.name, o.site, o.node
        )),
        (_, false) => Some(format!(
            "node {}/{} of participant {} is NotReady",
            o.site, o.node, o.name
        )),
        _ => None,
    }
}

/// The next sequence number per site after those of `names` (participants the status
/// remembers, replaced ones included), so a new participant never takes the name of one
/// that was removed: the aggregator and the site knew that one as someone else.
pub fn sequence_floor<'a>(
    key: &str,
    names: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, u32> {
    let mut floor: BTreeMap<String, u32> = BTreeMap::new();
    for (site, name) in names {
        if let Some(n) = crate::names::participant_seq(key, site, name) {
            let e = floor.entry(site.to_owned()).or_insert(0);
            *e = (*e).max(n.saturating_add(1));
        }
    }
    floor
}

/// The status entries of participants at `unreadable` sites, as last seen (marked so), and
/// how many of them were live: they count as still running, so the plan does not start
/// others in their place for what may be a member API timeout.
pub fn last_known(
    prev: &[ParticipantState],
    unreadable: &[&str],
) -> (Vec<ParticipantState>, usize) {
    let kept: Vec<ParticipantState> = prev
        .iter()
        .filter(|p| p.state != ParticipantPhase::Replaced && unreadable.contains(&p.site.as_str()))
        .map(|p| ParticipantState {
            message: Some(format!("site {} cannot be read; last known state", p.site)),
            ..p.clone()
        })
        .collect();
    let live = kept
        .iter()
        .filter(|p| p.state == ParticipantPhase::Pending || p.state == ParticipantPhase::Running)
        .count();
    (kept, live)
}

/// Plans starts and replacements. `state` (cursor, failure marks) is updated in place;
/// sequence numbers at a site start at `seq_floor` (see [`sequence_floor`]) or after the
/// highest observed there.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    observed: &[Observed],
    seq_floor: &BTreeMap<String, u32>,
    candidates: &[Candidate],
    need: &Resources,
    policy: Policy,
    state: &mut QueueState,
    target: usize,
    replacements_used: u32,
    max_replacements: u32,
    now: i64,
) -> Plan {
    let mut out = Plan::default();
    let mut next_n = seq_floor.clone();
    for o in observed {
        let e = next_n.entry(o.site.clone()).or_insert(0);
        *e = (*e).max(o.n + 1);
    }
    let slot = |site: &str, node: &str| Slot {
        site: site.to_string(),
        node: node.to_string(),
    };
    let mut busy: BTreeSet<Slot> = observed
        .iter()
        .filter(|o| failure(o).is_none())
        .map(|o| slot(&o.site, &o.node))
        .collect();
    let mut used = replacements_used;
    let mut push = |out: &mut Plan, busy: &mut BTreeSet<Slot>, s: Slot| {
        let n = next_n.entry(s.site.clone()).or_insert(0);
        out.create.push(ParticipantPlan {
            site: s.site.clone(),
            node: s.node.clone(),
            n: *n,
        });
        *n += 1;
        busy.insert(s);
    };
    // Failed participants left in place because the budget is spent.
    let mut unreplaced = 0;
    for o in observed {
        let Some(why) = failure(o) else { continue };
        if used >= max_replacements {
            // Leave it (and its failure) visible: removing it would let the fill below
            // start a new participant, a replacement past the budget.
            out.shortfall = Some(SelectError::BudgetExhausted {
                used,
                max: max_replacements,
            });
            unreplaced += 1;
            continue;
        }
        match orchestrator::replace(
            candidates,
            need,
            policy,
            state,
            &slot(&o.site, &o.node),
            &busy,
            used,
            max_replacements,
            now,
        ) {
            Ok(s) => {
                used += 1;
                out.new_replacements += 1;
                push(&mut out, &mut busy, s);
            }
            Err(e) => out.shortfall = Some(e),
        }
        out.replaced.push((o.clone(), why));
    }
    let live = busy.len();
    if live + unreplaced < target && out.new_replacements == 0 && out.replaced.is_empty() {
        match orchestrator::select(candidates, need, policy, state, target - live, &busy, now) {
            Ok(slots) => slots.into_iter().for_each(|s| push(&mut out, &mut busy, s)),
            Err(e) => out.shortfall = Some(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    fn cand(site: &str, node: &str) -> Candidate {
        Candidate {
            site: site.into(),
            node: node.into(),
            healthy: true,
            free: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                gpus: 0,
            },
        }
    }

    fn pool() -> Vec<Candidate> {
        vec![
            cand("eu", "eu-1"),
            cand("eu", "eu-2"),
            cand("us", "us-1"),
            cand("us", "us-2"),
            cand("asia", "asia-1"),
        ]
    }

    fn need() -> Resources {
        Resources {
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            gpus: 0,
        }
    }

    const POLICY: Policy = Policy::ResourceAware {
        max_failures: 1,
        cooldown_secs: 600,
    };

    fn observed(p: &ParticipantPlan, phase: Phase, node_ready: bool) -> Observed {
        Observed {
            name: format!("p-{}-{}", p.site, p.n),
            site: p.site.clone(),
            node: p.node.clone(),
            n: p.n,
            phase,
            node_ready,
        }
    }

    /// [`plan`] over [`pool`] with nothing remembered in the status.
    fn plan_default(
        observed: &[Observed],
        st: &mut QueueState,
        target: usize,
        used: u32,
        max: u32,
        now: i64,
    ) -> Plan {
        plan(
            observed,
            &BTreeMap::new(),
            &pool(),
            &need(),
            POLICY,
            st,
            target,
            used,
            max,
            now,
        )
    }

    /// Everything `first` planned, observed running.
    fn running(first: &Plan) -> Vec<Observed> {
        first
            .create
            .iter()
            .map(|c| observed(c, Phase::Running, true))
            .collect()
    }

    #[test]
    fn fills_round_robin_across_sites() {
        let mut st = QueueState::default();
        let p = plan_default(&[], &mut st, 3, 0, 5, 0);
        let nodes: Vec<&str> = p.create.iter().map(|c| c.node.as_str()).collect();
        assert_eq!(nodes, ["asia-1", "eu-1", "us-1"]);
        assert!(p.shortfall.is_none());
    }

    #[test]
    fn steady_state_plans_nothing() {
        let mut st = QueueState::default();
        let first = plan_default(&[], &mut st, 3, 0, 5, 0);
        let obs = running(&first);
        let again = plan_default(&obs, &mut st, 3, 0, 5, 10);
        assert_eq!(again, Plan::default());
    }

    #[test]
    fn failed_participant_and_not_ready_node_are_replaced_elsewhere() {
        let mut st = QueueState::default();
        let first = plan_default(&[], &mut st, 3, 0, 5, 0);
        let mut obs = running(&first);
        obs[1].phase = Phase::Failed; // eu-1
        let p = plan_default(&obs, &mut st, 3, 0, 5, 100);
        assert_eq!(p.replaced.len(), 1);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].node, "eu-2");
        assert_eq!(p.create[0].n, 1, "the site's sequence number grows");
        assert_eq!(p.new_replacements, 1);

        obs[1] = observed(&p.create[0], Phase::Running, true);
        obs[2].node_ready = false; // us-1
        let p2 = plan_default(&obs, &mut st, 3, 1, 5, 200);
        assert!(p2.replaced[0].1.contains("NotReady"), "{:?}", p2.replaced);
        assert_eq!(p2.create.len(), 1);
        assert!(
            !["us-1", "eu-1"].contains(&p2.create[0].node.as_str()),
            "{:?}",
            p2.create
        );
    }

    #[test]
    fn a_removed_participants_name_is_not_taken_again() {
        let mut st = QueueState::default();
        let first = plan_default(&[], &mut st, 3, 0, 5, 0);
        let mut obs = running(&first);
        obs[1].phase = Phase::Failed; // eu-1, n = 0
        let p = plan_default(&obs, &mut st, 3, 0, 5, 100);
        assert_eq!(p.create[0].n, 1);
        // Its replacement did not come up and is gone too: only the status remembers that
        // eu had participants 0 and 1.
        obs.remove(1);
        let key = "default.j";
        let remembered = [
            names::participant(key, "eu", 0),
            names::participant(key, "eu", 1),
        ];
        let floor = sequence_floor(key, remembered.iter().map(|n| ("eu", n.as_str())));
        assert_eq!(floor, BTreeMap::from([("eu".to_string(), 2)]));
        // Only eu has room now (eu-1 cools down after its failure; eu-2 is free again).
        let eu_only = [cand("eu", "eu-1"), cand("eu", "eu-2")];
        let p = plan(
            &obs,
            &floor,
            &eu_only,
            &need(),
            POLICY,
            &mut st,
            3,
            1,
            5,
            200,
        );
        let started: Vec<(&str, u32)> = p.create.iter().map(|c| (c.node.as_str(), c.n)).collect();
        assert_eq!(started, [("eu-2", 2)]);
    }

    #[test]
    fn an_unreadable_sites_participants_keep_their_last_state_and_count_as_live() {
        let st = |name: &str, site: &str, state: ParticipantPhase| ParticipantState {
            name: name.into(),
            site: site.into(),
            node: None,
            state,
            message: None,
            last_heartbeat: None,
        };
        let prev = [
            st("a", "eu", ParticipantPhase::Running),
            st("b", "eu", ParticipantPhase::Pending),
            st("c", "eu", ParticipantPhase::Replaced),
            st("d", "eu", ParticipantPhase::Failed),
            st("e", "us", ParticipantPhase::Running),
        ];
        let (kept, live) = last_known(&prev, &["eu"]);
        let names: Vec<&str> = kept.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "d"]);
        assert_eq!(live, 2);
        assert!(
            kept.iter()
                .all(|p| p.message.as_deref().is_some_and(|m| m.contains("eu")))
        );
        assert_eq!(last_known(&prev, &[]), (vec![], 0));
    }

    #[test]
    fn budget_exhaustion_is_reported() {
        let mut st = QueueState::default();
        let first = plan_default(&[], &mut st, 3, 0, 1, 0);
        let mut obs = running(&first);
        obs[0].phase = Phase::Failed;
        let p = plan_default(&obs, &mut st, 3, 1, 1, 100);
        assert!(p.create.is_empty());
        assert_eq!(
            p.shortfall,
            Some(SelectError::BudgetExhausted { used: 1, max: 1 })
        );
    }

    #[test]
    fn a_spent_budget_starts_nothing_on_later_reconciles() {
        // maxReplacements: 0, the experiments' baseline without replacement.
        let mut st = QueueState::default();
        let first = plan_default(&[], &mut st, 3, 0, 0, 0);
        let mut obs = running(&first);
        obs[0].phase = Phase::Failed;
        obs[1].node_ready = false;
        for now in [100, 105, 110] {
            let p = plan_default(&obs, &mut st, 3, 0, 0, now);
            assert!(p.create.is_empty(), "{:?}", p.create);
            assert!(
                p.replaced.is_empty(),
                "the failed participants stay visible"
            );
            assert_eq!(
                p.shortfall,
                Some(SelectError::BudgetExhausted { used: 0, max: 0 })
            );
        }
    }
}
