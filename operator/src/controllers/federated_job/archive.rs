//! `spec.modelStore.retain`: the job's latest model copied from its aggregator into the
//! hub's model archive when the job finishes (and once more when it is deleted, should a
//! newer version exist), and dropped from the archive with a `Delete` job.

use super::context::JobContext;
use super::report::publish;
use crate::models::{ArchivedVersion, JobIndex, ModelArchive};
use fedsky_crds::FederatedJob;
use fedsky_crds::federated_job::{FederatedJobStatus, JobPhase, ModelRetention, ModelVersion};
use kube::ResourceExt;
use kube::runtime::events::EventType;
use std::time::Duration;

/// How long one model download may take before the reconcile moves on.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The job's retention (`Retain` unless it asks otherwise).
pub fn retention(job: &FederatedJob) -> ModelRetention {
    job.spec.model_store.retain.unwrap_or_default()
}

/// The version to archive now, if any: the latest one of a job that finished, or of a
/// `Retain` job being deleted, when the archive does not hold it for this job yet. Every
/// finished job's model is archived, so that it can be downloaded through the model API;
/// retention decides whether it stays once the job is gone. Pure.
pub fn to_archive<'a>(
    job: &FederatedJob,
    status: &'a FederatedJobStatus,
    archived: Option<&JobIndex>,
    deleting: bool,
) -> Option<&'a ModelVersion> {
    if deleting && retention(job) != ModelRetention::Retain {
        return None;
    }
    let finished = matches!(status.phase, Some(JobPhase::Succeeded | JobPhase::Failed));
    if !(finished || deleting) {
        return None;
    }
    let latest = status.latest_model.as_ref()?;
    let version = u64::try_from(latest.version).ok()?;
    let held = archived.is_some_and(|idx| {
        Some(idx.uid.as_str()) == job.metadata.uid.as_deref() && idx.find(Some(version)).is_some()
    });
    (!held).then_some(latest)
}

/// Why a version could not be archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveFailure {
    /// The aggregator did not serve the model.
    #[error("downloading model version {version} from the aggregator: {source}")]
    Download {
        /// The version.
        version: i32,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The archive refused it (checksum, disk).
    #[error(transparent)]
    Archive(#[from] crate::models::ArchiveError),
}

async fn download(http: &reqwest::Client, v: &ModelVersion) -> Result<Vec<u8>, ArchiveFailure> {
    let failed = |source| ArchiveFailure::Download {
        version: v.version,
        source,
    };
    let resp = http
        .get(&v.uri)
        .timeout(DOWNLOAD_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(failed)?;
    Ok(resp.bytes().await.map_err(failed)?.to_vec())
}

/// Copies `v` into the archive; blocking file work off the async threads.
async fn put(
    archive: &std::sync::Arc<ModelArchive>,
    job: &FederatedJob,
    v: &ModelVersion,
    bytes: Vec<u8>,
) -> Result<(), ArchiveFailure> {
    let archive = archive.clone();
    let (ns, name) = (job.namespace().unwrap_or_default(), job.name_any());
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let version = u64::try_from(v.version).unwrap_or_default();
    let info = ArchivedVersion {
        version,
        round: version,
        sha256: v.sha256.clone(),
        size_bytes: bytes.len() as u64,
        metrics: v.metrics.clone(),
    };
    tokio::task::spawn_blocking(move || archive.put(&ns, &name, &uid, info, &bytes))
        .await
        .map_err(|e| crate::models::ArchiveError::Io {
            op: "archive",
            path: String::new(),
            source: std::io::Error::other(e),
        })??;
    Ok(())
}

/// Archives the latest version if [`to_archive`] says so; failures become a Warning Event
/// and are tried again on the next reconcile (or given up at deletion).
pub(super) async fn keep(
    job: &FederatedJob,
    ctx: &JobContext,
    status: &FederatedJobStatus,
    http: &reqwest::Client,
    deleting: bool,
) {
    let Some(archive) = &ctx.shared.archive else {
        return;
    };
    let index = archive
        .index(&job.namespace().unwrap_or_default(), &job.name_any())
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "model archive index unreadable; archiving again");
            None
        });
    let Some(v) = to_archive(job, status, index.as_ref(), deleting) else {
        return;
    };
    let result = match download(http, v).await {
        Ok(bytes) => put(archive, job, v, bytes).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            publish(
                ctx,
                job,
                EventType::Normal,
                "ModelRetained",
                &format!(
                    "model version {} (sha256 {}) archived in the hub; it outlives the job",
                    v.version, v.sha256
                ),
            )
            .await;
        }
        Err(e) => {
            publish(
                ctx,
                job,
                EventType::Warning,
                "ModelNotRetained",
                &format!(
                    "{e}{}",
                    if deleting {
                        "; the job is deleted without it"
                    } else {
                        "; retrying"
                    }
                ),
            )
            .await;
        }
    }
}

/// At deletion: a `Retain` job's newest version is archived if it is not yet (as far as
/// the aggregator still answers); a `Delete` job's archived models are removed.
pub(super) async fn on_delete(job: &FederatedJob, ctx: &JobContext) {
    let Some(archive) = &ctx.shared.archive else {
        return;
    };
    let (ns, name) = (job.namespace().unwrap_or_default(), job.name_any());
    match retention(job) {
        ModelRetention::Retain => {
            let status = job.status.clone().unwrap_or_default();
            let index = archive.index(&ns, &name).ok().flatten();
            if to_archive(job, &status, index.as_ref(), true).is_none() {
                return;
            }
            // The job ran, so its credentials exist and are only read here.
            let client = match super::dereference::credentials(ctx, job).await {
                Ok(creds) => ctx
                    .aggregator_client(&crate::names::job_key(&ns, &name), &creds.ca)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match client {
                Ok(client) => keep(job, ctx, &status, &client, true).await,
                Err(e) => tracing::warn!(error = %e, "no client to archive the job's model"),
            }
        }
        ModelRetention::Delete => {
            let ours = archive
                .index(&ns, &name)
                .ok()
                .flatten()
                .is_some_and(|idx| Some(idx.uid.as_str()) == job.metadata.uid.as_deref());
            if ours && let Err(e) = archive.remove(&ns, &name) {
                tracing::warn!(error = %e, "removing the job's archived models failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::federated_job::ModelStore;

    fn job(retain: Option<ModelRetention>) -> FederatedJob {
        let mut j = crate::controllers::federated_job::validate::tests::example_job();
        j.metadata.uid = Some("u1".into());
        j.spec.model_store = ModelStore {
            retain,
            ..Default::default()
        };
        j
    }

    fn status(phase: JobPhase, version: i32) -> FederatedJobStatus {
        FederatedJobStatus {
            phase: Some(phase),
            latest_model: Some(ModelVersion {
                version,
                uri: "https://agg/v1/versions/3/model".into(),
                sha256: "ab".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn index(uid: &str, versions: &[u64]) -> JobIndex {
        JobIndex {
            uid: uid.into(),
            versions: versions
                .iter()
                .map(|v| ArchivedVersion {
                    version: *v,
                    round: *v,
                    sha256: "ab".into(),
                    size_bytes: 1,
                    metrics: Default::default(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_finished_retained_job_archives_its_latest_version_once() {
        let j = job(None);
        let done = status(JobPhase::Succeeded, 3);
        assert_eq!(
            to_archive(&j, &done, None, false).map(|v| v.version),
            Some(3)
        );
        assert!(to_archive(&j, &done, Some(&index("u1", &[3])), false).is_none());
        // A newer version than the archived one, or another job's archive: archive again.
        assert!(to_archive(&j, &done, Some(&index("u1", &[2])), false).is_some());
        assert!(to_archive(&j, &done, Some(&index("u0", &[3])), false).is_some());
    }

    #[test]
    fn running_jobs_archive_when_deleted_and_delete_jobs_only_while_they_exist() {
        let running = status(JobPhase::Running, 2);
        assert!(to_archive(&job(None), &running, None, false).is_none());
        assert!(to_archive(&job(None), &running, None, true).is_some());
        let done = status(JobPhase::Failed, 2);
        let delete = job(Some(ModelRetention::Delete));
        assert!(to_archive(&delete, &done, None, false).is_some());
        assert!(to_archive(&delete, &done, None, true).is_none());
        assert!(to_archive(&job(None), &FederatedJobStatus::default(), None, true).is_none());
    }
}
