//! A hub running the operator in-process plus member clusters with kwok nodes, all real
//! control planes on loopback.

#![allow(dead_code)]

pub mod processes;
pub mod report;

use fedsky_e2e::{ControlPlane, Options};
use fedsky_operator::run::{Settings, run};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub struct Fleet {
    /// Checked first on drop, while the hub still runs.
    pub refusals: NothingRefused,
    pub hub: ControlPlane,
    /// The hub as its admin (the test's own view).
    pub hub_client: kube::Client,
    /// The hub as the operator sees it: the chart's ServiceAccount and roles.
    pub operator_client: kube::Client,
    /// The chart's rendered ServiceAccount and roles.
    pub rbac_yaml: String,
    pub members: Vec<(String, ControlPlane, kube::Client)>,
    pub operator: tokio::task::JoinHandle<Result<(), fedsky_operator::run::RunError>>,
}

/// Every test on a fleet doubles as an RBAC test: the operator acts as the chart's
/// ServiceAccount, and when the fleet is dropped a request the hub refused it fails the
/// test.
pub struct NothingRefused {
    audit_log: std::path::PathBuf,
}

impl NothingRefused {
    /// Fails if the hub refused any request of the operator so far.
    pub fn check(&self) {
        let events = fedsky_e2e::audit::read(&self.audit_log).expect("hub audit log");
        let user = fedsky_e2e::rbac::operator_user();
        let refused: Vec<String> = fedsky_e2e::audit::forbidden(&events, &user)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            refused.is_empty(),
            "the chart's roles refused the operator: {refused:#?}"
        );
    }
}

impl Drop for NothingRefused {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check();
        }
    }
}

/// A node to register: name, labels, cpu, memory.
pub type NodeSpec<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

/// A member cluster: name, provider, region, tier, nodes.
pub type MemberSpec<'a> = (&'a str, &'a str, &'a str, &'a str, &'a [NodeSpec<'a>]);

/// A hub as the chart sets it up for the operator.
pub struct Hub {
    /// Checked first on drop, while the hub still runs.
    pub refusals: NothingRefused,
    pub plane: ControlPlane,
    /// The hub as its admin (the test's own view).
    pub admin: kube::Client,
    /// The hub as the operator sees it: the chart's ServiceAccount and roles.
    pub operator: kube::Client,
    /// The chart's rendered ServiceAccount and roles.
    pub rbac_yaml: String,
}

/// Starts a hub (API server only, audited) with the CRDs and the chart's operator
/// ServiceAccount and roles (`rbac.secretNamespaces` = `secret_namespaces`) installed.
pub async fn hub(secret_namespaces: &[&str]) -> Hub {
    let extra: Vec<String> = secret_namespaces.iter().map(|s| s.to_string()).collect();
    let (plane, rbac_yaml) = tokio::task::spawn_blocking(move || {
        let hub = ControlPlane::start(&Options {
            audit: true,
            ..Options::api_only("hub")
        })
        .expect("hub starts");
        hub.install_fedsky_crds().expect("CRDs install");
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let rbac_yaml = fedsky_e2e::rbac::install(&hub, &extra).expect("operator RBAC");
        (hub, rbac_yaml)
    })
    .await
    .expect("start hub");
    let admin = plane.client().await.expect("hub client");
    let operator = fedsky_e2e::rbac::operator_client(&plane)
        .await
        .expect("operator client");
    Hub {
        refusals: NothingRefused {
            audit_log: plane.audit_log_path(),
        },
        plane,
        admin,
        operator,
        rbac_yaml,
    }
}

/// Starts a hub (see [`hub`]) and one full member control plane per entry, registers the
/// nodes, creates kubeconfig Secrets and MemberClusters, and runs the operator against
/// the hub as the chart's ServiceAccount.
pub async fn fleet(members: &[MemberSpec<'_>]) -> Fleet {
    fleet_with(members, Settings::default()).await
}

/// [`fleet`] with the operator's settings (for example the process runtime); the chart's
/// `rbac.secretNamespaces` follow `settings.secrets`.
pub async fn fleet_with(members: &[MemberSpec<'_>], settings: Settings) -> Fleet {
    let extra: Vec<&str> = settings
        .secrets
        .readable()
        .filter(|ns| *ns != settings.secrets.home())
        .collect();
    let h = hub(&extra).await;
    let names: Vec<String> = members.iter().map(|m| m.0.to_string()).collect();
    let planes = tokio::task::spawn_blocking(move || {
        names
            .iter()
            .map(|n| ControlPlane::start(&Options::full(n)).expect("member starts"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("start members");
    let Hub {
        refusals,
        plane: hub,
        admin: hub_client,
        operator: operator_client,
        rbac_yaml,
    } = h;

    let mut out = Vec::new();
    for ((name, provider, region, tier, nodes), plane) in members.iter().zip(planes) {
        let client = plane.client().await.expect("member client");
        for (node, labels, cpu, mem) in nodes.iter() {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            plane
                .add_node(&client, node, labels, capacity(cpu, mem))
                .await
                .expect("node");
        }
        let secret = kubeconfig_secret(&hub_client, name, &plane).await;
        apply_json(
            &hub_client,
            serde_json::json!({
                "apiVersion": "fl.fedsky.dev/v1alpha1",
                "kind": "MemberCluster",
                "metadata": { "name": name },
                "spec": {
                    "provider": provider, "region": region, "tier": tier, "probeIntervalSeconds": 5,
                    "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": secret }
                }
            }),
        )
        .await;
        out.push((name.to_string(), plane, client));
    }
    let operator = tokio::spawn(run(operator_client.clone(), settings));
    Fleet {
        refusals,
        hub,
        hub_client,
        operator_client,
        rbac_yaml,
        members: out,
        operator,
    }
}

/// Creates the operator's namespace, `fedsky-system`, on the hub.
pub async fn system_namespace(hub: &kube::Client) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "fedsky-system"}}))
            .expect("ns");
    Api::<Namespace>::all(hub.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

/// Stores `plane`'s kubeconfig in the hub Secret `fedsky-system/<name>-kubeconfig`, the one
/// a MemberCluster's `kubeconfigSecretRef` names; returns the Secret's name.
pub async fn kubeconfig_secret(hub: &kube::Client, name: &str, plane: &ControlPlane) -> String {
    let secret_name = format!("{name}-kubeconfig");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": secret_name, "namespace": "fedsky-system" },
        "stringData": { "kubeconfig": plane.kubeconfig_yaml() }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(hub.clone(), "fedsky-system")
        .create(&PostParams::default(), &secret)
        .await
        .expect("kubeconfig secret");
    secret_name
}

/// A node's capacity: `cpu` and `memory` quantities.
pub fn capacity(cpu: &str, memory: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cpu".to_string(), cpu.to_string()),
        ("memory".to_string(), memory.to_string()),
    ])
}

/// Creates any object from JSON through the dynamic API.
pub async fn apply_json(client: &kube::Client, value: serde_json::Value) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::discovery;
    let obj: DynamicObject = serde_json::from_value(value).expect("object");
    let gvk = obj
        .types
        .as_ref()
        .map(|t| kube::core::GroupVersionKind::try_from(t).expect("gvk"))
        .expect("types");
    let (ar, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .expect("discovery");
    let name = obj.metadata.name.clone().expect("name");
    let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
        (discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &name,
        &PatchParams::apply("fedsky-test").force(),
        &Patch::Apply(&obj),
    )
    .await
    .expect("apply");
}

/// Once job `ns/name` is placed, labels `node` of `member` with the placed region and
/// instance type, as the cloud labels its nodes: the aggregator's pod requires them. For
/// tests whose placement is not known in advance.
pub async fn label_as_placed(
    hub: kube::Client,
    ns: &str,
    name: &str,
    member: kube::Client,
    node: &str,
) {
    use kube::api::{Patch, PatchParams};
    let jobs: Api<fedsky_crds::FederatedJob> = Api::namespaced(hub, ns);
    let option = eventually("placement in the job's status", 120, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(name).await.map_err(|e| e.to_string())?;
            j.status
                .and_then(|s| s.placement)
                .and_then(|p| p.option)
                .ok_or_else(|| "not placed yet".to_string())
        }
    })
    .await;
    let labels = serde_json::json!({ "metadata": { "labels": {
        "topology.kubernetes.io/region": option.region,
        "node.kubernetes.io/instance-type": option.instance_type,
    } } });
    Api::<k8s_openapi::api::core::v1::Node>::all(member)
        .patch(node, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("label node");
}

/// The operator's own HTTPS client of job `namespace/name`'s aggregator, built by the
/// operator's code from the job's CA in the hub (`fedsky-system`): the channel status is
/// read over (the job's CA only, the operator's client certificate).
pub async fn aggregator_client(hub: &kube::Client, namespace: &str, name: &str) -> reqwest::Client {
    use fedsky_operator::{names, pki::Ca};
    let job = Api::<fedsky_crds::FederatedJob>::namespaced(hub.clone(), namespace)
        .get(name)
        .await
        .expect("job");
    let uid = job.metadata.uid.expect("uid");
    let secret = Api::<Secret>::namespaced(hub.clone(), "fedsky-system")
        .get(&names::job_secret(&uid, "ca"))
        .await
        .expect("the job's CA Secret");
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| String::from_utf8(data.get(k).expect(k).0.clone()).expect("UTF-8");
    let ca = Ca::from_pem(&get("ca.crt"), &get("ca.key"), "test").expect("CA");
    fedsky_operator::controllers::federated_job::aggregator_client::build(
        &names::job_key(namespace, name),
        &ca,
    )
    .expect("aggregator client")
}

/// Downloads the model at `uri` with `client` (see [`aggregator_client`]) and checks that
/// its sha256 is `sha256`, the digest the job's status gives for it; returns the bytes.
pub async fn download_matches(client: &reqwest::Client, uri: &str, sha256: &str) -> Vec<u8> {
    use sha2::Digest;
    let bytes = client
        .get(uri)
        .send()
        .await
        .expect("download")
        .error_for_status()
        .expect("200")
        .bytes()
        .await
        .expect("body");
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest, sha256,
        "the downloaded model is not the one status names"
    );
    bytes.to_vec()
}

/// Waits up to `secs` for FederatedJob `name` to succeed and returns it; panics with its
/// conditions if it fails.
pub async fn job_succeeded(
    jobs: &Api<fedsky_crds::FederatedJob>,
    name: &str,
    what: &str,
    secs: u64,
) -> fedsky_crds::FederatedJob {
    use fedsky_crds::federated_job::JobPhase;
    eventually(what, secs, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(name).await.map_err(|e| e.to_string())?;
            let st = j.status.clone().unwrap_or_default();
            match st.phase {
                Some(JobPhase::Succeeded) => Ok(j),
                Some(JobPhase::Failed) => panic!("job failed: {:?}", st.conditions),
                _ => Err(format!(
                    "{:?} {:?} {:?}",
                    st.phase, st.round_progress, st.conditions
                )),
            }
        }
    })
    .await
}

/// Polls `f` until it returns `Some`, failing after `secs` with `what` and the last debug.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    start.elapsed() < Duration::from_secs(secs),
                    "timed out waiting for {what}; last: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
