//! Load balancers for clusters of real nodes, as a bare-metal cluster has them (MetalLB in
//! layer-2 mode, k3s' ServiceLB): every `type: LoadBalancer` Service gets a node's address
//! on the lab network as its ingress, and kube-proxy on that node routes the Service's
//! ports there to its pods. This plays the cloud's part only; nothing else is faked.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Assigns load-balancer addresses while it lives.
#[derive(Debug)]
pub struct LoadBalancers(tokio::task::JoinHandle<()>);

impl Drop for LoadBalancers {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gives every LoadBalancer Service of `client`'s cluster without an address `address`
/// (a node's), checking twice a second until dropped. Call inside a tokio runtime.
pub fn serve(client: kube::Client, address: Ipv4Addr) -> LoadBalancers {
    LoadBalancers(tokio::spawn(async move {
        let api: Api<Service> = Api::all(client);
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for svc in list.items.iter().filter(|s| wants_address(s)) {
                    let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name)
                    else {
                        continue;
                    };
                    let status = serde_json::json!({ "status": { "loadBalancer": {
                        "ingress": [{ "ip": address.to_string(), "ipMode": "VIP" }] } } });
                    let _ = Api::<Service>::namespaced(api.clone().into_client(), ns)
                        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }))
}

/// A LoadBalancer Service that has no ingress address yet.
fn wants_address(svc: &Service) -> bool {
    let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let has = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    is_lb && !has
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    #[test]
    fn only_load_balancers_without_an_address_get_one() {
        assert!(wants_address(&svc(
            serde_json::json!({ "spec": { "type": "LoadBalancer" } })
        )));
        assert!(!wants_address(&svc(
            serde_json::json!({ "spec": { "type": "ClusterIP" } })
        )));
        assert!(!wants_address(&svc(serde_json::json!({
            "spec": { "type": "LoadBalancer" },
            "status": { "loadBalancer": { "ingress": [{ "ip": "10.250.1.10" }] } },
        }))));
    }
}
