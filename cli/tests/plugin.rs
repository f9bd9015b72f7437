//! `kubectl fedsky` against a real kube-apiserver (started by `fedsky-e2e`, RBAC on):
//! users are ServiceAccounts with their own tokens, as a person's kubeconfig would hold
//! them, and only their Roles decide what the plugin may read. A user granted `get` on
//! the fedsky kinds sees status and placement; one without is refused with a message
//! naming the missing grant. The model API is not installed here, so downloads stop at
//! the API server: 403 without the grant, 404 with it, 503 once an APIService for it is
//! registered but unavailable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fedsky_e2e::{ControlPlane, KubectlOutput, kubectl};

/// The objects the unit tests render, as the operator would have written them.
const JOB: &str = include_str!("data/plugin/federated-job.json");
const PLACEMENT: &str = include_str!("data/plugin/aggregator-placement.json");

/// One namespace with a job and its placement, and a kubeconfig per user.
struct Fixture {
    namespace: String,
    /// `get` on federatedjobs and aggregatorplacements.
    viewer: PathBuf,
    /// No Role at all.
    stranger: PathBuf,
    /// `get` on federatedjobs only.
    jobs_only: PathBuf,
    /// The viewer's grants plus `get` on models and models/content.
    model_reader: PathBuf,
    /// Keeps the kubeconfigs until the process exits.
    _dir: tempfile::TempDir,
}

fn hub() -> &'static ControlPlane {
    match ControlPlane::shared() {
        Ok(cp) => cp,
        Err(e) => panic!("{e}"),
    }
}

fn ok(out: KubectlOutput, what: &str) -> String {
    assert!(out.success, "{what}: {}{}", out.stdout, out.stderr);
    out.stdout
}

fn k(args: &[&str]) -> KubectlOutput {
    kubectl(hub().kubeconfig_path(), args).expect("kubectl runs")
}

/// `kubectl apply` of one object given as JSON.
fn apply(object: &serde_json::Value) {
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), object.to_string()).expect("write");
    let path = file.path().display().to_string();
    ok(k(&["apply", "-f", &path]), "kubectl apply");
}

fn object(text: &str, namespace: &str) -> (serde_json::Value, serde_json::Value) {
    let mut v: serde_json::Value = serde_json::from_str(text).expect("test data");
    v["metadata"]["namespace"] = namespace.into();
    let status = v
        .as_object_mut()
        .and_then(|o| o.remove("status"))
        .expect("status");
    (v, status)
}

/// A kubeconfig holding only `token` for the hub, with a context per namespace: `main`
/// (the test namespace, the current one) and `elsewhere` (`default`).
fn token_kubeconfig(token: &str, namespace: &str) -> String {
    let admin: serde_yaml::Value =
        serde_yaml::from_str(hub().kubeconfig_yaml()).expect("admin kubeconfig");
    let ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("CA data")
        .to_string();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "hub", "cluster": { "server": hub().server(), "certificate-authority-data": ca } }],
        "users": [{ "name": "me", "user": { "token": token } }],
        "contexts": [
            { "name": "main", "context": { "cluster": "hub", "user": "me", "namespace": namespace } },
            { "name": "elsewhere", "context": { "cluster": "hub", "user": "me" } }
        ],
        "current-context": "main",
    })
    .to_string()
}

/// A ServiceAccount bound to `rules` (none: no Role) and a kubeconfig with its token.
fn user(namespace: &str, dir: &Path, name: &str, rules: &serde_json::Value) -> PathBuf {
    ok(
        k(&["-n", namespace, "create", "serviceaccount", name]),
        "create serviceaccount",
    );
    if rules.as_array().is_some_and(|r| !r.is_empty()) {
        apply(&serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": name, "namespace": namespace },
            "rules": rules,
        }));
        apply(&serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": name, "namespace": namespace },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": namespace }],
        }));
    }
    let token = ok(
        k(&["-n", namespace, "create", "token", name, "--duration=1h"]),
        "create token",
    );
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, token_kubeconfig(token.trim(), namespace)).expect("write kubeconfig");
    path
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        hub().install_fedsky_crds().expect("CRDs");
        let namespace = format!("kubectl-fedsky-{}", std::process::id());
        ok(k(&["create", "namespace", &namespace]), "create namespace");
        ok(
            k(&[
                "label",
                "namespace",
                &namespace,
                "e2e.fedsky.dev/test=kubectl-fedsky",
            ]),
            "label namespace",
        );
        for (text, resource) in [
            (JOB, "federatedjobs"),
            (PLACEMENT, "aggregatorplacements"),
        ] {
            let (obj, status) = object(text, &namespace);
            apply(&obj);
            let patch = serde_json::json!({ "status": status }).to_string();
            ok(
                k(&[
                    "-n",
                    &namespace,
                    "patch",
                    resource,
                    "covid-xray",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ]),
                "patch status",
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let fl = |resources: &[&str]| {
            serde_json::json!({ "apiGroups": ["fl.fedsky.dev"], "resources": resources, "verbs": ["get"] })
        };
        let models = serde_json::json!({
            "apiGroups": ["models.fedsky.dev"], "resources": ["models", "models/content"], "verbs": ["get"],
        });
        let both = fl(&["federatedjobs", "aggregatorplacements"]);
        Fixture {
            viewer: user(&namespace, dir.path(), "viewer", &serde_json::json!([both])),
            stranger: user(&namespace, dir.path(), "stranger", &serde_json::json!([])),
            jobs_only: user(
                &namespace,
                dir.path(),
                "jobs-only",
                &serde_json::json!([fl(&["federatedjobs"])]),
            ),
            model_reader: user(
                &namespace,
                dir.path(),
                "model-reader",
                &serde_json::json!([both, models]),
            ),
            namespace,
            _dir: dir,
        }
    })
}

/// What the plugin exited with and printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kubectl-fedsky --kubeconfig KUBECONFIG ARGS` with no other configuration in
/// reach (no $KUBECONFIG, no ~/.kube).
fn plugin(kubeconfig: &Path, args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-fedsky"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .output()
        .expect("the plugin runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn status_and_explain_succeed_with_the_users_rbac() {
    let f = fixture();
    // The namespace comes from the kubeconfig's context.
    let r = plugin(&f.viewer, &["status", "covid-xray"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stderr, "", "no warnings with both grants");
    for expected in [
        format!("FederatedJob {}/covid-xray\n", f.namespace),
        "Phase:       Running (started 2026-05-01T09:55:00Z)\n".into(),
        "Rounds:      7/20\n".into(),
        "  accuracy ▁▃·▆▇██  0.3400 → 0.8700 over rounds 1–7".into(),
        "  hospital-eu: 1 Running, 1 Replaced\n".into(),
        "Placement:   aws/eu-central-1/m5.large (AggregatorPlacement covid-xray)\n".into(),
        "    *2  aws    eu-central-1  m5.large    31.45    48.40\n".into(),
        "  sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n".into(),
    ] {
        assert!(
            r.stdout.contains(&expected),
            "missing {expected:?} in\n{}",
            r.stdout
        );
    }

    // `-n` and `--context` after the subcommand, as kubectl users type them.
    let r = plugin(
        &f.viewer,
        &[
            "placement",
            "explain",
            "covid-xray",
            "--context",
            "elsewhere",
            "-n",
            &f.namespace,
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for expected in [
        "Pareto front: 3 points, cheapest first (* = selected)\n",
        "  *2  aws    eu-central-1  m5.large    31.45    48.40  0.290  0.246  0.268\n",
        "Why #2 (aws/eu-central-1/m5.large):\n",
        "  Against the cheapest (#1): 8.42 USD/month more (+36.6 %), rounds 4.60 s faster (-8.7 %).\n",
    ] {
        assert!(
            r.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            r.stdout
        );
    }
}

#[test]
fn without_rbac_the_plugin_fails_naming_what_is_forbidden() {
    let f = fixture();
    let r = plugin(&f.stranger, &["status", "covid-xray"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains(&format!(
            "error: forbidden: you may not get federatedjobs \"covid-xray\" in API group fl.fedsky.dev in namespace {}",
            f.namespace
        )),
        "{}",
        r.stderr
    );
    // The API server's own words name the user.
    assert!(
        r.stderr
            .contains(&format!("system:serviceaccount:{}:stranger", f.namespace)),
        "{}",
        r.stderr
    );
    let r = plugin(&f.stranger, &["placement", "explain", "covid-xray"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("grant `get` on `aggregatorplacements` in API group `fl.fedsky.dev`"),
        "{}",
        r.stderr
    );

    // A grant in one namespace is no grant in another: the viewer's `elsewhere` context
    // is `default`.
    let r = plugin(
        &f.viewer,
        &["--context", "elsewhere", "status", "covid-xray"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("in namespace `default`"), "{}", r.stderr);
}

#[test]
fn a_user_who_may_read_jobs_but_not_placements_gets_the_rest_and_a_warning() {
    let f = fixture();
    let r = plugin(&f.jobs_only, &["status", "covid-xray"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Rounds:      7/20\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("  (AggregatorPlacement covid-xray not shown: forbidden)\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Pareto front"), "{}", r.stdout);
    assert!(
        r.stderr
            .starts_with("warning: forbidden: you may not get aggregatorplacements"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_missing_job_is_named() {
    let f = fixture();
    let r = plugin(&f.viewer, &["status", "no-such-job"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "error: FederatedJob \"no-such-job\" not found in namespace {}",
            f.namespace
        )),
        "{}",
        r.stderr
    );
}

/// 403 without the model grant, 404 with it while no model API exists, 503 while its
/// APIService is registered but has no service behind it. One test, because the
/// APIService is cluster-wide and changes what the others would see.
#[test]
fn model_download_is_authorised_by_rbac_and_explains_a_missing_model_api() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("model.safetensors");
    let out_arg = out.display().to_string();
    let tmp = dir.path().join("model.safetensors.tmp");
    let download = |kubeconfig: &Path| {
        plugin(
            kubeconfig,
            &["model", "download", "covid-xray", "-o", &out_arg],
        )
    };

    let r = download(&f.viewer);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "grant `get` on `models/content` in API group `models.fedsky.dev` in namespace `{}`",
            f.namespace
        )),
        "{}",
        r.stderr
    );
    let r = plugin(&f.viewer, &["model", "list", "covid-xray"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("grant `get` on `models` in API group `models.fedsky.dev`"),
        "{}",
        r.stderr
    );

    let r = download(&f.model_reader);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "error: no retained model for covid-xray in namespace {}",
            f.namespace
        )),
        "{}",
        r.stderr
    );
    assert!(
        !out.exists() && !tmp.exists(),
        "nothing is written on failure"
    );

    apply(&serde_json::json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": { "name": "v1alpha1.models.fedsky.dev" },
        "spec": {
            "group": "models.fedsky.dev", "version": "v1alpha1",
            "service": { "namespace": "fedsky-system", "name": "fedsky-models", "port": 443 },
            "insecureSkipTLSVerify": true,
            "groupPriorityMinimum": 1000, "versionPriority": 15,
        },
    }));
    // The aggregator picks the APIService up within moments.
    let start = Instant::now();
    let r = loop {
        let r = download(&f.model_reader);
        if r.stderr.contains("unavailable (503)") || start.elapsed() > Duration::from_secs(60) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let deleted = k(&["delete", "apiservice", "v1alpha1.models.fedsky.dev"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "error: the operator's model API (models.fedsky.dev) is unavailable (503): its \
             APIService v1alpha1.models.fedsky.dev is not Available"
        ),
        "{}",
        r.stderr
    );
    assert!(
        !out.exists() && !tmp.exists(),
        "nothing is written on failure"
    );
    ok(deleted, "delete apiservice");
}
