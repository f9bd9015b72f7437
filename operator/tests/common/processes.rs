//! Helpers for tests that run the operator's process runtime with the real aggregator and
//! libtorch participant binaries.

use fedsky_operator::run::Settings;
use fedsky_operator::runtime::{NetworkEmulator, ProcessRuntime, ProcessSettings, Runtime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The binary named by the environment variable `var` (set by the test's make target).
pub fn bin(var: &str) -> PathBuf {
    let p = PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} must name the binary; run this test through its make target (see the Makefile)"
        )
    }));
    assert!(p.is_file(), "{var}={} is not a file", p.display());
    p
}

/// Operator settings with the process runtime over the binaries named by
/// `FEDSKY_AGGREGATOR_BIN` and `FEDSKY_PARTICIPANT_BIN`: job state under `state_dir`,
/// PersistentVolumeClaim data under `data_root`, one thread per participant.
pub fn process_settings(
    state_dir: &Path,
    data_root: &Path,
    network: Option<NetworkEmulator>,
) -> Settings {
    Settings {
        runtime: Arc::new(Runtime::Process(ProcessRuntime::new(ProcessSettings {
            state_dir: state_dir.to_path_buf(),
            aggregator_bin: bin("FEDSKY_AGGREGATOR_BIN"),
            participant_bin: bin("FEDSKY_PARTICIPANT_BIN"),
            data_root: Some(data_root.to_path_buf()),
            participant_threads: 1,
            network,
        }))),
        ..Default::default()
    }
}

/// Kills the process group `pgid` (never 0 or 1).
/// A client of the process-runtime aggregator of job `key` under `state_dir` and its model
/// manager's base URL, from the files the runtime wrote for it (`aggregator/ports.json`,
/// `ca.crt`, `token`): HTTPS trusting the job's CA only, with the job token. `None` until
/// those files exist.
pub fn local_aggregator(state_dir: &Path, key: &str) -> Option<(reqwest::Client, String)> {
    let dir = state_dir.join(key).join("aggregator");
    let ports: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ports.json")).ok()?).ok()?;
    let port = ports["http"].as_u64()?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).ok()?).ok()?;
    let token = std::fs::read_to_string(dir.join("token")).ok()?;
    let mut auth =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?;
    auth.set_sensitive(true);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            auth,
        )]))
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .ok()?;
    Some((client, format!("https://127.0.0.1:{port}")))
}

pub fn kill_group(pgid: u32) {
    if pgid > 1 {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Kills whatever the runtime started under `0` when the test ends, also on a panic (the
/// processes run in their own process groups and would outlive the test).
pub struct StopOnDrop(pub PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.file_name().is_some_and(|n| n == "pid") {
                    out.push(p);
                }
            }
        }
        let mut pids = Vec::new();
        walk(&self.0, &mut pids);
        for f in pids {
            if let Ok(pid) = std::fs::read_to_string(&f) {
                kill_group(pid.trim().parse().unwrap_or(0));
            }
        }
    }
}

/// A small non-IID synthetic X-ray site (32 px, 90 training images) whose dominant class
/// is `dominant`, written by `fedsky-participant synth`.
pub fn synth(participant: &Path, out: &Path, dominant: usize) {
    synth_sized(participant, out, dominant, 32, 90);
}

/// A non-IID synthetic X-ray site of `images` training images of `size` pixels (10 test
/// images per class), 60 % of them of class `dominant`.
pub fn synth_sized(participant: &Path, out: &Path, dominant: usize, size: u32, images: u32) {
    let status = std::process::Command::new(participant)
        .args([
            "synth",
            "--size",
            &size.to_string(),
            "--test-per-class",
            "10",
        ])
        .args(["--train", &images.to_string()])
        .args(["--share", "0.6", "--dominant-class", &dominant.to_string()])
        .args(["--seed", &(100 + dominant).to_string(), "--out"])
        .arg(out)
        .status()
        .expect("fedsky-participant synth runs");
    assert!(status.success(), "synth failed");
}

/// A site of the process-runtime tests: name, data claim, region of its network data.
pub type SiteSpec<'a> = (&'a str, &'a str, &'a str);

/// The ParticipantPool `hospitals` of the process-runtime tests, one site per
/// [`SiteSpec`] on member cluster `hospitals` (nodes labelled `fedsky.dev/site=<site>`),
/// and the AggregatorPlacement `xray` (exact, AWS Frankfurt).
pub async fn hospitals_and_placement(hub: &kube::Client, ns: &str, sites: &[SiteSpec<'_>]) {
    let sites: Vec<serde_json::Value> = sites
        .iter()
        .map(|(site, claim, region)| {
            serde_json::json!({
                "name": site, "memberCluster": "hospitals", "cloud": "aws", "region": region,
                "nodeSelector": { "fedsky.dev/site": site },
                "dataVolume": { "persistentVolumeClaim": claim },
            })
        })
        .collect();
    super::apply_json(
        hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "ParticipantPool",
            "metadata": { "name": "hospitals", "namespace": ns },
            "spec": { "sites": sites, "minSpec": { "cpu": "1", "memory": "1Gi" } }
        }),
    )
    .await;
    super::apply_json(
        hub,
        serde_json::json!({
            "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "AggregatorPlacement",
            "metadata": { "name": "xray", "namespace": ns },
            "spec": {
                "participants": { "poolRef": { "name": "hospitals" } },
                "candidates": { "clouds": ["aws"], "regions": ["eu-central-1"] },
                "solver": { "type": "Exact" }
            }
        }),
    )
    .await;
}

/// Each site's synthetic X-rays under `<work>/<claim>/xray` (site `i` mostly
/// class `i`), and a fleet with the public cluster `aws-eu-central-1` (node `agg-1`) and
/// the private cluster `hospitals` with one node per site (`h-1`, `h-2`, ..., labelled
/// `fedsky.dev/site=<site>`), its operator run with `settings`.
pub async fn hospitals_fleet(
    participant: &Path,
    work: &Path,
    sites: &[SiteSpec<'_>],
    settings: Settings,
) -> super::Fleet {
    for (i, (_, claim, _)) in sites.iter().enumerate() {
        synth(participant, &work.join(claim).join("xray"), i);
    }
    let labels: Vec<[(&str, &str); 1]> = sites
        .iter()
        .map(|(site, _, _)| [("fedsky.dev/site", *site)])
        .collect();
    let names: Vec<String> = (1..=sites.len()).map(|i| format!("h-{i}")).collect();
    let nodes: Vec<super::NodeSpec<'_>> = names
        .iter()
        .zip(&labels)
        .map(|(n, l)| (n.as_str(), &l[..], "8", "16Gi"))
        .collect();
    super::fleet_with(
        &[
            (
                "aws-eu-central-1",
                "aws",
                "eu-central-1",
                "public",
                &[("agg-1", &[], "8", "16Gi")],
            ),
            ("hospitals", "openstack", "RegionOne", "private", &nodes),
        ],
        settings,
    )
    .await
}

/// The FederatedJob `name` of the process-runtime tests: SmallCNN on 32-pixel X-rays of
/// the pool `hospitals`, placed by `xray`, `per_round` participants a round.
pub fn xray_job(
    name: &str,
    ns: &str,
    rounds: i32,
    local_epochs: u32,
    per_round: u32,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1", "kind": "FederatedJob",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "model": { "builtin": { "architecture": "SmallCNN", "numClasses": 3, "imageSize": 32 } },
            "dataset": { "format": "ImageFolder", "path": "xray",
                         "classes": ["Covid", "Normal", "Viral Pneumonia"] },
            "training": { "rounds": rounds, "localEpochs": local_epochs, "batchSize": 16,
                          "learningRate": 0.05, "seed": 5 },
            "participants": { "poolRef": { "name": "hospitals" }, "minPerRound": per_round,
                              "maxPerRound": per_round, "roundTimeoutSeconds": 120 },
            "placement": { "placementRef": { "name": "xray" } }
        }
    })
}
