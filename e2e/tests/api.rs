//! What the real API server judges: CRD installation, schemas, CEL rules, immutability,
//! the status subresource, printer columns and `kubectl explain`.

mod common;

use common::{hub, k, k_ok, repo_root, temp_manifest};
use fedsky_crds::{FederatedJob, FederatedJobStatus};
use fedsky_e2e::TestNamespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::path::PathBuf;

/// The manifests under `examples/`, but for `examples/gitops/`: its kustomize, Flux and
/// Argo CD files are not kinds this API server has, so what its overlays render is
/// dry-run instead ([`gitops_overlays`]).
fn example_files() -> Vec<PathBuf> {
    let gitops = repo_root().join("examples/gitops");
    let mut files = Vec::new();
    let mut dirs = vec![repo_root().join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("examples/ is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if path != gitops {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The kustomize overlays of `examples/gitops/overlays/`.
fn gitops_overlays() -> Vec<PathBuf> {
    let dir = repo_root().join("examples/gitops/overlays");
    let mut overlays: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/gitops/overlays/ is readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    overlays.sort();
    overlays
}

#[test]
fn crds_install_and_are_established() {
    let out = k_ok(&["get", "crd", "-o", "name"]);
    for kind in [
        "federatedjobs",
        "aggregatorplacements",
        "participantpools",
        "memberclusters",
    ] {
        assert!(
            out.contains(&format!("{kind}.fl.fedsky.dev")),
            "{kind} missing in {out}"
        );
    }
    let short = k_ok(&["api-resources", "--api-group=fl.fedsky.dev"]);
    for sn in [" fj ", " ap ", " pp ", " mc "] {
        assert!(short.contains(sn), "short name{sn}missing:\n{short}");
    }
}

/// Each file in `e2e/testdata/invalid/` starts with `# expect: <text>`; the API server must
/// reject the manifest with a message containing that text (which names the field).
#[test]
fn invalid_manifests_are_rejected_naming_the_field() {
    let dir = repo_root().join("e2e/testdata/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("e2e/testdata/invalid is readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "need at least 20 invalid manifests, have {}",
        files.len()
    );
    let ns = hub_namespace("invalid");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable manifest");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks an `# expect:` line", file.display()))
            .trim()
            .to_string();
        let out = k(&[
            "apply",
            "--dry-run=server",
            "-n",
            &ns,
            "-f",
            &file.display().to_string(),
        ]);
        if out.success {
            failures.push(format!(
                "{}: accepted, expected rejection containing {expect:?}",
                file.display()
            ));
        } else if !out.stderr.contains(&expect) {
            failures.push(format!(
                "{}: rejected, but message lacks {expect:?}:\n{}",
                file.display(),
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Changing an immutable field of an existing object is refused, naming the field.
#[test]
fn immutable_fields_cannot_change() {
    let ns = hub_namespace("immutable");
    let text = std::fs::read_to_string(repo_root().join("examples/covid-xray/federated-job.yaml"))
        .expect("example");
    let job = temp_manifest(&text.replace("namespace: covid-xray", &format!("namespace: {ns}")));
    k_ok(&["apply", "-f", &job.display().to_string()]);
    let cases = [
        (
            r#"{"spec":{"model":{"builtin":{"architecture":"ResNet18","numClasses":3}}}}"#,
            "spec.model is immutable",
        ),
        (
            r#"{"spec":{"dataset":{"path":"other"}}}"#,
            "spec.dataset is immutable",
        ),
        (
            r#"{"spec":{"strategy":{"type":"FedMedian"}}}"#,
            "spec.strategy is immutable",
        ),
        (
            r#"{"spec":{"training":{"seed":8}}}"#,
            "spec.training.seed is immutable",
        ),
        (
            r#"{"spec":{"training":{"rounds":5}}}"#,
            "spec.training.rounds may only grow",
        ),
        (
            r#"{"spec":{"participants":{"poolRef":{"name":"other"}}}}"#,
            "spec.participants.poolRef is immutable",
        ),
        // Adding images to a job that has none is a change too.
        (
            r#"{"spec":{"images":{"participant":"registry.example/p:2"}}}"#,
            "spec.images is immutable",
        ),
    ];
    for (patch, expect) in cases {
        let out = k(&[
            "patch",
            "-n",
            &ns,
            "fj",
            "covid-xray",
            "--type=merge",
            "-p",
            patch,
        ]);
        assert!(!out.success, "patch {patch} was accepted");
        assert!(
            out.stderr.contains(expect),
            "patch {patch}: message lacks {expect:?}:\n{}",
            out.stderr
        );
    }
    // Mutable fields still change.
    k_ok(&[
        "patch",
        "-n",
        &ns,
        "fj",
        "covid-xray",
        "--type=merge",
        "-p",
        r#"{"spec":{"training":{"rounds":30}}}"#,
    ]);

    let mc = temp_manifest(
        "apiVersion: fl.fedsky.dev/v1alpha1\nkind: MemberCluster\nmetadata: {name: immutable-mc}\nspec:\n  provider: aws\n  region: eu-west-1\n  kubeconfigSecretRef: {namespace: default, name: kc}\n",
    );
    k_ok(&["apply", "-f", &mc.display().to_string()]);
    let out = k(&[
        "patch",
        "mc",
        "immutable-mc",
        "--type=merge",
        "-p",
        r#"{"spec":{"provider":"gcp"}}"#,
    ]);
    assert!(
        !out.success && out.stderr.contains("spec.provider is immutable"),
        "{}",
        out.stderr
    );
    k_ok(&["delete", "mc", "immutable-mc"]);
}

/// Image references as registries and runtimes write them pass `spec.images`'s pattern.
#[test]
fn image_references_are_accepted() {
    let ns = hub_namespace("images");
    let text = std::fs::read_to_string(repo_root().join("examples/covid-xray/federated-job.yaml"))
        .expect("example");
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    for (i, image) in [
        "fedsky-participant".to_string(),
        "ghcr.io/fedsky/fedsky-participant:0.1.0-abc1234".to_string(),
        "localhost:5000/fedsky/fedsky-participant:latest".to_string(),
        format!("registry.example.com:443/a_b/c__d/e--f:v1.2@{digest}"),
        format!("ghcr.io/fedsky/fedsky-aggregator@{digest}"),
    ]
    .iter()
    .enumerate()
    {
        let job = text
            .replace("namespace: covid-xray", &format!("namespace: {ns}"))
            .replace("name: covid-xray\n", &format!("name: images-{i}\n"))
            + &format!("  images:\n    aggregator: \"{image}\"\n    participant: \"{image}\"\n");
        let file = temp_manifest(&job);
        let out = k(&[
            "apply",
            "--dry-run=server",
            "-f",
            &file.display().to_string(),
        ]);
        assert!(out.success, "{image} refused:\n{}", out.stderr);
    }
}

/// Krum and MultiKrum are admitted exactly from `minPerRound = 2 * byzantine + 3` (the
/// refusal below it is an `e2e/testdata/invalid/` case); other rules need no such quorum.
#[test]
fn krum_is_admitted_from_two_f_plus_three_per_round() {
    let ns = hub_namespace("krum");
    let text = std::fs::read_to_string(repo_root().join("examples/covid-xray/federated-job.yaml"))
        .expect("example");
    for (i, (strategy, min, admitted)) in [
        ("{ type: Krum, byzantine: 1 }", 5, true),
        ("{ type: Krum, byzantine: 1 }", 4, false),
        (
            "{ type: MultiKrum, byzantine: 2, multiKrumSelect: 3 }",
            7,
            true,
        ),
        ("{ type: MultiKrum }", 2, false),
        ("{ type: Krum }", 3, true),
        ("{ type: FedMedian }", 2, true),
    ]
    .into_iter()
    .enumerate()
    {
        let job = text
            .replace("namespace: covid-xray", &format!("namespace: {ns}"))
            .replace("name: covid-xray\n", &format!("name: krum-{i}\n"))
            .replace(
                "    type: FedAvg",
                &format!(
                    "    {}",
                    &strategy[2..strategy.len() - 2].replace(", ", "\n    ")
                ),
            )
            .replace("    minPerRound: 2", &format!("    minPerRound: {min}"))
            .replace("    maxPerRound: 3", "    maxPerRound: 8");
        let file = temp_manifest(&job);
        let out = k(&[
            "apply",
            "--dry-run=server",
            "-f",
            &file.display().to_string(),
        ]);
        assert_eq!(
            out.success, admitted,
            "{strategy} with minPerRound {min}:\n{}",
            out.stderr
        );
        if !admitted {
            assert!(
                out.stderr.contains("2 * spec.strategy.byzantine + 3"),
                "{}",
                out.stderr
            );
        }
    }
}

/// `kubectl explain what`, once the API server has published the CRDs' OpenAPI schema:
/// it does so a moment after they are Established and in discovery, which is all
/// installing them waits for.
fn explain(what: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let out = k(&["explain", what]);
        if out.success {
            return out.stdout;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "kubectl explain {what} failed:\n{}",
            out.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn explain_shows_field_descriptions() {
    let out = explain("federatedjob.spec.training");
    for text in [
        "Training hyper-parameters",
        "localEpochs",
        "Local epochs per round",
        "FedProx proximal term",
    ] {
        assert!(out.contains(text), "kubectl explain lacks {text:?}:\n{out}");
    }
    let out = explain("aggregatorplacement.spec.requirements.costWeight");
    assert!(out.contains("Weight of cost against latency"), "{out}");
    let out = explain("mc.spec.tier");
    assert!(out.contains("may host aggregators"), "{out}");
}

#[tokio::test]
async fn status_changes_only_through_the_status_subresource() {
    let cp = hub();
    let client = cp.client().await.expect("client");
    let ns = TestNamespace::create(&client, "status-subresource")
        .await
        .expect("namespace");
    let api: Api<FederatedJob> = Api::namespaced(client.clone(), &ns.name);
    let text = std::fs::read_to_string(repo_root().join("examples/covid-xray/federated-job.yaml"))
        .expect("example");
    let mut job: FederatedJob =
        serde_yaml::from_str(&text).expect("example parses into the Rust type");
    job.metadata.namespace = Some(ns.name.clone());
    job.status = Some(FederatedJobStatus {
        current_round: Some(3),
        ..Default::default()
    });

    let created = api
        .create(&PostParams::default(), &job)
        .await
        .expect("create");
    assert_eq!(
        created.status.and_then(|s| s.current_round),
        None,
        "create must drop status"
    );

    let patch = serde_json::json!({ "status": { "currentRound": 4 } });
    let after = api
        .patch("covid-xray", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch main");
    assert_eq!(
        after.status.and_then(|s| s.current_round),
        None,
        "main resource must ignore status"
    );

    let status = serde_json::json!({
        "apiVersion": "fl.fedsky.dev/v1alpha1",
        "kind": "FederatedJob",
        "status": { "currentRound": 5, "roundProgress": "5/20", "phase": "Running" }
    });
    let after = api
        .patch_status(
            "covid-xray",
            &PatchParams::apply("fedsky-e2e").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("status patch");
    let st = after.status.expect("status set");
    assert_eq!(st.current_round, Some(5));
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes must not bump generation"
    );

    // And the status schema itself is enforced.
    let bad = serde_json::json!({ "status": { "phase": "Exploded" } });
    let err = api
        .patch_status("covid-xray", &PatchParams::default(), &Patch::Merge(&bad))
        .await;
    let msg = format!("{:?}", err.expect_err("invalid phase rejected"));
    assert!(msg.contains("status.phase"), "{msg}");
    ns.delete().await.expect("delete namespace");
}

/// Every example passes a server-side dry run; applied for real, `kubectl get fedsky -A`
/// lists all four kinds with their printer columns. One test, because a dry-run create
/// racing a real create of the same object would fail spuriously.
#[test]
fn examples_pass_dry_run_and_get_fedsky_lists_all_kinds() {
    let files = example_files();
    assert!(
        files.len() >= 4,
        "expected the covid-xray example, found {files:?}"
    );
    // The example namespace must exist for a namespaced dry run.
    let ns = repo_root().join("examples/covid-xray/namespace.yaml");
    k_ok(&["apply", "-f", &ns.display().to_string()]);
    for file in files {
        let f = file.display().to_string();
        let out = k(&["apply", "--dry-run=server", "-f", &f]);
        assert!(
            out.success,
            "{f} rejected by the API server:\n{}",
            out.stderr
        );
    }
    let overlays = gitops_overlays();
    assert!(
        overlays.len() >= 2,
        "expected staging and production overlays, found {overlays:?}"
    );
    for overlay in overlays {
        let o = overlay.display().to_string();
        let rendered = temp_manifest(&k_ok(&["kustomize", &o]));
        let out = k(&[
            "apply",
            "--dry-run=server",
            "-f",
            &rendered.display().to_string(),
        ]);
        assert!(
            out.success,
            "{o} rendered, rejected by the API server:\n{}",
            out.stderr
        );
    }

    let dir = repo_root().join("examples/covid-xray");
    k_ok(&["apply", "-f", &dir.display().to_string()]);
    let out = k_ok(&["get", "fedsky", "-A"]);
    for header in [
        "PHASE",
        "ROUND",
        "ACCURACY",
        "PLACEMENT", // FederatedJob
        "CLOUD",
        "REGION",
        "INSTANCE",
        "COST/MO",
        "FEASIBLE", // AggregatorPlacement
        "SITES",
        "ELIGIBLE",
        "POLICY", // ParticipantPool
        "PROVIDER",
        "TIER",
        "REACHABLE",
        "NODES", // MemberCluster
    ] {
        assert!(
            out.contains(header),
            "`kubectl get fedsky -A` lacks column {header}:\n{out}"
        );
    }
    for name in [
        "federatedjob.fl.fedsky.dev/covid-xray",
        "aggregatorplacement.fl.fedsky.dev/covid-xray",
        "participantpool.fl.fedsky.dev/hospitals",
        "membercluster.fl.fedsky.dev/hospital-eu",
    ] {
        assert!(
            out.contains(name),
            "`kubectl get fedsky -A` lacks {name}:\n{out}"
        );
    }
}

fn hub_namespace(test: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = hub().client().await.expect("client");
        TestNamespace::create(&client, test)
            .await
            .expect("namespace")
            .name
    })
}
