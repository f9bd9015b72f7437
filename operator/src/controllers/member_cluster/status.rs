//! Pure status computation for MemberCluster.

use super::probe::Probe;
use crate::clusters::ClusterError;
use fedsky_crds::conditions::{self, READY, RECONCILING, STALLED, Setter};
use fedsky_crds::member_cluster::MemberClusterStatus;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Reason of `Ready=True`.
pub const REASON_REACHABLE: &str = "Reachable";

/// The status after a probe with `outcome`, keeping condition transition times from `prev`.
pub fn compute(
    prev: &MemberClusterStatus,
    outcome: &Result<Probe, ClusterError>,
    generation: Option<i64>,
    now: Timestamp,
) -> MemberClusterStatus {
    let mut s = prev.clone();
    s.observed_generation = generation;
    s.last_probe_time = Some(Time(now));
    let (ready, reason, message, stalled) = match outcome {
        Ok(p) => {
            s.reachable = Some(true);
            s.version = Some(p.version.clone());
            s.nodes = Some(p.nodes);
            s.ready_nodes = Some(p.ready_nodes);
            let msg = format!(
                "API server {} answered; {} of {} nodes Ready",
                p.version, p.ready_nodes, p.nodes
            );
            (true, REASON_REACHABLE, msg, false)
        }
        Err(e) => {
            s.reachable = Some(false);
            (false, e.category(), e.to_string(), e.is_user_error())
        }
    };
    let (stalled_reason, stalled_msg) = if stalled {
        (reason, format!("waiting for a fix: {message}"))
    } else {
        ("NotStalled", String::new())
    };
    Setter::new(&mut s.conditions, generation, now)
        .set(READY, ready, reason, message)
        .set(RECONCILING, false, "ProbeComplete", "last probe finished")
        .set(STALLED, stalled, stalled_reason, stalled_msg);
    s
}

/// `Some((now_ready, event_reason))` when `Ready` changed between the two statuses
/// (or was set for the first time).
pub fn ready_transition(
    prev: &MemberClusterStatus,
    next: &MemberClusterStatus,
) -> Option<(bool, &'static str)> {
    let before = conditions::find(&prev.conditions, READY).map(|c| c.status == "True");
    let after = conditions::is_true(&next.conditions, READY);
    match before {
        Some(b) if b == after => None,
        _ if after => Some((true, "Reachable")),
        _ => Some((false, "Unreachable")),
    }
}

/// Whether a Node's `Ready` condition is true.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn ok() -> Result<Probe, ClusterError> {
        Ok(Probe {
            version: "v1.35.4".into(),
            nodes: 3,
            ready_nodes: 2,
        })
    }

    fn down() -> Result<Probe, ClusterError> {
        Err(ClusterError::Unreachable {
            cluster: "eu".into(),
            reason: "connection refused".into(),
        })
    }

    #[test]
    fn reachable_cluster_is_ready_with_version_and_nodes() {
        let s = compute(&MemberClusterStatus::default(), &ok(), Some(2), t(10));
        assert_eq!(s.reachable, Some(true));
        assert_eq!(s.version.as_deref(), Some("v1.35.4"));
        assert_eq!((s.nodes, s.ready_nodes), (Some(3), Some(2)));
        assert!(conditions::is_true(&s.conditions, READY));
        assert!(!conditions::is_true(&s.conditions, STALLED));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn unreachable_keeps_last_known_version_and_names_the_error() {
        let up = compute(&MemberClusterStatus::default(), &ok(), Some(1), t(10));
        let s = compute(&up, &down(), Some(1), t(20));
        assert_eq!(s.reachable, Some(false));
        assert_eq!(s.version.as_deref(), Some("v1.35.4"));
        let ready = conditions::find(&s.conditions, READY).expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "ClusterUnreachable");
        assert!(ready.message.contains("connection refused"));
        // Transient: not stalled.
        assert!(!conditions::is_true(&s.conditions, STALLED));
        assert_eq!(ready_transition(&up, &s), Some((false, "Unreachable")));
        let back = compute(&s, &ok(), Some(1), t(30));
        assert_eq!(ready_transition(&s, &back), Some((true, "Reachable")));
        assert_eq!(
            ready_transition(&back, &compute(&back, &ok(), Some(1), t(40))),
            None
        );
    }

    #[test]
    fn missing_secret_stalls() {
        let err = Err(ClusterError::SecretMissing {
            namespace: "fedsky-system".into(),
            name: "kc".into(),
        });
        let s = compute(&MemberClusterStatus::default(), &err, Some(1), t(10));
        let stalled = conditions::find(&s.conditions, STALLED).expect("Stalled");
        assert_eq!(stalled.status, "True");
        assert_eq!(stalled.reason, "KubeconfigSecretMissing");
        assert!(stalled.message.contains("fedsky-system/kc"));
    }

    #[test]
    fn repeated_probe_does_not_move_transition_time() {
        let a = compute(&MemberClusterStatus::default(), &ok(), Some(1), t(10));
        let b = compute(&a, &ok(), Some(1), t(50));
        let ta = &conditions::find(&a.conditions, READY)
            .expect("Ready")
            .last_transition_time;
        let tb = &conditions::find(&b.conditions, READY)
            .expect("Ready")
            .last_transition_time;
        assert_eq!(ta, tb);
    }
}
