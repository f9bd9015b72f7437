//! One-off Jobs of fedsky's images on real nodes, as `restricted` Pod Security admits
//! them: uid 65532, no privilege escalation, a read-only root, every capability dropped,
//! the runtime's seccomp profile, and one claim mounted, writable through `fsGroup`.

use crate::error::Error;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

/// A Job `name` in `namespace` that runs `image` (already on the nodes) with `args`, the
/// claim `claim` mounted at `mount_path`, once (no retries).
pub fn restricted_job(
    name: &str,
    namespace: &str,
    image: &str,
    args: &[String],
    claim: &str,
    mount_path: &str,
) -> Result<Job, Error> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "backoffLimit": 0, "template": { "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": { "runAsNonRoot": true, "fsGroup": 65532,
                                 "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "Never",
                "args": args,
                "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true, "runAsUser": 65532, "capabilities": { "drop": ["ALL"] },
                    "seccompProfile": { "type": "RuntimeDefault" } },
                "volumeMounts": [{ "name": "claim", "mountPath": mount_path }],
            }],
            "volumes": [{ "name": "claim", "persistentVolumeClaim": { "claimName": claim } }],
        } } },
    }))
    .map_err(|e| Error::Kubeconfig(format!("job manifest: {e}")))
}

/// Creates `job` and waits until it succeeds; fails as soon as it fails, or after
/// `timeout`. Returns how long it took.
pub async fn run_to_completion(
    client: &kube::Client,
    job: &Job,
    timeout: Duration,
) -> Result<Duration, Error> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    jobs.create(&PostParams::default(), job).await?;
    let start = Instant::now();
    loop {
        let st = jobs.get(&name).await?.status.unwrap_or_default();
        if st.failed.unwrap_or(0) > 0 {
            return Err(Error::Command {
                what: format!("Job {ns}/{name}"),
                stderr: format!("failed: {:?}", st.conditions),
            });
        }
        if st.succeeded.unwrap_or(0) > 0 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(Error::Command {
                what: format!("Job {ns}/{name}"),
                stderr: format!("not done after {}s: {st:?}", timeout.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
