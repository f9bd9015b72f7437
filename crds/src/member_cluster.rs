//! `MemberCluster`: a Kubernetes cluster fedsky can place aggregators or participants in.

use crate::common::{CloudProvider, SecretKeyRef};
use crate::conditions::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A cluster that fedsky reaches with the kubeconfig in a Secret: a public-cloud cluster
/// (EKS, GKE) where aggregators may run, or a private cluster (OpenStack) holding a data
/// owner's participants.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fl.fedsky.dev",
    version = "v1alpha1",
    kind = "MemberCluster",
    doc = "A Kubernetes cluster fedsky federates: a public cluster that may host aggregators or a private cluster that holds a data owner's participants.",
    plural = "memberclusters",
    shortname = "mc",
    category = "fedsky",
    status = "MemberClusterStatus",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Reachable", type_ = "boolean", json_path = ".status.reachable"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodes"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterSpec {
    /// Cloud platform the cluster runs on: `aws`, `gcp` or `openstack`. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.provider is immutable"))]
    pub provider: CloudProvider,
    /// Region of the cluster in the provider's naming (for example `eu-central-1`,
    /// `asia-northeast3`, or an OpenStack region such as `RegionOne`). Placement uses it
    /// to look up latency and prices.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-zA-Z0-9][a-zA-Z0-9-]*$"))]
    pub region: String,
    /// `public` clusters may host aggregators; `private` clusters only host participants
    /// next to their data.
    #[serde(default)]
    pub tier: ClusterTier,
    /// Secret holding a kubeconfig for this cluster (key defaults to `kubeconfig`).
    /// `namespace` is required because MemberCluster is cluster-scoped; it must be the
    /// operator's namespace or one it was given to read (chart value
    /// `rbac.secretNamespaces`), else `Ready` is False with `KubeconfigSecretNotReadable`.
    #[x_kube(validation = Rule::new("has(self.__namespace__)").message("spec.kubeconfigSecretRef.namespace is required for a cluster-scoped MemberCluster"))]
    pub kubeconfig_secret_ref: SecretKeyRef,
    /// Secret with cloud credentials for this provider; the operator checks them with the
    /// cloud and reports `CredentialsValid` with the identity and expiry. The keys per
    /// provider are listed in docs/clouds.md; for GCP, `key` names the entry holding the
    /// service-account key file (default `credentials.json`). The namespace rule of
    /// `kubeconfigSecretRef` applies (reason `SecretNotReadable`). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("has(self.__namespace__)").message("spec.credentialsSecretRef.namespace is required for a cluster-scoped MemberCluster"))]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// Seconds between reachability probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 3600))]
    pub probe_interval_seconds: Option<i32>,
}

/// Whether a cluster is public (may host aggregators) or private (participants only).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterTier {
    // Public cloud: aggregators may run here.
    Public,
    // Private cloud: participants only; data never leaves.
    #[default]
    Private,
}

/// Observed state of a MemberCluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Ready`, `Reconciling`, `Stalled`, `CredentialsValid`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// Whether the last probe reached the cluster's API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// Kubernetes version reported by the cluster (for example `v1.35.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Number of nodes in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i32>,
    /// Number of nodes that are Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes: Option<i32>,
    /// When the cluster was last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
}
