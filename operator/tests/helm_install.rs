//! The chart as a user installs it: `helm install` on a real (audited) hub, then the
//! operator binary authenticated with a token of the chart's ServiceAccount (TokenRequest,
//! as a pod would mount it) runs the example case study until the job is `Placed`. Until
//! member clusters run containers the operator runs as a process beside the hub; what it
//! may do is decided by the roles Helm installed, and the hub refuses it nothing.

mod common;

use common::eventually;
use fedsky_crds::FederatedJob;
use fedsky_crds::conditions;
use fedsky_e2e::{ControlPlane, Options, helm, kubectl, rbac};
use kube::api::Api;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The operator process; killed when the test ends, however it ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(out: &fedsky_e2e::KubectlOutput, what: &str) {
    assert!(out.success, "{what}: {}{}", out.stdout, out.stderr);
}

/// A kubeconfig for `server` that authenticates with `token` only.
fn token_kubeconfig(plane: &ControlPlane, token: &str) -> String {
    let admin: serde_yaml::Value =
        serde_yaml::from_str(plane.kubeconfig_yaml()).expect("admin kubeconfig");
    let ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("CA data")
        .to_string();
    serde_json::to_string(&serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "hub", "cluster": { "server": plane.server(), "certificate-authority-data": ca } }],
        "users": [{ "name": "fedsky", "user": { "token": token } }],
        "contexts": [{ "name": "fedsky", "context": { "cluster": "hub", "user": "fedsky" } }],
        "current-context": "fedsky",
    }))
    .expect("kubeconfig")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installed_operator_places_the_example_as_its_service_account() {
    let hub = tokio::task::spawn_blocking(|| {
        ControlPlane::start(&Options {
            audit: true,
            ..Options::api_only("hub")
        })
        .expect("hub")
    })
    .await
    .expect("start");
    let root = fedsky_e2e::repo_root();
    let kc = hub.kubeconfig_path().to_path_buf();
    ok(
        &helm(
            Some(&kc),
            &root,
            &[
                "install",
                rbac::RELEASE,
                "charts/fedsky",
                "--namespace",
                rbac::NAMESPACE,
                "--create-namespace",
                "--wait=false",
            ],
        )
        .expect("helm"),
        "helm install",
    );
    let token = kubectl(
        &kc,
        &[
            "-n",
            rbac::NAMESPACE,
            "create",
            "token",
            rbac::RELEASE,
            "--duration=1h",
        ],
    )
    .expect("kubectl");
    ok(&token, "kubectl create token");
    let operator_kc = hub.run_dir().join("operator.kubeconfig");
    std::fs::write(&operator_kc, token_kubeconfig(&hub, token.stdout.trim())).expect("write");
    let whoami = kubectl(
        &operator_kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .expect("kubectl");
    ok(&whoami, "auth whoami");
    assert_eq!(whoami.stdout, rbac::operator_user());

    let log = std::fs::File::create(hub.run_dir().join("operator.log")).expect("log");
    let _operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_fedsky-operator"))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env("KUBECONFIG", &operator_kc)
            .env("POD_NAMESPACE", rbac::NAMESPACE)
            .env("POD_NAME", "fedsky-helm-test")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("operator starts"),
    );

    // The case study as the README applies it.
    let examples = root.join("examples/covid-xray");
    for file in ["namespace.yaml", ""] {
        let path = examples.join(file);
        let out = kubectl(&kc, &["apply", "-f", &path.display().to_string()]).expect("kubectl");
        ok(&out, &format!("kubectl apply {}", path.display()));
    }
    let admin = hub.client().await.expect("client");
    let jobs: Api<FederatedJob> = Api::namespaced(admin, "covid-xray");
    let log_path = hub.run_dir().join("operator.log");
    eventually("the example job Placed", 120, || {
        let jobs = jobs.clone();
        let log_path = log_path.clone();
        async move {
            let j = jobs.get("covid-xray").await.map_err(|e| e.to_string())?;
            let placed = j
                .status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.conditions, "Placed"));
            if placed {
                Ok(())
            } else {
                Err(format!(
                    "{:#?}\noperator log tail:\n{}",
                    j.status,
                    tail(&log_path)
                ))
            }
        }
    })
    .await;

    let events = hub.audit_events().expect("audit log");
    let user = rbac::operator_user();
    let mine = events.iter().filter(|e| e.acting_user() == user).count();
    assert!(mine > 0, "the operator made its requests as {user}");
    let refused: Vec<String> = fedsky_e2e::audit::forbidden(&events, &user)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(refused.is_empty(), "refused: {refused:#?}");
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
