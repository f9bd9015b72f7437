//! The dynamic task orchestrator: picks participant nodes by real free resources and
//! health, round-robin over a circular queue that interleaves sites, and picks
//! replacements for failed participants within a retry budget. Pure: the queue cursor
//! and failure marks are plain data the caller keeps in status, so a restart loses nothing.

use crate::capacity::Resources;
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use std::collections::{BTreeMap, BTreeSet};

/// A node of a site that could run a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Site name.
    pub site: String,
    /// Node name.
    pub node: String,
    /// Ready, schedulable and matching the site's selector.
    pub healthy: bool,
    /// Free resources.
    pub free: Resources,
}

/// A chosen (site, node).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// Site name.
    pub site: String,
    /// Node name.
    pub node: String,
}

/// Recent failures of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureMark {
    /// Failures counted.
    pub count: u32,
    /// Unix seconds of the last failure.
    pub last: i64,
}

/// How to pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Filter by resources, health and recent failures; round-robin over sites.
    ResourceAware {
        /// Failures after which a node is skipped until the cooldown passes.
        max_failures: u32,
        /// Seconds a node stays skipped.
        cooldown_secs: i64,
    },
    /// Round-robin over all nodes, no filter.
    RoundRobin,
    /// Uniformly random over all nodes, no filter (the seed system's baseline).
    Random {
        /// Seed for repeatable experiments.
        seed: u64,
    },
}

/// Orchestrator state kept in status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Position in the circular queue.
    pub cursor: u64,
    /// Failure marks by slot.
    pub failures: BTreeMap<Slot, FailureMark>,
}

/// Why the orchestrator cannot pick.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// Fewer eligible nodes than wanted.
    #[error("only {found} of {wanted} participants can be placed: {reason}")]
    NotEnough {
        /// Wanted participants.
        wanted: usize,
        /// Eligible nodes found.
        found: usize,
        /// Why the others were skipped (counts by cause).
        reason: String,
    },
    /// The job used all its replacements.
    #[error("replacement budget exhausted: {used} of {max} replacements used")]
    BudgetExhausted {
        /// Replacements started.
        used: u32,
        /// Allowed replacements.
        max: u32,
    },
}

/// The circular queue: nodes sorted per site, sites interleaved (a, b, c, a, b, c, ...)
/// so consecutive picks spread across sites before reusing one.
pub fn queue_order(candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut by_site: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates {
        by_site.entry(c.site.as_str()).or_default().push(c);
    }
    for nodes in by_site.values_mut() {
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
    }
    let depth = by_site.values().map(Vec::len).max().unwrap_or(0);
    (0..depth)
        .flat_map(|i| by_site.values().filter_map(move |v| v.get(i).copied()))
        .collect()
}

fn slot(c: &Candidate) -> Slot {
    Slot {
        site: c.site.clone(),
        node: c.node.clone(),
    }
}

/// Picks `count` slots not in `busy`, advancing the queue state's cursor.
pub fn select(
    candidates: &[Candidate],
    need: &Resources,
    policy: Policy,
    state: &mut QueueState,
    count: usize,
    busy: &BTreeSet<Slot>,
    now: i64,
) -> Result<Vec<Slot>, SelectError> {
    let order = queue_order(candidates);
    if let Policy::Random { seed } = policy {
        let pool: Vec<&Candidate> = order
            .into_iter()
            .filter(|c| !busy.contains(&slot(c)))
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            seed ^ state.cursor.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        state.cursor = state.cursor.wrapping_add(1);
        let picks: Vec<Slot> = pool
            .choose_multiple(&mut rng, count)
            .map(|c| slot(c))
            .collect();
        if picks.len() < count {
            return Err(SelectError::NotEnough {
                wanted: count,
                found: picks.len(),
                reason: "not enough nodes".into(),
            });
        }
        return Ok(picks);
    }
    let n = order.len();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut picks = Vec::new();
    let start = if n == 0 {
        0
    } else {
        (state.cursor % n as u64) as usize
    };
    let mut last = None;
    for step in 0..n {
        if picks.len() == count {
            break;
        }
        let i = (start + step) % n;
        let c = order[i];
        let s = slot(c);
        let why = if busy.contains(&s) {
            Some("already in use")
        } else if let Policy::ResourceAware {
            max_failures,
            cooldown_secs,
        } = policy
        {
            if !c.healthy {
                Some("not ready, cordoned or not matching the selector")
            } else if !c.free.covers(need) {
                Some("too few free resources")
            } else if state
                .failures
                .get(&s)
                .is_some_and(|f| f.count >= max_failures && now - f.last < cooldown_secs)
            {
                Some("failed recently")
            } else {
                None
            }
        } else {
            None
        };
        match why {
            Some(w) => *skipped.entry(w).or_default() += 1,
            None => {
                picks.push(s);
                last = Some(i);
            }
        }
    }
    if let Some(i) = last {
        state.cursor = (i + 1) as u64;
    }
    if picks.len() < count {
        let reason = if skipped.is_empty() {
            "no nodes in the pool".to_string()
        } else {
            skipped
                .iter()
                .map(|(w, k)| format!("{k} {w}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(SelectError::NotEnough {
            wanted: count,
            found: picks.len(),
            reason,
        });
    }
    Ok(picks)
}

/// Marks a failure of the participant on `slot` at `now`.
pub fn record_failure(state: &mut QueueState, slot: &Slot, now: i64) {
    let mark = state.failures.entry(slot.clone()).or_insert(FailureMark {
        count: 0,
        last: now,
    });
    mark.count += 1;
    mark.last = now;
}

/// A replacement for the participant that failed on `failed`: marks the failure, checks
/// the budget, and picks one slot not in `busy` (which should hold the job's live slots).
#[allow(clippy::too_many_arguments)]
pub fn replace(
    candidates: &[Candidate],
    need: &Resources,
    policy: Policy,
    state: &mut QueueState,
    failed: &Slot,
    busy: &BTreeSet<Slot>,
    used: u32,
    max: u32,
    now: i64,
) -> Result<Slot, SelectError> {
    record_failure(state, failed, now);
    if used >= max {
        return Err(SelectError::BudgetExhausted { used, max });
    }
    let mut busy = busy.clone();
    // Never hand the work straight back to the node that just failed it (unless random).
    if !matches!(policy, Policy::Random { .. }) {
        busy.insert(failed.clone());
    }
    let mut picks = select(candidates, need, policy, state, 1, &busy, now)?;
    picks.pop().ok_or(SelectError::NotEnough {
        wanted: 1,
        found: 0,
        reason: "no candidate".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(site: &str, node: &str, cpu: u64, healthy: bool) -> Candidate {
        Candidate {
            site: site.into(),
            node: node.into(),
            healthy,
            free: Resources {
                cpu_millis: cpu,
                memory_bytes: 8 << 30,
                gpus: 0,
            },
        }
    }

    fn need() -> Resources {
        Resources {
            cpu_millis: 2000,
            memory_bytes: 4 << 30,
            gpus: 0,
        }
    }

    const AWARE: Policy = Policy::ResourceAware {
        max_failures: 1,
        cooldown_secs: 600,
    };

    fn pool() -> Vec<Candidate> {
        vec![
            cand("us", "us-1", 4000, true),
            cand("eu", "eu-2", 4000, true),
            cand("eu", "eu-1", 4000, true),
            cand("asia", "asia-1", 4000, true),
            cand("us", "us-2", 1000, true),
            cand("asia", "asia-2", 4000, false),
        ]
    }

    fn names(s: &[Slot]) -> Vec<&str> {
        s.iter().map(|s| s.node.as_str()).collect()
    }

    #[test]
    fn queue_interleaves_sites() {
        let p = pool();
        let order: Vec<&str> = queue_order(&p).iter().map(|c| c.node.as_str()).collect();
        assert_eq!(order, ["asia-1", "eu-1", "us-1", "asia-2", "eu-2", "us-2"]);
    }

    #[test]
    fn picks_spread_across_sites_and_skip_ineligible() {
        let mut st = QueueState::default();
        let picks =
            select(&pool(), &need(), AWARE, &mut st, 3, &BTreeSet::new(), 0).expect("enough");
        assert_eq!(names(&picks), ["asia-1", "eu-1", "us-1"]);
        // The cursor moved on: the next pick continues the round-robin.
        let next =
            select(&pool(), &need(), AWARE, &mut st, 1, &BTreeSet::new(), 0).expect("one more");
        assert_eq!(
            names(&next),
            ["eu-2"],
            "asia-2 is not ready, so eu-2 comes next"
        );
    }

    #[test]
    fn not_enough_names_the_causes() {
        let mut st = QueueState::default();
        let err = select(&pool(), &need(), AWARE, &mut st, 5, &BTreeSet::new(), 0)
            .expect_err("only 4 eligible");
        let SelectError::NotEnough {
            wanted,
            found,
            reason,
        } = err
        else {
            panic!("wrong error")
        };
        assert_eq!((wanted, found), (5, 4));
        assert!(reason.contains("1 too few free resources"), "{reason}");
        assert!(reason.contains("1 not ready"), "{reason}");
    }

    #[test]
    fn replacement_avoids_failed_and_busy_nodes_and_respects_budget() {
        let mut st = QueueState::default();
        let live = select(&pool(), &need(), AWARE, &mut st, 3, &BTreeSet::new(), 0).expect("picks");
        let busy: BTreeSet<Slot> = live.iter().cloned().collect();
        let failed = live[1].clone(); // eu-1
        let r = replace(&pool(), &need(), AWARE, &mut st, &failed, &busy, 0, 2, 100)
            .expect("replacement");
        assert_eq!(r.node, "eu-2");
        assert_eq!(
            st.failures[&failed],
            FailureMark {
                count: 1,
                last: 100
            }
        );
        // The failed node stays in cooldown for the next selection.
        let mut st2 = st.clone();
        st2.cursor = 0;
        let again = select(&pool(), &need(), AWARE, &mut st2, 4, &BTreeSet::new(), 200);
        assert!(again.is_err(), "eu-1 is cooling down, so only 3 remain");
        let later = select(
            &pool(),
            &need(),
            AWARE,
            &mut st.clone(),
            4,
            &BTreeSet::new(),
            100 + 600,
        )
        .expect("cooled");
        assert_eq!(later.len(), 4);
        let err = replace(&pool(), &need(), AWARE, &mut st, &failed, &busy, 2, 2, 300)
            .expect_err("budget");
        assert_eq!(err, SelectError::BudgetExhausted { used: 2, max: 2 });
    }

    #[test]
    fn random_policy_is_seeded_and_unfiltered() {
        let mut a = QueueState::default();
        let mut b = QueueState::default();
        let pa = select(
            &pool(),
            &need(),
            Policy::Random { seed: 7 },
            &mut a,
            3,
            &BTreeSet::new(),
            0,
        )
        .expect("a");
        let pb = select(
            &pool(),
            &need(),
            Policy::Random { seed: 7 },
            &mut b,
            3,
            &BTreeSet::new(),
            0,
        )
        .expect("b");
        assert_eq!(pa, pb);
        // Over many draws the baseline also lands on unready or small nodes.
        let mut st = QueueState::default();
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            for s in select(
                &pool(),
                &need(),
                Policy::Random { seed: 7 },
                &mut st,
                3,
                &BTreeSet::new(),
                0,
            )
            .expect("r")
            {
                seen.insert(s.node);
            }
        }
        assert!(seen.contains("asia-2") && seen.contains("us-2"), "{seen:?}");
    }

    #[test]
    fn round_robin_ignores_resources() {
        let mut st = QueueState::default();
        let picks = select(
            &pool(),
            &need(),
            Policy::RoundRobin,
            &mut st,
            6,
            &BTreeSet::new(),
            0,
        )
        .expect("all");
        assert_eq!(picks.len(), 6);
    }
}
