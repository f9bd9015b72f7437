//! The status fields besides conditions and phase: the chosen placement (its summary is a
//! printer column), round progress (`k/N`, a printer column), the bounded round history and
//! the start and completion times.

use super::{AggregatorObs, HISTORY_LIMIT, Progress};
use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::federated_job::{ChosenPlacement, FederatedJobStatus, JobPhase, RoundMetrics};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// `cloud/region/instanceType` of a placement option.
pub fn summary(option: &PlacementOption) -> String {
    format!(
        "{}/{}/{}",
        option.cloud, option.region, option.instance_type
    )
}

/// The placement to record for AggregatorPlacement `name` choosing `option`, with the member
/// cluster the aggregator runs in.
pub fn chosen_placement(
    prev: &FederatedJobStatus,
    name: &str,
    option: &PlacementOption,
    aggregator: &AggregatorObs,
) -> ChosenPlacement {
    let summary = summary(option);
    let cluster = match aggregator {
        AggregatorObs::Starting { cluster }
        | AggregatorObs::Blocked { cluster, .. }
        | AggregatorObs::Ready { cluster, .. } => Some(cluster.clone()),
        // Not reachable this time (a timeout, a restart before the member's client
        // exists): the aggregator is still where it was, and cleanup needs to know
        // where that is.
        AggregatorObs::Waiting(..) => prev
            .placement
            .as_ref()
            .filter(|p| p.name == name && p.summary == summary)
            .and_then(|p| p.member_cluster.clone()),
    };
    ChosenPlacement {
        name: name.to_string(),
        summary,
        option: Some(option.clone()),
        member_cluster: cluster,
    }
}

/// Takes the aggregator's progress into `s`: the current round, the latest model, and the
/// history, where metrics that arrive a round later fill in their entry and only the
/// [`HISTORY_LIMIT`] most recent rounds are kept.
pub fn merge_progress(s: &mut FederatedJobStatus, p: &Progress) {
    s.current_round = Some(p.completed_rounds);
    for r in &p.rounds {
        if let Some(h) = s.history.iter_mut().find(|h| h.round == r.round) {
            // A duration measured while the previous version was listed stays once that
            // version is pruned.
            let duration_seconds = r.duration_seconds.or(h.duration_seconds);
            *h = RoundMetrics {
                duration_seconds,
                ..r.clone()
            };
        } else if s.history.last().is_none_or(|h| h.round < r.round) {
            s.history.push(r.clone());
        }
    }
    let excess = s.history.len().saturating_sub(HISTORY_LIMIT);
    s.history.drain(..excess);
    if p.latest_model.is_some() {
        s.latest_model = p.latest_model.clone();
    }
}

/// `done/rounds`, the Round printer column.
pub fn round_progress(done: i32, rounds: i32) -> String {
    format!("{done}/{rounds}")
}

/// Sets the start time when the job first runs and the completion time when it first ends.
pub fn stamp_times(s: &mut FederatedJobStatus, phase: JobPhase, now: Timestamp) {
    let terminal = matches!(phase, JobPhase::Succeeded | JobPhase::Failed);
    if terminal && s.completion_time.is_none() {
        s.completion_time = Some(Time(now));
    }
    if phase == JobPhase::Running && s.start_time.is_none() {
        s.start_time = Some(Time(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::federated_job::{ModelVersion, RoundMetrics};

    fn option(region: &str) -> PlacementOption {
        PlacementOption {
            cloud: "aws".into(),
            region: region.into(),
            instance_type: "m5.large".into(),
            monthly_cost: 70.1,
            round_time_seconds: 48.0,
            site_flavours: Default::default(),
            standby: None,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    #[test]
    fn placement_summary_and_cluster() {
        let starting = AggregatorObs::Starting {
            cluster: "aws-eu".into(),
        };
        let first = chosen_placement(
            &FederatedJobStatus::default(),
            "p",
            &option("eu-central-1"),
            &starting,
        );
        assert_eq!(first.summary, "aws/eu-central-1/m5.large");
        assert_eq!(first.member_cluster.as_deref(), Some("aws-eu"));
        let prev = FederatedJobStatus {
            placement: Some(first),
            ..Default::default()
        };
        let waiting = AggregatorObs::Waiting("MemberClusterError", "timed out".into());
        let kept = chosen_placement(&prev, "p", &option("eu-central-1"), &waiting);
        assert_eq!(kept.member_cluster.as_deref(), Some("aws-eu"));
        let moved = chosen_placement(&prev, "p", &option("us-east-1"), &waiting);
        assert_eq!(moved.member_cluster, None);
        let renamed = chosen_placement(&prev, "q", &option("eu-central-1"), &waiting);
        assert_eq!(renamed.member_cluster, None);
        // Applied there but not schedulable: the objects are in that cluster all the same.
        let blocked = AggregatorObs::Blocked {
            cluster: "aws-eu".into(),
            reason: "AggregatorUnschedulable",
            message: String::new(),
        };
        let first = chosen_placement(
            &FederatedJobStatus::default(),
            "p",
            &option("eu-central-1"),
            &blocked,
        );
        assert_eq!(first.member_cluster.as_deref(), Some("aws-eu"));
    }

    #[test]
    fn progress_sets_round_model_and_keeps_a_model_it_does_not_report() {
        let mut s = FederatedJobStatus::default();
        let model = ModelVersion {
            version: 3,
            ..Default::default()
        };
        let round = |r| RoundMetrics {
            round: r,
            ..Default::default()
        };
        merge_progress(
            &mut s,
            &Progress {
                phase: fedsky_contract::AggregatorPhase::Collecting,
                completed_rounds: 3,
                rounds: vec![round(2), round(3)],
                latest_model: Some(model.clone()),
            },
        );
        assert_eq!(s.current_round, Some(3));
        assert_eq!(s.latest_model, Some(model.clone()));
        // An older round that was never recorded is not inserted out of order.
        merge_progress(
            &mut s,
            &Progress {
                phase: fedsky_contract::AggregatorPhase::Collecting,
                completed_rounds: 4,
                rounds: vec![round(1), round(4)],
                latest_model: None,
            },
        );
        let rounds: Vec<i32> = s.history.iter().map(|h| h.round).collect();
        assert_eq!(rounds, [2, 3, 4]);
        assert_eq!(s.latest_model, Some(model));
        assert_eq!(round_progress(4, 20), "4/20");
    }

    #[test]
    fn a_rounds_duration_outlives_the_pruning_of_the_version_before() {
        let mut s = FederatedJobStatus::default();
        let round = |r, d: Option<f64>, acc: Option<f64>| RoundMetrics {
            round: r,
            duration_seconds: d,
            accuracy: acc,
            ..Default::default()
        };
        let progress = |rounds| Progress {
            phase: fedsky_contract::AggregatorPhase::Collecting,
            completed_rounds: 3,
            rounds,
            latest_model: None,
        };
        merge_progress(
            &mut s,
            &progress(vec![round(2, Some(4.0), None), round(3, Some(5.0), None)]),
        );
        // Version 2 pruned: version 3 is listed first, without a duration, but with the
        // evaluation that arrived since.
        merge_progress(
            &mut s,
            &progress(vec![round(3, None, Some(0.8)), round(4, Some(6.0), None)]),
        );
        let got: Vec<(i32, Option<f64>, Option<f64>)> = s
            .history
            .iter()
            .map(|h| (h.round, h.duration_seconds, h.accuracy))
            .collect();
        assert_eq!(
            got,
            [
                (2, Some(4.0), None),
                (3, Some(5.0), Some(0.8)),
                (4, Some(6.0), None)
            ]
        );
    }

    #[test]
    fn times_are_stamped_once() {
        let mut s = FederatedJobStatus::default();
        stamp_times(&mut s, JobPhase::Starting, t(1));
        assert_eq!(
            (s.start_time.is_some(), s.completion_time.is_some()),
            (false, false)
        );
        stamp_times(&mut s, JobPhase::Running, t(2));
        stamp_times(&mut s, JobPhase::Running, t(3));
        assert_eq!(s.start_time, Some(Time(t(2))));
        stamp_times(&mut s, JobPhase::Failed, t(4));
        stamp_times(&mut s, JobPhase::Succeeded, t(5));
        assert_eq!(s.completion_time, Some(Time(t(4))));
    }
}
