//! The coordinator in-process: no network, a temporary model store.

use std::time::{Duration, Instant};

use super::*;
use crate::job::JobConfigExt;
use crate::model::{Model, TensorData};
use crate::round::{Slot, UpdateRefusal};
use crate::store::{DirStore, ObjectStore};
use crate::update::{UpdateRejection, decode_model};

const TOKEN: &str = "unit-test-token-0123456789";

/// The global model: one f32 tensor of four zeros.
fn initial() -> Model {
    Model::new([("w", vec![4], TensorData::F32(vec![0.0; 4]))]).expect("model")
}

/// An update of [`initial`] with every element `value`, as uploaded.
fn update_bytes(value: f32) -> Vec<u8> {
    Model::new([("w", vec![4], TensorData::F32(vec![value; 4]))])
        .expect("model")
        .to_safetensors()
        .expect("encode")
}

/// A job of `total` rounds over two participants per round; `extra` YAML
/// lines are appended.
fn job(total: u64, timeout_s: f64, extra: &str) -> JobConfig {
    JobConfig::parse(&format!(
        "name: unit-job\nseed: 7\nrounds: {{total: {total}, minPerRound: 2, maxPerRound: 2, \
         roundTimeoutSeconds: {timeout_s}, heartbeatTimeoutSeconds: 30, maxAttempts: 1}}\n{extra}"
    ))
    .expect("job config")
}

async fn start(job: JobConfig) -> (Coordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = Coordinator::start(
        job,
        TOKEN.into(),
        Checkpoints::new(Arc::new(DirStore::new(dir.path()))),
        Some(initial()),
        Arc::new(Metrics::new()),
    )
    .await
    .expect("coordinator starts");
    (core, dir)
}

fn id(s: &str) -> ParticipantId {
    ParticipantId::from(s)
}

fn register(core: &Coordinator, name: &str) {
    core.register(&id(name), BTreeMap::new())
        .expect("registers");
}

/// Metadata of an upload of [`update_bytes`] for `round` from version 0.
fn meta(round: u64, num_examples: u64) -> UploadMeta {
    UploadMeta {
        round,
        base_version: 0,
        num_examples,
        total_bytes: update_bytes(0.0).len() as u64,
        metrics: BTreeMap::new(),
    }
}

fn slot_of(core: &Coordinator, name: &str) -> Option<Slot> {
    core.status()
        .participants
        .into_iter()
        .find(|p| p.id == id(name))
        .and_then(|p| p.slot)
}

async fn wait_for_phase(core: &Coordinator, phase: AggregatorPhase) -> StatusView {
    let start = Instant::now();
    loop {
        let s = core.status();
        if s.phase == phase {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for phase {phase}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn token_check_accepts_only_the_exact_token() {
    let (core, _dir) = start(job(1, 60.0, "")).await;
    assert!(core.token_matches(TOKEN));
    assert!(!core.token_matches("unit-test-token-0123456788"));
    assert!(!core.token_matches(&TOKEN[..TOKEN.len() - 1]));
    assert!(!core.token_matches(&format!("{TOKEN}0")));
    assert!(!core.token_matches(""));
}

#[tokio::test]
async fn registration_checks_the_participant_list() {
    let (core, _dir) = start(job(1, 60.0, "participants: [a, b]\n")).await;
    match core.register(&id("c"), BTreeMap::new()) {
        Err(e @ CoreError::NotAllowed { .. }) => assert_eq!(e.reason(), "permission_denied"),
        other => panic!("expected NotAllowed, got {other:?}"),
    }
    assert!(!core.is_registered(&id("c")));
    let reg = core.register(&id("a"), BTreeMap::new()).expect("listed");
    assert_eq!(reg.job, "unit-job");
    // A third of the 30 s heartbeat timeout.
    assert_eq!(reg.heartbeat_interval_ms, 10_000);
    assert!(core.is_registered(&id("a")));
}

#[tokio::test]
async fn heartbeat_of_unknown_and_known_participants() {
    let (core, _dir) = start(job(1, 60.0, "")).await;
    match core.heartbeat(&id("a")) {
        Err(e @ CoreError::UnknownParticipant { .. }) => {
            assert_eq!(e.reason(), "unknown_participant");
        }
        other => panic!("expected UnknownParticipant, got {other:?}"),
    }
    register(&core, "a");
    assert_eq!(core.heartbeat(&id("a")).expect("known"), (1, "waiting"));
    register(&core, "b");
    assert_eq!(core.heartbeat(&id("b")).expect("known"), (1, "collecting"));
}

#[tokio::test]
async fn instructions_while_waiting_and_collecting() {
    let (core, _dir) = start(job(2, 60.0, "")).await;
    register(&core, "a");
    let wait = core.instruction(&id("a"));
    assert_eq!(wait.kind, InstructionKind::Wait);
    assert_eq!((wait.round, wait.attempt, wait.total_rounds), (1, 0, 2));
    assert_eq!(wait.model_version, 0);
    assert_eq!(
        wait.message,
        "waiting for 2 connected participants (have 1)"
    );
    assert!(wait.hyper_parameters.is_none());

    register(&core, "b");
    let fit = core.instruction(&id("a"));
    assert_eq!(fit.kind, InstructionKind::Fit);
    assert!(fit.differs(&wait));
    assert!(fit.deadline_in_ms > 0 && fit.deadline_in_ms <= 60_000);
    let hp = fit.hyper_parameters.expect("FIT carries hyper-parameters");
    assert_eq!(hp.seed, participant_seed(7, 1, &id("a")));
    assert_eq!(hp.proximal_mu, 0.0);
    assert_ne!(
        hp.seed,
        core.instruction(&id("b"))
            .hyper_parameters
            .expect("b is sampled")
            .seed
    );

    // A late joiner is not in the running round.
    register(&core, "c");
    let idle = core.instruction(&id("c"));
    assert_eq!(idle.kind, InstructionKind::Wait);
    assert_eq!(idle.message, "not sampled for round 1");
}

#[tokio::test]
async fn a_failed_job_tells_participants_so() {
    let (core, _dir) = start(job(1, 0.05, "")).await;
    register(&core, "a");
    register(&core, "b");
    tokio::spawn(core.clone().run());
    let status = wait_for_phase(&core, AggregatorPhase::Failed).await;
    assert!(status.failure.is_some(), "{status:#?}");
    assert_eq!(status.deadline_in_ms, None);
    let i = core.instruction(&id("a"));
    assert_eq!(i.kind, InstructionKind::Failed);
    assert!(
        i.message.starts_with("job failed in round 1: "),
        "{}",
        i.message
    );
}

#[tokio::test]
async fn upload_admission_refuses_what_the_rules_forbid() {
    let (core, _dir) = start(job(1, 60.0, "")).await;
    let refusal = |r: Result<UploadTicket, CoreError>| match r {
        Ok(_) => panic!("upload should have been refused"),
        Err(e) => e,
    };
    let e = refusal(core.begin_upload(&id("a"), meta(1, 10)));
    assert!(matches!(e, CoreError::UnknownParticipant { .. }), "{e:?}");

    register(&core, "a");
    register(&core, "b");
    register(&core, "c");
    let e = refusal(core.begin_upload(&id("a"), meta(1, 0)));
    assert!(matches!(e, CoreError::ZeroExamples), "{e:?}");

    let limit = core.wire_limits().max_update_bytes;
    let oversized = UploadMeta {
        total_bytes: limit + 1,
        ..meta(1, 10)
    };
    let e = refusal(core.begin_upload(&id("a"), oversized));
    assert!(
        matches!(e, CoreError::Rejected(UpdateRejection::Oversized { got, limit: l }) if got == limit + 1 && l == limit),
        "{e:?}"
    );

    let e = refusal(core.begin_upload(&id("a"), meta(2, 10)));
    assert!(
        matches!(
            e,
            CoreError::Refused(UpdateRefusal::StaleRound {
                current: 1,
                got: 2,
                ..
            })
        ),
        "{e:?}"
    );

    let e = refusal(core.begin_upload(&id("c"), meta(1, 10)));
    assert!(
        matches!(
            e,
            CoreError::Refused(UpdateRefusal::NotSampled { round: 1, .. })
        ),
        "{e:?}"
    );

    let stale = UploadMeta {
        base_version: 3,
        ..meta(1, 10)
    };
    let e = refusal(core.begin_upload(&id("a"), stale));
    assert!(
        matches!(
            e,
            CoreError::StaleBase {
                got: 3,
                current: 0,
                round: 1
            }
        ),
        "{e:?}"
    );
    // The refused stale upload gave the slot back.
    assert_eq!(slot_of(&core, "a"), Some(Slot::Pending));

    let ticket = core.begin_upload(&id("a"), meta(1, 10)).expect("admitted");
    assert_eq!(ticket.round(), 1);
    assert_eq!(ticket.declared_bytes(), update_bytes(0.0).len() as u64);
    let e = refusal(core.begin_upload(&id("a"), meta(1, 10)));
    assert!(
        matches!(
            e,
            CoreError::Refused(UpdateRefusal::Duplicate { round: 1, .. })
        ),
        "{e:?}"
    );
    let receipt = ticket
        .finish(RecvBuf::from(update_bytes(1.0)))
        .await
        .expect("accepted");
    assert_eq!((receipt.round, receipt.accepted_in_round), (1, 1));
    assert_eq!(receipt.bytes, update_bytes(1.0).len() as u64);
    assert_eq!(slot_of(&core, "a"), Some(Slot::Accepted));
    // Once accepted, a second upload is a duplicate too.
    let e = refusal(core.begin_upload(&id("a"), meta(1, 10)));
    assert!(
        matches!(e, CoreError::Refused(UpdateRefusal::Duplicate { .. })),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_dropped_ticket_gives_the_slot_back() {
    let (core, _dir) = start(job(1, 60.0, "")).await;
    register(&core, "a");
    register(&core, "b");
    assert_eq!(slot_of(&core, "a"), Some(Slot::Pending));
    let ticket = core.begin_upload(&id("a"), meta(1, 10)).expect("admitted");
    assert_eq!(slot_of(&core, "a"), Some(Slot::Uploading));
    drop(ticket);
    assert_eq!(slot_of(&core, "a"), Some(Slot::Pending));
    // The participant may retry within the round.
    let retry = core
        .begin_upload(&id("a"), meta(1, 10))
        .expect("readmitted");
    assert_eq!(slot_of(&core, "a"), Some(Slot::Uploading));
    drop(retry);
}

#[tokio::test]
async fn a_rejected_update_counts_as_the_reply() {
    // One accepted update is enough, so the round stays open after a's
    // rejection and its slot can be read.
    let job = JobConfig::parse(
        "name: unit-job\nseed: 7\nrounds: {total: 1, minPerRound: 1, maxPerRound: 2, \
         minAvailable: 2, roundTimeoutSeconds: 60}\n",
    )
    .expect("job config");
    let (core, _dir) = start(job).await;
    register(&core, "a");
    register(&core, "b");
    let ticket = core.begin_upload(&id("a"), meta(1, 10)).expect("admitted");
    let e = ticket
        .finish(RecvBuf::from(update_bytes(f32::NAN)))
        .await
        .expect_err("NaN is refused");
    assert_eq!(e.reason(), "non_finite");
    assert!(
        matches!(slot_of(&core, "a"), Some(Slot::Rejected { .. })),
        "{:?}",
        slot_of(&core, "a")
    );
}

#[test]
fn participant_seed_is_stable_and_differs_per_participant_and_round() {
    let ids = [id("a"), id("b"), id("site-3")];
    let mut seen = BTreeSet::new();
    for round in 1..=3 {
        for p in &ids {
            let seed = participant_seed(7, round, p);
            assert_eq!(seed, participant_seed(7, round, p));
            assert!(seen.insert(seed), "seed of {p} in round {round} repeats");
        }
    }
    assert_eq!(seen.len(), 9);
    assert_ne!(
        participant_seed(7, 1, &ids[0]),
        participant_seed(8, 1, &ids[0])
    );
}

#[tokio::test]
async fn status_reports_phase_counts_and_participants() {
    let (core, _dir) = start(job(2, 60.0, "")).await;
    let empty = core.status();
    assert_eq!(empty.job, "unit-job");
    assert_eq!(empty.phase, AggregatorPhase::Waiting);
    assert_eq!((empty.round, empty.attempt, empty.total_rounds), (1, 0, 2));
    assert_eq!(empty.completed_rounds, 0);
    assert_eq!(empty.strategy, "FedAvg");
    assert_eq!(empty.connected, 0);
    assert!(empty.participants.is_empty());
    assert_eq!(empty.deadline_in_ms, None);
    assert_eq!(empty.latest_version.map(|v| v.version), Some(0));
    assert_eq!(empty.failure, None);

    let labels = BTreeMap::from([("site".to_string(), "north".to_string())]);
    core.register(&id("a"), labels.clone()).expect("registers");
    register(&core, "b");
    let s = core.status();
    assert_eq!(s.phase, AggregatorPhase::Collecting);
    assert_eq!(s.connected, 2);
    assert_eq!(s.participants.len(), 2);
    let a = s
        .participants
        .iter()
        .find(|p| p.id == id("a"))
        .expect("a listed");
    assert!(a.connected);
    assert_eq!(a.slot, Some(Slot::Pending));
    assert_eq!(a.labels, labels);
    let deadline = s.deadline_in_ms.expect("an open round has a deadline");
    assert!(deadline > 0 && deadline <= 60_000, "{deadline}");
}

#[tokio::test]
async fn a_round_aggregates_commits_and_asks_for_evaluation() {
    let (core, _dir) = start(job(1, 60.0, "")).await;
    register(&core, "a");
    register(&core, "b");
    tokio::spawn(core.clone().run());
    for (name, value, n, loss) in [("a", 1.0, 10, 1.0), ("b", 3.0, 30, 4.0)] {
        let meta = UploadMeta {
            metrics: BTreeMap::from([("loss".to_string(), loss)]),
            ..meta(1, n)
        };
        let ticket = core.begin_upload(&id(name), meta).expect("admitted");
        ticket
            .finish(RecvBuf::from(update_bytes(value)))
            .await
            .expect("accepted");
    }
    let status = wait_for_phase(&core, AggregatorPhase::Completed).await;
    assert_eq!(status.completed_rounds, 1);
    let latest = status.latest_version.expect("version 1");
    assert_eq!(latest.version, 1);
    // Example-weighted: (10·1 + 30·4) / 40.
    assert_eq!(latest.metrics.get("train_loss"), Some(&3.25));

    // (10·1 + 30·3) / 40 = 2.5 in every element.
    let blob = core.model(None).await.expect("current model");
    assert_eq!(blob.version, 1);
    let model = decode_model(&blob.bytes, &UpdateLimits::default()).expect("decodes");
    assert_eq!(model.to_flat_f32(), vec![2.5; 4]);
    assert!(matches!(
        core.model(Some(9)).await,
        Err(CoreError::VersionNotFound {
            version: 9,
            latest: 1
        })
    ));

    let evaluate = core.instruction(&id("a"));
    assert_eq!(evaluate.kind, InstructionKind::Evaluate);
    assert_eq!(evaluate.model_version, 1);
    let metrics = BTreeMap::from([("accuracy".to_string(), 0.5)]);
    core.report_evaluation(&id("a"), 1, 20, metrics.clone())
        .await
        .expect("recorded");
    // A retried report does not count twice.
    core.report_evaluation(&id("a"), 1, 20, BTreeMap::from([("accuracy".into(), 1.0)]))
        .await
        .expect("ignored");
    assert_eq!(core.instruction(&id("a")).kind, InstructionKind::Done);
    assert_eq!(core.instruction(&id("b")).kind, InstructionKind::Evaluate);
    let versions = core.versions();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].metrics.get("eval_accuracy"), Some(&0.5));
}

/// Polls `f` until it returns true (pruning runs after a round completes).
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs round `round` with both participants uploading `value` and waits
/// until the round is committed.
async fn complete_round(core: &Coordinator, round: u64, value: f32) {
    for name in ["a", "b"] {
        let meta = UploadMeta {
            base_version: round - 1,
            ..meta(round, 10)
        };
        let ticket = core.begin_upload(&id(name), meta).expect("admitted");
        ticket
            .finish(RecvBuf::from(update_bytes(value)))
            .await
            .expect("accepted");
    }
    let start = Instant::now();
    while core.status().completed_rounds < round {
        assert!(start.elapsed() < Duration::from_secs(10), "round {round}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A running coordinator of a `rounds`-round job with participants `a` and `b` over
/// `store`, keeping `keep` versions.
async fn pruning(
    store: Arc<dyn ObjectStore>,
    keep: u32,
    rounds: u64,
) -> (Coordinator, Checkpoints) {
    let checkpoints = Checkpoints::new(store).with_keep_versions(std::num::NonZeroU32::new(keep));
    let core = Coordinator::start(
        job(rounds, 60.0, ""),
        TOKEN.into(),
        checkpoints.clone(),
        Some(initial()),
        Arc::new(Metrics::new()),
    )
    .await
    .expect("coordinator starts");
    register(&core, "a");
    register(&core, "b");
    tokio::spawn(core.clone().run());
    (core, checkpoints)
}

#[tokio::test]
async fn old_versions_are_pruned_but_the_best_and_the_latest_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(DirStore::new(dir.path()));
    let (core, checkpoints) = pruning(store.clone(), 2, 4).await;
    let listed =
        |core: &Coordinator| -> Vec<u64> { core.versions().iter().map(|v| v.version).collect() };

    complete_round(&core, 1, 1.0).await;
    // Version 1 is evaluated as the best there will be.
    let best = BTreeMap::from([("accuracy".to_string(), 0.9)]);
    core.report_evaluation(&id("a"), 1, 10, best)
        .await
        .expect("recorded");
    // Kept: the newest two.
    assert_eq!(listed(&core), [0, 1]);
    complete_round(&core, 2, 2.0).await;
    until("version 0 pruned", || async { listed(&core) == [1, 2] }).await;
    let worse = BTreeMap::from([("accuracy".to_string(), 0.4)]);
    core.report_evaluation(&id("a"), 2, 10, worse)
        .await
        .expect("recorded");
    complete_round(&core, 3, 3.0).await;
    complete_round(&core, 4, 4.0).await;
    // The newest two, and version 1 as the best by eval_accuracy.
    until("version 2 deleted", || async {
        let stored = checkpoints.stored_versions().await.expect("list");
        stored.into_iter().collect::<Vec<_>>() == [1, 3, 4]
    })
    .await;
    assert_eq!(listed(&core), [1, 3, 4]);
    assert!(matches!(
        core.model(Some(2)).await,
        Err(CoreError::VersionNotFound { version: 2, .. })
    ));
    // A late report on a pruned version is refused, and writes nothing back.
    let late = core
        .report_evaluation(&id("b"), 2, 10, BTreeMap::from([("accuracy".into(), 1.0)]))
        .await;
    assert!(
        matches!(late, Err(CoreError::VersionNotFound { .. })),
        "{late:?}"
    );
    assert_eq!(store.get("models/v00000002.json").await.expect("get"), None);
    assert_eq!(
        core.metrics()
            .versions_pruned
            .get_or_create(&crate::metrics::ResultLabels {
                result: "deleted".into()
            })
            .get(),
        2
    );
    // A restart lists what is stored.
    let resumed = Coordinator::start(
        job(4, 60.0, ""),
        TOKEN.into(),
        Checkpoints::new(store),
        Some(initial()),
        Arc::new(Metrics::new()),
    )
    .await
    .expect("resumes");
    assert_eq!(listed(&resumed), [1, 3, 4]);
}

#[tokio::test]
async fn a_version_being_written_is_not_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (core, checkpoints) = pruning(Arc::new(DirStore::new(dir.path())), 1, 2).await;
    // An evaluation's metrics of version 0 are being written during round 1.
    let writing = {
        let mut s = core.lock();
        prune::Writing::start(&core, &mut s, 0)
    };
    complete_round(&core, 1, 1.0).await;
    let listed =
        |core: &Coordinator| -> Vec<u64> { core.versions().iter().map(|v| v.version).collect() };
    // Whether or not the round's own pruning has run yet, pruning now keeps it.
    core.prune(1).await;
    assert_eq!(listed(&core), [0, 1]);
    drop(writing);
    assert!(core.lock().writing.is_empty());
    core.prune(1).await;
    assert_eq!(listed(&core), [1]);
    assert_eq!(
        checkpoints.stored_versions().await.expect("list"),
        std::collections::BTreeSet::from([1])
    );
}

/// A directory store whose first `fail_deletes` deletes fail.
#[derive(Debug)]
struct FlakyDeletes {
    inner: DirStore,
    fail_deletes: std::sync::atomic::AtomicU32,
}

impl ObjectStore for FlakyDeletes {
    fn put<'a>(&'a self, key: &'a str, bytes: bytes::Bytes) -> crate::store::StoreFuture<'a, ()> {
        self.inner.put(key, bytes)
    }
    fn get<'a>(&'a self, key: &'a str) -> crate::store::StoreFuture<'a, Option<bytes::Bytes>> {
        self.inner.get(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> crate::store::StoreFuture<'a, Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete<'a>(&'a self, key: &'a str) -> crate::store::StoreFuture<'a, ()> {
        use std::sync::atomic::Ordering;
        let left = self.fail_deletes.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_deletes.store(left - 1, Ordering::SeqCst);
            let source = std::io::Error::other("injected");
            return Box::pin(async move {
                Err(crate::store::StoreError::Io {
                    op: "removing",
                    path: key.into(),
                    source,
                })
            });
        }
        self.inner.delete(key)
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test]
async fn a_failed_delete_keeps_the_round_and_is_retried_the_next_round() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FlakyDeletes {
        inner: DirStore::new(dir.path()),
        fail_deletes: std::sync::atomic::AtomicU32::new(1),
    });
    let (core, checkpoints) = pruning(store.clone(), 1, 2).await;
    let stored = || async { checkpoints.stored_versions().await.expect("list") };
    complete_round(&core, 1, 1.0).await;
    let failed = || {
        core.metrics()
            .versions_pruned
            .get_or_create(&crate::metrics::ResultLabels {
                result: "failed".into(),
            })
            .get()
    };
    until("the delete of version 0 to fail", || async {
        failed() == 1
    })
    .await;
    // The round still counts, and version 0 is no longer listed but still stored.
    assert_eq!(core.status().completed_rounds, 1);
    assert_eq!(core.versions().len(), 1);
    assert_eq!(stored().await, std::collections::BTreeSet::from([0, 1]));
    complete_round(&core, 2, 2.0).await;
    until("versions 0 and 1 deleted", || async {
        stored().await == std::collections::BTreeSet::from([2])
    })
    .await;
    assert_eq!(failed(), 1);
}

/// One update is enough for a round of up to two, so a round goes on after one of its
/// two participants is revoked.
fn job_of_one_or_two() -> JobConfig {
    JobConfig::parse(
        "name: unit-job\nseed: 7\nrounds: {total: 1, minPerRound: 1, maxPerRound: 2, \
         minAvailable: 2, roundTimeoutSeconds: 60}\n",
    )
    .expect("job config")
}

fn not_allowed<T: std::fmt::Debug>(what: &str, r: Result<T, CoreError>) {
    match r {
        Err(e @ CoreError::NotAllowed { .. }) => assert_eq!(e.reason(), "permission_denied"),
        other => panic!("{what}: expected NotAllowed, got {other:?}"),
    }
}

fn names(list: &[&str]) -> BTreeSet<ParticipantId> {
    list.iter().map(|n| id(n)).collect()
}

#[tokio::test]
async fn the_list_starts_from_the_job_and_empty_means_anyone() {
    let (open, _dir) = start(job(1, 60.0, "")).await;
    assert_eq!(open.allowed(), None);
    register(&open, "anyone");
    let (listed, _dir) = start(job(1, 60.0, "participants: [a, b]\n")).await;
    assert_eq!(listed.allowed(), Some(names(&["a", "b"])));
    // Set explicitly, an empty list admits nobody (the operator runs no participant).
    assert!(listed.set_allowed(BTreeSet::new()).is_empty());
    not_allowed("register", listed.register(&id("a"), BTreeMap::new()));
}

#[tokio::test]
async fn a_revoked_participant_is_removed_and_refused_everywhere() {
    let (core, _dir) = start(job_of_one_or_two()).await;
    register(&core, "a");
    register(&core, "b");
    assert_eq!(slot_of(&core, "b"), Some(Slot::Pending));

    let revoked = core.set_allowed(names(&["a", "c"]));
    assert_eq!(revoked, vec![id("b")]);
    assert_eq!(core.allowed(), Some(names(&["a", "c"])));
    assert_eq!(core.metrics().participants_revoked.get(), 1);
    assert!(!core.is_registered(&id("b")));
    let status = core.status();
    assert!(status.participants.iter().all(|p| p.id != id("b")));
    assert_eq!(status.phase, AggregatorPhase::Collecting);

    for _ in 0..10 {
        not_allowed("register", core.register(&id("b"), BTreeMap::new()));
        not_allowed("heartbeat", core.heartbeat(&id("b")));
        not_allowed("begin_upload", core.begin_upload(&id("b"), meta(1, 10)));
        not_allowed("admit", core.admit(&id("b")));
        not_allowed(
            "report_evaluation",
            core.report_evaluation(&id("b"), 0, 10, BTreeMap::new())
                .await,
        );
    }
    assert!(!core.is_registered(&id("b")));
    // Setting the same list again revokes nobody more.
    assert!(core.set_allowed(names(&["a", "c"])).is_empty());
    assert_eq!(core.metrics().participants_revoked.get(), 1);

    // Never listed nor seen (just started by the operator, say): refused, but not for
    // good; once listed it registers.
    match core.register(&id("d"), BTreeMap::new()) {
        Err(e @ CoreError::NotListed { .. }) => assert_eq!(e.reason(), "not_listed"),
        other => panic!("expected NotListed, got {other:?}"),
    }
    // Listed once, then dropped without ever registering: revoked all the same.
    assert_eq!(core.set_allowed(names(&["a"])), vec![]);
    not_allowed("register c", core.register(&id("c"), BTreeMap::new()));
    assert!(core.set_allowed(names(&["a", "c", "d"])).is_empty());
    register(&core, "d");
    not_allowed("register b", core.register(&id("b"), BTreeMap::new()));

    // Listed but not registered: the usual answer, and registration works.
    assert!(matches!(
        core.admit(&id("c")),
        Err(CoreError::UnknownParticipant { .. })
    ));
    register(&core, "c");
    core.admit(&id("a")).expect("a is still admitted");
    core.heartbeat(&id("a")).expect("a still heartbeats");

    // The round goes on with a alone.
    tokio::spawn(core.clone().run());
    let ticket = core.begin_upload(&id("a"), meta(1, 10)).expect("admitted");
    ticket
        .finish(RecvBuf::from(update_bytes(1.0)))
        .await
        .expect("accepted");
    wait_for_phase(&core, AggregatorPhase::Completed).await;
}

#[tokio::test]
async fn an_upload_in_flight_when_revoked_is_not_counted() {
    let (core, _dir) = start(job_of_one_or_two()).await;
    register(&core, "a");
    register(&core, "b");
    let ticket = core.begin_upload(&id("b"), meta(1, 10)).expect("admitted");
    assert_eq!(core.set_allowed(names(&["a"])), vec![id("b")]);
    not_allowed(
        "finish",
        ticket.finish(RecvBuf::from(update_bytes(1.0))).await,
    );
    assert_eq!(slot_of(&core, "b"), None);
    assert_eq!(core.status().phase, AggregatorPhase::Collecting);
}
