//! Reading a site's nodes and pods from its member cluster.

use crate::Context;
use crate::capacity::{NodeView, node_views};
use crate::clusters::{ClusterError, MEMBER_TIMEOUT};
use fedsky_crds::participant_pool::Site;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

/// The site's nodes with free resources, or why they cannot be read.
pub async fn site_nodes(ctx: &Context, site: &Site) -> Result<Vec<NodeView>, ClusterError> {
    let client = ctx.clusters.get(&site.member_cluster)?;
    let unreachable = |reason: String| ClusterError::Unreachable {
        cluster: site.member_cluster.clone(),
        reason,
    };
    let selector: Vec<String> = site
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let node_params = ListParams::default().labels(&selector.join(","));
    let nodes = tokio::time::timeout(
        MEMBER_TIMEOUT,
        Api::<Node>::all(client.clone()).list(&node_params),
    )
    .await
    .map_err(|_| unreachable("listing nodes timed out".into()))?
    .map_err(|e| unreachable(format!("listing nodes: {e}")))?;
    let pod_params = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let pods = tokio::time::timeout(MEMBER_TIMEOUT, Api::<Pod>::all(client).list(&pod_params))
        .await
        .map_err(|_| unreachable("listing pods timed out".into()))?
        .map_err(|e| unreachable(format!("listing pods: {e}")))?;
    Ok(node_views(&nodes.items, &pods.items, &site.node_selector))
}
