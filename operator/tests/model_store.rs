//! The model store end to end with the process runtime, against a REAL S3 peer (moto's
//! server on loopback): a job whose `spec.modelStore.s3` names a bucket, a prefix and a
//! Secret with the keys, `keepVersions: 2` and four rounds,
//! succeeds; the bucket then holds, under the prefix, the models of exactly the versions
//! the aggregator kept (the newest two, and the best by `eval_accuracy` if it is older),
//! the model manager lists the same, and the latest model read from the bucket and from
//! the model manager has the sha256 status names. A job whose Secret lacks a key stalls
//! with a message naming both. Then a job on the volume store (the process runtime's job
//! directory) with `keepVersions: 1` keeps the same way.
//!
//! Needs the `fedsky-aggregator` and libtorch `fedsky-participant` binaries, so it is
//! ignored by a plain `cargo test`; run it like `process_runtime` (see the Makefile's
//! `process-runtime-test`) with `--test model_store -- --ignored`.

mod common;

use common::processes::{SiteSpec, StopOnDrop, bin, process_settings};
use common::{apply_json, eventually};
use fedsky_crds::FederatedJob;
use fedsky_e2e::moto::{Moto, MotoOptions};
use fedsky_operator::run::Settings;
use fedsky_operator::secret_scope::SecretScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

const NS: &str = "default";
const SITES: [SiteSpec<'_>; 2] = [
    ("eu", "xray-eu", "eu-central-1"),
    ("us", "xray-us", "us-east-1"),
];
const BUCKET: &str = "fedsky-models";
const PREFIX: &str = "jobs/xray";

/// A boto3 S3 client with the job's keys (after `import sys, boto3`).
fn s3_client(key: &str, secret: &str) -> String {
    format!(
        r#"s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="{key}", aws_secret_access_key="{secret}")"#
    )
}

/// Every object under the prefix with its sha256, as JSON.
fn bucket_objects(moto: &Moto, key: &str, secret: &str) -> BTreeMap<String, String> {
    let script = format!(
        r#"
import json, sys, hashlib, boto3
{client}
out = {{}}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="{BUCKET}", Prefix="{PREFIX}/"):
    for o in page.get("Contents", []):
        body = s3.get_object(Bucket="{BUCKET}", Key=o["Key"])["Body"].read()
        out[o["Key"]] = hashlib.sha256(body).hexdigest()
print(json.dumps(out))
"#,
        client = s3_client(key, secret)
    );
    serde_json::from_str(&moto.python(&script).expect("list the bucket")).expect("listing json")
}

/// The versions of `models/vNNNNNNNN.<ext>` names.
fn versions_with(names: impl IntoIterator<Item = String>, ext: &str) -> BTreeSet<u64> {
    names
        .into_iter()
        .filter_map(|k| {
            let file = k.rsplit('/').next()?.to_string();
            file.strip_prefix('v')?.strip_suffix(ext)?.parse().ok()
        })
        .collect()
}

/// `eval_accuracy` of each version as the model manager last listed it, polled while the
/// job runs (pruned versions leave the listing, and with them their metrics).
type Seen = Arc<Mutex<BTreeMap<u64, f64>>>;

/// Polls the model manager of job `key`'s aggregator, found through the port the process
/// runtime chose for it (so from its first moment, not once status names it).
fn watch_accuracies(state_dir: &Path, key: &str) -> (Seen, tokio::task::JoinHandle<()>) {
    let (state_dir, key) = (state_dir.to_path_buf(), key.to_string());
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Some((http, base)) = common::processes::local_aggregator(&state_dir, &key)
                && let Ok(r) = http.get(format!("{base}/v1/versions")).send().await
                && let Ok(versions) = r.json::<Vec<fedsky_contract::VersionInfo>>().await
            {
                let mut seen = out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for v in versions {
                    if let Some(a) = v.metrics.get("eval_accuracy") {
                        seen.insert(v.version, *a);
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    (seen, task)
}

/// The sets of versions the aggregator may have kept after `latest` with `keep`: the
/// newest `keep`, plus the best by accuracy among the versions evaluated when it pruned
/// last — those before `latest`, or (if a report on `latest` came first) up to `latest`.
/// A version whose accuracy the poll missed (it was listed only briefly) may have been
/// that best too.
fn allowed_kept(seen: &BTreeMap<u64, f64>, latest: u64, keep: u64) -> BTreeSet<BTreeSet<u64>> {
    let newest: BTreeSet<u64> = (latest + 1 - keep..=latest).collect();
    let mut allowed = BTreeSet::new();
    for last in [latest.saturating_sub(1), latest] {
        let best = seen
            .range(..=last)
            .fold(None::<(u64, f64)>, |best, (v, a)| match best {
                Some((_, b)) if *a <= b => best,
                _ => Some((*v, *a)),
            })
            .map(|(v, _)| v);
        let unseen = (0..=last).filter(|v| !seen.contains_key(v));
        for candidate in best.into_iter().chain(unseen) {
            let mut kept = newest.clone();
            kept.insert(candidate);
            allowed.insert(kept);
        }
    }
    allowed
}

/// The last lines the job's aggregator logged (for failure messages).
fn aggregator_log(state_dir: &Path, key: &str) -> String {
    let log =
        std::fs::read_to_string(state_dir.join(key).join("aggregator/run/log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

async fn create_secret(hub: &kube::Client, name: &str, data: serde_json::Value) {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "namespace": NS },
        "stringData": data,
    }))
    .expect("secret");
    Api::<Secret>::namespaced(hub.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

fn job(name: &str, rounds: i32, model_store: &serde_json::Value) -> serde_json::Value {
    let mut job = common::processes::xray_job(name, NS, rounds, 1, 2);
    job["spec"]["modelStore"] = model_store.clone();
    job
}

async fn delete_and_wait(jobs: &Api<FederatedJob>, name: &str, dir: &Path) {
    jobs.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the job and its processes to be gone", 60, || {
        let jobs = jobs.clone();
        let dir = dir.to_path_buf();
        async move {
            match jobs.get_opt(name).await.map_err(|e| e.to_string())? {
                None if !dir.exists() => Ok(()),
                other => Err(format!("job {:?}, dir {}", other.is_some(), dir.exists())),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the aggregator and libtorch participant binaries: make process-runtime-test"]
async fn model_versions_are_pruned_in_s3_and_in_the_volume_store() {
    let participant = bin("FEDSKY_PARTICIPANT_BIN");
    // moto 5.1 without authentication: with it on, moto refuses the signature of every
    // ListObjectsV2 whose prefix holds a '/' (which real S3 accepts), and the aggregator
    // lists `<prefix>/models/`. The keys still have to reach the aggregator, which refuses
    // to start an S3 store without them.
    let moto = Moto::start(&MotoOptions::default()).expect("moto");
    let (key, secret) = (
        "AKIDFEDSKYTEST".to_string(),
        "fedsky-test-secret".to_string(),
    );
    let create = format!(
        "import sys, boto3\n{}\ns3.create_bucket(Bucket=\"{BUCKET}\")\n",
        s3_client(&key, &secret)
    );
    moto.python(&create).expect("bucket");

    let work = tempfile::tempdir().expect("tempdir");
    let state_dir = work.path().join("state");
    let _stop = StopOnDrop(state_dir.clone());
    // The jobs' Secrets are in their namespace, which the operator may read only when told
    // so (the chart's rbac.secretNamespaces).
    let settings = Settings {
        secrets: SecretScope::new("fedsky-system", [NS.to_string()]),
        ..process_settings(&state_dir, work.path(), None)
    };
    let f = common::processes::hospitals_fleet(&participant, work.path(), &SITES, settings).await;
    let hub = f.hub_client.clone();
    common::processes::hospitals_and_placement(&hub, NS, &SITES).await;
    let jobs: Api<FederatedJob> = Api::namespaced(hub.clone(), NS);
    let s3_store = |secret_name: &str| {
        serde_json::json!({
            "s3": { "endpoint": moto.endpoint(), "bucket": BUCKET, "prefix": PREFIX,
                    "credentialsSecretRef": { "name": secret_name } },
            "keepVersions": 2
        })
    };

    // A Secret without the secret key: the job stalls, naming the Secret and the key.
    create_secret(
        &hub,
        "s3-partial",
        serde_json::json!({ "AWS_ACCESS_KEY_ID": key }),
    )
    .await;
    apply_json(&hub, job("xray-nokey", 4, &s3_store("s3-partial"))).await;
    let message = eventually("the job to stall on its Secret", 120, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("xray-nokey").await.map_err(|e| e.to_string())?;
            let conditions = j.status.map(|s| s.conditions).unwrap_or_default();
            conditions
                .iter()
                .find(|c| c.type_ == "Stalled" && c.status == "True")
                .map(|c| c.message.clone())
                .ok_or_else(|| format!("{conditions:?}"))
        }
    })
    .await;
    assert_eq!(
        message,
        "spec.modelStore.s3.credentialsSecretRef: Secret default/s3-partial has no key AWS_SECRET_ACCESS_KEY (or it is empty)"
    );
    delete_and_wait(&jobs, "xray-nokey", &state_dir.join("default-xray-nokey")).await;

    // The S3 job: four rounds, two versions kept (and the best).
    create_secret(
        &hub,
        "s3-keys",
        serde_json::json!({ "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret }),
    )
    .await;
    let started = std::time::Instant::now();
    apply_json(&hub, job("xray", 4, &s3_store("s3-keys"))).await;
    let (seen, watcher) = watch_accuracies(&state_dir, "default-xray");
    let done = common::job_succeeded(&jobs, "xray", "the S3 job to succeed", 900).await;
    eprintln!("S3 job succeeded after {:?}", started.elapsed());
    let st = done.status.expect("status");
    assert_eq!(st.round_progress.as_deref(), Some("4/4"));
    let latest = st.latest_model.expect("latest model");
    assert_eq!(latest.version, 4);
    let model_url = st.aggregator.and_then(|a| a.model_url).expect("model url");
    // No volume: the job directory has no store.
    assert!(!state_dir.join("default-xray/aggregator/store").exists());

    let objects = tokio::task::block_in_place(|| bucket_objects(&moto, &key, &secret));
    let models = versions_with(objects.keys().cloned(), ".safetensors");
    let infos = versions_with(objects.keys().cloned(), ".json");
    let seen_now = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let allowed = allowed_kept(&seen_now, 4, 2);
    eprintln!("S3 store keeps versions {models:?}; eval_accuracy seen {seen_now:?}");
    assert!(
        allowed.contains(&models),
        "bucket models {models:?}; allowed {allowed:?} from accuracies {seen_now:?}; objects {objects:#?}; aggregator log:\n{}",
        aggregator_log(&state_dir, "default-xray")
    );
    assert_eq!(infos, models, "{objects:#?}");
    assert!(objects.contains_key(&format!("{PREFIX}/checkpoint.json")));
    // The latest model in the bucket is the one status names, and so is the download.
    let in_bucket = &objects[&format!("{PREFIX}/models/v00000004.safetensors")];
    assert_eq!(in_bucket, &latest.sha256);
    // Over the channel the operator reads status on.
    let operator = common::aggregator_client(&hub, NS, "xray").await;
    common::download_matches(&operator, &latest.uri, &latest.sha256).await;
    // The model manager lists what the bucket holds, no more.
    let listed: Vec<fedsky_contract::VersionInfo> = operator
        .get(format!("{model_url}/v1/versions"))
        .send()
        .await
        .expect("versions")
        .json()
        .await
        .expect("json");
    let listed: BTreeSet<u64> = listed.iter().map(|v| v.version).collect();
    assert_eq!(listed, models);
    watcher.abort();
    delete_and_wait(&jobs, "xray", &state_dir.join("default-xray")).await;

    // The volume store (the job directory) with one version kept.
    let started = std::time::Instant::now();
    apply_json(
        &hub,
        job(
            "xray-dir",
            3,
            &serde_json::json!({ "volume": {}, "keepVersions": 1 }),
        ),
    )
    .await;
    let (seen, watcher) = watch_accuracies(&state_dir, "default-xray-dir");
    let done = common::job_succeeded(&jobs, "xray-dir", "the volume job to succeed", 900).await;
    eprintln!("volume job succeeded after {:?}", started.elapsed());
    let latest = done
        .status
        .and_then(|s| s.latest_model)
        .expect("latest model");
    let models_dir = state_dir.join("default-xray-dir/aggregator/store/models");
    let files: Vec<String> = std::fs::read_dir(&models_dir)
        .expect("store dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let models = versions_with(files.iter().cloned(), ".safetensors");
    let seen_now = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let allowed = allowed_kept(&seen_now, 3, 1);
    eprintln!("volume store keeps versions {models:?}; eval_accuracy seen {seen_now:?}");
    assert!(
        allowed.contains(&models),
        "store models {models:?}; allowed {allowed:?} from {seen_now:?}; files {files:?}; aggregator log:\n{}",
        aggregator_log(&state_dir, "default-xray-dir")
    );
    assert_eq!(
        versions_with(files.iter().cloned(), ".json"),
        models,
        "{files:?}"
    );
    let operator = common::aggregator_client(&hub, NS, "xray-dir").await;
    common::download_matches(&operator, &latest.uri, &latest.sha256).await;
    watcher.abort();
    delete_and_wait(&jobs, "xray-dir", &state_dir.join("default-xray-dir")).await;
    f.operator.abort();
}
