//! The aggregator on a VM, on a real control plane against a REAL AWS peer (moto's server
//! on loopback, authentication on): a job placed in a region with no public member
//! cluster gets exactly one EC2 instance tagged for it, with one security group; an
//! operator crash that loses the status write, followed by a restart, still leaves one;
//! deleting the job terminates the instance and deletes the group.

mod common;

use common::{apply_json, eventually, fleet_with};
use fedsky_crds::FederatedJob;
use fedsky_e2e::moto::{Moto, MotoOptions};
use fedsky_operator::run::{Settings, run};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

const WORKER: &[(&str, &str)] = &[("fedsky.dev/fl-worker", "true")];

/// An IAM user allowed everything; prints its key id and secret.
const SETUP: &str = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="fedsky")
iam.put_user_policy(UserName="fedsky", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="fedsky")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

/// The job's instances by state, and every fedsky security group, as moto reports them.
#[derive(Debug, serde::Deserialize)]
struct Census {
    live: Vec<String>,
    terminated: Vec<String>,
    groups: Vec<String>,
}

fn census(moto: &Moto, key: &str, secret: &str) -> Census {
    let script = format!(
        r#"
import json, sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="eu-central-1",
                   aws_access_key_id="{key}", aws_secret_access_key="{secret}")
out = {{"live": [], "terminated": [], "groups": []}}
for r in ec2.describe_instances(Filters=[{{"Name": "tag:fedsky.dev/job", "Values": ["default/xray"]}}])["Reservations"]:
    for i in r["Instances"]:
        out["terminated" if i["State"]["Name"] == "terminated" else "live"].append(i["InstanceId"])
for g in ec2.describe_security_groups()["SecurityGroups"]:
    if g["GroupName"].startswith("fedsky-agg-"):
        out["groups"].append(g["GroupName"])
print(json.dumps(out))
"#
    );
    serde_json::from_str(&moto.python(&script).expect("census")).expect("census json")
}

fn vm_of(job: &FederatedJob) -> Option<String> {
    job.status
        .as_ref()?
        .placement
        .as_ref()?
        .member_cluster
        .clone()
        .filter(|m| m.starts_with("vm/"))
}

/// The operator as the chart runs it with `rbac.secretNamespaces: [default]`.
fn settings() -> Settings {
    Settings {
        secrets: fedsky_operator::secret_scope::SecretScope::new(
            "fedsky-system",
            ["default".to_string()],
        ),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_without_a_member_cluster_gets_one_vm_that_survives_a_crash_and_is_deleted() {
    let moto = Moto::start(&MotoOptions::default()).expect("moto");
    let out = moto.python(SETUP).expect("IAM user");
    let mut words = out.split_whitespace();
    let (key, secret) = (
        words.next().expect("id").to_string(),
        words.next().expect("secret").to_string(),
    );
    moto.enforce_auth().expect("auth on");

    // One private hospital cluster; no public cluster anywhere.
    // The provisioning credentials live in the placement's namespace, which the operator
    // may read only when told so (rbac.secretNamespaces).
    let f = fleet_with(
        &[(
            "hospital-eu",
            "openstack",
            "RegionFrankfurt",
            "private",
            &[("eu-1", WORKER, "8", "16Gi")],
        )],
        settings(),
    )
    .await;
    let hub = f.hub_client.clone();
    let ns = "default";
    let creds: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "aws-provisioning", "namespace": ns },
        "stringData": {
            "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": moto.endpoint(),
        },
    }))
    .expect("secret");
    Api::<Secret>::namespaced(hub.clone(), ns)
        .create(&PostParams::default(), &creds)
        .await
        .expect("credentials secret");
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
        "metadata": { "name": "hospitals", "namespace": ns },
        "spec": {
            "sites": [{ "name": "eu", "memberCluster": "hospital-eu", "cloud": "aws", "region": "eu-central-1",
                        "nodeSelector": { "fedsky.dev/fl-worker": "true" }, "dataVolume": { "hostPath": "/data/xray" } }],
            "minSpec": { "cpu": "2", "memory": "4Gi" }
        }
    })).await;
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
        "metadata": { "name": "xray", "namespace": ns },
        "spec": {
            "participants": { "poolRef": { "name": "hospitals" } },
            "candidates": { "clouds": ["aws"], "regions": ["eu-central-1"] },
            "workload": { "modelSizeMB": 10, "roundsPerMonth": 1000, "localComputeSeconds": 30 },
            "solver": { "type": "Exact" },
            "provisioning": {
                "clouds": [{ "cloud": "aws", "credentialsSecretRef": { "name": "aws-provisioning" },
                             "images": { "*": "ami-0123456789abcdef0" } }],
                "allowedSourceCIDRs": ["203.0.113.0/24"],
                "aggregatorBinary": { "url": "https://downloads.example/fedsky-aggregator",
                                      "sha256": "ab".repeat(32) }
            }
        }
    })).await;
    apply_json(&hub, serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": "xray", "namespace": ns },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3 } },
            "dataset": { "format": "ImageFolder", "path": "covid" },
            "training": { "rounds": 5, "seed": 1 },
            "participants": { "poolRef": { "name": "hospitals" }, "minPerRound": 1, "maxPerRound": 1 },
            "placement": { "placementRef": { "name": "xray" } }
        }
    })).await;

    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), ns);
    let (vm, endpoint) = eventually("the aggregator VM serves", 90, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            let endpoint = j.status.as_ref().and_then(|s| s.aggregator.clone());
            match (vm_of(&j), endpoint) {
                (Some(vm), Some(e)) => Ok((vm, e.endpoint)),
                _ => Err(format!(
                    "{:#?}",
                    j.status.map(|s| (s.placement, s.aggregator, s.conditions))
                )),
            }
        }
    })
    .await;
    assert!(vm.starts_with("vm/aws/eu-central-1/i-"), "{vm}");
    assert!(endpoint.ends_with(":50051"), "{endpoint}");
    let c = tokio::task::block_in_place(|| census(&moto, &key, &secret));
    assert_eq!(c.live.len(), 1, "{c:?}");
    assert!(vm.ends_with(&c.live[0]), "{vm} vs {c:?}");
    assert_eq!(c.groups.len(), 1, "{c:?}");

    // A crash after RunInstances that lost the status write: stop the operator, drop what
    // status recorded, start a new operator. It finds the instance again by its tags.
    f.operator.abort();
    let _ = f.operator.await;
    jobs.patch_status(
        "xray",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": {
            "placement": { "memberCluster": null }, "aggregator": null } })),
    )
    .await
    .expect("drop the VM from status");
    assert_eq!(vm_of(&jobs.get("xray").await.expect("job")), None);
    let operator = tokio::spawn(run(f.operator_client.clone(), settings()));
    let again = eventually("the restarted operator records the VM", 90, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray").await.map_err(|e| e.to_string())?;
            vm_of(&j).ok_or_else(|| "not yet".to_string())
        }
    })
    .await;
    assert_eq!(again, vm);
    // Several reconciles later there is still exactly one.
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    let c = tokio::task::block_in_place(|| census(&moto, &key, &secret));
    assert_eq!(c.live.len(), 1, "{c:?}");
    assert_eq!(c.groups.len(), 1, "{c:?}");

    // Deleting the job terminates the instance and deletes its group.
    jobs.delete("xray", &DeleteParams::default())
        .await
        .expect("delete job");
    eventually("the job is gone", 90, || {
        let jobs = jobs.clone();
        async move {
            match jobs.get_opt("xray").await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(j) => Err(format!("{:?}", j.metadata.finalizers)),
            }
        }
    })
    .await;
    let c = tokio::task::block_in_place(|| census(&moto, &key, &secret));
    assert!(c.live.is_empty(), "{c:?}");
    assert_eq!(c.terminated.len(), 1, "{c:?}");
    assert!(c.groups.is_empty(), "{c:?}");
    operator.abort();
}
