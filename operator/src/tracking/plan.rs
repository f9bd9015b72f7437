//! What a job's MLflow run should hold, given the job, its status and what the run holds
//! already. Pure: no client, no clock (callers pass `now`).
//!
//! A round's metrics are logged once, when they no longer change: participants evaluate
//! a global model at the start of the next round, so round `r`'s loss and accuracy are in
//! once version `r + 1` exists; the final round's come after the job succeeded, when the
//! participants evaluate the final model and stop.

use super::mlflow::{Metric, Param};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::{
    FederatedJobStatus, JobPhase, MlflowStatus, ModelVersion, ParticipantPhase, RoundMetrics,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde::Serialize;
use std::collections::BTreeSet;

/// Metric: participants whose updates made the round's model (0 for the initial model).
pub const PARTICIPANTS: &str = "participants";
/// Metric: mean evaluation loss of the round's model.
pub const LOSS: &str = "loss";
/// Metric: mean evaluation accuracy of the round's model, in [0, 1].
pub const ACCURACY: &str = "accuracy";
/// Metric: wall time of the round.
pub const ROUND_TIME: &str = "round_time_seconds";
/// Run tag: the job's UID, by which the run is found again.
pub const UID_TAG: &str = "fedsky.dev/uid";
/// Run tag: the job's namespace.
pub const NAMESPACE_TAG: &str = "fedsky.dev/namespace";
/// Run tag: the job's name.
pub const JOB_TAG: &str = "fedsky.dev/job";
/// Where the final model goes in the run's artifacts.
pub const MODEL_DIR: &str = "model";
/// The final model's file name inside [`MODEL_DIR`].
pub const MODEL_FILE: &str = "model.safetensors";
/// How long after the job succeeded the final round's metrics are logged even though a
/// participant still runs (one that hangs must not keep the run open for ever).
pub const FINAL_EVALUATION_GRACE: SignedDuration = SignedDuration::from_mins(5);
/// MLflow's `log-batch` limits: 1000 metrics, 100 params, 1000 entries in all.
const MAX_METRICS_PER_BATCH: usize = 1000;
/// MLflow's limit on a param value (`MAX_PARAM_VAL_LENGTH`).
const MAX_PARAM_VALUE: usize = 6000;

/// Where a job's run goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Tracking server URL, without a trailing `/`.
    pub tracking_uri: String,
    /// Experiment name.
    pub experiment: String,
    /// Registered model the final model becomes a version of.
    pub registered_model: String,
}

/// The job's MLflow target, `None` when it asks for no MLflow tracking. Empty names fall
/// back to the job's name, as unset ones do.
pub fn target(job: &FederatedJob) -> Option<Target> {
    let m = job.spec.tracking.as_ref()?.mlflow.as_ref()?;
    let or_job = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map_or_else(|| job.name_any(), str::to_string)
    };
    Some(Target {
        tracking_uri: m.tracking_uri.trim().trim_end_matches('/').to_string(),
        experiment: or_job(&m.experiment),
        registered_model: or_job(&m.registered_model_name),
    })
}

/// The run's name: `namespace/name`.
pub fn run_name(job: &FederatedJob) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

/// The tags a new run gets.
pub fn run_tags(job: &FederatedJob) -> Vec<(String, String)> {
    vec![
        (
            NAMESPACE_TAG.to_string(),
            job.namespace().unwrap_or_default(),
        ),
        (JOB_TAG.to_string(), job.name_any()),
        (UID_TAG.to_string(), job.uid().unwrap_or_default()),
    ]
}

/// The MLflow search filter that finds the job's run by its UID tag. UIDs are
/// `[0-9a-f-]`, which needs no quoting inside the string.
pub fn run_filter(uid: &str) -> String {
    format!("tags.`{UID_TAG}` = '{uid}'")
}

fn terminal(status: &FederatedJobStatus) -> bool {
    matches!(status.phase, Some(JobPhase::Succeeded | JobPhase::Failed))
}

/// Whether the last round's metrics are final: the job failed (nothing evaluates any
/// more), or it succeeded and no participant still runs (each evaluates the final model
/// before it stops), or [`FINAL_EVALUATION_GRACE`] has passed since it succeeded.
pub fn final_settled(status: &FederatedJobStatus, now: Timestamp) -> bool {
    match status.phase {
        Some(JobPhase::Failed) => true,
        Some(JobPhase::Succeeded) => {
            let evaluating = status.participants.iter().any(|p| {
                matches!(
                    p.state,
                    ParticipantPhase::Pending | ParticipantPhase::Running
                )
            });
            let waited = status
                .completion_time
                .as_ref()
                .is_some_and(|t| now.duration_since(t.0) >= FINAL_EVALUATION_GRACE);
            !evaluating || waited
        }
        _ => false,
    }
}

/// The last round whose metrics will not change any more: the one before the newest, or
/// the newest once [`final_settled`]. `None` before two rounds are listed.
pub fn settled_through(status: &FederatedJobStatus, now: Timestamp) -> Option<i32> {
    let last = status.history.last()?;
    if final_settled(status, now) {
        Some(last.round)
    } else {
        status.history.iter().rev().nth(1).map(|h| h.round)
    }
}

/// Whether the last round listed is logged (true when none is listed).
fn all_logged(status: &FederatedJobStatus, tracked: &MlflowStatus) -> bool {
    status.history.last().map(|h| h.round) <= tracked.logged_round
}

/// Whether the tracking server has anything to get now, so that a job with nothing new
/// costs it no request: no run yet (once the job's aggregator has served), rounds newly
/// settled, or a finished job whose run is still open.
pub fn needs_contact(status: &FederatedJobStatus, tracked: &MlflowStatus, now: Timestamp) -> bool {
    if tracked.run_id.is_none() || tracked.experiment_id.is_none() {
        return status.aggregator.is_some();
    }
    if tracked.run_status.is_some() {
        return false;
    }
    settled_through(status, now) > tracked.logged_round || final_settled(status, now)
}

/// The round logged last according to the run itself: the step of its latest
/// [`PARTICIPANTS`] value (each logged round has one, sent after its other metrics).
pub fn logged_in_run<'a>(latest: impl IntoIterator<Item = (&'a str, i64)>) -> Option<i32> {
    latest
        .into_iter()
        .filter(|(k, _)| *k == PARTICIPANTS)
        .filter_map(|(_, step)| i32::try_from(step).ok())
        .max()
}

/// The text of a value that serialises as a JSON string (an enum's name).
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// At most [`MAX_PARAM_VALUE`] characters: MLflow refuses longer values.
fn clip(mut v: String) -> String {
    if let Some((i, _)) = v.char_indices().nth(MAX_PARAM_VALUE) {
        v.truncate(i);
    }
    v
}

/// The job's parameters, those known so far: the placement once placed, the sites once
/// participants were started. Keys are the spec's field names.
pub fn params(job: &FederatedJob, status: &FederatedJobStatus) -> Vec<Param> {
    let spec = &job.spec;
    let s = &spec.strategy;
    let t = &spec.training;
    let p = &spec.participants;
    let mut out: Vec<(&str, String)> = vec![
        ("strategy", word(&s.type_)),
        ("rounds", t.rounds.to_string()),
        ("minPerRound", p.min_per_round.to_string()),
        ("maxPerRound", p.max_per_round.to_string()),
        ("roundTimeoutSeconds", p.round_timeout_seconds.to_string()),
        ("localEpochs", t.local_epochs.to_string()),
        ("batchSize", t.batch_size.to_string()),
        ("learningRate", t.learning_rate.to_string()),
        ("optimizer", word(&t.optimizer)),
        ("pool", p.pool_ref.name.clone()),
    ];
    let model = match (&spec.model.builtin, &spec.model.torch_script) {
        (Some(b), _) => word(&b.architecture),
        (None, Some(_)) => "TorchScript".to_string(),
        (None, None) => String::new(),
    };
    out.push(("model", model));
    let optional = [
        ("strategy.serverLearningRate", s.server_learning_rate),
        ("strategy.beta1", s.beta1),
        ("strategy.beta2", s.beta2),
        ("strategy.tau", s.tau),
        ("strategy.trimFraction", s.trim_fraction),
        ("fedproxMu", Some(t.fedprox_mu).filter(|mu| *mu > 0.0)),
    ];
    out.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?.to_string()))),
    );
    let counts = [
        ("strategy.byzantine", s.byzantine.map(i64::from)),
        (
            "strategy.multiKrumSelect",
            s.multi_krum_select.map(i64::from),
        ),
        ("seed", t.seed),
    ];
    out.extend(
        counts
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?.to_string()))),
    );
    if let Some(placed) = &status.placement {
        out.push(("placement", placed.summary.clone()));
        if let Some(o) = &placed.option {
            out.push(("placement.cloud", o.cloud.clone()));
            out.push(("placement.region", o.region.clone()));
            out.push(("placement.instanceType", o.instance_type.clone()));
        }
    }
    let sites: BTreeSet<&str> = status
        .participants
        .iter()
        .map(|p| p.site.as_str())
        .collect();
    if !sites.is_empty() {
        out.push(("sites", sites.into_iter().collect::<Vec<_>>().join(",")));
    }
    out.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| Param {
            key: k.to_string(),
            value: clip(v),
        })
        .collect()
}

/// The params the run lacks. A param already there keeps its value (MLflow refuses to
/// change one): the run records the job as it started.
pub fn missing_params<'a>(
    wanted: Vec<Param>,
    present: impl IntoIterator<Item = &'a str>,
) -> Vec<Param> {
    let present: BTreeSet<&str> = present.into_iter().collect();
    wanted
        .into_iter()
        .filter(|p| !present.contains(p.key.as_str()))
        .collect()
}

/// One round's metrics, [`PARTICIPANTS`] last so that it marks the round as logged.
fn round_metrics(r: &RoundMetrics, timestamp_ms: i64) -> Vec<Metric> {
    let metric = |key: &str, value: f64| Metric {
        key: key.to_string(),
        value,
        timestamp: timestamp_ms,
        step: i64::from(r.round),
    };
    let mut out = Vec::with_capacity(4);
    out.extend(r.loss.map(|v| metric(LOSS, v)));
    out.extend(r.accuracy.map(|v| metric(ACCURACY, v)));
    out.extend(r.duration_seconds.map(|v| metric(ROUND_TIME, v)));
    out.push(metric(PARTICIPANTS, f64::from(r.participants)));
    out
}

/// One `log-batch` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Metrics of whole rounds.
    pub metrics: Vec<Metric>,
    /// Params (all in the first batch).
    pub params: Vec<Param>,
    /// The last round in it, if any.
    pub last_round: Option<i32>,
}

/// The requests that log the rounds of `history` after `logged` up to `through`, and
/// `params`: whole rounds per request (a request that fails leaves no round half
/// logged), within MLflow's limits. Empty when there is nothing to log.
pub fn batches(
    history: &[RoundMetrics],
    logged: Option<i32>,
    through: Option<i32>,
    params: Vec<Param>,
    timestamp_ms: i64,
) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut current = Batch {
        metrics: Vec::new(),
        params,
        last_round: None,
    };
    let rounds = history
        .iter()
        .filter(|r| Some(r.round) > logged && Some(r.round) <= through);
    for r in rounds {
        let metrics = round_metrics(r, timestamp_ms);
        if current.metrics.len() + current.params.len() + metrics.len() > MAX_METRICS_PER_BATCH
            && current.last_round.is_some()
        {
            out.push(std::mem::replace(
                &mut current,
                Batch {
                    metrics: Vec::new(),
                    params: Vec::new(),
                    last_round: None,
                },
            ));
        }
        current.metrics.extend(metrics);
        current.last_round = Some(r.round);
    }
    if !current.metrics.is_empty() || !current.params.is_empty() {
        out.push(current);
    }
    out
}

/// The model version to register now: the latest model of a job that succeeded, once
/// every round is logged, unless it is registered already.
pub fn model_to_register<'a>(
    status: &'a FederatedJobStatus,
    tracked: &MlflowStatus,
    now: Timestamp,
) -> Option<&'a ModelVersion> {
    let due = status.phase == Some(JobPhase::Succeeded)
        && tracked.model_version.is_none()
        && final_settled(status, now)
        && all_logged(status, tracked);
    due.then_some(status.latest_model.as_ref()).flatten()
}

/// Run status `FINISHED` (MLflow's word for a run that ended well).
pub const FINISHED: &str = "FINISHED";
/// Run status `FAILED`.
pub const FAILED: &str = "FAILED";

/// How to end the run now, if it is time: the job finished, every round is logged and,
/// for a job that succeeded with a model, the model is registered.
pub fn ending(
    status: &FederatedJobStatus,
    tracked: &MlflowStatus,
    now: Timestamp,
) -> Option<&'static str> {
    if tracked.run_status.is_some()
        || !terminal(status)
        || !final_settled(status, now)
        || !all_logged(status, tracked)
    {
        return None;
    }
    match status.phase {
        Some(JobPhase::Failed) => Some(FAILED),
        Some(JobPhase::Succeeded)
            if status.latest_model.is_none() || tracked.model_version.is_some() =>
        {
            Some(FINISHED)
        }
        _ => None,
    }
}

/// Milliseconds since the epoch, as MLflow counts time.
pub fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::federated_job::validate::tests::example_job;
    use fedsky_crds::federated_job::{
        AggregatorEndpoint, ChosenPlacement, ParticipantState, Tracking,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn round(r: i32, loss: Option<f64>) -> RoundMetrics {
        RoundMetrics {
            round: r,
            participants: if r == 0 { 0 } else { 2 },
            loss,
            accuracy: loss.map(|l| 1.0 - l),
            duration_seconds: (r > 0).then_some(3.5),
        }
    }

    fn participant(site: &str, state: ParticipantPhase) -> ParticipantState {
        ParticipantState {
            name: format!("p-{site}"),
            site: site.to_string(),
            state,
            ..Default::default()
        }
    }

    /// A job that ran `rounds` rounds (versions 0..=rounds listed), in `phase`.
    fn status(rounds: i32, phase: JobPhase, state: ParticipantPhase) -> FederatedJobStatus {
        FederatedJobStatus {
            phase: Some(phase),
            aggregator: Some(AggregatorEndpoint::default()),
            history: (0..=rounds).map(|r| round(r, Some(0.5))).collect(),
            participants: vec![participant("eu", state), participant("us", state)],
            latest_model: Some(ModelVersion {
                version: rounds,
                uri: format!("https://agg/v1/versions/{rounds}/model"),
                sha256: "ab".repeat(32),
                ..Default::default()
            }),
            completion_time: matches!(phase, JobPhase::Succeeded | JobPhase::Failed)
                .then(|| Time(t(1000))),
            ..Default::default()
        }
    }

    fn tracked(logged: Option<i32>) -> MlflowStatus {
        MlflowStatus {
            experiment_id: Some("1".into()),
            run_id: Some("r".into()),
            logged_round: logged,
            ..Default::default()
        }
    }

    #[test]
    fn the_target_defaults_to_the_job_name_and_drops_a_trailing_slash() {
        let mut job = example_job();
        assert_eq!(target(&job), None, "no tracking asked for");
        job.spec.tracking = Some(
            serde_json::from_value::<Tracking>(serde_json::json!({
                "mlflow": { "trackingUri": "http://mlflow:5000/", "experiment": " " }
            }))
            .expect("tracking"),
        );
        let name = job.name_any();
        assert_eq!(
            target(&job),
            Some(Target {
                tracking_uri: "http://mlflow:5000".into(),
                experiment: name.clone(),
                registered_model: name,
            })
        );
        job.spec.tracking = Some(
            serde_json::from_value::<Tracking>(serde_json::json!({
                "mlflow": { "trackingUri": "https://x/mlflow", "experiment": "xray",
                            "registeredModelName": "xray-cnn" }
            }))
            .expect("tracking"),
        );
        let got = target(&job).expect("target");
        assert_eq!(
            (got.experiment.as_str(), got.registered_model.as_str()),
            ("xray", "xray-cnn")
        );
    }

    #[test]
    fn a_round_settles_when_the_next_is_listed_and_the_last_when_participants_stop() {
        let now = t(1010);
        let running = status(3, JobPhase::Running, ParticipantPhase::Running);
        assert_eq!(settled_through(&running, now), Some(2));
        // Succeeded, but the participants still evaluate the final model.
        let evaluating = status(3, JobPhase::Succeeded, ParticipantPhase::Running);
        assert_eq!(settled_through(&evaluating, now), Some(2));
        // ... until they stop, or the grace has passed.
        let done = status(3, JobPhase::Succeeded, ParticipantPhase::Completed);
        assert_eq!(settled_through(&done, now), Some(3));
        assert_eq!(settled_through(&evaluating, t(1000 + 300)), Some(3));
        // A failed job's rounds are final as they are.
        let failed = status(3, JobPhase::Failed, ParticipantPhase::Running);
        assert_eq!(settled_through(&failed, now), Some(3));
        // Only the initial model listed: nothing settled yet.
        let first = status(0, JobPhase::Running, ParticipantPhase::Running);
        assert_eq!(settled_through(&first, now), None);
    }

    #[test]
    fn the_server_is_contacted_only_when_it_has_something_to_get() {
        let now = t(1010);
        let mut s = status(3, JobPhase::Running, ParticipantPhase::Running);
        assert!(needs_contact(&s, &MlflowStatus::default(), now), "no run");
        assert!(needs_contact(&s, &tracked(Some(1)), now), "round 2 settled");
        assert!(!needs_contact(&s, &tracked(Some(2)), now), "nothing new");
        s.aggregator = None;
        assert!(
            !needs_contact(&s, &MlflowStatus::default(), now),
            "not started"
        );
        let done = status(3, JobPhase::Succeeded, ParticipantPhase::Completed);
        assert!(needs_contact(&done, &tracked(Some(3)), now), "to end");
        let ended = MlflowStatus {
            run_status: Some(FINISHED.into()),
            ..tracked(Some(3))
        };
        assert!(!needs_contact(&done, &ended, now), "ended");
    }

    #[test]
    fn batches_hold_whole_rounds_after_the_logged_one_with_participants_last() {
        let s = status(3, JobPhase::Running, ParticipantPhase::Running);
        let params = vec![Param {
            key: "rounds".into(),
            value: "3".into(),
        }];
        let b = batches(&s.history, Some(0), Some(2), params.clone(), 7);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].params, params);
        assert_eq!(b[0].last_round, Some(2));
        let keys: Vec<(i64, &str)> = b[0]
            .metrics
            .iter()
            .map(|m| (m.step, m.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                (1, LOSS),
                (1, ACCURACY),
                (1, ROUND_TIME),
                (1, PARTICIPANTS),
                (2, LOSS),
                (2, ACCURACY),
                (2, ROUND_TIME),
                (2, PARTICIPANTS)
            ]
        );
        assert!(b[0].metrics.iter().all(|m| m.timestamp == 7));
        // The initial model: its evaluation, no round time, no participants' updates.
        let first = batches(&s.history, None, Some(0), Vec::new(), 7);
        let keys: Vec<&str> = first[0].metrics.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, [LOSS, ACCURACY, PARTICIPANTS]);
        assert_eq!(first[0].metrics[2].value, 0.0);
        assert!(batches(&s.history, Some(2), Some(2), Vec::new(), 7).is_empty());
    }

    #[test]
    fn many_rounds_split_between_rounds_within_the_batch_limit() {
        let history: Vec<RoundMetrics> = (1..=600).map(|r| round(r, Some(0.1))).collect();
        let b = batches(&history, None, Some(600), Vec::new(), 1);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b.metrics.len() <= MAX_METRICS_PER_BATCH));
        assert_eq!(b[0].last_round, Some(250));
        assert_eq!(b[2].last_round, Some(600));
        assert_eq!(b.iter().map(|b| b.metrics.len()).sum::<usize>(), 2400);
    }

    #[test]
    fn the_run_says_which_round_it_logged_last() {
        let latest = [(LOSS, 9), (PARTICIPANTS, 4), ("other", 12)];
        assert_eq!(logged_in_run(latest), Some(4));
        assert_eq!(logged_in_run([(LOSS, 1)]), None);
    }

    #[test]
    fn params_name_strategy_rounds_placement_and_sites_once_known() {
        let job = example_job();
        let mut s = status(1, JobPhase::Running, ParticipantPhase::Running);
        s.participants
            .push(participant("eu", ParticipantPhase::Replaced));
        let keys = |p: &[Param]| p.iter().map(|p| p.key.clone()).collect::<Vec<_>>();
        let value = |p: &[Param], k: &str| {
            p.iter()
                .find(|p| p.key == k)
                .map(|p| p.value.clone())
                .unwrap_or_default()
        };
        let before = params(&job, &FederatedJobStatus::default());
        assert!(!keys(&before).contains(&"placement".to_string()));
        assert!(!keys(&before).contains(&"sites".to_string()));
        s.placement = Some(ChosenPlacement {
            name: "xray".into(),
            summary: "aws/eu-central-1/m5.large".into(),
            ..Default::default()
        });
        let p = params(&job, &s);
        assert_eq!(value(&p, "strategy"), word(&job.spec.strategy.type_));
        assert_eq!(value(&p, "rounds"), job.spec.training.rounds.to_string());
        assert_eq!(
            value(&p, "minPerRound"),
            job.spec.participants.min_per_round.to_string()
        );
        assert_eq!(value(&p, "placement"), "aws/eu-central-1/m5.large");
        assert_eq!(value(&p, "sites"), "eu,us");
        assert_eq!(value(&p, "pool"), job.spec.participants.pool_ref.name);
        // Present params are left alone, whatever their value.
        let missing = missing_params(p.clone(), ["rounds", "sites"]);
        assert_eq!(missing.len(), p.len() - 2);
        assert!(!keys(&missing).contains(&"rounds".to_string()));
    }

    #[test]
    fn long_param_values_are_clipped_to_mlflows_limit() {
        assert_eq!(clip("é".repeat(7000)).chars().count(), MAX_PARAM_VALUE);
        assert_eq!(clip("short".into()), "short");
    }

    #[test]
    fn a_succeeded_job_registers_its_model_then_ends_finished() {
        let now = t(1010);
        let s = status(3, JobPhase::Succeeded, ParticipantPhase::Completed);
        assert_eq!(model_to_register(&s, &tracked(Some(2)), now), None);
        assert_eq!(ending(&s, &tracked(Some(2)), now), None, "round 3 first");
        let logged = tracked(Some(3));
        assert_eq!(
            model_to_register(&s, &logged, now).map(|m| m.version),
            Some(3)
        );
        assert_eq!(ending(&s, &logged, now), None, "the model first");
        let registered = MlflowStatus {
            model_version: Some("1".into()),
            ..logged
        };
        assert_eq!(model_to_register(&s, &registered, now), None);
        assert_eq!(ending(&s, &registered, now), Some(FINISHED));
        let ended = MlflowStatus {
            run_status: Some(FINISHED.into()),
            ..registered
        };
        assert_eq!(ending(&s, &ended, now), None);
    }

    #[test]
    fn a_failed_job_ends_failed_without_a_model() {
        let now = t(1010);
        let s = status(2, JobPhase::Failed, ParticipantPhase::Running);
        assert_eq!(model_to_register(&s, &tracked(Some(2)), now), None);
        assert_eq!(ending(&s, &tracked(Some(2)), now), Some(FAILED));
        let running = status(2, JobPhase::Running, ParticipantPhase::Running);
        assert_eq!(ending(&running, &tracked(Some(2)), now), None);
    }

    #[test]
    fn the_run_is_found_by_the_uid_tag() {
        assert_eq!(
            run_filter("0b9c-1"),
            "tags.`fedsky.dev/uid` = '0b9c-1'".to_string()
        );
        let mut job = example_job();
        job.metadata.uid = Some("u-1".into());
        let tags = run_tags(&job);
        assert!(tags.contains(&(UID_TAG.to_string(), "u-1".to_string())));
        assert_eq!(
            run_name(&job),
            format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
        );
    }
}
