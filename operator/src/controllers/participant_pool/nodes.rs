//! Reading a site's nodes and pods from its member cluster, shared for a moment by every
//! reconcile that asks: each job using a site reads the same nodes and pods, and listing
//! them per job and per reconcile listed every pod of every site cluster hundreds of times
//! a second at 1,000 jobs (measured with `make bench-operator`).

use crate::Context;
use crate::capacity::{NodeUsage, NodeView, PodUsage, node_views};
use crate::clusters::{ClusterError, bounded};
use fedsky_crds::participant_pool::Site;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one listing of a site's nodes and pods is reused. Short next to the
/// FederatedJob requeue (5 s), so free resources are as current as a reconcile needs, and
/// dropped at once when the operator starts participants at the site.
pub const SITE_TTL: Duration = Duration::from_secs(2);

/// Pods read per request. The pods of a member cluster grow with every participant
/// started there; read in pages, only one page is held at a time.
const POD_PAGE: u32 = 500;

/// A site's cluster and node selector: sites with both equal see the same nodes.
type Key = (String, BTreeMap<String, String>);

#[derive(Default)]
struct Slot {
    /// The last listing and when it began; the async lock makes concurrent readers wait
    /// for one listing instead of each starting its own.
    listing: tokio::sync::Mutex<Option<(Instant, Vec<NodeView>)>>,
    /// Listings that began before this are stale.
    invalidated: Mutex<Option<Instant>>,
}

impl Slot {
    fn fresh(&self, began: Instant) -> bool {
        let invalidated = *self
            .invalidated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fresh(began, invalidated, Instant::now())
    }
}

/// Whether a listing that began at `began` may be reused at `now`.
fn fresh(began: Instant, invalidated: Option<Instant>, now: Instant) -> bool {
    now.saturating_duration_since(began) < SITE_TTL && invalidated.is_none_or(|i| began > i)
}

/// Recent node views per site, shared by all controllers (see the module comment).
#[derive(Clone, Default)]
pub struct SiteCache {
    slots: Arc<Mutex<HashMap<Key, Arc<Slot>>>>,
}

impl std::fmt::Debug for SiteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCache").finish_non_exhaustive()
    }
}

impl SiteCache {
    fn slot(&self, site: &Site) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key(site))
            .or_default()
            .clone()
    }

    /// Forgets what was read of `site` (participants were just started there).
    pub fn invalidate(&self, site: &Site) {
        let slot = self.slot(site);
        *slot
            .invalidated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }
}

fn key(site: &Site) -> Key {
    (site.member_cluster.clone(), site.node_selector.clone())
}

/// The site's nodes with free resources, or why they cannot be read; at most
/// [`SITE_TTL`] old.
pub async fn site_nodes(ctx: &Context, site: &Site) -> Result<Vec<NodeView>, ClusterError> {
    let slot = ctx.sites.slot(site);
    let mut listing = slot.listing.lock().await;
    if let Some((began, views)) = listing.as_ref()
        && slot.fresh(*began)
    {
        return Ok(views.clone());
    }
    let began = Instant::now();
    let views = list(ctx, site).await?;
    *listing = Some((began, views.clone()));
    Ok(views)
}

async fn list(ctx: &Context, site: &Site) -> Result<Vec<NodeView>, ClusterError> {
    let client = ctx.clusters.get(&site.member_cluster)?;
    let selector: Vec<String> = site
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let node_params = ListParams::default().labels(&selector.join(","));
    let nodes = bounded(
        &site.member_cluster,
        "listing nodes",
        Api::<Node>::all(client.clone()).list(&node_params),
    )
    .await?;
    let used = pod_usage(&client, &site.member_cluster, POD_PAGE).await?;
    Ok(node_views(&nodes.items, &used, &site.node_selector))
}

/// One page of a pod listing, in the slim form of [`PodUsage`].
#[derive(Deserialize)]
struct PodPage {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<PodUsage>>,
}

/// What the non-terminated pods of `cluster` request of each node, read `page` pods at a
/// time.
pub async fn pod_usage(
    client: &kube::Client,
    cluster: &str,
    page: u32,
) -> Result<NodeUsage, ClusterError> {
    let request = kube::core::Request::new("/api/v1/pods");
    let mut used = NodeUsage::default();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default()
            .fields("status.phase!=Succeeded,status.phase!=Failed")
            .limit(page);
        if let Some(t) = token.take() {
            params = params.continue_token(&t);
        }
        let req = request.list(&params).map_err(|e| ClusterError::Call {
            cluster: cluster.to_owned(),
            doing: Some("listing pods".into()),
            source: kube::Error::BuildRequest(e),
        })?;
        let page: PodPage = bounded(cluster, "listing pods", client.request(req)).await?;
        used.add(page.items.as_deref().unwrap_or_default());
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(used),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_reused_until_it_ages_or_is_invalidated() {
        let t0 = Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        assert!(fresh(t0, None, later(1_999)));
        assert!(!fresh(t0, None, later(2_000)));
        // Participants started after the listing began: it misses them.
        assert!(!fresh(t0, Some(later(5)), later(10)));
        // A listing that began after the invalidation sees them.
        assert!(fresh(later(10), Some(later(5)), later(20)));
    }

    #[test]
    fn sites_with_the_same_cluster_and_selector_share_a_slot() {
        let site = |name: &str, cluster: &str| -> Site {
            serde_json::from_value(serde_json::json!({
                "name": name, "memberCluster": cluster,
                "nodeSelector": { "fedsky.dev/fl-worker": "true" },
                "dataVolume": { "hostPath": "/data" },
            }))
            .expect("site")
        };
        let cache = SiteCache::default();
        let a = cache.slot(&site("a", "eu"));
        let b = cache.slot(&site("b", "eu"));
        let c = cache.slot(&site("c", "us"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        let before = Instant::now();
        cache.invalidate(&site("a", "eu"));
        assert!(!b.fresh(before));
    }
}
