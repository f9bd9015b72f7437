//! Probing a member cluster's API server.

use crate::clusters::{ClusterError, MEMBER_TIMEOUT, bounded};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

/// What a successful probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `gitVersion` of the member's API server.
    pub version: String,
    /// Nodes in the cluster.
    pub nodes: i32,
    /// Nodes whose `Ready` condition is true.
    pub ready_nodes: i32,
}

pub(super) async fn probe(cluster: &str, client: &kube::Client) -> Result<Probe, ClusterError> {
    let unreachable = |reason: String| ClusterError::Unreachable {
        cluster: cluster.to_string(),
        reason,
    };
    let version = tokio::time::timeout(MEMBER_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| unreachable(format!("no answer within {}s", MEMBER_TIMEOUT.as_secs())))?
        .map_err(|source| ClusterError::Call {
            cluster: cluster.to_string(),
            doing: None,
            source,
        })?;
    let api: Api<Node> = Api::all(client.clone());
    let (mut nodes, mut ready) = (0i32, 0i32);
    let mut params = ListParams::default().limit(500);
    loop {
        let page = bounded(cluster, "listing nodes", api.list(&params)).await?;
        for n in &page.items {
            nodes += 1;
            if crate::controllers::member_cluster::status::node_is_ready(n) {
                ready += 1;
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(Probe {
        version: version.git_version,
        nodes,
        ready_nodes: ready,
    })
}
