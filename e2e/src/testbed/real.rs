//! A testbed whose clusters run containers: every control plane listens on the lab
//! network, every node is a [`RealNode`] with fedsky's images loaded, and each member
//! holds what its owner would have set up before fedsky arrives: namespaces under
//! `restricted` Pod Security, a load balancer, a default storage class with volumes for
//! model stores, and a hospital's data on its own volume. The hub gets the kubeconfig
//! Secrets but neither CRDs nor MemberClusters: fedsky's chart brings the CRDs, and the
//! user registers the clusters (`kubectl apply`), as on real clouds.

use super::{MemberConfig, SYSTEM_NAMESPACE, Testbed, TestbedConfig, apply, kubeconfig_secret};
use crate::{ControlPlane, Error, NodeOptions, Options, RealNode, images, volumes, workload};
use std::time::Duration;

/// Member namespaces of fedsky's aggregators and participants.
const WORKLOAD_NAMESPACES: [&str; 2] = ["fedsky-aggregators", "fedsky-participants"];
/// Where the participants' data claims live.
const DATA_NAMESPACE: &str = "fedsky-participants";
/// How long a hospital's data may take to be written.
const SYNTH_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts the clusters and nodes of `config` (validated, with real nodes).
pub(super) async fn start(config: &TestbedConfig) -> Result<Testbed, Error> {
    let cfg = config.clone();
    let (hub, planes, nodes) = tokio::task::spawn_blocking(move || {
        let hub = ControlPlane::start(&Options::real_nodes("hub"))?;
        let planes = cfg
            .members
            .iter()
            .map(|m| ControlPlane::start(&Options::real_nodes(&m.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut nodes = Vec::new();
        let wanted = std::iter::once((&hub, &cfg.hub.real_nodes))
            .chain(planes.iter().zip(cfg.members.iter().map(|m| &m.real_nodes)));
        for (plane, list) in wanted {
            for n in list {
                let images = n
                    .images
                    .iter()
                    .map(|i| images::archive(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let opts = NodeOptions {
                    name: n.name.clone(),
                    labels: n.labels.clone(),
                    images,
                };
                nodes.push(RealNode::start(plane, &opts)?);
            }
        }
        Ok::<_, Error>((hub, planes, nodes))
    })
    .await
    .map_err(|e| Error::Testbed(format!("starting clusters and nodes: {e}")))??;

    let hub_client = hub.client().await?;
    restricted_namespace(&hub_client, SYSTEM_NAMESPACE).await?;
    let mut load_balancers = Vec::new();
    let mut synths = Vec::new();
    // A member's first node is where its volumes and load-balancer address live.
    let first_nodes = first_node_per_member(config, &nodes);
    for ((m, plane), node) in config.members.iter().zip(&planes).zip(first_nodes) {
        kubeconfig_secret(&hub_client, &m.name, plane).await?;
        let Some(node) = node else { continue };
        let client = plane.client().await?;
        for ns in WORKLOAD_NAMESPACES {
            restricted_namespace(&client, ns).await?;
        }
        load_balancers.push(crate::load_balancer::serve(client.clone(), node.address()));
        for i in 1..=m.model_stores {
            volumes::local_volume(&client, node, &format!("model-store-{i}"), "5Gi").await?;
        }
        if m.data.is_some() {
            synths.push(hospital_data(client, node, m));
        }
    }
    for r in futures::future::join_all(synths).await {
        r?;
    }
    let members = config.members.iter().cloned().zip(planes).collect();
    Ok(Testbed {
        nodes,
        _load_balancers: load_balancers,
        hub,
        members,
    })
}

/// Each member's first real node (`None` for a member without one), in member order.
fn first_node_per_member<'a>(
    config: &TestbedConfig,
    nodes: &'a [RealNode],
) -> Vec<Option<&'a RealNode>> {
    let mut at = config.hub.real_nodes.len();
    config
        .members
        .iter()
        .map(|m| {
            let first = (!m.real_nodes.is_empty()).then(|| &nodes[at]);
            at += m.real_nodes.len();
            first
        })
        .collect()
}

async fn restricted_namespace(client: &kube::Client, name: &str) -> Result<(), Error> {
    apply(
        client,
        serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "labels": { "pod-security.kubernetes.io/enforce": "restricted" } } }),
    )
    .await
}

/// The member's data: a `local` volume on `node`, its claim, and a Job of the participant
/// image that writes the synthetic X-rays into it and must succeed.
async fn hospital_data(
    client: kube::Client,
    node: &RealNode,
    m: &MemberConfig,
) -> Result<(), Error> {
    let Some(d) = &m.data else { return Ok(()) };
    let pv = format!("{}-{}", m.name, d.claim);
    volumes::local_volume(&client, node, &pv, "1Gi").await?;
    apply(
        &client,
        serde_json::json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": d.claim, "namespace": DATA_NAMESPACE },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": volumes::LOCAL_STORAGE_CLASS,
                      "volumeName": pv, "resources": { "requests": { "storage": "1Gi" } } } }),
    )
    .await?;
    let args = synth_args(d);
    let job = workload::restricted_job(
        &format!("synth-{}", d.claim),
        DATA_NAMESPACE,
        &images::reference("participant")?,
        &args,
        &d.claim,
        "/data",
    )?;
    workload::run_to_completion(&client, &job, SYNTH_TIMEOUT).await?;
    Ok(())
}

/// `fedsky-participant synth` arguments for `d`, writing under `/data`.
fn synth_args(d: &super::DataConfig) -> Vec<String> {
    [
        "synth".to_string(),
        "--out".into(),
        format!("/data/{}", d.path),
        "--size".into(),
        d.image_size.to_string(),
        "--train".into(),
        d.train.to_string(),
        "--test-per-class".into(),
        d.test_per_class.to_string(),
        "--dominant-class".into(),
        d.dominant_class.to_string(),
        "--share".into(),
        "0.6".into(),
        "--seed".into(),
        d.seed.to_string(),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synth_writes_into_the_claims_folder() {
        let d: super::super::DataConfig = serde_yaml::from_str(
            "{ claim: c, path: covid19-radiography, dominantClass: 2, seed: 102, train: 120 }",
        )
        .expect("data");
        let args = synth_args(&d);
        let pairs: Vec<(&str, &str)> = args[1..]
            .chunks(2)
            .map(|p| (p[0].as_str(), p[1].as_str()))
            .collect();
        assert_eq!(args[0], "synth");
        assert!(
            pairs.contains(&("--out", "/data/covid19-radiography")),
            "{pairs:?}"
        );
        assert!(pairs.contains(&("--train", "120")), "{pairs:?}");
        assert!(pairs.contains(&("--dominant-class", "2")), "{pairs:?}");
        assert!(pairs.contains(&("--size", "64")), "{pairs:?}");
    }
}
