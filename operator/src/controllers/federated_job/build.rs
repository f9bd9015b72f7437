//! Desired objects of a FederatedJob, built from a validated job: the participant Jobs
//! for the sites' clusters and the aggregator's objects for the placed cluster. Pure.

use super::command::ParticipantIo;
use super::names::{self, AGGREGATOR_NAMESPACE, GRPC_PORT, HTTP_PORT};
use super::validate::ValidJob;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use serde_json::json;

/// Container images the operator starts.
#[derive(Debug, Clone)]
pub struct Images {
    /// Aggregator image.
    pub aggregator: String,
    /// Participant image.
    pub participant: String,
}

impl Default for Images {
    fn default() -> Self {
        let v = env!("CARGO_PKG_VERSION");
        Self {
            aggregator: format!("ghcr.io/fedsky/fedsky-aggregator:{v}"),
            participant: format!("ghcr.io/fedsky/fedsky-participant:{v}"),
        }
    }
}

/// One participant to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantPlan {
    /// Site name.
    pub site: String,
    /// Node to pin to.
    pub node: String,
    /// Sequence number at the site (grows with replacements).
    pub n: u32,
}

fn restricted_security() -> serde_json::Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" }
    })
}

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    // The JSON below is fixed in shape; failing to decode it is a bug caught by the tests.
    serde_json::from_value(v).expect("built object matches its Kubernetes type")
}

/// The participant Job for `plan`, pinned to its node, with the site's data mounted
/// read-only and the aggregator endpoint and credentials injected.
pub fn participant_job(
    job: &ValidJob,
    plan: &ParticipantPlan,
    endpoint: &str,
    images: &Images,
) -> Job {
    let site = job.site(&plan.site);
    let name = names::participant(&job.key, &plan.site, plan.n);
    let mut labels = names::labels(&job.key, "participant");
    labels.insert(names::LABEL_SITE.into(), plan.site.clone());
    let data = match (
        &site.data_volume.persistent_volume_claim,
        &site.data_volume.host_path,
    ) {
        (Some(claim), _) => {
            json!({ "name": "data", "persistentVolumeClaim": { "claimName": claim, "readOnly": true } })
        }
        (None, Some(path)) => {
            json!({ "name": "data", "hostPath": { "path": path, "type": "Directory" } })
        }
        (None, None) => json!({ "name": "data", "emptyDir": {} }),
    };
    let requests = json!({
        "cpu": format!("{}m", job.need.cpu_millis),
        "memory": job.need.memory_bytes.to_string(),
    });
    let mut resources = json!({ "requests": requests });
    if job.need.gpus > 0 {
        resources["requests"]["nvidia.com/gpu"] = json!(job.need.gpus.to_string());
        resources["limits"] = json!({ "nvidia.com/gpu": job.need.gpus.to_string() });
    }
    from(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": site.namespace,
            "labels": labels,
            "annotations": { names::ANNOTATION_JOB: job.reference },
        },
        "spec": {
            // A failed participant is replaced on another node by the orchestrator rather
            // than retried in place.
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "nodeName": plan.node,
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "participant",
                        "image": images.participant,
                        "args": job.workload.participant(&ParticipantIo {
                            name: &name,
                            aggregator_url: &format!("http://{endpoint}"),
                            data_root: "/data",
                            token_file: "/var/run/fedsky/token",
                            state_dir: "/tmp/fedsky-state",
                        }),
                        "env": [
                            { "name": "FEDSKY_SITE", "value": plan.site },
                            { "name": "FEDSKY_DEVICE", "value": "auto" },
                        ],
                        "resources": resources,
                        "securityContext": restricted_security(),
                        "volumeMounts": [
                            { "name": "data", "mountPath": "/data", "readOnly": true },
                            { "name": "credentials", "mountPath": "/var/run/fedsky", "readOnly": true },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        data,
                        { "name": "credentials", "secret": { "secretName": names::participant_secret(&job.key) } },
                        { "name": "tmp", "emptyDir": {} },
                    ],
                },
            },
        },
    }))
}

/// The Secret with the job token that participants present on registration.
pub fn participant_secret(job: &ValidJob, namespace: &str) -> Secret {
    from(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": names::participant_secret(&job.key),
            "namespace": namespace,
            "labels": names::labels(&job.key, "participant"),
            "annotations": { names::ANNOTATION_JOB: job.reference },
        },
        "type": "Opaque",
        "stringData": { "token": job.token },
    }))
}

/// The aggregator's objects in the placed public cluster.
#[derive(Debug, Clone)]
pub struct AggregatorObjects {
    /// Token and job configuration.
    pub secret: Secret,
    /// Model store volume.
    pub pvc: PersistentVolumeClaim,
    /// The server.
    pub deployment: Deployment,
    /// gRPC and HTTP endpoints.
    pub service: Service,
}

/// Builds the aggregator's Secret, PVC, Deployment and Service.
pub fn aggregator(job: &ValidJob, images: &Images) -> AggregatorObjects {
    let name = names::aggregator(&job.key);
    let labels = names::labels(&job.key, "aggregator");
    let mut init_model = job.workload.init_model();
    init_model.extend(["--out".into(), "/models/initial.safetensors".into()]);
    let meta = json!({
        "name": name,
        "namespace": AGGREGATOR_NAMESPACE,
        "labels": labels,
        "annotations": { names::ANNOTATION_JOB: job.reference },
    });
    let secret = from(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
        "stringData": { "token": job.token, "job.json": job.aggregator_config.to_string() },
    }));
    let pvc = from(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": job.store_size } },
            "storageClassName": job.storage_class,
        },
    }));
    let deployment = from(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 1,
            // Never two aggregators on one model store.
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": { names::LABEL_JOB: job.key, names::LABEL_ROLE: "aggregator" } },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                    // The initial global model, from the job's seed: the same bytes on
                    // every restart, and ignored once a checkpoint exists.
                    "initContainers": [{
                        "name": "init-model",
                        "image": images.participant,
                        "args": init_model,
                        "securityContext": restricted_security(),
                        "volumeMounts": [{ "name": "models", "mountPath": "/models" }],
                    }],
                    "containers": [{
                        "name": "aggregator",
                        "image": images.aggregator,
                        "args": [
                            "--job", "/var/run/fedsky/job.json",
                            "--grpc-listen", format!("0.0.0.0:{GRPC_PORT}"),
                            "--http-listen", format!("0.0.0.0:{HTTP_PORT}"),
                            "--token-file", "/var/run/fedsky/token",
                            "--store-dir", "/models",
                            "--initial-model", "/models/initial.safetensors",
                            // Per-job mTLS certificates are not issued yet; see docs/operations.md.
                            "--insecure-plaintext",
                        ],
                        "ports": [
                            { "name": "grpc", "containerPort": GRPC_PORT },
                            { "name": "http", "containerPort": HTTP_PORT },
                        ],
                        "readinessProbe": { "httpGet": { "path": "/readyz", "port": "http" } },
                        "livenessProbe": { "httpGet": { "path": "/healthz", "port": "http" } },
                        "securityContext": restricted_security(),
                        "volumeMounts": [
                            { "name": "models", "mountPath": "/models" },
                            { "name": "config", "mountPath": "/var/run/fedsky", "readOnly": true },
                        ],
                    }],
                    "volumes": [
                        { "name": "models", "persistentVolumeClaim": { "claimName": name } },
                        { "name": "config", "secret": { "secretName": name } },
                    ],
                },
            },
        },
    }));
    let service = from(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {
            // Participants in private clouds dial out to it.
            "type": "LoadBalancer",
            "selector": { names::LABEL_JOB: job.key, names::LABEL_ROLE: "aggregator" },
            "ports": [
                { "name": "grpc", "port": GRPC_PORT, "targetPort": "grpc" },
                { "name": "http", "port": HTTP_PORT, "targetPort": "http" },
            ],
        },
    }));
    AggregatorObjects {
        secret,
        pvc,
        deployment,
        service,
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::valid_job;
    use super::*;

    #[test]
    fn participant_job_is_pinned_read_only_and_credentialed() {
        let job = valid_job();
        let plan = ParticipantPlan {
            site: "eu".into(),
            node: "eu-big".into(),
            n: 2,
        };
        let j = participant_job(&job, &plan, "agg.example:50051", &Images::default());
        assert_eq!(
            j.metadata.name.as_deref(),
            Some("fedsky-p-covid-xray-covid-xray-eu-2")
        );
        assert_eq!(j.metadata.namespace.as_deref(), Some("fedsky-participants"));
        let spec = j.spec.expect("spec");
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.node_name.as_deref(), Some("eu-big"));
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap_or_default();
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--aggregator" && w[1] == "http://agg.example:50051")
        );
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--data" && w[1] == "/data/covid19-radiography")
        );
        let data = c
            .volume_mounts
            .as_ref()
            .and_then(|m| m.iter().find(|m| m.name == "data"))
            .expect("data mount");
        assert_eq!(data.read_only, Some(true));
        let vols = pod.volumes.unwrap_or_default();
        let claim = vols
            .iter()
            .find_map(|v| v.persistent_volume_claim.clone())
            .expect("pvc");
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("chest-xray-eu", Some(true))
        );
        let req = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .expect("requests");
        assert_eq!(req["cpu"].0, "2000m");
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let labels = j.metadata.labels.expect("labels");
        assert_eq!(labels[names::LABEL_SITE], "eu");
    }

    #[test]
    fn aggregator_objects_share_a_deterministic_name() {
        let job = valid_job();
        let a = aggregator(&job, &Images::default());
        let n = Some("fedsky-agg-covid-xray-covid-xray".to_string());
        assert_eq!(a.deployment.metadata.name, n);
        assert_eq!(a.service.metadata.name, n);
        assert_eq!(a.pvc.metadata.name, n);
        assert_eq!(a.secret.metadata.name, n);
        let d = a.deployment.spec.expect("spec");
        assert_eq!(
            d.strategy.and_then(|s| s.type_).as_deref(),
            Some("Recreate")
        );
        assert_eq!(
            a.service.spec.and_then(|s| s.type_).as_deref(),
            Some("LoadBalancer")
        );
    }
}
