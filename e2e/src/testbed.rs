//! A hub and member clusters described by a file: the single-machine stand-in for a
//! multi-cloud fedsky installation (the quickstart and the experiments run on it).
//!
//! The hub serves fedsky's CRDs; each member is its own control plane with simulated
//! nodes, registered on the hub as a MemberCluster with its kubeconfig in a Secret, just
//! as the Terraform modules register real clusters.

use crate::{ControlPlane, Error, Options};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Namespace of the kubeconfig Secrets on the hub.
pub const SYSTEM_NAMESPACE: &str = "fedsky-system";

/// A testbed description.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestbedConfig {
    /// Member clusters.
    pub members: Vec<MemberConfig>,
}

/// One member cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberConfig {
    /// MemberCluster name.
    pub name: String,
    /// `aws`, `gcp` or `openstack`.
    pub provider: String,
    /// Region in the provider's naming.
    pub region: String,
    /// `public` or `private`.
    pub tier: String,
    /// Simulated nodes.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
}

/// A simulated node.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// CPU capacity, for example `"8"`.
    pub cpu: String,
    /// Memory capacity, for example `"16Gi"`.
    pub memory: String,
    /// GPUs (`nvidia.com/gpu`).
    #[serde(default)]
    pub gpus: u32,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Running clusters; dropping it stops them all.
#[derive(Debug)]
pub struct Testbed {
    /// The hub.
    pub hub: ControlPlane,
    /// Members by name, in the file's order.
    pub members: Vec<(MemberConfig, ControlPlane)>,
}

impl Testbed {
    /// Starts the hub and every member, registers nodes and MemberClusters.
    pub async fn start(config: &TestbedConfig) -> Result<Self, Error> {
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
        .map_err(|e| Error::Kubeconfig(format!("starting control planes: {e}")))??;
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
        Ok(Self { hub, members })
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
    let secret = format!("{}-kubeconfig", m.name);
    apply(
        hub,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret, "namespace": SYSTEM_NAMESPACE},
            "stringData": {"kubeconfig": plane.kubeconfig_yaml()}}),
    )
    .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_testbeds_parse() {
        let dir = crate::repo_root().join("e2e/testbeds");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("testbeds dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let cfg: TestbedConfig =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!cfg.members.is_empty(), "{}", path.display());
            n += 1;
        }
        assert!(n >= 1);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_yaml::from_str::<TestbedConfig>("members: []\nhubb: x\n")
            .expect_err("unknown field");
        assert!(err.to_string().contains("hubb"), "{err}");
    }
}
