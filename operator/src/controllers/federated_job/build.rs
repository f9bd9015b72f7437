//! Desired objects of a FederatedJob, built from a validated job: the participant Jobs
//! for the sites' clusters and the aggregator's objects for the placed cluster. Pure.

use super::aggregator_node::AggregatorNode;
use super::model_store::{self, S3Credentials, StoreKind};
use super::validate::ValidJob;
use crate::images::Images;
use crate::names::{self, AGGREGATOR_NAMESPACE, GRPC_PORT, HTTP_PORT};
use crate::pki::PkiError;
use crate::workloads::command::{self, AggregatorIo, ParticipantIo, StoreArgs, TlsPaths};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use serde_json::json;

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

pub(super) fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    // The JSON below is fixed in shape; failing to decode it is a bug caught by the tests.
    serde_json::from_value(v).expect("built object matches its Kubernetes type")
}

/// Where pods find the files of the Secrets below.
const CREDENTIALS_DIR: &str = "/var/run/fedsky";
/// Where the aggregator finds the member cluster's metrics token Secret, if there is one.
const METRICS_TOKEN_DIR: &str = "/var/run/fedsky-metrics";

fn tls_paths() -> TlsPaths<'static> {
    TlsPaths {
        ca: "/var/run/fedsky/ca.crt",
        cert: "/var/run/fedsky/tls.crt",
        key: "/var/run/fedsky/tls.key",
    }
}

/// The participant Job for `plan`, pinned to its node, with the site's data mounted
/// read-only and the aggregator endpoint and credentials (its own Secret, see
/// [`participant_secret`]) injected.
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
                    "imagePullSecrets": images.pull_secret_refs(),
                    // Secret files are the kubelet's (root, 0400) unless handed to a group:
                    // uid 65532 reads its token, key and certificates through fsGroup.
                    "securityContext": {
                        "runAsNonRoot": true,
                        "fsGroup": 65532,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "participant",
                        "image": images.participant,
                        "imagePullPolicy": images.pull_policy_value(),
                        "args": job.workload.participant(&ParticipantIo {
                            name: &name,
                            endpoint,
                            tls_domain: &names::aggregator_tls_name(&job.key),
                            tls: tls_paths(),
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
                            { "name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": true },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        data,
                        { "name": "credentials", "secret": { "secretName": name, "defaultMode": 0o400 } },
                        { "name": "tmp", "emptyDir": {} },
                    ],
                },
            },
        },
    }))
}

/// The participant's own Secret, named like its Job: the job token it presents on
/// registration, its client certificate (CN = its name, its identity) and key, and the
/// job's CA to check the aggregator against.
pub fn participant_secret(job: &ValidJob, plan: &ParticipantPlan) -> Result<Secret, PkiError> {
    let site = job.site(&plan.site);
    let name = names::participant(&job.key, &plan.site, plan.n);
    let leaf = job.ca.client(&name)?;
    let mut labels = names::labels(&job.key, "participant");
    labels.insert(names::LABEL_SITE.into(), plan.site.clone());
    Ok(from(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": site.namespace,
            "labels": labels,
            "annotations": { names::ANNOTATION_JOB: job.reference },
        },
        "type": "Opaque",
        "stringData": {
            "token": job.token.expose(),
            "ca.crt": job.ca.cert_pem,
            "tls.crt": leaf.cert_pem,
            "tls.key": leaf.key_pem,
        },
    })))
}

/// The aggregator's server certificate: valid for its Service name, which participants
/// verify whatever address they dial, and for loopback (the process runtime).
pub fn aggregator_certificate(job: &ValidJob) -> Result<crate::pki::Leaf, PkiError> {
    let svc = names::aggregator_tls_name(&job.key);
    job.ca.server(&[
        svc.clone(),
        format!("{svc}.cluster.local"),
        "localhost".into(),
        "127.0.0.1".into(),
    ])
}

/// The aggregator's objects in the placed public cluster.
#[derive(Debug, Clone)]
pub struct AggregatorObjects {
    /// Token and job configuration.
    pub secret: Secret,
    /// The S3 keys, copied from the job's credentials Secret (S3 store only).
    pub store_secret: Option<Secret>,
    /// Model store volume (volume store only).
    pub pvc: Option<PersistentVolumeClaim>,
    /// The server.
    pub deployment: Deployment,
    /// gRPC and HTTP endpoints.
    pub service: Service,
}

/// Annotation of the aggregator's pod template: a digest of its S3 keys, so new keys
/// restart it.
pub const ANNOTATION_STORE_CREDENTIALS: &str = "fl.fedsky.dev/store-credentials";

/// Builds the aggregator's Secrets, PVC (for a volume store), Deployment and Service; its
/// pod runs on `node`.
pub fn aggregator(
    job: &ValidJob,
    node: &AggregatorNode,
    images: &Images,
) -> Result<AggregatorObjects, PkiError> {
    let name = names::aggregator(&job.key);
    let labels = names::labels(&job.key, "aggregator");
    let server = aggregator_certificate(job)?;
    let meta = json!({
        "name": name,
        "namespace": AGGREGATOR_NAMESPACE,
        "labels": labels,
        "annotations": { names::ANNOTATION_JOB: job.reference },
    });
    let secret = from(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
        "stringData": {
            "token": job.token.expose(),
            "job.json": job.aggregator_file.clone(),
            "ca.crt": job.ca.cert_pem,
            "tls.crt": server.cert_pem,
            "tls.key": server.key_pem,
        },
    }));
    let (pvc, store_secret) = match &job.store.kind {
        StoreKind::Volume {
            size,
            storage_class,
        } => (
            Some(from(json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": size } },
                    "storageClassName": storage_class,
                },
            }))),
            None,
        ),
        StoreKind::S3 { credentials, .. } => (None, Some(store_secret(job, credentials))),
    };
    let deployment = aggregator_deployment(job, node, images, &meta);
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
    Ok(AggregatorObjects {
        secret,
        store_secret,
        pvc,
        deployment,
        service,
    })
}

/// The aggregator's S3 keys in a Secret of their own in the member cluster, labelled like
/// its other objects (so they go with the job).
fn store_secret(job: &ValidJob, credentials: &S3Credentials) -> Secret {
    from(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": names::aggregator_store_secret(&job.key),
            "namespace": AGGREGATOR_NAMESPACE,
            "labels": names::labels(&job.key, "aggregator"),
            "annotations": { names::ANNOTATION_JOB: job.reference },
        },
        "type": "Opaque",
        "stringData": credentials.string_data(),
    }))
}

/// The S3 keys as the aggregator's environment, each from the store Secret (the session
/// token only where the Secret has one).
fn store_env(job: &ValidJob) -> serde_json::Value {
    let secret = names::aggregator_store_secret(&job.key);
    let from_secret = |key: &str, optional: bool| json!({ "name": key, "valueFrom": { "secretKeyRef": { "name": secret, "key": key, "optional": optional } } });
    json!([
        from_secret(model_store::ACCESS_KEY_ID, false),
        from_secret(model_store::SECRET_ACCESS_KEY, false),
        from_secret(model_store::SESSION_TOKEN, true),
    ])
}

/// The aggregator's Deployment (`meta` shared with its other objects), its pod on `node`.
fn aggregator_deployment(
    job: &ValidJob,
    node: &AggregatorNode,
    images: &Images,
    meta: &serde_json::Value,
) -> Deployment {
    let name = names::aggregator(&job.key);
    let labels = names::labels(&job.key, "aggregator");
    let mut init_model = job.workload.init_model();
    init_model.extend(["--out".into(), "/models/initial.safetensors".into()]);
    let mut annotations = serde_json::Map::new();
    annotations.insert(names::ANNOTATION_JOB.into(), json!(job.reference));
    // With S3 the volume holds only the initial model, written again on every start.
    let (models, env) = match job.store.s3() {
        Some((_, credentials)) => {
            annotations.insert(
                ANNOTATION_STORE_CREDENTIALS.into(),
                json!(credentials.fingerprint()),
            );
            (json!({ "name": "models", "emptyDir": {} }), store_env(job))
        }
        None => (
            json!({ "name": "models", "persistentVolumeClaim": { "claimName": name } }),
            serde_json::Value::Null,
        ),
    };
    from(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 1,
            // Never two aggregators on one model store.
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": { names::LABEL_JOB: job.key, names::LABEL_ROLE: "aggregator" } },
            "template": {
                // The job annotation lets the member watch wake the job when its pod
                // cannot be scheduled.
                "metadata": { "labels": labels, "annotations": annotations },
                "spec": {
                    "automountServiceAccountToken": false,
                    "imagePullSecrets": images.pull_secret_refs(),
                    // A fresh volume belongs to root; the kubelet hands it to the group
                    // of uid 65532 so the model store is writable (once: OnRootMismatch).
                    "securityContext": {
                        "runAsNonRoot": true,
                        "fsGroup": 65532,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "affinity": node.affinity(),
                    // The initial global model, from the job's seed: the same bytes on
                    // every restart, and ignored once a checkpoint exists.
                    "initContainers": [{
                        "name": "init-model",
                        "image": images.participant,
                        "imagePullPolicy": images.pull_policy_value(),
                        "args": init_model,
                        "securityContext": restricted_security(),
                        "volumeMounts": [{ "name": "models", "mountPath": "/models" }],
                    }],
                    "containers": [{
                        "name": "aggregator",
                        "image": images.aggregator,
                        "imagePullPolicy": images.pull_policy_value(),
                        "args": command::aggregator(&AggregatorIo {
                            job_file: "/var/run/fedsky/job.json",
                            grpc_listen: &format!("0.0.0.0:{GRPC_PORT}"),
                            http_listen: &format!("0.0.0.0:{HTTP_PORT}"),
                            token_file: "/var/run/fedsky/token",
                            store: StoreArgs::of(&job.store, "/models"),
                            keep_versions: job.store.keep_versions,
                            initial_model: "/models/initial.safetensors",
                            tls: tls_paths(),
                            metrics_token_file: Some(&format!("{METRICS_TOKEN_DIR}/token")),
                        }),
                        "env": env,
                        "ports": [
                            { "name": "grpc", "containerPort": GRPC_PORT },
                            { "name": "http", "containerPort": HTTP_PORT },
                        ],
                        "resources": node.resources(),
                        // TCP, not httpGet: the port serves TLS and admits only the job's
                        // credentials, which the kubelet does not have. Accepting
                        // connections is what the aggregator does once it serves.
                        "readinessProbe": { "tcpSocket": { "port": "http" } },
                        "livenessProbe": { "tcpSocket": { "port": "http" } },
                        "securityContext": restricted_security(),
                        "volumeMounts": [
                            { "name": "models", "mountPath": "/models" },
                            { "name": "config", "mountPath": CREDENTIALS_DIR, "readOnly": true },
                            { "name": "metrics-token", "mountPath": METRICS_TOKEN_DIR, "readOnly": true },
                        ],
                    }],
                    "volumes": [
                        models,
                        { "name": "config", "secret": { "secretName": name, "defaultMode": 0o400 } },
                        // Optional: a cluster without the Secret runs the aggregator with
                        // /metrics open to the job's credentials only.
                        {
                            "name": "metrics-token",
                            "secret": {
                                "secretName": names::METRICS_TOKEN_SECRET,
                                "optional": true,
                                "defaultMode": 0o400,
                            },
                        },
                    ],
                },
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::valid_job;
    use super::*;
    use fedsky_crds::aggregator_placement::PlacementOption;

    /// The node of a placement on m5.large in eu-central-1, sized by the built-in catalog.
    fn m5_large() -> AggregatorNode {
        let option = PlacementOption {
            cloud: "aws".into(),
            region: "eu-central-1".into(),
            instance_type: "m5.large".into(),
            ..PlacementOption::default()
        };
        AggregatorNode::placed(&option, fedsky_placement::catalog::Catalog::builtin().ok())
    }

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
                .any(|w| w[0] == "--aggregator" && w[1] == "https://agg.example:50051")
        );
        // Its own Secret, holding its certificate.
        let creds = pod
            .volumes
            .as_ref()
            .and_then(|v| v.iter().find(|v| v.name == "credentials"))
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone());
        assert_eq!(creds, j.metadata.name);
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
        // Its Secret's files are readable by uid 65532 only through the pod's group.
        let pod_sc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(pod_sc.fs_group, Some(65532));
        let labels = j.metadata.labels.expect("labels");
        assert_eq!(labels[names::LABEL_SITE], "eu");
    }

    #[test]
    fn aggregator_objects_share_a_deterministic_name() {
        let job = valid_job();
        let a = aggregator(&job, &m5_large(), &Images::default()).expect("objects");
        let n = Some("fedsky-agg-covid-xray-covid-xray".to_string());
        assert_eq!(a.deployment.metadata.name, n);
        assert_eq!(a.service.metadata.name, n);
        assert_eq!(a.pvc.expect("a volume store").metadata.name, n);
        assert!(a.store_secret.is_none());
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

    #[test]
    fn an_s3_store_has_no_claim_and_its_keys_come_from_a_secret_reference() {
        use super::super::model_store::tests::{job_with_store, keys};
        use super::super::validate::{tests::example_pool, tests::test_ca, validate};
        let spec = job_with_store(serde_json::json!({
            "s3": { "endpoint": "http://127.0.0.1:9000", "bucket": "models", "prefix": "jobs/x",
                    "region": "eu-central-1", "credentialsSecretRef": { "name": "s3" } },
            "keepVersions": 2
        }));
        let job = validate(&spec, &example_pool(), "tok", &test_ca(), Some(keys())).expect("valid");
        let a = aggregator(&job, &m5_large(), &Images::default()).expect("objects");
        assert!(a.pvc.is_none());
        let secret = a.store_secret.expect("store secret");
        let secret_name = names::aggregator_store_secret(&job.key);
        assert_eq!(secret.metadata.name.as_deref(), Some(secret_name.as_str()));
        assert_eq!(secret.metadata.labels, a.secret.metadata.labels);
        let data = secret.string_data.expect("data");
        assert_eq!(data["AWS_ACCESS_KEY_ID"], keys().access_key_id);
        assert_eq!(data["AWS_SECRET_ACCESS_KEY"], keys().secret_access_key);
        assert!(!data.contains_key("AWS_SESSION_TOKEN"));
        // The mounted Secret does not carry them.
        let mounted = a.secret.string_data.expect("data");
        assert!(
            !mounted.keys().any(|k| k.starts_with("AWS_")),
            "{mounted:?}"
        );

        let template = a.deployment.spec.expect("spec").template;
        let pod = template.spec.expect("pod");
        let c = pod
            .containers
            .iter()
            .find(|c| c.name == "aggregator")
            .expect("aggregator");
        let args = c.args.clone().unwrap_or_default();
        let flag = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
        assert_eq!(flag("--s3-bucket").as_deref(), Some("models"));
        assert_eq!(
            flag("--s3-endpoint").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(flag("--s3-prefix").as_deref(), Some("jobs/x"));
        assert_eq!(flag("--s3-region").as_deref(), Some("eu-central-1"));
        assert_eq!(flag("--keep-versions").as_deref(), Some("2"));
        assert_eq!(flag("--store-dir"), None);
        // Keys only as references, never as values or arguments.
        let env = c.env.clone().unwrap_or_default();
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN"
            ]
        );
        for e in &env {
            assert_eq!(e.value, None, "{e:?}");
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.clone())
                .expect("secretKeyRef");
            assert_eq!(
                (r.name.as_str(), r.key.as_str()),
                (secret_name.as_str(), e.name.as_str())
            );
            assert_eq!(r.optional, Some(e.name == "AWS_SESSION_TOKEN"));
        }
        let text = serde_json::to_string(&pod).expect("json");
        assert!(
            !text.contains(&keys().secret_access_key),
            "a key in the pod spec"
        );
        assert!(
            !text.contains(&keys().access_key_id),
            "a key in the pod spec"
        );
        // The initial model goes to a scratch volume; no claim is referenced.
        let vols = pod.volumes.unwrap_or_default();
        let models = vols.iter().find(|v| v.name == "models").expect("models");
        assert!(models.empty_dir.is_some() && models.persistent_volume_claim.is_none());
        // New keys restart the pod.
        let fingerprint = template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(ANNOTATION_STORE_CREDENTIALS).cloned());
        assert_eq!(fingerprint, Some(keys().fingerprint()));
    }

    #[test]
    fn a_volume_store_has_its_claim_and_no_keys() {
        let job = valid_job();
        let a = aggregator(&job, &m5_large(), &Images::default()).expect("objects");
        let pvc = a.pvc.expect("claim");
        let req = pvc
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .expect("requests");
        assert_eq!(req["storage"].0, "1Gi");
        let pod = a.deployment.spec.expect("spec").template.spec.expect("pod");
        let c = &pod.containers[0];
        assert_eq!(c.env, None);
        let args = c.args.clone().unwrap_or_default();
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--store-dir" && w[1] == "/models")
        );
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--keep-versions" && w[1] == "10")
        );
    }

    #[test]
    fn the_aggregator_pod_is_pinned_to_the_placed_instance_and_sized_for_it() {
        let job = valid_job();
        let node = m5_large();
        let a = aggregator(&job, &node, &Images::default()).expect("objects");
        let template = a.deployment.spec.expect("spec").template;
        let pod = template.spec.expect("pod");
        fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
            serde_json::to_value(v).expect("json")
        }
        // The terms and the sizes themselves are aggregator_node's tests.
        assert_eq!(json(&pod.affinity), node.affinity());
        let agg = pod.containers.iter().find(|c| c.name == "aggregator");
        assert_eq!(
            json(&agg.and_then(|c| c.resources.clone())),
            serde_json::json!({
                "requests": { "cpu": "1430m", "memory": "5736Mi" },
                "limits": { "memory": "5736Mi" },
            })
        );
        // The model store is writable by the containers' uid through its group.
        let sc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(sc.fs_group, Some(65532));
        assert!(
            pod.containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
                .all(|c| c.security_context.as_ref().and_then(|s| s.run_as_user) == Some(65532))
        );
        // The member watch finds the job from the pod.
        let annotations = template.metadata.and_then(|m| m.annotations);
        assert_eq!(
            annotations.and_then(|a| a.get(names::ANNOTATION_JOB).cloned()),
            Some(job.reference)
        );
    }

    #[test]
    fn the_aggregator_is_probed_by_tcp_and_may_read_the_clusters_metrics_token() {
        let job = valid_job();
        let a = aggregator(&job, &m5_large(), &Images::default()).expect("objects");
        let pod = a.deployment.spec.expect("spec").template.spec.expect("pod");
        let c = &pod.containers[0];
        // The port admits only the job's credentials: the kubelet probes the socket.
        for probe in [&c.readiness_probe, &c.liveness_probe] {
            let probe = probe.as_ref().expect("probe");
            assert!(probe.http_get.is_none(), "{probe:?}");
            let tcp = probe.tcp_socket.as_ref().expect("tcpSocket");
            assert_eq!(
                tcp.port,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
            );
        }
        let volume = pod
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "metrics-token")
            .and_then(|v| v.secret)
            .expect("metrics token volume");
        assert_eq!(
            volume.secret_name.as_deref(),
            Some(names::METRICS_TOKEN_SECRET)
        );
        assert_eq!(
            volume.optional,
            Some(true),
            "clusters without it still run jobs"
        );
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "metrics-token")
            .expect("mounted");
        let args = c.args.clone().unwrap_or_default();
        let file = args
            .windows(2)
            .find(|w| w[0] == "--metrics-token-file")
            .map(|w| w[1].clone())
            .expect("--metrics-token-file");
        assert_eq!(file, format!("{}/token", mount.mount_path));
    }

    #[test]
    fn certificates_reach_the_aggregator_and_each_participant_under_its_own_name() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let job = valid_job();
        let cn = |pem: &str| -> String {
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let der = {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64")
            };
            let (_, c) = X509Certificate::from_der(&der).expect("cert");
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|n| n.as_str().ok())
                .expect("CN")
                .to_string()
        };
        let a = aggregator(&job, &m5_large(), &Images::default()).expect("objects");
        let data = a.secret.string_data.expect("data");
        assert_eq!(cn(&data["tls.crt"]), names::aggregator_tls_name(&job.key));
        assert_eq!(data["ca.crt"], job.ca.cert_pem);
        assert!(data["tls.key"].contains("PRIVATE KEY"));
        let args = a
            .deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod")
            .containers[0]
            .args
            .clone()
            .unwrap_or_default();
        assert!(
            !args.iter().any(|a| a == "--insecure-plaintext"),
            "{args:?}"
        );
        let plan = ParticipantPlan {
            site: "eu".into(),
            node: "eu-big".into(),
            n: 0,
        };
        let s = participant_secret(&job, &plan).expect("secret");
        let name = names::participant(&job.key, "eu", 0);
        assert_eq!(s.metadata.name.as_deref(), Some(name.as_str()));
        let data = s.string_data.expect("data");
        assert_eq!(cn(&data["tls.crt"]), name);
        // Built again, the same bytes: applying it is a no-op.
        assert_eq!(
            participant_secret(&job, &plan).expect("again").string_data,
            Some(data)
        );
    }
}
