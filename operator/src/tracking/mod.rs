//! Experiment tracking: a FederatedJob's `spec.tracking.mlflow` made true. After each
//! lifecycle reconcile has written the job's status, [`sync`] brings the job's MLflow run
//! up to date with it: the run (created once, with the job's parameters), each round's
//! metrics once they are final, the final model as an artifact registered as a model
//! version, and the run's end.
//!
//! [`plan`] decides what the run lacks (pure), [`mlflow`] is a thin REST client,
//! [`credentials`] reads the Secret's keys. Progress is recorded in
//! `status.tracking.mlflow`, but the run itself is the reference: it is found again by its
//! UID tag and the rounds it holds are read from its metrics, so an operator that stopped
//! between a call and the status write neither creates a second run nor logs a round
//! twice.
//!
//! A tracking server that fails never fails the job (tracking is a record of the
//! training, not part of it): the reason goes into `status.tracking.mlflow.message`, a
//! Warning Event `TrackingFailed` and the log, and the next reconcile tries again.

pub mod credentials;
pub mod mlflow;
pub mod plan;

use crate::Context;
use credentials::CredentialsError;
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::{FederatedJobStatus, MlflowStatus, ModelVersion};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use mlflow::{Auth, Mlflow, MlflowError};
use std::time::Duration;

/// Field manager of the `status.tracking` writes (the rest of the status is the
/// controller's, written whole by [`crate::status_patch`]).
pub const FIELD_MANAGER: &str = "fedsky-operator-tracking";
/// Longest download of the final model from the aggregator.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Most characters of `status.tracking.mlflow.message`.
const MAX_MESSAGE: usize = 1024;

/// Why a sync with the tracking server stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// The credentials Secret cannot be used.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The credentials Secret could not be read from the hub.
    #[error("reading Secret {secret}")]
    ReadSecret {
        /// `namespace/name`.
        secret: String,
        /// The hub's error.
        #[source]
        source: kube::Error,
    },
    /// The tracking server failed a call.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The experiment is deleted: MLflow keeps its name, so it cannot be created again.
    #[error(
        "MLflow experiment {name:?} is deleted; restore it (`mlflow experiments restore`) or set spec.tracking.mlflow.experiment to another name"
    )]
    ExperimentDeleted {
        /// Its name.
        name: String,
    },
    /// No client of the job's aggregator to download the final model with.
    #[error("no client for the job's aggregator to download model version {version} with")]
    NoAggregatorClient {
        /// The version.
        version: i32,
    },
    /// The aggregator did not serve the final model.
    #[error("downloading model version {version} from the aggregator")]
    Download {
        /// The version.
        version: i32,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// The aggregator served other bytes than status names.
    #[error(
        "model version {version} from the aggregator has sha256 {got}, not {want} as status says; not uploaded"
    )]
    Digest {
        /// The version.
        version: i32,
        /// Its digest in status.
        want: String,
        /// The digest of what was served.
        got: String,
    },
}

/// `e` and its causes, `: `-separated: what a user reads in status and Events.
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    match out.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => {
            out.truncate(i);
            out.push('…');
            out
        }
        None => out,
    }
}

/// Brings the job's MLflow run up to date with `status` (the status this reconcile wrote)
/// and records how far it got in `status.tracking.mlflow`. `http` calls the tracking
/// server (public trust roots); `aggregator` is the job's client of its aggregator's model
/// manager, for the final model. Never fails: see the module's documentation.
pub async fn sync(
    shared: &Context,
    http: &reqwest::Client,
    aggregator: Option<&reqwest::Client>,
    job: &FederatedJob,
    status: &FederatedJobStatus,
) {
    let Some(target) = plan::target(job) else {
        return;
    };
    let now = Timestamp::now();
    let tracked = status
        .tracking
        .as_ref()
        .and_then(|t| t.mlflow.clone())
        .unwrap_or_default();
    if !plan::needs_contact(status, &tracked, now) {
        return;
    }
    let mut next = tracked.clone();
    let outcome = Attempt {
        shared,
        http,
        aggregator,
        job,
        status,
        target: &target,
        now,
    }
    .run(&mut next)
    .await;
    next.message = outcome.as_ref().err().map(|e| describe(e));
    if let Some(why) = &next.message {
        tracing::warn!(job = %job.name_any(), error = %why, "experiment tracking failed");
        // One Event per new reason, not one per reconcile.
        if tracked.message != next.message {
            publish(shared, job, EventType::Warning, "TrackingFailed", why).await;
        }
    }
    if tracked.run_id.is_none()
        && let Some(run) = &next.run_id
    {
        let note = format!("MLflow run {run} in experiment {:?}", target.experiment);
        publish(shared, job, EventType::Normal, "TrackingStarted", &note).await;
    }
    if tracked.model_version.is_none()
        && let Some(v) = &next.model_version
    {
        let note = format!(
            "final model registered in MLflow as {} version {v}",
            target.registered_model
        );
        publish(shared, job, EventType::Normal, "ModelRegistered", &note).await;
    }
    if next != tracked
        && let Err(e) = write(shared, job, &next).await
    {
        // The run holds what was logged; the next sync finds it there.
        tracing::warn!(job = %job.name_any(), error = %e, "cannot record tracking in status");
    }
}

/// One sync's inputs.
struct Attempt<'a> {
    shared: &'a Context,
    http: &'a reqwest::Client,
    aggregator: Option<&'a reqwest::Client>,
    job: &'a FederatedJob,
    status: &'a FederatedJobStatus,
    target: &'a plan::Target,
    now: Timestamp,
}

impl Attempt<'_> {
    /// The steps in order, each recorded in `next` as soon as it is done, so that a later
    /// failure keeps the earlier progress.
    async fn run(&self, next: &mut MlflowStatus) -> Result<(), TrackingError> {
        let auth = self.auth().await?;
        let client = Mlflow::new(self.http, &self.target.tracking_uri, auth);
        let run = self.run_of(&client, next).await?;
        let logged = next.logged_round.max(plan::logged_in_run(
            run.data.metrics.iter().map(|m| (m.key.as_str(), m.step)),
        ));
        next.logged_round = logged;
        let params = plan::missing_params(
            plan::params(self.job, self.status),
            run.data.params.iter().map(|p| p.key.as_str()),
        );
        let through = plan::settled_through(self.status, self.now);
        let timestamp = plan::millis(self.now);
        for batch in plan::batches(&self.status.history, logged, through, params, timestamp) {
            client
                .log_batch(&run.info.run_id, &batch.metrics, &batch.params)
                .await?;
            next.logged_round = next.logged_round.max(batch.last_round);
        }
        if let Some(model) = plan::model_to_register(self.status, next, self.now) {
            self.register(&client, &run.info, model, next).await?;
        }
        if let Some(word) = plan::ending(self.status, next, self.now) {
            let end = self
                .status
                .completion_time
                .as_ref()
                .map_or(self.now, |t| t.0);
            client
                .end_run(&run.info.run_id, word, plan::millis(end))
                .await?;
            next.run_status = Some(word.to_string());
        }
        Ok(())
    }

    /// The credentials from the Secret the job names; none when it names none.
    async fn auth(&self) -> Result<Auth, TrackingError> {
        let Some(name) = credentials::secret_name(self.job, &self.shared.secrets)? else {
            return Ok(Auth::None);
        };
        let ns = self.job.namespace().unwrap_or_default();
        let secret = format!("{ns}/{name}");
        let found = Api::<Secret>::namespaced(self.shared.client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|source| TrackingError::ReadSecret {
                secret: secret.clone(),
                source,
            })?
            .ok_or(CredentialsError::NotFound {
                secret: secret.clone(),
            })?;
        Ok(credentials::auth(&secret, &found.data.unwrap_or_default())?)
    }

    /// The experiment's ID: the recorded one, else the one named (created when missing).
    async fn experiment(
        &self,
        client: &Mlflow<'_>,
        next: &mut MlflowStatus,
    ) -> Result<String, TrackingError> {
        if let Some(id) = &next.experiment_id {
            return Ok(id.clone());
        }
        let name = &self.target.experiment;
        let id = match client.experiment_by_name(name).await? {
            Some(e) if e.lifecycle_stage == "deleted" => {
                return Err(TrackingError::ExperimentDeleted { name: name.clone() });
            }
            Some(e) => e.experiment_id,
            None => match client.create_experiment(name).await {
                Ok(id) => id,
                // Another job created it meanwhile.
                Err(e) if e.code() == Some(mlflow::RESOURCE_ALREADY_EXISTS) => client
                    .experiment_by_name(name)
                    .await?
                    .map(|e| e.experiment_id)
                    .ok_or(e)?,
                Err(e) => return Err(e.into()),
            },
        };
        next.experiment_id = Some(id.clone());
        Ok(id)
    }

    /// The job's run: the recorded one, else the one tagged with the job's UID, else a new
    /// one. A recorded run that is gone (deleted, or the job now names another server)
    /// is forgotten with everything recorded about it, and looked up or created afresh.
    async fn run_of(
        &self,
        client: &Mlflow<'_>,
        next: &mut MlflowStatus,
    ) -> Result<mlflow::Run, TrackingError> {
        if let Some(id) = next.run_id.clone() {
            match client.get_run(&id).await {
                Ok(run) if run.info.lifecycle_stage != "deleted" => return Ok(run),
                Ok(_) => {}
                Err(e) if e.code() == Some(mlflow::RESOURCE_DOES_NOT_EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(job = %self.job.name_any(), run = %id, "MLflow run gone; starting over");
            *next = MlflowStatus::default();
        }
        let experiment = self.experiment(client, next).await?;
        let uid = self.job.uid().unwrap_or_default();
        let found = client
            .search_runs(&experiment, &plan::run_filter(&uid))
            .await?
            .into_iter()
            .next();
        let run = match found {
            Some(run) => run,
            None => {
                let start = self.status.start_time.as_ref().map_or(self.now, |t| t.0);
                client
                    .create_run(
                        &experiment,
                        &plan::run_name(self.job),
                        plan::millis(start),
                        &plan::run_tags(self.job),
                    )
                    .await?
            }
        };
        next.run_id = Some(run.info.run_id.clone());
        Ok(run)
    }

    /// Uploads the final model into the run's artifacts and registers it as a version of
    /// the registered model, unless the run already has a version there (an earlier sync
    /// registered it but could not record it).
    async fn register(
        &self,
        client: &Mlflow<'_>,
        run: &mlflow::RunInfo,
        model: &ModelVersion,
        next: &mut MlflowStatus,
    ) -> Result<(), TrackingError> {
        let name = &self.target.registered_model;
        next.registered_model = Some(name.clone());
        let existing = client
            .model_versions_of_run(&run.run_id)
            .await?
            .into_iter()
            .find(|v| v.name == *name);
        if let Some(v) = existing {
            next.model_version = Some(v.version);
            return Ok(());
        }
        let bytes = self.download(model).await?;
        let path = format!("{}/{}", plan::MODEL_DIR, plan::MODEL_FILE);
        client
            .upload_artifact(&run.artifact_uri, &path, bytes)
            .await?;
        client.ensure_registered_model(name).await?;
        let source = format!(
            "{}/{}",
            run.artifact_uri.trim_end_matches('/'),
            plan::MODEL_DIR
        );
        let tags = [
            mlflow::Param {
                key: plan::JOB_TAG.to_string(),
                value: plan::run_name(self.job),
            },
            mlflow::Param {
                key: "fedsky.dev/round".to_string(),
                value: model.version.to_string(),
            },
            mlflow::Param {
                key: "sha256".to_string(),
                value: model.sha256.clone(),
            },
        ];
        let created = client
            .create_model_version(name, &source, &run.run_id, &tags)
            .await?;
        next.model_version = Some(created.version);
        Ok(())
    }

    /// The model's bytes from the aggregator, checked against the sha256 status names.
    async fn download(&self, model: &ModelVersion) -> Result<Vec<u8>, TrackingError> {
        let version = model.version;
        let http = self
            .aggregator
            .ok_or(TrackingError::NoAggregatorClient { version })?;
        let failed = |source| TrackingError::Download { version, source };
        let bytes = http
            .get(&model.uri)
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?
            .bytes()
            .await
            .map_err(failed)?;
        let got = sha256_hex(&bytes);
        if !got.eq_ignore_ascii_case(&model.sha256) {
            return Err(TrackingError::Digest {
                version,
                want: model.sha256.clone(),
                got,
            });
        }
        Ok(bytes.to_vec())
    }
}

/// Lower-case hex sha256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `status.tracking` patch for `m`: every field, `null` where unset, so that a JSON
/// merge patch clears what is no longer true (such as a message after a success).
fn patch_body(m: &MlflowStatus) -> serde_json::Value {
    serde_json::json!({ "status": { "tracking": { "mlflow": {
        "experimentId": m.experiment_id,
        "runId": m.run_id,
        "loggedRound": m.logged_round,
        "registeredModel": m.registered_model,
        "modelVersion": m.model_version,
        "runStatus": m.run_status,
        "message": m.message,
    } } } })
}

/// Writes `m` as `status.tracking.mlflow` with a merge patch of that field alone. The
/// controller's whole-status apply carries it on from the status it read (status
/// computation starts from the previous status).
async fn write(shared: &Context, job: &FederatedJob, m: &MlflowStatus) -> Result<(), kube::Error> {
    let api = Api::<FederatedJob>::namespaced(
        shared.client.clone(),
        &job.namespace().unwrap_or_default(),
    );
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch_status(&job.name_any(), &params, &Patch::Merge(&patch_body(m)))
        .await?;
    Ok(())
}

/// Publishes an Event on `job`, a few at a time (the controllers' shared budget).
async fn publish(shared: &Context, job: &FederatedJob, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Track".into(),
        secondary: None,
    };
    let _slot = shared.events.acquire().await;
    if let Err(e) = shared.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_names_every_field_so_a_merge_clears_stale_ones() {
        let full = MlflowStatus {
            experiment_id: Some("1".into()),
            run_id: Some("r".into()),
            logged_round: Some(3),
            registered_model: Some("m".into()),
            model_version: Some("2".into()),
            run_status: Some("FINISHED".into()),
            message: Some("x".into()),
        };
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let serialised = serde_json::to_value(&full).expect("json");
        let body = patch_body(&full);
        let patched = &body["status"]["tracking"]["mlflow"];
        assert_eq!(keys(patched), keys(&serialised));
        assert_eq!(patched, &serialised);
        let cleared = patch_body(&MlflowStatus::default());
        assert!(cleared["status"]["tracking"]["mlflow"]["message"].is_null());
    }

    #[test]
    fn messages_carry_the_causes() {
        let e = TrackingError::Mlflow(MlflowError::api(
            "runs/create",
            500,
            "INTERNAL_ERROR".into(),
            "boom".into(),
        ));
        assert_eq!(
            describe(&e),
            "MLflow runs/create: HTTP 500 INTERNAL_ERROR: boom"
        );
        let long = TrackingError::ExperimentDeleted {
            name: "x".repeat(2000),
        };
        assert_eq!(describe(&long).chars().count(), MAX_MESSAGE + 1);
    }

    #[test]
    fn digests_are_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
