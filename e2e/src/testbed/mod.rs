//! A hub and member clusters described by a file: the single-machine stand-in for a
//! multi-cloud fedsky installation (the quickstart and the experiments run on it).
//!
//! With simulated nodes the hub serves fedsky's CRDs; each member is its own control
//! plane with kwok nodes, registered on the hub as a MemberCluster with its kubeconfig in
//! a Secret, just as the Terraform modules register real clusters. With real nodes
//! ([`real`]) the clusters run containers and the hub waits for fedsky's chart.

mod config;
mod real;

pub use config::{DataConfig, HubConfig, MemberConfig, NodeConfig, RealNodeConfig, TestbedConfig};

use crate::{ControlPlane, Error, Options, RealNode};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use std::collections::BTreeMap;

/// Namespace of the kubeconfig Secrets on the hub.
pub const SYSTEM_NAMESPACE: &str = "fedsky-system";

/// Running clusters; dropping it stops them all.
#[derive(Debug)]
pub struct Testbed {
    /// Nodes that run containers, the hub's first, then the members' in the file's order.
    /// Declared first so they stop before their clusters.
    pub nodes: Vec<RealNode>,
    /// The members' load balancers (real nodes only), which serve while held.
    _load_balancers: Vec<crate::load_balancer::LoadBalancers>,
    /// The hub.
    pub hub: ControlPlane,
    /// Members by name, in the file's order.
    pub members: Vec<(MemberConfig, ControlPlane)>,
}

impl Testbed {
    /// Starts the hub and every member. With simulated nodes, registers the nodes and the
    /// MemberClusters; with real nodes, see [`real::start`].
    pub async fn start(config: &TestbedConfig) -> Result<Self, Error> {
        config.validate()?;
        if config.has_real_nodes() {
            return real::start(config).await;
        }
        let names: Vec<String> = config.members.iter().map(|m| m.name.clone()).collect();
        let (hub, planes) = tokio::task::spawn_blocking(move || {
            let hub = ControlPlane::start(&Options::api_only("hub"))?;
            hub.install_fedsky_crds()?;
            let planes = names
                .iter()
                .map(|n| ControlPlane::start(&Options::full(n)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, Error>((hub, planes))
        })
        .await
        .map_err(|e| Error::Testbed(format!("starting control planes: {e}")))??;
        let hub_client = hub.client().await?;
        apply(
            &hub_client,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": SYSTEM_NAMESPACE}}),
        )
        .await?;
        let mut members = Vec::new();
        for (m, plane) in config.members.iter().zip(planes) {
            register(&hub_client, m, &plane).await?;
            members.push((m.clone(), plane));
        }
        Ok(Self {
            nodes: Vec::new(),
            _load_balancers: Vec::new(),
            hub,
            members,
        })
    }
}

async fn register(hub: &kube::Client, m: &MemberConfig, plane: &ControlPlane) -> Result<(), Error> {
    let client = plane.client().await?;
    for n in &m.nodes {
        let mut cap = BTreeMap::from([
            ("cpu".to_string(), n.cpu.clone()),
            ("memory".to_string(), n.memory.clone()),
        ]);
        if n.gpus > 0 {
            cap.insert("nvidia.com/gpu".into(), n.gpus.to_string());
        }
        plane
            .add_node(&client, &n.name, n.labels.clone(), cap)
            .await?;
    }
    let secret = kubeconfig_secret(hub, &m.name, plane).await?;
    apply(
        hub,
        serde_json::json!({"apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": m.name},
            "spec": {"provider": m.provider, "region": m.region, "tier": m.tier,
                     "probeIntervalSeconds": 5,
                     "kubeconfigSecretRef": {"namespace": SYSTEM_NAMESPACE, "name": secret}}}),
    )
    .await
}

/// The Secret `<member>-kubeconfig` in [`SYSTEM_NAMESPACE`] with `plane`'s kubeconfig, as
/// the Terraform modules write it; returns its name.
async fn kubeconfig_secret(
    hub: &kube::Client,
    member: &str,
    plane: &ControlPlane,
) -> Result<String, Error> {
    let secret = format!("{member}-kubeconfig");
    apply(
        hub,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret, "namespace": SYSTEM_NAMESPACE},
            "stringData": {"kubeconfig": plane.kubeconfig_yaml()}}),
    )
    .await?;
    Ok(secret)
}

/// Server-side applies one object given as JSON (core kinds and fedsky's).
async fn apply(client: &kube::Client, value: serde_json::Value) -> Result<(), Error> {
    let pp = PatchParams::apply("fedsky-testbed").force();
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match value["kind"].as_str() {
        Some("Namespace") => {
            Api::<Namespace>::all(client.clone())
                .patch(&name, &pp, &Patch::Apply(&value))
                .await?;
        }
        Some("Secret") => {
            let ns = value["metadata"]["namespace"].as_str().unwrap_or_default();
            Api::<Secret>::namespaced(client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&value))
                .await?;
        }
        Some("PersistentVolumeClaim") => {
            let ns = value["metadata"]["namespace"].as_str().unwrap_or_default();
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&value))
                .await?;
        }
        _ => {
            let ar = kube::api::ApiResource {
                group: "fl.fedsky.dev".into(),
                version: "v1alpha1".into(),
                api_version: "fl.fedsky.dev/v1alpha1".into(),
                kind: "MemberCluster".into(),
                plural: "memberclusters".into(),
            };
            Api::<DynamicObject>::all_with(client.clone(), &ar)
                .patch(&name, &pp, &Patch::Apply(&value))
                .await?;
        }
    }
    Ok(())
}
