//! Planning participants: fill the job up to `maxPerRound` on eligible nodes, replace
//! failed ones (Job failed, pod evicted, node NotReady) within the retry budget. Pure; the
//! caller observes the member clusters and applies the plan.

use super::build::ParticipantPlan;
use crate::capacity::Resources;
use crate::orchestrator::{self, Candidate, Policy, QueueState, SelectError, Slot};
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

/// Plans starts and replacements. `state` (cursor, failure marks) is updated in place.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    observed: &[Observed],
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
    let mut next_n: BTreeMap<String, u32> = BTreeMap::new();
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
        let p = plan(&[], &pool(), &need(), POLICY, &mut st, 3, 0, 5, 0);
        let nodes: Vec<&str> = p.create.iter().map(|c| c.node.as_str()).collect();
        assert_eq!(nodes, ["asia-1", "eu-1", "us-1"]);
        assert!(p.shortfall.is_none());
    }

    #[test]
    fn steady_state_plans_nothing() {
        let mut st = QueueState::default();
        let first = plan(&[], &pool(), &need(), POLICY, &mut st, 3, 0, 5, 0);
        let obs = running(&first);
        let again = plan(&obs, &pool(), &need(), POLICY, &mut st, 3, 0, 5, 10);
        assert_eq!(again, Plan::default());
    }

    #[test]
    fn failed_participant_and_not_ready_node_are_replaced_elsewhere() {
        let mut st = QueueState::default();
        let first = plan(&[], &pool(), &need(), POLICY, &mut st, 3, 0, 5, 0);
        let mut obs = running(&first);
        obs[1].phase = Phase::Failed; // eu-1
        let p = plan(&obs, &pool(), &need(), POLICY, &mut st, 3, 0, 5, 100);
        assert_eq!(p.replaced.len(), 1);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].node, "eu-2");
        assert_eq!(p.create[0].n, 1, "the site's sequence number grows");
        assert_eq!(p.new_replacements, 1);

        obs[1] = observed(&p.create[0], Phase::Running, true);
        obs[2].node_ready = false; // us-1
        let p2 = plan(&obs, &pool(), &need(), POLICY, &mut st, 3, 1, 5, 200);
        assert!(p2.replaced[0].1.contains("NotReady"), "{:?}", p2.replaced);
        assert_eq!(p2.create.len(), 1);
        assert!(
            !["us-1", "eu-1"].contains(&p2.create[0].node.as_str()),
            "{:?}",
            p2.create
        );
    }

    #[test]
    fn budget_exhaustion_is_reported() {
        let mut st = QueueState::default();
        let first = plan(&[], &pool(), &need(), POLICY, &mut st, 3, 0, 1, 0);
        let mut obs = running(&first);
        obs[0].phase = Phase::Failed;
        let p = plan(&obs, &pool(), &need(), POLICY, &mut st, 3, 1, 1, 100);
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
        let first = plan(&[], &pool(), &need(), POLICY, &mut st, 3, 0, 0, 0);
        let mut obs = running(&first);
        obs[0].phase = Phase::Failed;
        obs[1].node_ready = false;
        for now in [100, 105, 110] {
            let p = plan(&obs, &pool(), &need(), POLICY, &mut st, 3, 0, 0, now);
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
