//! Upgrading the Helm chart on a real API server: from the previous release (0.1.0, whose
//! CRDs sat in crds/ where Helm never upgrades them) to this chart, then to a chart with a
//! changed CRD, and uninstalling. Objects and their status must survive every step.

mod common;

use common::repo_root;
use fedsky_e2e::{ControlPlane, KubectlOutput, Options, helm, kubectl};
use serde_json::Value;
use std::path::Path;

/// The previous release's chart, as `helm package` made it.
const PREVIOUS_CHART: &str = "e2e/testdata/charts/fedsky-0.1.0.tgz";
const RELEASE: &str = "fedsky";
const NS: &str = "fedsky-system";

fn ok(what: &str, out: KubectlOutput) -> KubectlOutput {
    assert!(
        out.success,
        "{what} failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    out
}

fn helm_ok(plane: &ControlPlane, args: &[&str]) -> KubectlOutput {
    let out = helm(Some(plane.kubeconfig_path()), &repo_root(), args).expect("helm runs");
    ok(&format!("helm {args:?}"), out)
}

fn kc(plane: &ControlPlane, args: &[&str]) -> KubectlOutput {
    kubectl(plane.kubeconfig_path(), args).expect("kubectl runs")
}

fn get_json(plane: &ControlPlane, args: &[&str]) -> Value {
    let mut all = vec!["get", "-o", "json"];
    all.extend_from_slice(args);
    let out = ok(&format!("kubectl {all:?}"), kc(plane, &all));
    serde_json::from_str(&out.stdout).expect("kubectl prints JSON")
}

fn fj_schema(plane: &ControlPlane) -> Value {
    let crd = get_json(plane, &["crd", "federatedjobs.fl.fedsky.dev"]);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .clone()
}

/// A copy of this chart whose FederatedJob CRD has one more short name and a new version.
fn changed_chart(dir: &Path) -> std::path::PathBuf {
    let src = repo_root().join("charts/fedsky");
    let dst = dir.join("fedsky");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .args([&src, &dst])
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying the chart failed");
    let crds = dst.join("files/crds.yaml");
    let text = std::fs::read_to_string(&crds).expect("crds.yaml");
    let changed = text.replacen(
        "shortNames:\n    - fj\n",
        "shortNames:\n    - fj\n    - fjob\n",
        1,
    );
    assert_ne!(
        changed, text,
        "the FederatedJob CRD lists short name fj as expected"
    );
    std::fs::write(&crds, changed).expect("write crds.yaml");
    let chart = dst.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart).expect("Chart.yaml");
    std::fs::write(
        &chart,
        text.replace("\nversion: ", "\nversion: 99.0.0\n# was: "),
    )
    .expect("write");
    dst
}

#[test]
fn upgrades_bring_changed_crds_and_keep_objects_and_status() {
    let plane = ControlPlane::start(&Options::api_only("chart-upgrade")).expect("control plane");
    helm_ok(
        &plane,
        &[
            "install",
            RELEASE,
            PREVIOUS_CHART,
            "-n",
            NS,
            "--create-namespace",
        ],
    );
    assert!(
        fj_schema(&plane).get("images").is_none(),
        "0.1.0 has no spec.images"
    );

    // An object with a status, written as the operator writes it.
    ok(
        "create namespace",
        kc(&plane, &["create", "namespace", "covid-xray"]),
    );
    let job = repo_root().join("examples/covid-xray/federated-job.yaml");
    ok(
        "apply job",
        kc(&plane, &["apply", "-f", &job.display().to_string()]),
    );
    ok(
        "status patch",
        kc(
            &plane,
            &[
                "patch",
                "fj",
                "covid-xray",
                "-n",
                "covid-xray",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Running","currentRound":3,"roundProgress":"3/20"}}"#,
            ],
        ),
    );
    let before = get_json(&plane, &["fj", "covid-xray", "-n", "covid-xray"]);

    // 0.1.0 installed the CRDs from crds/, outside the release: Helm refuses to take them
    // over unless told to, which is why docs/install.md says --take-ownership.
    let chart = repo_root().join("charts/fedsky").display().to_string();
    let plain = helm(
        Some(plane.kubeconfig_path()),
        &repo_root(),
        &["upgrade", RELEASE, &chart, "-n", NS],
    )
    .expect("helm runs");
    assert!(
        !plain.success && plain.stderr.contains("invalid ownership metadata"),
        "expected Helm to refuse CRDs it does not own:\n{}",
        plain.stderr
    );
    helm_ok(
        &plane,
        &["upgrade", RELEASE, &chart, "-n", NS, "--take-ownership"],
    );
    let crd = get_json(&plane, &["crd", "federatedjobs.fl.fedsky.dev"]);
    assert_eq!(
        crd["metadata"]["annotations"]["meta.helm.sh/release-name"],
        RELEASE
    );
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(
        fj_schema(&plane).get("images").is_some(),
        "the upgrade brought spec.images"
    );
    let after = get_json(&plane, &["fj", "covid-xray", "-n", "covid-xray"]);
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["status"], before["status"]);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);

    // A later chart with a changed CRD: a plain upgrade brings it.
    let dir = tempfile::tempdir().expect("temp dir");
    let changed = changed_chart(dir.path()).display().to_string();
    helm_ok(&plane, &["upgrade", RELEASE, &changed, "-n", NS]);
    let names =
        get_json(&plane, &["crd", "federatedjobs.fl.fedsky.dev"])["spec"]["names"]["shortNames"]
            .clone();
    assert_eq!(names, serde_json::json!(["fj", "fjob"]));
    let via_new_name = get_json(&plane, &["fjob", "covid-xray", "-n", "covid-xray"]);
    assert_eq!(via_new_name["status"], before["status"]);

    // Uninstalling keeps the CRDs and so every job.
    helm_ok(&plane, &["uninstall", RELEASE, "-n", NS]);
    let kept = get_json(&plane, &["fj", "covid-xray", "-n", "covid-xray"]);
    assert_eq!(kept["status"], before["status"]);
    assert!(
        !kc(
            &plane,
            &[
                "get",
                "deployment",
                "-n",
                NS,
                "-l",
                "app.kubernetes.io/instance=fedsky",
                "-o",
                "name"
            ]
        )
        .stdout
        .contains("deployment"),
        "the operator's Deployment is gone with the release"
    );
}
