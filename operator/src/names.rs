//! Deterministic names and labels of what a FederatedJob creates, so every reconcile
//! (and every operator replica) arrives at the same objects.

use std::collections::BTreeMap;

/// Label: which job an object belongs to (`<namespace>.<name>`, hashed if long).
pub const LABEL_JOB: &str = "fl.fedsky.dev/job";
/// Label: `aggregator` or `participant`.
pub const LABEL_ROLE: &str = "fl.fedsky.dev/role";
/// Label: participant site.
pub const LABEL_SITE: &str = "fl.fedsky.dev/site";
/// Annotation: the job's namespace/name in full.
pub const ANNOTATION_JOB: &str = "fl.fedsky.dev/job-ref";
/// Namespace in public member clusters that holds aggregators.
pub const AGGREGATOR_NAMESPACE: &str = "fedsky-aggregators";
/// gRPC port of the aggregator.
pub const GRPC_PORT: i32 = 50051;
/// Model manager HTTP port of the aggregator (TLS; see [`METRICS_TOKEN_SECRET`] for how
/// Prometheus gets in).
pub const HTTP_PORT: i32 = 8081;
/// Secret in [`AGGREGATOR_NAMESPACE`] of a member cluster, key `token`, with the token
/// that opens the aggregators' `/metrics` to that cluster's Prometheus. The member
/// cluster's Terraform module (`terraform/modules/fedsky-member`) creates it; aggregator
/// pods mount it if it exists.
pub const METRICS_TOKEN_SECRET: &str = "fedsky-metrics-token";

/// A short stable key for a job: `<ns>-<name>` if it fits, else a prefix plus a hash.
pub fn job_key(namespace: &str, name: &str) -> String {
    let full = format!("{namespace}-{name}");
    if full.len() <= 40 {
        return full;
    }
    format!(
        "{}-{:08x}",
        &full[..31].trim_end_matches('-'),
        fnv1a(full.as_bytes()) as u32
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Name of the aggregator's Deployment, Service, Secret and PVC.
pub fn aggregator(key: &str) -> String {
    format!("fedsky-agg-{key}")
}

/// Name of the aggregator's second Secret, holding only its S3 keys (read through
/// `env.valueFrom`, never mounted as files).
pub fn aggregator_store_secret(key: &str) -> String {
    format!("{}-s3", aggregator(key))
}

/// Name of the n-th participant Job started at a site (n grows with replacements).
pub fn participant(key: &str, site: &str, n: u32) -> String {
    let base = format!("fedsky-p-{key}-{site}");
    let base = if base.len() > 56 {
        format!("fedsky-p-{:012x}", fnv1a(base.as_bytes()))
    } else {
        base
    };
    format!("{base}-{n}")
}

/// Name of the Secret in the operator's namespace that holds a job's token (`token`) or
/// CA (`ca`): keyed by the job's UID, so a job created again under the same name never
/// gets the old one's, and short whatever the job's namespace and name.
pub fn job_secret(job_uid: &str, what: &str) -> String {
    format!("fedsky-job-{job_uid}-{what}")
}

/// The sequence number in `name` if it is a participant name of `key` at `site`.
pub fn participant_seq(key: &str, site: &str, name: &str) -> Option<u32> {
    let zero = participant(key, site, 0);
    let base = zero.strip_suffix('0')?;
    let n = name.strip_prefix(base)?;
    // Only canonical numbers: "07" is not a name this operator gives.
    if n.starts_with('0') && n != "0" {
        return None;
    }
    n.parse().ok()
}

/// The name in the aggregator's server certificate, which participants verify whatever
/// address they dial (a LoadBalancer's, a VM's or loopback): its in-cluster Service name.
pub fn aggregator_tls_name(key: &str) -> String {
    format!("{}.{AGGREGATOR_NAMESPACE}.svc", aggregator(key))
}

/// CN of the client certificate the operator issues itself from each job's CA to read the
/// aggregator's model manager. Participants' CNs are their names, which all start with
/// `fedsky-p-` (see [`participant`]), so no participant can be taken for the operator.
pub const OPERATOR_CLIENT_CN: &str = "fedsky-operator";

/// Labels of every object of the job.
pub fn labels(key: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_JOB.to_string(), key.to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "fedsky".to_string(),
        ),
        (
            "app.kubernetes.io/name".to_string(),
            format!("fedsky-{role}"),
        ),
    ])
}

/// `fl.fedsky.dev/job=<key>` selector.
pub fn selector(key: &str) -> String {
    format!("{LABEL_JOB}={key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_secrets_are_keyed_by_uid_and_fit_dns_subdomains() {
        let uid = "0f9d3a4e-8a3b-4c2e-9d1f-2b7e6c5a4d3f";
        let (t, c) = (job_secret(uid, "token"), job_secret(uid, "ca"));
        assert_ne!(t, c);
        assert_eq!(t, format!("fedsky-job-{uid}-token"));
        assert!(t.len() <= 63 && c.len() <= 63);
    }

    #[test]
    fn names_are_stable_and_fit_dns_labels() {
        assert_eq!(job_key("covid", "xray"), "covid-xray");
        let long = job_key(
            "a-very-long-namespace-name",
            "an-even-longer-federated-job-name",
        );
        assert_eq!(
            long,
            job_key(
                "a-very-long-namespace-name",
                "an-even-longer-federated-job-name"
            )
        );
        assert!(long.len() <= 40, "{long}");
        assert_ne!(
            long,
            job_key(
                "a-very-long-namespace-name",
                "an-even-longer-federated-job-name2"
            )
        );
        for n in [
            aggregator(&long),
            participant(&long, "hospital-europe-west", 12),
        ] {
            assert!(n.len() <= 63, "{n}");
        }
        assert_eq!(
            participant("covid-xray", "eu", 0),
            "fedsky-p-covid-xray-eu-0"
        );
    }

    #[test]
    fn no_participant_is_named_like_the_operators_client_certificate() {
        for key in ["covid-xray", "a", "fedsky", "operator"] {
            for site in ["eu", "operator", "fedsky-operator", ""] {
                let name = participant(key, site, 0);
                assert!(name.starts_with("fedsky-p-"), "{name}");
                assert_ne!(name, OPERATOR_CLIENT_CN);
            }
        }
    }

    #[test]
    fn a_participant_names_sequence_number_reads_back() {
        let long = job_key("a-very-long-namespace-name", "an-even-longer-job-name");
        for key in ["covid-xray", long.as_str()] {
            for n in [0, 7, 12, 4096] {
                let name = participant(key, "eu", n);
                assert_eq!(participant_seq(key, "eu", &name), Some(n), "{name}");
            }
        }
        // Another site whose name extends this one's, another job, not a number.
        let other_site = participant("covid-xray", "eu-1", 3);
        assert_eq!(participant_seq("covid-xray", "eu", &other_site), None);
        let other_job = participant("covid-xray2", "eu", 3);
        assert_eq!(participant_seq("covid-xray", "eu", &other_job), None);
        assert_eq!(
            participant_seq("covid-xray", "eu", "fedsky-p-covid-xray-eu-07"),
            None
        );
        assert_eq!(
            participant_seq("covid-xray", "eu", "fedsky-p-covid-xray-eu-"),
            None
        );
    }
}
