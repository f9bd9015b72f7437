//! AggregatorPlacement controller on a real control plane: the controller and
//! `fedsky placement solve`'s library give the same answer for the same input; an
//! infeasible spec names the binding constraint; an unknown region is a clear condition;
//! an unchanged input is not re-solved.

mod common;

use common::{apply_json, eventually};
use fedsky_crds::conditions;
use fedsky_crds::{AggregatorPlacement, ParticipantPool};
use fedsky_operator::run::{Settings, run};
use fedsky_placement_spec::{STATUS_FRONT_LIMIT, SpecContext, solve_spec, to_status};
use kube::api::{Api, Patch, PatchParams};

fn example(file: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/covid-xray")
        .join(file);
    let text = std::fs::read_to_string(path).expect("example");
    let mut v: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
    v["metadata"]["namespace"] = serde_json::json!("default");
    v
}

async fn solved(api: &Api<AggregatorPlacement>, name: &str) -> AggregatorPlacement {
    eventually(&format!("{name} solved"), 90, || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let ap = api.get(&name).await.map_err(|e| e.to_string())?;
            let st = ap.status.as_ref().ok_or("no status")?;
            if st.observed_generation == ap.metadata.generation
                && conditions::find(&st.conditions, "Feasible").is_some()
            {
                Ok(ap)
            } else {
                Err(format!("{st:?}"))
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_matches_cli_and_explains_infeasibility() {
    // The operator acts as the chart's ServiceAccount.
    let hub = common::hub(&[]).await;
    let client = hub.admin.clone();
    let settings = Settings {
        ..Default::default()
    };
    let operator = tokio::spawn(run(hub.operator.clone(), settings));

    apply_json(&client, example("participant-pool.yaml")).await;
    apply_json(&client, example("aggregator-placement.yaml")).await;
    let api: Api<AggregatorPlacement> = Api::namespaced(client.clone(), "default");
    let ap = solved(&api, "covid-xray").await;
    let st = ap.status.clone().expect("status");

    // The same spec through the CLI's code path.
    let pool = Api::<ParticipantPool>::namespaced(client.clone(), "default")
        .get("hospitals")
        .await
        .expect("pool");
    let catalog = fedsky_placement::Catalog::builtin().expect("catalog");
    let ctx = SpecContext {
        pool: Some(("hospitals", &pool.spec)),
        ..Default::default()
    };
    let cli = to_status(
        &solve_spec(catalog, &ap.spec, &ctx).expect("solves"),
        STATUS_FRONT_LIMIT,
    );
    assert_eq!(
        st.selected, cli.selected,
        "controller and CLI pick the same placement"
    );
    assert_eq!(
        st.pareto_front, cli.pareto_front,
        "and report the same front"
    );
    assert_eq!(st.catalog_version, cli.catalog_version);
    assert!(st.selected.is_some());
    assert!(conditions::is_true(&st.conditions, conditions::READY));

    // Unchanged input: a metadata-only change re-triggers the reconcile but not a solve.
    let solved_at = st.last_solved_time.clone();
    let touch =
        serde_json::json!({ "metadata": { "annotations": { "example.com/touched": "yes" } } });
    api.patch("covid-xray", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("annotate");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let again = api.get("covid-xray").await.expect("get");
    assert_eq!(
        again.status.and_then(|s| s.last_solved_time),
        solved_at,
        "no re-solve on unchanged input"
    );

    // Infeasible: the binding constraint is named.
    let mut tight = example("aggregator-placement.yaml");
    tight["metadata"]["name"] = serde_json::json!("too-cheap");
    tight["spec"]["requirements"]["maxMonthlyCost"] = serde_json::json!(1);
    apply_json(&client, tight).await;
    let ap = solved(&api, "too-cheap").await;
    let st = ap.status.expect("status");
    let feasible = conditions::find(&st.conditions, "Feasible").expect("Feasible");
    assert_eq!(feasible.status, "False");
    assert!(
        feasible.message.contains("maxMonthlyCost"),
        "{}",
        feasible.message
    );
    assert!(conditions::is_true(&st.conditions, conditions::STALLED));

    // Unknown region: a clear condition, not a crash.
    let mut unknown = example("aggregator-placement.yaml");
    unknown["metadata"]["name"] = serde_json::json!("unknown-region");
    unknown["spec"]["participants"] =
        serde_json::json!({ "sites": [{ "name": "x", "cloud": "aws", "region": "mars-north-1" }] });
    apply_json(&client, unknown).await;
    let ap = solved(&api, "unknown-region").await;
    let feasible = conditions::find(&ap.status.expect("status").conditions, "Feasible")
        .cloned()
        .expect("Feasible");
    assert_eq!(feasible.reason, "UnknownReference");
    assert!(
        feasible.message.contains("mars-north-1"),
        "{}",
        feasible.message
    );

    // A standby: the controller writes the same (primary, standby) pair as the CLI.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/placement/standby.yaml");
    let mut standby: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("example")).expect("yaml");
    standby["metadata"]["namespace"] = serde_json::json!("default");
    apply_json(&client, standby).await;
    let ap = solved(&api, "hospitals-standby").await;
    let st = ap.status.clone().expect("status");
    let cli = to_status(
        &solve_spec(catalog, &ap.spec, &SpecContext::default()).expect("solves"),
        STATUS_FRONT_LIMIT,
    );
    let pick = st.selected.as_ref().expect("feasible");
    let standby = pick.standby.as_ref().expect("selected.standby");
    assert_ne!(standby.region, pick.region);
    assert_eq!(st.selected, cli.selected, "the same primary and standby");
    assert_eq!(st.pareto_front, cli.pareto_front);
    hub.refusals.check();
    operator.abort();
}
