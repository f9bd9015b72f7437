use super::*;

const TIMEOUT: u64 = 10_000;
const HEARTBEAT: u64 = 3_000;

fn config(min: usize, max: usize, available: usize) -> RoundConfig {
    RoundConfig {
        total_rounds: 2,
        min_per_round: min,
        max_per_round: max,
        min_available: available,
        round_timeout_ms: TIMEOUT,
        heartbeat_timeout_ms: HEARTBEAT,
        max_round_attempts: 2,
        seed: 7,
    }
}

fn id(s: &str) -> ParticipantId {
    ParticipantId::from(s)
}

/// A machine with participants `names` registered at t=0.
fn machine(cfg: RoundConfig, names: &[&str]) -> (RoundMachine, Vec<RoundEvent>) {
    let mut m = RoundMachine::new(cfg).expect("valid config");
    let events = names.iter().flat_map(|n| m.register(id(n), 0)).collect();
    (m, events)
}

fn started(events: &[RoundEvent]) -> Option<(u64, u32, Vec<ParticipantId>)> {
    events.iter().find_map(|e| match e {
        RoundEvent::RoundStarted {
            round,
            attempt,
            sampled,
            ..
        } => Some((*round, *attempt, sampled.clone())),
        _ => None,
    })
}

fn upload(m: &mut RoundMachine, who: &str, round: u64, now: u64) -> Vec<RoundEvent> {
    m.begin_update(&id(who), round, now).expect("admitted");
    m.check_upload(&id(who), round, now).expect("still open");
    m.finish_update(&id(who), round, UpdateOutcome::Accepted, now)
        .expect("accepted")
}

#[test]
fn config_validation_names_the_field() {
    let mut bad = config(3, 2, 3);
    assert!(matches!(
        RoundMachine::new(bad.clone()),
        Err(RoundError::InvalidConfig {
            field: "maxPerRound",
            ..
        })
    ));
    bad = config(2, 3, 1);
    assert!(matches!(
        bad.validate(),
        Err(RoundError::InvalidConfig {
            field: "minAvailable",
            ..
        })
    ));
    bad = RoundConfig {
        max_round_attempts: 0,
        ..config(1, 1, 1)
    };
    assert!(bad.validate().is_err());
}

#[test]
fn happy_path_runs_all_rounds() {
    let (mut m, events) = machine(config(2, 3, 3), &["a", "b", "c"]);
    assert!(events.contains(&RoundEvent::ParticipantJoined { id: id("a") }));
    let (round, attempt, sampled) = started(&events).expect("round 1 started once 3 joined");
    assert_eq!((round, attempt), (1, 0));
    assert_eq!(sampled, vec![id("a"), id("b"), id("c")]);

    assert!(upload(&mut m, "a", 1, 100).is_empty());
    assert!(upload(&mut m, "b", 1, 200).is_empty(), "c may still reply");
    let ev = upload(&mut m, "c", 1, 300);
    assert_eq!(
        ev,
        vec![RoundEvent::RoundReady {
            round: 1,
            attempt: 0,
            accepted: vec![id("a"), id("b"), id("c")],
            stragglers: vec![],
        }]
    );

    let ev = m.complete_round(1, 400).expect("aggregating round 1");
    assert_eq!(ev[0], RoundEvent::RoundCompleted { round: 1 });
    assert_eq!(started(&ev).map(|s| s.0), Some(2));
    for who in ["a", "b", "c"] {
        upload(&mut m, who, 2, 500);
    }
    let ev = m.complete_round(2, 600).expect("aggregating round 2");
    assert_eq!(
        ev,
        vec![
            RoundEvent::RoundCompleted { round: 2 },
            RoundEvent::JobCompleted { rounds: 2 }
        ]
    );
    assert_eq!(m.phase(), &Phase::Completed);
    assert_eq!(m.completed_rounds(), 2);
}

#[test]
fn waits_for_min_available() {
    let (mut m, events) = machine(config(2, 3, 3), &["a", "b"]);
    assert!(started(&events).is_none());
    assert_eq!(m.phase(), &Phase::Waiting);
    assert!(started(&m.tick(50)).is_none());
    let ev = m.register(id("c"), 100);
    assert!(started(&ev).is_some());
}

#[test]
fn straggler_at_deadline_with_quorum() {
    let (mut m, _) = machine(config(2, 3, 3), &["a", "b", "c"]);
    upload(&mut m, "a", 1, 100);
    upload(&mut m, "b", 1, 200);
    // Keep c alive so it is a straggler, not a vanished participant.
    for t in (1_000..TIMEOUT).step_by(1_000) {
        m.heartbeat(&id("c"), t).expect("known");
        m.heartbeat(&id("a"), t).expect("known");
        m.heartbeat(&id("b"), t).expect("known");
        assert!(m.tick(t).is_empty());
    }
    assert_eq!(m.next_wakeup_ms(), Some(TIMEOUT));
    let ev = m.tick(TIMEOUT);
    assert_eq!(
        ev,
        vec![RoundEvent::RoundReady {
            round: 1,
            attempt: 0,
            accepted: vec![id("a"), id("b")],
            stragglers: vec![id("c")],
        }]
    );
    let err = m.begin_update(&id("c"), 1, TIMEOUT + 1).expect_err("late");
    assert_eq!(
        err,
        UpdateRefusal::Late {
            id: id("c"),
            round: 1
        }
    );
    assert_eq!(err.reason(), "late");
}

#[test]
fn upload_at_deadline_before_tick_is_late() {
    let (mut m, _) = machine(config(1, 2, 2), &["a", "b"]);
    m.begin_update(&id("a"), 1, 100).expect("admitted");
    let err = m
        .finish_update(&id("a"), 1, UpdateOutcome::Accepted, TIMEOUT)
        .expect_err("deadline passed");
    assert_eq!(err.reason(), "late");
    assert!(matches!(
        m.begin_update(&id("b"), 1, TIMEOUT),
        Err(UpdateRefusal::Late { .. })
    ));
}

#[test]
fn below_quorum_at_deadline_retries_then_fails_job() {
    let cfg = config(2, 2, 2);
    let (mut m, _) = machine(cfg, &["a", "b"]);
    upload(&mut m, "a", 1, 100);
    m.heartbeat(&id("b"), 2_000).expect("known");
    m.heartbeat(&id("a"), 2_000).expect("known");
    // Stay alive until the deadline.
    for t in [4_000, 6_000, 8_000] {
        m.heartbeat(&id("a"), t).expect("known");
        m.heartbeat(&id("b"), t).expect("known");
        m.tick(t);
    }
    let ev = m.tick(TIMEOUT);
    assert_eq!(
        ev[0],
        RoundEvent::RoundFailed {
            round: 1,
            attempt: 0,
            reason: RoundFailure::BelowQuorum {
                accepted: 1,
                required: 2
            },
            will_retry: true,
        }
    );
    let (round, attempt, _) = started(&ev).expect("retry sampled at once");
    assert_eq!((round, attempt), (1, 1));

    // Second attempt: nobody replies by its deadline; attempts are exhausted.
    let deadline = 2 * TIMEOUT;
    for t in (TIMEOUT + 2_000..deadline).step_by(2_000) {
        m.heartbeat(&id("a"), t).expect("known");
        m.heartbeat(&id("b"), t).expect("known");
        m.tick(t);
    }
    let ev = m.tick(deadline);
    assert!(
        matches!(ev.last(), Some(RoundEvent::JobFailed { round: 1, .. })),
        "{ev:?}"
    );
    assert!(matches!(m.phase(), Phase::Failed { .. }));
    assert!(matches!(
        m.begin_update(&id("a"), 1, deadline + 1),
        Err(UpdateRefusal::NoRoundOpen { .. })
    ));
}

#[test]
fn duplicate_updates_are_refused() {
    let (mut m, _) = machine(config(1, 2, 2), &["a", "b"]);
    m.begin_update(&id("a"), 1, 10).expect("admitted");
    let err = m
        .begin_update(&id("a"), 1, 11)
        .expect_err("already uploading");
    assert_eq!(
        err,
        UpdateRefusal::Duplicate {
            id: id("a"),
            round: 1
        }
    );
    m.finish_update(&id("a"), 1, UpdateOutcome::Accepted, 12)
        .expect("accepted");
    let err = m
        .begin_update(&id("a"), 1, 13)
        .expect_err("already accepted");
    assert_eq!(err.reason(), "duplicate");
}

#[test]
fn stale_and_future_rounds_are_refused() {
    let (mut m, _) = machine(config(1, 1, 1), &["a"]);
    for wrong in [0, 2] {
        let err = m
            .begin_update(&id("a"), wrong, 10)
            .expect_err("wrong round");
        assert_eq!(
            err,
            UpdateRefusal::StaleRound {
                id: id("a"),
                current: 1,
                got: wrong
            }
        );
        assert_eq!(err.reason(), "stale_round");
    }
    upload(&mut m, "a", 1, 20);
    // While aggregating round 1, another round-1 upload is late…
    assert!(matches!(
        m.begin_update(&id("a"), 1, 21),
        Err(UpdateRefusal::Late { .. })
    ));
    m.complete_round(1, 30).expect("aggregating");
    // …and once round 2 runs, round 1 is stale.
    assert!(matches!(
        m.begin_update(&id("a"), 1, 31),
        Err(UpdateRefusal::StaleRound {
            current: 2,
            got: 1,
            ..
        })
    ));
}

#[test]
fn unknown_and_unsampled_participants_are_refused() {
    let (mut m, _) = machine(config(1, 2, 3), &["a", "b", "c"]);
    let err = m.begin_update(&id("mallory"), 1, 10).expect_err("unknown");
    assert_eq!(err, UpdateRefusal::UnknownParticipant { id: id("mallory") });
    assert_eq!(err.reason(), "unknown_participant");
    assert!(matches!(
        m.heartbeat(&id("mallory"), 10),
        Err(RoundError::UnknownParticipant { .. })
    ));

    let sampled = match m.phase() {
        Phase::Collecting(open) => open.slots.keys().cloned().collect::<Vec<_>>(),
        other => panic!("expected a round, got {other:?}"),
    };
    assert_eq!(sampled.len(), 2);
    let left_out = ["a", "b", "c"]
        .into_iter()
        .map(id)
        .find(|p| !sampled.contains(p))
        .expect("one of three is not sampled");
    let err = m.begin_update(&left_out, 1, 10).expect_err("not sampled");
    assert_eq!(err.reason(), "not_sampled");
    assert!(UpdateRefusal::REASONS.contains(&err.reason()));
}

#[test]
fn vanished_participant_is_dropped_without_stalling() {
    let (mut m, _) = machine(config(2, 3, 3), &["a", "b", "c"]);
    upload(&mut m, "a", 1, 1_000);
    upload(&mut m, "b", 1, 1_000);
    // c goes silent; a and b keep heart-beating.
    m.heartbeat(&id("a"), 3_000).expect("known");
    m.heartbeat(&id("b"), 3_000).expect("known");
    let ev = m.tick(HEARTBEAT + 1);
    assert_eq!(
        ev,
        vec![
            RoundEvent::ParticipantVanished { id: id("c") },
            RoundEvent::ParticipantDropped {
                round: 1,
                id: id("c")
            },
            RoundEvent::RoundReady {
                round: 1,
                attempt: 0,
                accepted: vec![id("a"), id("b")],
                stragglers: vec![],
            },
        ],
        "the round closes as soon as c is gone, long before the deadline"
    );
}

#[test]
fn vanishing_mid_upload_drops_the_upload() {
    let (mut m, _) = machine(config(1, 2, 2), &["a", "b"]);
    m.begin_update(&id("b"), 1, 100).expect("admitted");
    m.heartbeat(&id("a"), 3_000).expect("known");
    let ev = m.tick(HEARTBEAT + 101);
    assert!(ev.contains(&RoundEvent::ParticipantDropped {
        round: 1,
        id: id("b")
    }));
    let err = m
        .finish_update(&id("b"), 1, UpdateOutcome::Accepted, HEARTBEAT + 102)
        .expect_err("b was dropped");
    assert_eq!(err.reason(), "dropped");
    // It comes back: it rejoins but stays out of this round.
    let ev = m.heartbeat(&id("b"), HEARTBEAT + 200).expect("known");
    assert_eq!(ev, vec![RoundEvent::ParticipantRejoined { id: id("b") }]);
    assert!(matches!(
        m.begin_update(&id("b"), 1, HEARTBEAT + 201),
        Err(UpdateRefusal::Dropped { .. })
    ));
}

#[test]
fn round_fails_early_when_quorum_becomes_impossible() {
    let (mut m, _) = machine(config(2, 2, 2), &["a", "b"]);
    m.heartbeat(&id("a"), 3_000).expect("known");
    let ev = m.tick(HEARTBEAT + 1);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            RoundEvent::RoundFailed {
                will_retry: true,
                reason: RoundFailure::BelowQuorum {
                    accepted: 0,
                    required: 2
                },
                ..
            }
        )),
        "{ev:?}"
    );
    // Only one participant is connected: the retry waits for more.
    assert!(ev.contains(&RoundEvent::WaitingForParticipants {
        round: 1,
        attempt: 1,
        connected: 1,
        required: 2
    }));
}

#[test]
fn content_rejection_counts_as_reply_and_abandon_allows_retry() {
    let (mut m, _) = machine(config(1, 2, 2), &["a", "b"]);
    m.begin_update(&id("a"), 1, 10).expect("admitted");
    m.finish_update(&id("a"), 1, UpdateOutcome::Abandoned, 11)
        .expect("abandon");
    assert_eq!(m.slot(&id("a")), Some(&Slot::Pending));
    upload(&mut m, "a", 1, 12);

    m.begin_update(&id("b"), 1, 20).expect("admitted");
    let ev = m
        .finish_update(
            &id("b"),
            1,
            UpdateOutcome::Rejected {
                reason: "non_finite".into(),
            },
            21,
        )
        .expect("recorded");
    assert!(
        matches!(&ev[..], [RoundEvent::RoundReady { accepted, stragglers, .. }] if accepted == &vec![id("a")] && stragglers.is_empty()),
        "{ev:?}"
    );
}

#[test]
fn replacement_joins_the_next_sampling() {
    let (mut m, _) = machine(config(1, 3, 2), &["a", "b"]);
    let ev = m.register(id("d"), 500);
    assert_eq!(ev, vec![RoundEvent::ParticipantJoined { id: id("d") }]);
    assert!(matches!(
        m.begin_update(&id("d"), 1, 501),
        Err(UpdateRefusal::NotSampled { .. })
    ));
    m.deregister(&id("b"), 600).expect("known");
    upload(&mut m, "a", 1, 700);
    let ev = m.complete_round(1, 800).expect("aggregating");
    let (_, _, sampled) = started(&ev).expect("round 2");
    assert_eq!(sampled, vec![id("a"), id("d")], "b removed, d added");
}

#[test]
fn aggregation_failure_retries_the_round() {
    let (mut m, _) = machine(config(1, 1, 1), &["a"]);
    upload(&mut m, "a", 1, 10);
    let ev = m
        .fail_round(1, "out of memory".into(), 20)
        .expect("aggregating");
    assert!(matches!(
        &ev[0],
        RoundEvent::RoundFailed { reason: RoundFailure::AggregationFailed { detail }, will_retry: true, .. } if detail == "out of memory"
    ));
    assert_eq!(started(&ev).map(|s| (s.0, s.1)), Some((1, 1)));
    assert!(matches!(
        m.complete_round(1, 30),
        Err(RoundError::NotAggregating { round: 1, .. })
    ));
}

#[test]
fn sampling_is_seeded_and_deterministic() {
    let names: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let sample = |seed: u64| {
        let cfg = RoundConfig {
            seed,
            ..config(2, 5, 20)
        };
        started(&machine(cfg, &refs).1).expect("started").2
    };
    assert_eq!(sample(1), sample(1));
    assert_eq!(sample(1).len(), 5);
    assert!((2..10).any(|s| sample(s) != sample(1)), "seeds must matter");
}

#[test]
fn checkpoint_resume_matches_uninterrupted_run() {
    let names = ["a", "b", "c", "d", "e"];
    let (mut straight, _) = machine(config(2, 3, 5), &names);
    let first = match straight.phase() {
        Phase::Collecting(open) => open.slots.keys().cloned().collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    for p in &first {
        upload(&mut straight, &p.0, 1, 100);
    }
    let ev = straight.complete_round(1, 200).expect("aggregating");
    let expected_round_2 = started(&ev).expect("round 2").2;

    let json = serde_json::to_string(&straight.checkpoint()).expect("serialise");
    let cp: RoundCheckpoint = serde_json::from_str(&json).expect("deserialise");
    let mut resumed = RoundMachine::resume(cp, 50_000).expect("valid");
    assert_eq!(resumed.round(), 2);
    assert_eq!(resumed.connected(), 0, "everyone must reconnect");
    let events: Vec<RoundEvent> = names
        .iter()
        .flat_map(|n| {
            resumed
                .heartbeat(&id(n), 50_100)
                .expect("known after resume")
        })
        .collect();
    assert_eq!(started(&events).map(|s| s.2), Some(expected_round_2));

    // The full machine round-trips through serde as well.
    let whole: RoundMachine =
        serde_json::from_str(&serde_json::to_string(&resumed).expect("ser")).expect("de");
    assert_eq!(whole, resumed);
}
