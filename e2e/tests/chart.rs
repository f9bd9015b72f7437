//! The Helm chart `charts/fedsky`: `helm lint`, render-and-parse checks of its security
//! posture, RBAC and optional objects, and what a real kube-apiserver (with its Pod
//! Security admission) makes of the rendered manifests.

mod common;

use common::{repo_root, temp_manifest};
use fedsky_e2e::{ControlPlane, KubectlOutput, OFFLINE_KUBE_VERSION, TestNamespace, kubectl};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Values that switch on every optional object.
const ALL_OPTIONAL: &[&str] = &[
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
];

fn chart_dir() -> PathBuf {
    repo_root().join("charts/fedsky")
}

/// Runs helm offline in the repository root (private helm state, see
/// [`fedsky_e2e::helm`]).
fn helm(args: &[&str]) -> fedsky_e2e::KubectlOutput {
    fedsky_e2e::helm(None, &repo_root(), args).expect("helm runs")
}

/// `helm template fedsky charts/fedsky --namespace NS EXTRA...`, returning the YAML.
fn render_yaml(namespace: &str, kube_version: &str, extra: &[&str]) -> String {
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "template",
        "fedsky",
        &chart,
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
    ];
    args.extend_from_slice(extra);
    let out = helm(&args);
    assert!(out.success, "helm {args:?} failed:\n{}", out.stderr);
    out.stdout
}

/// Every non-empty document of a multi-document YAML stream.
fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered document is valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Asserts that rendering with `--set set` fails with a message containing `says`.
fn refused(set: &str, says: &str) {
    let chart = chart_dir().display().to_string();
    let out = helm(&[
        "template",
        "fedsky",
        &chart,
        "--kube-version",
        OFFLINE_KUBE_VERSION,
        "--set",
        set,
    ]);
    assert!(
        !out.success && out.stderr.contains(says),
        "--set {set}: {}",
        out.stderr
    );
}

fn render(extra: &[&str]) -> Vec<Value> {
    parse_docs(&render_yaml("fedsky-system", OFFLINE_KUBE_VERSION, extra))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// (apiGroup, resource, verb) for every combination a set of RBAC rules grants.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    out.insert((g.to_string(), r.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}

fn triples(group: &str, resources: &[&str], verbs: &[&str]) -> Vec<(String, String, String)> {
    resources
        .iter()
        .flat_map(|r| {
            verbs
                .iter()
                .map(move |v| (group.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn helm_lint_passes_strict() {
    let chart = chart_dir().display().to_string();
    for extra in [&[][..], ALL_OPTIONAL] {
        for strict in [false, true] {
            let mut args = vec!["lint", chart.as_str()];
            if strict {
                args.push("--strict");
            }
            args.extend_from_slice(extra);
            let out = helm(&args);
            let stdout = &out.stdout;
            assert!(
                out.success,
                "helm {args:?} failed:\n{stdout}\n{}",
                out.stderr
            );
            assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
        }
    }
}

#[test]
fn deployment_is_restricted_and_runs_the_operator() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "fedsky");
    let app_version = chart["appVersion"].as_str().expect("appVersion");

    for extra in [&[][..], ALL_OPTIONAL] {
        let docs = render(extra);
        let deploy = one(&docs, "Deployment");
        assert_eq!(deploy["metadata"]["namespace"], "fedsky-system");
        assert_eq!(deploy["spec"]["replicas"], 2);
        let pod = &deploy["spec"]["template"]["spec"];

        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "pod securityContext: {psc}");
        assert_eq!(psc["runAsUser"], 65532, "pod securityContext: {psc}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
        assert_ne!(pod["hostNetwork"], true);
        assert_ne!(pod["hostPID"], true);
        assert_ne!(pod["hostIPC"], true);

        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1);
        for c in containers {
            let sc = &c["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true, "container securityContext: {sc}");
            assert_eq!(sc["runAsUser"], 65532);
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_ne!(sc["privileged"], true);
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
            assert!(sc["capabilities"]["add"].is_null(), "no capabilities added");
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        }
        let c = &containers[0];
        assert_eq!(
            c["image"],
            format!("ghcr.io/fedsky/fedsky-operator:{app_version}")
        );
        assert_eq!(strings(&c["command"]), ["fedsky-operator"]);
        assert!(strings(&c["args"]).contains(&"--metrics-addr=0.0.0.0:8080"));
        let env = c["env"].as_array().expect("env");
        let var = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .unwrap_or_else(|| panic!("env {name} missing"))
        };
        assert_eq!(var("RUST_LOG")["value"], "info");
        assert_eq!(
            var("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        let port = &c["ports"][0];
        assert_eq!(port["name"], "http-metrics");
        assert_eq!(port["containerPort"], 8080);
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(c["resources"]["requests"].is_object(), "resource requests");

        // The only writable path is an emptyDir at /tmp.
        let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
        let tmp = mounts
            .iter()
            .find(|m| m["mountPath"] == "/tmp")
            .expect("/tmp mount");
        let volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == tmp["name"])
            .expect("/tmp volume");
        assert!(volume["emptyDir"].is_object(), "/tmp is an emptyDir");

        let spread = &pod["topologySpreadConstraints"][0];
        assert_eq!(
            spread["labelSelector"]["matchLabels"],
            deploy["spec"]["selector"]["matchLabels"]
        );
    }

    // Values reach the pod.
    let docs = render(&[
        "--set",
        "logLevel=debug",
        "--set",
        "images.operator.tag=9.9.9",
        "--set",
        "podAnnotations.example\\.com/a=b",
    ]);
    let pod = &one(&docs, "Deployment")["spec"]["template"];
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "ghcr.io/fedsky/fedsky-operator:9.9.9"
    );
    assert_eq!(pod["metadata"]["annotations"]["example.com/a"], "b");
    assert!(
        pod["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .contains(&json!({"name": "RUST_LOG", "value": "debug"}))
    );
}

/// The images of the operator and of the pods it runs: by tag (the appVersion unless
/// set) or digest, one pull policy and pull secrets for all; renamed values fail loudly.
#[test]
fn images_are_configurable_and_reach_the_operator() {
    let env_of = |docs: &[Value]| -> Vec<(String, String)> {
        one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_string(),
                    e["value"].as_str()?.to_string(),
                ))
            })
            .filter(|(n, _)| n.starts_with("FEDSKY_"))
            .collect()
    };
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    let v = chart["appVersion"].as_str().expect("appVersion");
    let docs = render(&[]);
    assert_eq!(
        env_of(&docs),
        [
            (
                "FEDSKY_AGGREGATOR_IMAGE".into(),
                format!("ghcr.io/fedsky/fedsky-aggregator:{v}")
            ),
            (
                "FEDSKY_PARTICIPANT_IMAGE".into(),
                format!("ghcr.io/fedsky/fedsky-participant:{v}")
            ),
            ("FEDSKY_IMAGE_PULL_POLICY".into(), "IfNotPresent".into()),
        ]
    );
    assert!(one(&docs, "Deployment")["spec"]["template"]["spec"]["imagePullSecrets"].is_null());

    let digest = format!("sha256:{}", "ab".repeat(32));
    let docs = render(&[
        "--set",
        "images.aggregator.repository=registry.example:5000/agg",
        "--set",
        &format!("images.participant.digest={digest}"),
        "--set",
        "images.participant.tag=ignored",
        "--set",
        "images.operator.repository=registry.example:5000/op",
        "--set",
        "images.pullPolicy=Never",
        "--set",
        "images.pullSecrets={regcred,other}",
    ]);
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        format!("registry.example:5000/op:{v}")
    );
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "Never");
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "regcred"}, {"name": "other"}])
    );
    assert_eq!(
        env_of(&docs),
        [
            (
                "FEDSKY_AGGREGATOR_IMAGE".into(),
                format!("registry.example:5000/agg:{v}")
            ),
            (
                "FEDSKY_PARTICIPANT_IMAGE".into(),
                format!("ghcr.io/fedsky/fedsky-participant@{digest}")
            ),
            ("FEDSKY_IMAGE_PULL_POLICY".into(), "Never".into()),
            ("FEDSKY_IMAGE_PULL_SECRETS".into(), "regcred,other".into()),
        ]
    );

    // Values of chart 0.1.0 are refused with their new names, not silently ignored.
    for (set, new_name) in [
        ("image.tag=1", "images.operator"),
        ("imagePullSecrets[0].name=x", "images.pullSecrets"),
    ] {
        refused(set, new_name);
    }
    // A malformed digest is refused by the values schema.
    refused("images.aggregator.digest=sha256:xyz", "");
}

/// The CRDs are templates (so upgrades bring them), kept on uninstall unless asked
/// otherwise, and left out when another tool manages them.
#[test]
fn crds_are_templates_kept_on_uninstall() {
    let generated = parse_docs(
        &std::fs::read_to_string(chart_dir().join("files/crds.yaml")).expect("files/crds.yaml"),
    );
    assert_eq!(generated.len(), 4);
    let docs = render(&[]);
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), 4);
    for (crd, want) in crds.iter().zip(&generated) {
        let name = &want["metadata"]["name"];
        assert_eq!(crd["metadata"]["name"], *name);
        assert_eq!(
            crd["spec"], want["spec"],
            "{name}: rendered spec differs from crdgen's"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{name}"
        );
    }
    let docs = render(&["--set", "crds.keep=false"]);
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), 4);
    assert!(crds.iter().all(|c| c["metadata"]["annotations"].is_null()));
    assert!(
        of_kind(
            &render(&["--set", "crds.install=false"]),
            "CustomResourceDefinition"
        )
        .is_empty()
    );
    assert!(
        !chart_dir().join("crds").exists(),
        "crds/ is never upgraded by Helm; keep CRDs in templates"
    );
}

#[test]
fn rbac_is_least_privilege_without_wildcards() {
    for extra in [&[][..], ALL_OPTIONAL] {
        let docs = render(extra);
        for role in of_kind(&docs, "ClusterRole")
            .into_iter()
            .chain(of_kind(&docs, "Role"))
        {
            assert!(role["aggregationRule"].is_null(), "no aggregated roles");
            for rule in role["rules"].as_array().expect("rules") {
                for key in [
                    "apiGroups",
                    "resources",
                    "verbs",
                    "resourceNames",
                    "nonResourceURLs",
                ] {
                    for s in strings(&rule[key]) {
                        assert!(
                            !s.contains('*'),
                            "wildcard in {key} of {}: {rule}",
                            role["metadata"]["name"]
                        );
                    }
                }
            }
        }

        // What the roles grant is proven exact by the operator's own tests (operator/tests:
        // the operator acts as this ServiceAccount on an audited hub, nothing is refused and
        // every rule is the only one allowing some request). Here: where Secrets and
        // Leases may be touched, and that every role is bound to the operator.
        let cluster_role = one(&docs, "ClusterRole");
        let granted = grants(cluster_role);
        for rule in cluster_role["rules"].as_array().expect("rules") {
            assert!(rule["nonResourceURLs"].is_null(), "no non-resource URLs");
        }
        assert!(
            granted
                .iter()
                .all(|(g, r, _)| g != "coordination.k8s.io" && r != "leases" && r != "secrets"),
            "neither Leases nor Secrets may be granted cluster-wide: {granted:?}"
        );
        let role = of_kind(&docs, "Role")
            .into_iter()
            .find(|r| r["metadata"]["namespace"] == "fedsky-system")
            .expect("a Role in the release namespace");
        let in_home = grants(role);
        assert!(
            in_home.contains(&("".into(), "secrets".into(), "create".into()))
                && in_home.contains(&(
                    "coordination.k8s.io".into(),
                    "leases".into(),
                    "update".into()
                )),
            "{in_home:?}"
        );

        // Every role is bound to the operator's ServiceAccount, and only to it.
        let sa = one(&docs, "ServiceAccount");
        let sa_name = &sa["metadata"]["name"];
        let bindings: Vec<&Value> = of_kind(&docs, "ClusterRoleBinding")
            .into_iter()
            .chain(of_kind(&docs, "RoleBinding"))
            .collect();
        for role in of_kind(&docs, "ClusterRole")
            .into_iter()
            .chain(of_kind(&docs, "Role"))
        {
            let bound: Vec<&&Value> = bindings
                .iter()
                .filter(|b| {
                    b["roleRef"]["kind"] == role["kind"]
                        && b["roleRef"]["name"] == role["metadata"]["name"]
                        && b["metadata"]["namespace"] == role["metadata"]["namespace"]
                })
                .collect();
            assert_eq!(
                bound.len(),
                1,
                "one binding for {}",
                role["metadata"]["name"]
            );
            let subjects = bound[0]["subjects"].as_array().expect("subjects");
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(&subjects[0]["name"], sa_name);
            assert_eq!(subjects[0]["namespace"], "fedsky-system");
        }
        assert_eq!(
            one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
            *sa_name
        );
    }
}

/// Secret access beyond the release namespace is read-only and only where asked for; the
/// operator is told the same namespaces.
#[test]
fn secret_namespaces_get_read_only_roles_and_reach_the_operator() {
    let docs = render(&["--set", "rbac.secretNamespaces={team-a,fedsky-system}"]);
    let elsewhere: Vec<&Value> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| r["metadata"]["namespace"] != "fedsky-system")
        .collect();
    assert_eq!(elsewhere.len(), 1, "the release namespace is not repeated");
    assert_eq!(elsewhere[0]["metadata"]["namespace"], "team-a");
    let expected: BTreeSet<_> = triples("", &["secrets"], &["get", "list", "watch"])
        .into_iter()
        .collect();
    assert_eq!(grants(elsewhere[0]), expected);
    let env = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = env
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "FEDSKY_SECRET_NAMESPACES")
        .map(|e| e["value"].clone());
    assert_eq!(value, Some(Value::from("team-a,fedsky-system")));
    let none = render(&[]);
    assert_eq!(
        of_kind(&none, "Role").len(),
        1,
        "only the release namespace's"
    );
}

#[test]
fn metrics_service_network_policy_and_optional_objects() {
    let docs = render(&[]);
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    let want: BTreeSet<&str> = [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        // The model API: its serving Secret, Service, APIService and archive volume.
        "Secret",
        "APIService",
        "PersistentVolumeClaim",
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, want, "objects rendered with default values");

    let selector = &one(&docs, "Deployment")["spec"]["selector"]["matchLabels"];
    let named = |name: &str| {
        of_kind(&docs, "Service")
            .into_iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("Service {name}"))
    };
    let svc = named("fedsky-metrics");
    assert_eq!(&svc["spec"]["selector"], selector);
    let ports = svc["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "http-metrics");
    assert_eq!(ports[0]["port"], 8080);

    // The model API's Service is what its APIService names, verified by the caBundle
    // that signed the serving certificate.
    let api_svc = named("fedsky-model-api");
    assert_eq!(&api_svc["spec"]["selector"], selector);
    assert_eq!(api_svc["spec"]["ports"][0]["targetPort"], "model-api");
    let apisvc = one(&docs, "APIService");
    assert_eq!(apisvc["metadata"]["name"], "v1alpha1.models.fedsky.dev");
    assert_eq!(apisvc["spec"]["service"]["name"], "fedsky-model-api");
    assert_eq!(apisvc["spec"]["service"]["namespace"], "fedsky-system");
    assert!(apisvc["spec"].get("insecureSkipTLSVerify").is_none());
    let tls = one(&docs, "Secret");
    assert_eq!(apisvc["spec"]["caBundle"], tls["data"]["ca.crt"]);
    let args =
        strings(&one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--model-api-addr=0.0.0.0:8443"), "{args:?}");
    assert!(
        args.contains(&"--model-archive-dir=/var/lib/fedsky/models"),
        "{args:?}"
    );
    let pvc = one(&docs, "PersistentVolumeClaim");
    assert_eq!(
        pvc["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "the archive outlives the release"
    );
    // Without persistence an emptyDir holds the archive, which one replica alone serves.
    let ephemeral = render(&["--set", "modelApi.persistence.enabled=false,replicaCount=1"]);
    assert!(of_kind(&ephemeral, "PersistentVolumeClaim").is_empty());
    refused(
        "modelApi.persistence.enabled=false,replicaCount=2",
        "replicaCount=1",
    );
    // A Secret of the user's (cert-manager's) replaces the generated one, with its CA.
    let own = render(&[
        "--set",
        "modelApi.tls.existingSecret=model-api-cert,modelApi.tls.caBundle=PEM",
    ]);
    assert!(of_kind(&own, "Secret").is_empty());
    assert_eq!(one(&own, "APIService")["spec"]["caBundle"], "UEVN");
    let volumes = &one(&own, "Deployment")["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == "model-api-cert"),
        "{volumes}"
    );
    refused("modelApi.tls.existingSecret=model-api-cert", "caBundle");
    let off = render(&["--set", "modelApi.enabled=false"]);
    assert!(of_kind(&off, "APIService").is_empty() && of_kind(&off, "Secret").is_empty());

    // Ingress to the metrics port and to the model API only.
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(&np["spec"]["podSelector"]["matchLabels"], selector);
    assert_eq!(strings(&np["spec"]["policyTypes"]), ["Ingress"]);
    let ingress = np["spec"]["ingress"].as_array().expect("ingress");
    let ports: Vec<&Value> = ingress
        .iter()
        .flat_map(|i| i["ports"].as_array().expect("ingress ports"))
        .map(|p| &p["port"])
        .collect();
    assert_eq!(
        ports,
        [&Value::from("http-metrics"), &Value::from("model-api")]
    );

    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    // One replica: no PDB (it would block node drains). Policy can be switched off.
    let single = render(&["--set", "replicaCount=1"]);
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty());
    let open = render(&["--set", "networkPolicy.enabled=false"]);
    assert!(of_kind(&open, "NetworkPolicy").is_empty());

    // Optional monitoring objects.
    let docs = render(ALL_OPTIONAL);
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(&sm["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");

    let dashboards: Vec<_> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|cm| cm["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(dashboards.len(), 1, "one dashboard ConfigMap");
    let data = dashboards[0]["data"].as_object().expect("dashboard data");
    assert_eq!(data.len(), 1);
    let text = data
        .values()
        .next()
        .and_then(Value::as_str)
        .expect("dashboard JSON");
    let dashboard: Value = serde_json::from_str(text).expect("dashboard is valid JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    for metric in [
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_time_seconds_bucket",
        "fedsky_federatedjob_rounds_completed_total",
        "fedsky_aggregator_updates_rejected_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "dashboard lacks {metric}"
        );
    }
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("controller_runtime_reconcile_total")
                && e.contains("by (controller, result)")),
        "reconciles are shown by result"
    );
}

#[test]
fn every_object_carries_the_standard_labels() {
    let chart_label = "fedsky-0.2.0";
    for docs in [render(&[]), render(ALL_OPTIONAL)] {
        for d in &docs {
            let labels = &d["metadata"]["labels"];
            let what = format!("{} {}", d["kind"], d["metadata"]["name"]);
            assert_eq!(labels["app.kubernetes.io/name"], "fedsky", "{what}");
            assert_eq!(labels["app.kubernetes.io/instance"], "fedsky", "{what}");
            assert_eq!(labels["app.kubernetes.io/version"], "0.1.0", "{what}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
            assert_eq!(labels["helm.sh/chart"], chart_label, "{what}");
        }
        let template = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
        assert_eq!(template["app.kubernetes.io/name"], "fedsky");
        assert_eq!(template["app.kubernetes.io/instance"], "fedsky");
    }
}

// ---------------------------------------------------------------------------------------
// Against a real kube-apiserver.

fn cluster() -> &'static ControlPlane {
    ControlPlane::shared().unwrap_or_else(|e| panic!("{e}"))
}

fn kc(args: &[&str]) -> KubectlOutput {
    kubectl(cluster().kubeconfig_path(), args).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

fn kc_ok(args: &[&str]) -> KubectlOutput {
    let out = kc(args);
    assert!(out.success, "kubectl {args:?} failed:\n{}", out.stderr);
    out
}

/// A fresh labelled namespace on the shared control plane.
fn namespace(test: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = cluster().client().await.expect("client");
        TestNamespace::create(&client, test)
            .await
            .expect("namespace")
            .name
    })
}

/// The API server's version, so helm renders for the cluster it talks to.
fn server_version() -> String {
    let out = kc_ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&out.stdout).expect("kubectl version JSON");
    v["serverVersion"]["gitVersion"]
        .as_str()
        .expect("serverVersion.gitVersion")
        .to_string()
}

fn to_yaml_stream(docs: &[&Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).expect("serialize manifest"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn api_server_accepts_rendered_manifests() {
    let ns = namespace("chart-dry-run");
    let docs = parse_docs(&render_yaml(&ns, &server_version(), ALL_OPTIONAL));
    // The ServiceMonitor's CRD (prometheus-operator) is not installed here.
    assert_eq!(of_kind(&docs, "ServiceMonitor").len(), 1);
    // The RoleBinding that lets the operator read the API server's request-header CA
    // lives in kube-system; `apply -n` takes one namespace, so it is checked on its own.
    let (elsewhere, applicable): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .filter(|d| d["kind"] != "ServiceMonitor")
        .partition(|d| d["metadata"]["namespace"] == "kube-system");
    assert_eq!(elsewhere.len(), 1, "{elsewhere:?}");
    let file = temp_manifest(&to_yaml_stream(&elsewhere));
    kc_ok(&[
        "apply",
        "--dry-run=server",
        "-f",
        &file.display().to_string(),
    ]);
    let file = temp_manifest(&to_yaml_stream(&applicable));
    let out = kc_ok(&[
        "apply",
        "--dry-run=server",
        "-n",
        &ns,
        "-f",
        &file.display().to_string(),
    ]);
    let accepted = out
        .stdout
        .lines()
        .filter(|l| l.contains("(server dry run)"))
        .count();
    assert_eq!(
        accepted,
        applicable.len(),
        "every object accepted:\n{}",
        out.stdout
    );
}

/// Drops `runAsNonRoot` from the pod and every container.
fn without_run_as_non_root(mut pod_spec: Value) -> Value {
    if let Some(sc) = pod_spec["securityContext"].as_object_mut() {
        sc.remove("runAsNonRoot");
    }
    for c in pod_spec["containers"].as_array_mut().expect("containers") {
        if let Some(sc) = c["securityContext"].as_object_mut() {
            sc.remove("runAsNonRoot");
        }
    }
    pod_spec
}

#[test]
fn pod_security_admission_accepts_the_restricted_pod() {
    let ns = namespace("chart-psa");
    kc_ok(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=latest",
    ]);
    let docs = parse_docs(&render_yaml(&ns, &server_version(), &[]));

    // The pod names the chart's ServiceAccount, which must exist for a pod to be admitted.
    let sa = temp_manifest(&to_yaml_stream(&[one(&docs, "ServiceAccount")]));
    kc_ok(&["apply", "-n", &ns, "-f", &sa.display().to_string()]);

    let deploy = one(&docs, "Deployment");
    let dry_run = |manifest: &Value| {
        let file = temp_manifest(&to_yaml_stream(&[manifest]));
        kc(&[
            "apply",
            "--dry-run=server",
            "-n",
            &ns,
            "-f",
            &file.display().to_string(),
        ])
    };

    // For workloads PSA only warns (warn=restricted); the chart's Deployment gets none.
    let out = dry_run(deploy);
    assert!(out.success, "Deployment rejected:\n{}", out.stderr);
    assert!(
        !out.stderr.contains("PodSecurity"),
        "Deployment draws a PodSecurity warning:\n{}",
        out.stderr
    );

    // PSA enforces on Pods: the Deployment's pod template as a bare Pod is admitted.
    let template = &deploy["spec"]["template"];
    let pod = |spec: Value| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "fedsky-operator-psa-check",
                "namespace": ns,
                "labels": template["metadata"]["labels"],
                "annotations": template["metadata"]["annotations"],
            },
            "spec": spec,
        })
    };
    let out = dry_run(&pod(template["spec"].clone()));
    assert!(
        out.success,
        "restricted namespace rejects the operator pod:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("PodSecurity"), "{}", out.stderr);

    // Control: the same pod without runAsNonRoot is refused, naming the missing field.
    let weakened = without_run_as_non_root(template["spec"].clone());
    let out = dry_run(&pod(weakened.clone()));
    assert!(!out.success, "weakened pod was admitted:\n{}", out.stdout);
    assert!(
        out.stderr.contains("runAsNonRoot") && out.stderr.contains("PodSecurity"),
        "rejection does not name runAsNonRoot:\n{}",
        out.stderr
    );

    // And the weakened Deployment draws the PodSecurity warning.
    let mut weak_deploy = deploy.clone();
    weak_deploy["spec"]["template"]["spec"] = weakened;
    let out = dry_run(&weak_deploy);
    assert!(
        out.stderr.contains("runAsNonRoot"),
        "no PodSecurity warning for the weakened Deployment:\n{}",
        out.stderr
    );
}
