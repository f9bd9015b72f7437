//! FederatedJob end to end on real control planes: a hub, a public AWS member for the
//! aggregator and two private hospital members. Placement is solved, the aggregator
//! appears in the placed cluster, participant Jobs land only on eligible nodes spread
//! across sites, a failed participant is replaced on another node, and deleting the job
//! removes everything it created in every cluster.

mod common;

use common::{apply_json, capacity, eventually, fleet_with};
use fedsky_crds::conditions;
use fedsky_crds::federated_job::ParticipantPhase;
use fedsky_crds::{AggregatorPlacement, FederatedJob};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use std::collections::BTreeMap;
use std::time::Duration;

const WORKER: &[(&str, &str)] = &[("fedsky.dev/fl-worker", "true")];
const AGGREGATOR_NODE: &[(&str, &str)] = &[
    ("topology.kubernetes.io/region", "eu-central-1"),
    ("node.kubernetes.io/instance-type", "m5.large"),
];

fn cond_true(job: &FederatedJob, t: &str) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, t))
}

/// The CN of a PEM certificate.
fn common_name(pem: &[u8]) -> String {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("certificate");
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .expect("CN")
        .to_string()
}

async fn participant_jobs(client: &kube::Client) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), "fedsky-participants")
        .list(&ListParams::default().labels("fl.fedsky.dev/role=participant"))
        .await
        .map(|l| l.items)
        // Failed, it must fail the test: an empty list would pass "all cleaned up".
        .unwrap_or_else(|e| panic!("listing participant Jobs: {e}"))
}

fn node_of(job: &Job) -> String {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.node_name.clone())
        .unwrap_or_default()
}

/// Grants this lifecycle does not need but another test on an audited hub does, where a
/// missing grant is a refused request that fails it (`common::NothingRefused`).
const NEEDED_ELSEWHERE: &[(&str, &str, &str)] = &[
    // vm_provisioning.rs: the VM path reads the job and its placement.
    ("fl.fedsky.dev", "federatedjobs", "get"),
    // operator_restarts.rs: a job with inline placement gets its AggregatorPlacement by
    // server-side apply, a patch that needs create too when it creates the object.
    ("fl.fedsky.dev", "aggregatorplacements", "patch"),
    ("fl.fedsky.dev", "aggregatorplacements", "create"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_is_placed_started_healed_and_cleaned_up() {
    // As the chart runs it: leader election on, so its Lease grants are exercised too.
    let settings = fedsky_operator::run::Settings {
        election: Some(fedsky_operator::run::default_election(
            "fedsky-system".into(),
            "federated-job-test".into(),
        )),
        ..Default::default()
    };
    let f = fleet_with(
        &[
            (
                "aws-eu-central-1",
                "aws",
                "eu-central-1",
                "public",
                // Labelled as the cloud labels its nodes: the aggregator requires the
                // placed region and instance type.
                &[("agg-1", AGGREGATOR_NODE, "8", "16Gi")],
            ),
            (
                "hospital-eu",
                "openstack",
                "RegionFrankfurt",
                "private",
                &[
                    ("eu-big", WORKER, "8", "16Gi"),
                    ("eu-small", WORKER, "1", "1Gi"),
                ],
            ),
            (
                "hospital-us",
                "openstack",
                "RegionVirginia",
                "private",
                &[("us-1", WORKER, "4", "8Gi"), ("us-2", WORKER, "4", "8Gi")],
            ),
        ],
        settings,
    )
    .await;
    let hub = f.hub_client.clone();
    let ns = "default";
    // kwok clusters have no volume provisioner: give the aggregator's model store a PV to
    // bind, as a cloud cluster's default StorageClass would.
    apply_json(
        &f.members[0].2,
        serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": { "name": "model-store" },
            "spec": { "capacity": { "storage": "5Gi" }, "accessModes": ["ReadWriteOnce"],
                      "hostPath": { "path": "/var/lib/fedsky" } }
        }),
    )
    .await;
    // In `kubectl apply -f dir/` order (alphabetical): the job exists before its pool.
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
        "metadata": { "name": "xray", "namespace": ns },
        "spec": {
            "participants": { "poolRef": { "name": "hospitals" } },
            "candidates": { "clouds": ["aws"], "regions": ["eu-central-1"], "instanceTypes": ["m5.large"] },
            "requirements": { "costWeight": 0.5 },
            "workload": { "modelSizeMB": 10, "roundsPerMonth": 1000, "localComputeSeconds": 30 },
            "solver": { "type": "Exact" }
        }
    })).await;
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": "xray", "namespace": ns },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3 } },
            "dataset": { "format": "ImageFolder", "path": "covid" },
            "training": { "rounds": 5, "seed": 1 },
            "participants": { "poolRef": { "name": "hospitals" }, "minPerRound": 2, "maxPerRound": 2,
                              "maxReplacements": 3 },
            "placement": { "placementRef": { "name": "xray" } }
        }
    })).await;

    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
        "metadata": { "name": "hospitals", "namespace": ns },
        "spec": {
            "sites": [
                { "name": "eu", "memberCluster": "hospital-eu", "cloud": "aws", "region": "eu-central-1",
                  "nodeSelector": { "fedsky.dev/fl-worker": "true" }, "dataVolume": { "hostPath": "/data/xray" } },
                { "name": "us", "memberCluster": "hospital-us", "cloud": "aws", "region": "us-east-1",
                  "nodeSelector": { "fedsky.dev/fl-worker": "true" }, "dataVolume": { "hostPath": "/data/xray" } }
            ],
            "minSpec": { "cpu": "2", "memory": "4Gi" },
            "selection": { "policy": "ResourceAware", "maxFailuresPerNode": 1, "failureCooldownSeconds": 600 }
        }
    })).await;
    let pool_created = std::time::Instant::now();

    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), ns);
    let placements: Api<AggregatorPlacement> = Api::namespaced(hub.clone(), ns);
    let ap = eventually("placement solved", 60, || {
        let placements = placements.clone();
        async move {
            let ap = placements.get("xray").await.map_err(|e| e.to_string())?;
            if ap
                .status
                .as_ref()
                .and_then(|s| s.selected.as_ref())
                .is_some()
            {
                Ok(ap)
            } else {
                Err(format!("{:?}", ap.status))
            }
        }
    })
    .await;
    let selected = ap.status.and_then(|s| s.selected).expect("selected");
    assert_eq!(
        (selected.cloud.as_str(), selected.region.as_str()),
        ("aws", "eu-central-1")
    );

    // The pool's arrival re-triggers the job at once, not at its next periodic check (60 s).
    eventually("Placed after the pool appeared", 45, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            if cond_true(&j, "Placed") {
                Ok(())
            } else {
                Err(format!("{:#?}", j.status))
            }
        }
    })
    .await;
    eprintln!(
        "Placed {:?} after the pool was created",
        pool_created.elapsed()
    );
    let job = eventually("Placed and AggregatorReady", 120, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            if cond_true(&j, "Placed") && cond_true(&j, "AggregatorReady") {
                Ok(j)
            } else {
                Err(format!("{:#?}", j.status))
            }
        }
    })
    .await;
    assert_eq!(
        job.status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .and_then(|p| p.member_cluster.as_deref()),
        Some("aws-eu-central-1")
    );
    let aws = &f.members[0].2;
    let deps = Api::<Deployment>::namespaced(aws.clone(), "fedsky-aggregators")
        .list(&Default::default())
        .await
        .expect("deployments");
    assert_eq!(deps.items.len(), 1, "exactly one aggregator");

    // Participants: two, on eligible nodes, one per site.
    let (eu, us) = (&f.members[1].2, &f.members[2].2);
    let running = eventually("ParticipantsReady", 120, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            if cond_true(&j, "ParticipantsReady") {
                Ok(j)
            } else {
                Err(format!("{:#?}", j.status))
            }
        }
    })
    .await;
    assert_eq!(
        running.status.as_ref().and_then(|s| s.phase),
        Some(fedsky_crds::federated_job::JobPhase::Running)
    );
    let eu_jobs = participant_jobs(eu).await;
    let us_jobs = participant_jobs(us).await;
    assert_eq!(
        (eu_jobs.len(), us_jobs.len()),
        (1, 1),
        "spread round-robin across sites"
    );
    assert_eq!(
        node_of(&eu_jobs[0]),
        "eu-big",
        "eu-small is below the minimum spec"
    );
    let failed_node = node_of(&us_jobs[0]);

    // A participant pod fails: the orchestrator starts a replacement on the other US node.
    let pods: Api<Pod> = Api::namespaced(us.clone(), "fedsky-participants");
    let pod = pods
        .list(&ListParams::default().labels("fl.fedsky.dev/role=participant"))
        .await
        .expect("pods")
        .items;
    let pod_name = pod
        .first()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .expect("participant pod");
    let fail = serde_json::json!({ "status": { "phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory." } });
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&fail))
        .await
        .expect("fail pod");
    let healed = eventually("replacement recorded", 120, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            let st = j.status.clone().ok_or("no status")?;
            if st.replacements == Some(1) && cond_true(&j, "ParticipantsReady") {
                Ok(j)
            } else {
                Err(format!("{st:#?}"))
            }
        }
    })
    .await;
    let st = healed.status.expect("status");
    assert!(
        st.participants
            .iter()
            .any(|p| p.state == ParticipantPhase::Replaced
                && p.node.as_deref() == Some(failed_node.as_str()))
    );
    assert_eq!(st.failure_marks.len(), 1);
    let us_jobs = participant_jobs(us).await;
    let live: Vec<String> = us_jobs.iter().map(node_of).collect();
    assert_eq!(live.len(), 1, "the failed Job is removed: {live:?}");
    assert_ne!(live[0], failed_node, "replacement runs on another node");

    // Mutual TLS: the aggregator holds its server certificate and the job's CA; each
    // participant has its own Secret whose certificate names it; a replaced participant's
    // certificate is gone; no key reaches status or Events.
    let agg_secret = Api::<Secret>::namespaced(aws.clone(), "fedsky-aggregators")
        .list(&ListParams::default().labels("fl.fedsky.dev/role=aggregator"))
        .await
        .expect("aggregator secrets");
    let data = agg_secret.items[0].data.clone().expect("data");
    for key in ["tls.crt", "tls.key", "ca.crt", "token"] {
        assert!(data.contains_key(key), "aggregator Secret lacks {key}");
    }
    // Network policies, admitted by the member API servers: the aggregator's and one per
    // site for the job's participants.
    let policies = |client: &kube::Client, ns: &'static str| {
        let api = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
        async move {
            api.list(&ListParams::default().labels("fl.fedsky.dev/job=default-xray"))
                .await
                .expect("network policies")
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        policies(aws, "fedsky-aggregators").await,
        ["fedsky-agg-default-xray"]
    );
    for site in [eu, us] {
        assert_eq!(
            policies(site, "fedsky-participants").await,
            ["fedsky-agg-default-xray-participants"]
        );
    }
    let participant_secrets = Api::<Secret>::namespaced(us.clone(), "fedsky-participants");
    for j in eu_jobs.iter().chain(&us_jobs) {
        let name = j.metadata.name.clone().expect("name");
        let client = if eu_jobs.contains(j) { eu } else { us };
        let s = Api::<Secret>::namespaced(client.clone(), "fedsky-participants")
            .get(&name)
            .await
            .expect("participant Secret named like its Job");
        let pem = s.data.expect("data")["tls.crt"].0.clone();
        assert_eq!(
            common_name(&pem),
            name,
            "the certificate names the participant"
        );
    }
    let replaced = st
        .participants
        .iter()
        .find(|p| p.state == ParticipantPhase::Replaced)
        .map(|p| p.name.clone())
        .expect("replaced participant");
    assert!(
        participant_secrets
            .get_opt(&replaced)
            .await
            .expect("get")
            .is_none_or(|s| s.metadata.deletion_timestamp.is_some()),
        "the replaced participant's certificate is deleted"
    );
    let text = serde_json::to_string(&st).expect("status");
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(hub.clone(), ns)
        .list(&Default::default())
        .await
        .expect("events");
    let events = serde_json::to_string(&events.items).expect("events");
    // The job token, from its hub Secret: as secret as the keys.
    let token = Api::<Secret>::namespaced(hub.clone(), "fedsky-system")
        .list(&ListParams::default().labels("fl.fedsky.dev/job=default-xray"))
        .await
        .expect("job credentials")
        .items
        .into_iter()
        .find_map(|s| s.data?.remove("token"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .expect("the job token's Secret");
    assert!(token.len() >= 32, "a token of {} characters", token.len());
    for t in [text, events] {
        assert!(!t.contains("PRIVATE KEY"), "key material leaked: {t}");
        assert!(!t.contains(&token), "the job token leaked: {t}");
    }

    // A site that cannot be read has not failed: while hospital-us hangs, nothing starts in
    // its place, even with room at eu, and its participant stays in the status.
    let spare: BTreeMap<String, String> = WORKER
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.members[1]
        .1
        .add_node(eu, "eu-spare", spare, capacity("8", "16Gi"))
        .await
        .expect("spare eu node");
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.members[2]
        .1
        .pause("kube-apiserver")
        .expect("pause hospital-us");
    let unreadable = eventually("hospital-us unreadable in status", 60, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            let st = j.status.ok_or("no status")?;
            let us_live = st.participants.iter().find(|p| {
                p.site == "us"
                    && p.state != ParticipantPhase::Replaced
                    && p.message
                        .as_deref()
                        .is_some_and(|m| m.contains("cannot be read"))
            });
            us_live
                .cloned()
                .ok_or_else(|| format!("{:#?}", st.participants))
        }
    })
    .await;
    // Several more reconciles (5 s apart while the status changes).
    tokio::time::sleep(Duration::from_secs(15)).await;
    let eu_during = participant_jobs(eu).await;
    f.members[2]
        .1
        .resume("kube-apiserver")
        .expect("resume hospital-us");
    let eu_nodes: Vec<String> = eu_during.iter().map(node_of).collect();
    assert_eq!(
        eu_nodes,
        ["eu-big"],
        "nothing started in the hung site's place"
    );
    assert_eq!(
        unreadable.name,
        us_jobs[0].metadata.name.clone().unwrap_or_default()
    );
    eventually("hospital-us read again", 90, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            let st = j.status.clone().ok_or("no status")?;
            let stale = st.participants.iter().any(|p| {
                p.message
                    .as_deref()
                    .is_some_and(|m| m.contains("cannot be read"))
            });
            if !stale && cond_true(&j, "ParticipantsReady") && st.replacements == Some(1) {
                Ok(())
            } else {
                Err(format!("{st:#?}"))
            }
        }
    })
    .await;
    assert_eq!(participant_jobs(eu).await.len(), 1);
    assert_eq!(participant_jobs(us).await.len(), 1);

    // Deleting the job removes what it created in every cluster.
    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("job gone", 60, || {
        let jobs = jobs.clone();
        async move {
            if jobs
                .get_opt("xray")
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                Ok(())
            } else {
                Err("still there".into())
            }
        }
    })
    .await;
    assert!(participant_jobs(eu).await.is_empty());
    assert!(participant_jobs(us).await.is_empty());
    let deps = Api::<Deployment>::namespaced(aws.clone(), "fedsky-aggregators")
        .list(&Default::default())
        .await
        .expect("deployments");
    assert!(deps.items.is_empty(), "aggregator removed");
    assert!(policies(aws, "fedsky-aggregators").await.is_empty());
    for site in [eu, us] {
        assert!(policies(site, "fedsky-participants").await.is_empty());
    }
    let left = Api::<Secret>::namespaced(hub.clone(), "fedsky-system")
        .list(&ListParams::default().labels("fl.fedsky.dev/job=default-xray"))
        .await
        .expect("job credentials");
    assert!(left.items.is_empty(), "the job's token and CA are deleted");

    // The chart's roles grant exactly what the operator did in this lifecycle: nothing
    // was refused, and each rule was the only one allowing some request, so removing any
    // rule would refuse one.
    let events = f.hub.audit_events().expect("audit log");
    let rules = fedsky_e2e::rbac::rules(&f.rbac_yaml).expect("rendered roles");
    let verdict = fedsky_e2e::rbac::judge(
        &rules,
        &events,
        &fedsky_e2e::rbac::operator_user(),
        NEEDED_ELSEWHERE,
    );
    assert!(verdict.is_exact(), "{verdict:#?}");
    f.operator.abort();
}
