//! The NetworkPolicies of a job's pods in member clusters. A participant runs next to a
//! hospital's data: it may resolve names and dial the aggregator's gRPC port, nothing
//! else, and nothing may dial it. The aggregator accepts connections on its gRPC and HTTP
//! (model manager) ports only; its egress stays open for its S3 store and DNS. Pure.
//!
//! Participants reach the aggregator through a LoadBalancer (or a VM) whose address can
//! be a name, and CNIs disagree on whether an egress `ipBlock` sees the address before or
//! after the Service's NAT; so the egress rule names the port, which is the aggregator's
//! on both sides of the NAT, not the address.

use super::build::from;
use super::validate::ValidJob;
use crate::names::{self, AGGREGATOR_NAMESPACE, GRPC_PORT, HTTP_PORT};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

/// The aggregator's policy (in [`AGGREGATOR_NAMESPACE`], named like its Deployment).
pub fn aggregator(job: &ValidJob) -> NetworkPolicy {
    from::<NetworkPolicy>(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {
            "name": names::aggregator(&job.key),
            "namespace": AGGREGATOR_NAMESPACE,
            "labels": names::labels(&job.key, "aggregator"),
            "annotations": { names::ANNOTATION_JOB: job.reference },
        },
        "spec": {
            "podSelector": { "matchLabels": {
                names::LABEL_JOB: job.key, names::LABEL_ROLE: "aggregator" } },
            "policyTypes": ["Ingress"],
            "ingress": [{ "ports": [
                { "protocol": "TCP", "port": GRPC_PORT },
                { "protocol": "TCP", "port": HTTP_PORT },
            ] }],
        },
    }))
}

/// The port participants dial: the endpoint's (`host:port`), else the gRPC port.
fn endpoint_port(endpoint: &str) -> i32 {
    endpoint
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .map_or(GRPC_PORT, i32::from)
}

/// The policy of the job's participants in one site's namespace (one per job and site:
/// it selects every participant of the job there, replacements included).
pub fn participants(job: &ValidJob, namespace: &str, endpoint: &str) -> NetworkPolicy {
    let mut ports = vec![json!({ "protocol": "TCP", "port": endpoint_port(endpoint) })];
    if endpoint_port(endpoint) != GRPC_PORT {
        // The pod's own port, which the connection has after a Service's NAT.
        ports.push(json!({ "protocol": "TCP", "port": GRPC_PORT }));
    }
    from::<NetworkPolicy>(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {
            "name": participants_name(&job.key),
            "namespace": namespace,
            "labels": names::labels(&job.key, "participant"),
            "annotations": { names::ANNOTATION_JOB: job.reference },
        },
        "spec": {
            "podSelector": { "matchLabels": {
                names::LABEL_JOB: job.key, names::LABEL_ROLE: "participant" } },
            "policyTypes": ["Ingress", "Egress"],
            // No ingress rule: nothing may connect to a participant.
            "egress": [
                { "ports": [
                    { "protocol": "UDP", "port": 53 },
                    { "protocol": "TCP", "port": 53 },
                ] },
                { "ports": ports },
            ],
        },
    }))
}

/// Name of the participants' policy of job `key`.
pub fn participants_name(key: &str) -> String {
    format!("{}-participants", names::aggregator(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::federated_job::validate::tests::valid_job;

    fn ports(rule: &serde_json::Value) -> Vec<(String, i64)> {
        rule["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["protocol"].as_str().expect("protocol").to_string(),
                    p["port"].as_i64().expect("numeric port"),
                )
            })
            .collect()
    }

    #[test]
    fn the_aggregator_accepts_its_two_ports_only() {
        let job = valid_job();
        let np = serde_json::to_value(aggregator(&job)).expect("json");
        assert_eq!(np["metadata"]["namespace"], AGGREGATOR_NAMESPACE);
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"][names::LABEL_ROLE],
            "aggregator"
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        let rules = np["spec"]["ingress"].as_array().expect("ingress");
        assert_eq!(rules.len(), 1);
        assert!(
            rules[0].get("from").is_none(),
            "participants dial from anywhere"
        );
        assert_eq!(
            ports(&rules[0]),
            [("TCP".into(), 50051), ("TCP".into(), 8081)]
        );
    }

    #[test]
    fn participants_reach_dns_and_the_aggregator_port_and_accept_nothing() {
        let job = valid_job();
        let np = serde_json::to_value(participants(&job, "hospital-a", "203.0.113.7:50051"))
            .expect("json");
        assert_eq!(np["metadata"]["namespace"], "hospital-a");
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"][names::LABEL_JOB],
            job.key
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert!(
            np["spec"].get("ingress").is_none(),
            "no ingress rule: deny all"
        );
        let egress = np["spec"]["egress"].as_array().expect("egress");
        assert_eq!(ports(&egress[0]), [("UDP".into(), 53), ("TCP".into(), 53)]);
        assert_eq!(ports(&egress[1]), [("TCP".into(), 50051)]);
        // An aggregator published on another port: that port and the pod's.
        let np = serde_json::to_value(participants(&job, "h", "agg.example:443")).expect("json");
        assert_eq!(
            ports(&np["spec"]["egress"][1]),
            [("TCP".into(), 443), ("TCP".into(), 50051)]
        );
    }
}
