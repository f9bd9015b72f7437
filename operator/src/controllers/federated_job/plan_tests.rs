//! Tests of the pure plan.

use super::*;
use fedsky_crds::federated_job::ParticipantPhase;
use fedsky_crds::federated_job::ParticipantState;

fn entry(name: &str, state: ParticipantPhase) -> ParticipantState {
    ParticipantState {
        name: name.into(),
        site: "eu".into(),
        node: None,
        state,
        message: None,
        last_heartbeat: None,
    }
}

#[test]
fn replaced_participants_stay_listed_and_the_oldest_go_first() {
    let prev: Vec<ParticipantState> = (0..MAX_PARTICIPANT_ENTRIES)
        .map(|i| entry(&format!("old-{i}"), ParticipantPhase::Replaced))
        .collect();
    let now: Vec<ParticipantState> = (0..5)
        .map(|i| entry(&format!("live-{i}"), ParticipantPhase::Running))
        .chain([entry("just-replaced", ParticipantPhase::Replaced)])
        .collect();
    let out = merge_participants(&prev, now);
    assert_eq!(out.len(), MAX_PARTICIPANT_ENTRIES);
    let names: Vec<&str> = out.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names[..6],
        [
            "live-0",
            "live-1",
            "live-2",
            "live-3",
            "live-4",
            "just-replaced"
        ]
    );
    assert_eq!(names[6], "old-0", "the newest of the earlier ones stay");
    assert_eq!(names.last(), Some(&"old-93"));
    // A participant replaced earlier and seen again is listed once.
    let again = merge_participants(&out, vec![entry("old-0", ParticipantPhase::Replaced)]);
    assert_eq!(again.iter().filter(|p| p.name == "old-0").count(), 1);
}

#[test]
fn live_participants_are_never_dropped_for_the_bound() {
    let now: Vec<ParticipantState> = (0..MAX_PARTICIPANT_ENTRIES + 3)
        .map(|i| entry(&format!("live-{i}"), ParticipantPhase::Running))
        .collect();
    let out = merge_participants(&[entry("old", ParticipantPhase::Replaced)], now);
    assert_eq!(out.len(), MAX_PARTICIPANT_ENTRIES + 3);
    assert!(out.iter().all(|p| p.state == ParticipantPhase::Running));
}

fn member(name: &str, provider: &str, region: &str, tier: &str, ready: bool) -> MemberCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
        "metadata": { "name": name },
        "spec": {
            "provider": provider, "region": region, "tier": tier,
            "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": "k", "key": "kubeconfig" },
        },
        "status": { "conditions": [{
            "type": "Ready", "status": if ready { "True" } else { "False" },
            "reason": "Probe", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }] },
    }))
    .expect("member cluster")
}

fn option(cloud: &str, region: &str) -> PlacementOption {
    serde_json::from_value(serde_json::json!({
        "cloud": cloud, "region": region, "instanceType": "m5.large",
        "monthlyCost": 70.0, "roundTimeSeconds": 12.0,
    }))
    .expect("option")
}

#[test]
fn the_aggregator_goes_to_the_first_ready_public_cluster_of_the_placed_region() {
    let members = [
        member("z-aws-eu", "aws", "eu-central-1", "public", true),
        member("a-aws-eu-private", "aws", "eu-central-1", "private", true),
        member("b-aws-eu-down", "aws", "eu-central-1", "public", false),
        member("c-aws-us", "aws", "us-east-1", "public", true),
        member("d-gcp-eu", "gcp", "eu-central-1", "public", true),
        member("m-aws-eu", "aws", "eu-central-1", "public", true),
    ];
    let want = desired_aggregator(&members, &option("aws", "eu-central-1"));
    assert_eq!(want.cluster.as_deref(), Some("m-aws-eu"), "first by name");
    assert_eq!(want.option, option("aws", "eu-central-1"));
    let none = desired_aggregator(&members, &option("aws", "ap-south-1"));
    assert_eq!(
        none.cluster, None,
        "no member cluster there: a VM or waiting"
    );
}

fn view(name: &str, ready: bool) -> NodeView {
    NodeView {
        name: name.into(),
        ready,
        schedulable: true,
        matches_selector: true,
        free: crate::capacity::Resources {
            cpu_millis: 8000,
            memory_bytes: 32 << 30,
            gpus: 0,
        },
    }
}

fn running(job: &ValidJob, site: &str, node: &str, n: u32) -> ParticipantObs {
    ParticipantObs {
        name: crate::names::participant(&job.key, site, n),
        site: site.into(),
        node: node.into(),
        n,
        phase: participants::Phase::Running,
    }
}

#[test]
fn a_participant_on_a_lost_node_is_replaced_and_listed_as_such() {
    let job = super::super::validate::tests::valid_job();
    let sites = vec![
        SiteObs {
            site: "eu".into(),
            seen: Ok((
                vec![view("eu-1", false), view("eu-2", true)],
                vec![running(&job, "eu", "eu-1", 0)],
            )),
        },
        SiteObs {
            site: "asia".into(),
            seen: Ok((
                vec![view("asia-1", true)],
                vec![running(&job, "asia", "asia-1", 0)],
            )),
        },
        SiteObs {
            site: "us".into(),
            seen: Ok((
                vec![view("us-1", true)],
                vec![running(&job, "us", "us-1", 0)],
            )),
        },
    ];
    let mut queue = QueueState::default();
    let planned = participants(&job, &sites, &mut queue, 0, &[], 1_790_000_000);
    assert_eq!(planned.plan.replaced.len(), 1);
    assert_eq!(planned.plan.create.len(), 1, "one replacement");
    assert_eq!(planned.plan.create[0].node, "eu-2");
    assert_eq!(planned.plan.create[0].n, 1, "a new name at the site");
    let replaced = crate::names::participant(&job.key, "eu", 0);
    let entry = planned
        .states
        .iter()
        .find(|s| s.name == replaced)
        .expect("listed");
    assert_eq!(entry.state, ParticipantPhase::Replaced);
    let outcome = settle(&job, planned);
    assert_eq!(outcome.running, 2);
    assert!(outcome.plan.shortfall.is_none());
    let names: Vec<&str> = outcome.states.iter().map(|s| s.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name");
}

#[test]
fn an_unreadable_site_keeps_its_last_known_participants_and_says_why() {
    let job = super::super::validate::tests::valid_job();
    let asia = crate::names::participant(&job.key, "asia", 0);
    let prev = vec![state(
        &asia,
        "asia",
        "asia-1",
        ParticipantPhase::Running,
        None,
    )];
    let sites = vec![
        SiteObs {
            site: "eu".into(),
            seen: Ok((
                vec![view("eu-1", true)],
                vec![running(&job, "eu", "eu-1", 0)],
            )),
        },
        SiteObs {
            site: "asia".into(),
            seen: Err("listing nodes timed out".into()),
        },
        SiteObs {
            site: "us".into(),
            seen: Ok((
                vec![view("us-1", true)],
                vec![running(&job, "us", "us-1", 0)],
            )),
        },
    ];
    let mut queue = QueueState::default();
    let planned = participants(&job, &sites, &mut queue, 0, &prev, 1_790_000_000);
    assert!(
        planned.plan.create.is_empty(),
        "the unread site counts as running"
    );
    assert!(
        planned.states.iter().any(|s| s.name == asia),
        "last known kept"
    );
    let outcome = settle(&job, planned);
    assert_eq!(outcome.running, 2, "only read sites count as running");
    match outcome.plan.shortfall {
        Some(SelectError::NotEnough {
            wanted,
            found,
            reason,
        }) => {
            assert_eq!((wanted, found), (3, 2));
            assert_eq!(reason, "unreachable sites: asia: listing nodes timed out");
        }
        other => panic!("expected a shortfall, got {other:?}"),
    }
}
