//! The testbed file: clusters, their nodes (simulated or real), and what a real cluster
//! holds before fedsky arrives (model-store volumes, a hospital's data).

use crate::Error;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A testbed description.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestbedConfig {
    /// The hub's own nodes: only with real nodes, for the operator's pod.
    #[serde(default)]
    pub hub: HubConfig,
    /// Member clusters.
    pub members: Vec<MemberConfig>,
}

/// The hub cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HubConfig {
    /// Nodes that run containers (fedsky's operator).
    #[serde(default)]
    pub real_nodes: Vec<RealNodeConfig>,
}

/// One member cluster.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// Nodes that run containers (kubelet, containerd, CNI, kube-proxy).
    #[serde(default)]
    pub real_nodes: Vec<RealNodeConfig>,
    /// Empty `local` volumes on the first real node, for aggregators' model stores (the
    /// cluster's default storage class). A released volume is not bound again, so one
    /// per job the testbed will see.
    #[serde(default)]
    pub model_stores: u32,
    /// A hospital's data on a volume of the first real node.
    #[serde(default)]
    pub data: Option<DataConfig>,
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

/// A node that runs containers. Its capacity is this machine's, as the kubelet finds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RealNodeConfig {
    /// Node name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// fedsky images loaded into its container runtime ahead of time (`operator`,
    /// `aggregator`, `participant`), as a registry pull would.
    #[serde(default)]
    pub images: Vec<String>,
}

/// Synthetic chest X-rays (`fedsky-participant synth`), written by a Job of the
/// participant image into claim `claim` of namespace `fedsky-participants`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataConfig {
    /// The claim the ParticipantPool's site names.
    pub claim: String,
    /// Folder in the claim (the FederatedJob's `dataset.path`).
    pub path: String,
    /// Most images are of this class (non-IID sites).
    pub dominant_class: u32,
    /// Generator seed.
    pub seed: u64,
    /// Side of the square images.
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// Training images.
    #[serde(default = "default_train")]
    pub train: u32,
    /// Test images per class.
    #[serde(default = "default_test_per_class")]
    pub test_per_class: u32,
}

fn default_image_size() -> u32 {
    64
}
fn default_train() -> u32 {
    300
}
fn default_test_per_class() -> u32 {
    20
}

impl TestbedConfig {
    /// Whether the clusters run containers.
    pub fn has_real_nodes(&self) -> bool {
        !self.hub.real_nodes.is_empty() || self.members.iter().any(|m| !m.real_nodes.is_empty())
    }

    /// Checks what the file's schema cannot: a testbed has one kind of node, and volumes
    /// need a real node to live on.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Testbed(m.to_string()));
        let real = self.has_real_nodes();
        for m in &self.members {
            if real && !m.nodes.is_empty() {
                return bad(&format!(
                    "member {}: simulated `nodes` in a testbed with `realNodes`; use one kind",
                    m.name
                ));
            }
            if m.real_nodes.is_empty() && (m.model_stores > 0 || m.data.is_some()) {
                return bad(&format!(
                    "member {}: `modelStores` and `data` need a node in `realNodes`",
                    m.name
                ));
            }
        }
        Ok(())
    }

    /// Sets every hospital's number of training images.
    pub fn set_train_images(&mut self, train: u32) {
        for d in self.members.iter_mut().filter_map(|m| m.data.as_mut()) {
            d.train = train;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TestbedConfig {
        serde_yaml::from_str(text).expect("testbed")
    }

    #[test]
    fn the_shipped_testbeds_parse_and_validate() {
        let dir = crate::repo_root().join("e2e/testbeds");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("testbeds dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let cfg: TestbedConfig =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!cfg.members.is_empty(), "{}", path.display());
            cfg.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 2);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_yaml::from_str::<TestbedConfig>("members: []\nhubb: x\n")
            .expect_err("unknown field");
        assert!(err.to_string().contains("hubb"), "{err}");
    }

    #[test]
    fn one_kind_of_node_per_testbed() {
        let mixed = parse(
            "members:
  - { name: a, provider: aws, region: r, tier: public, realNodes: [{ name: a-1 }] }
  - { name: b, provider: aws, region: r, tier: public, nodes: [{ name: b-1, cpu: '1', memory: 1Gi }] }",
        );
        assert!(mixed.has_real_nodes());
        let err = mixed.validate().expect_err("mixed").to_string();
        assert!(
            err.contains("member b") && err.contains("realNodes"),
            "{err}"
        );
        let hub_only = parse(
            "hub: { realNodes: [{ name: hub-1, images: [operator] }] }
members:
  - { name: b, provider: aws, region: r, tier: public, nodes: [{ name: b-1, cpu: '1', memory: 1Gi }] }",
        );
        assert!(hub_only.validate().is_err());
    }

    #[test]
    fn volumes_need_a_real_node() {
        let cfg = parse(
            "members:
  - name: h
    provider: openstack
    region: r
    tier: private
    data: { claim: c, path: p, dominantClass: 0, seed: 1 }",
        );
        let err = cfg.validate().expect_err("no node").to_string();
        assert!(err.contains("member h") && err.contains("data"), "{err}");
    }

    #[test]
    fn train_images_are_set_on_every_hospital() {
        let mut cfg = parse(
            "members:
  - name: h
    provider: openstack
    region: r
    tier: private
    realNodes: [{ name: h-1 }]
    data: { claim: c, path: p, dominantClass: 2, seed: 1 }
  - { name: p, provider: aws, region: r, tier: public, realNodes: [{ name: p-1 }], modelStores: 2 }",
        );
        cfg.validate().expect("valid");
        let d = cfg.members[0].data.as_ref().expect("data");
        assert_eq!((d.image_size, d.train, d.test_per_class), (64, 300, 20));
        cfg.set_train_images(120);
        assert_eq!(cfg.members[0].data.as_ref().map(|d| d.train), Some(120));
    }
}
