//! Pure status computation for ParticipantPool.

use crate::capacity::{NodeView, Resources, eligible};
use crate::clusters::ClusterError;
use fedsky_crds::conditions::{READY, RECONCILING, STALLED, Setter};
use fedsky_crds::participant_pool::{ParticipantPoolStatus, SiteStatus};
use k8s_openapi::jiff::Timestamp;

/// Condition set when eligible nodes are fewer than the pool's jobs need per round.
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientCapacity";

/// What was observed at one site.
#[derive(Debug)]
pub struct SiteObservation {
    /// Site name.
    pub site: String,
    /// Its nodes, or why they could not be read.
    pub nodes: Result<Vec<NodeView>, ClusterError>,
}

/// Status from the observations; `needed` is the largest `maxPerRound` among jobs using
/// the pool.
pub fn compute(
    prev: &ParticipantPoolStatus,
    sites: &[SiteObservation],
    min: &Resources,
    needed: i32,
    generation: Option<i64>,
    now: Timestamp,
) -> ParticipantPoolStatus {
    let mut s = prev.clone();
    s.observed_generation = generation;
    s.site_count = i32::try_from(sites.len()).ok();
    s.sites = sites
        .iter()
        .map(|o| match &o.nodes {
            Ok(nodes) => {
                let ok: Vec<&NodeView> = nodes.iter().filter(|n| eligible(n, min)).collect();
                let free = ok.iter().fold(Resources::default(), |a, n| a.add(&n.free));
                let count = i32::try_from(ok.len()).unwrap_or(i32::MAX);
                SiteStatus {
                    name: o.site.clone(),
                    healthy: count > 0,
                    eligible_nodes: count,
                    free: Some(free.to_amounts()),
                    message: (count == 0)
                        .then(|| format!("none of {} nodes is eligible", nodes.len())),
                }
            }
            Err(e) => SiteStatus {
                name: o.site.clone(),
                healthy: false,
                eligible_nodes: 0,
                free: None,
                message: Some(e.to_string()),
            },
        })
        .collect();
    let total: i32 = s.sites.iter().map(|x| x.eligible_nodes).sum();
    s.eligible_nodes = Some(total);
    let unhealthy: Vec<String> = s
        .sites
        .iter()
        .filter(|x| !x.healthy)
        .map(|x| format!("{}: {}", x.name, x.message.clone().unwrap_or_default()))
        .collect();
    let mut set = Setter::new(&mut s.conditions, generation, now);
    if unhealthy.is_empty() {
        set.set(
            READY,
            true,
            "SitesHealthy",
            format!("{total} eligible nodes across {} sites", sites.len()),
        );
    } else {
        set.set(READY, false, "SitesUnhealthy", unhealthy.join("; "));
    }
    let short = total < needed;
    set.set(
        INSUFFICIENT_CAPACITY,
        short,
        if short {
            "FewerEligibleNodesThanNeeded"
        } else {
            "EnoughEligibleNodes"
        },
        format!("{total} eligible nodes; jobs using this pool need up to {needed} per round"),
    )
    .set(RECONCILING, false, "Observed", "")
    .set(STALLED, false, "NotStalled", "");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::conditions;

    fn node(name: &str, cpu: u64, ready: bool) -> NodeView {
        NodeView {
            name: name.into(),
            ready,
            schedulable: true,
            matches_selector: true,
            free: Resources {
                cpu_millis: cpu,
                memory_bytes: 8 << 30,
                gpus: 0,
            },
        }
    }

    fn t() -> Timestamp {
        Timestamp::from_second(1000).expect("valid")
    }

    #[test]
    fn counts_eligible_nodes_and_free_resources_per_site() {
        let min = Resources {
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            gpus: 0,
        };
        let sites = [
            SiteObservation {
                site: "eu".into(),
                nodes: Ok(vec![node("a", 4000, true), node("b", 1000, true)]),
            },
            SiteObservation {
                site: "us".into(),
                nodes: Ok(vec![node("c", 4000, true), node("d", 4000, false)]),
            },
        ];
        let s = compute(&Default::default(), &sites, &min, 2, Some(1), t());
        assert_eq!(s.eligible_nodes, Some(2));
        assert_eq!(s.sites[0].eligible_nodes, 1);
        assert_eq!(
            s.sites[0]
                .free
                .as_ref()
                .and_then(|f| f.cpu.clone())
                .map(|q| q.0),
            Some("4000m".into())
        );
        assert!(conditions::is_true(&s.conditions, READY));
        assert!(!conditions::is_true(&s.conditions, INSUFFICIENT_CAPACITY));
    }

    #[test]
    fn unreachable_site_and_shortage_are_reported() {
        let sites = [
            SiteObservation {
                site: "eu".into(),
                nodes: Ok(vec![node("a", 4000, true)]),
            },
            SiteObservation {
                site: "asia".into(),
                nodes: Err(ClusterError::NotRegistered("hospital-asia".into())),
            },
        ];
        let s = compute(
            &Default::default(),
            &sites,
            &Resources::default(),
            3,
            Some(1),
            t(),
        );
        let ready = conditions::find(&s.conditions, READY).expect("Ready");
        assert_eq!(ready.status, "False");
        assert!(
            ready
                .message
                .contains("asia: member cluster hospital-asia is not registered"),
            "{}",
            ready.message
        );
        let short = conditions::find(&s.conditions, INSUFFICIENT_CAPACITY).expect("cond");
        assert_eq!(short.status, "True");
        assert!(
            short
                .message
                .contains("1 eligible nodes; jobs using this pool need up to 3")
        );
    }
}
