//! The `fedsky` binary on the example manifests: output formats, exit codes
//! and error messages.

use std::process::Command;

fn fedsky(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fedsky"))
        .args(args)
        // Paths in the examples are relative to the workspace root.
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PLACEMENT: &str = "examples/covid-xray/aggregator-placement.yaml";
const POOL: &str = "examples/covid-xray/participant-pool.yaml";

#[test]
fn table_output_shows_pick_front_and_solver() {
    let (code, out, err) = fedsky(&["placement", "solve", "-f", PLACEMENT, "--pool", POOL]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("selected (costWeight 0.5): "), "{out}");
    assert!(
        out.contains("solver:      Exact: decomposition over"),
        "{out}"
    );
    assert!(out.contains("Pareto front: "), "{out}");
    assert!(out.contains("(catalog 2026-11)"), "{out}");
}

#[test]
fn json_output_carries_the_status_the_controller_writes() {
    let (code, out, err) = fedsky(&[
        "placement",
        "solve",
        "-f",
        PLACEMENT,
        "--pool",
        POOL,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["placement"], "covid-xray/covid-xray");
    assert_eq!(v["status"]["catalogVersion"], "2026-11");
    assert!(v["status"]["selected"]["monthlyCost"].as_f64().is_some());
    assert!(
        v["outcome"]["front"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );
    let (code, out, _) = fedsky(&[
        "placement",
        "solve",
        "-f",
        PLACEMENT,
        "--pool",
        POOL,
        "-o",
        "yaml",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("catalogVersion: 2026-11"), "{out}");
}

#[test]
fn infeasible_exits_2_and_names_the_constraint() {
    let dir = tempdir();
    let path = dir.join("tight.yaml");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(PLACEMENT),
    )
    .expect("example exists")
    .replace("maxMonthlyCost: 60", "maxMonthlyCost: 3");
    std::fs::write(&path, text).expect("writes");
    let p = path.to_string_lossy().into_owned();
    let (code, out, _) = fedsky(&["placement", "solve", "-f", &p, "--pool", POOL]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("INFEASIBLE: maxMonthlyCost 3 USD is below the cheapest candidate's"),
        "{out}"
    );
}

#[test]
fn bad_input_exits_1_with_a_clear_message() {
    let (code, _, err) = fedsky(&["placement", "solve", "-f", PLACEMENT]);
    assert_eq!(code, 1);
    assert!(
        err.contains("poolRef names ParticipantPool `hospitals`, which was not found"),
        "{err}"
    );
    let dir = tempdir();
    let catalog = dir.join("broken.json");
    std::fs::write(&catalog, "{\"version\": \"x\", \"regions\": [").expect("writes");
    let c = catalog.to_string_lossy().into_owned();
    let (code, _, err) = fedsky(&[
        "placement",
        "solve",
        "-f",
        PLACEMENT,
        "--pool",
        POOL,
        "--catalog",
        &c,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("malformed catalog JSON"), "{err}");
    let (code, _, err) = fedsky(&["placement", "solve", "-f", "does-not-exist.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read does-not-exist.yaml"), "{err}");
}

#[test]
fn overlay_adds_private_sites() {
    let dir = tempdir();
    let overlay = dir.join("overlay.yaml");
    std::fs::write(
        &overlay,
        "version: hospitals\nregions:\n  - { cloud: openstack, name: RegionSeoul, networkLike: \"aws:ap-northeast-2\", extraRttMs: 3 }\n",
    )
    .expect("writes");
    let placement = dir.join("ap.yaml");
    std::fs::write(
        &placement,
        "apiVersion: fl.fedsky.dev/v1alpha1\nkind: AggregatorPlacement\nmetadata: { name: p }\nspec:\n  participants:\n    sites:\n      - { name: seoul, cloud: openstack, region: RegionSeoul }\n      - { name: eu, cloud: aws, region: eu-central-1 }\n",
    )
    .expect("writes");
    let (o, p) = (
        overlay.to_string_lossy().into_owned(),
        placement.to_string_lossy().into_owned(),
    );
    let (code, out, err) = fedsky(&["placement", "solve", "-f", &p, "--overlay", &o]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(catalog 2026-11+hospitals)"), "{out}");
}

const STANDBY: &str = "examples/placement/standby.yaml";

#[test]
fn standby_example_shows_the_standby_and_its_failover_round() {
    let (code, out, err) = fedsky(&["placement", "solve", "-f", STANDBY]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("AggregatorPlacement covid-xray/hospitals-standby (catalog 2026-11)"),
        "{out}"
    );
    assert!(
        out.contains("(primary, standby) pairs meet the standby's rules"),
        "{out}"
    );
    assert!(out.contains("\n  standby:      "), "{out}");
    assert!(out.contains("(Warm): "), "{out}");
    assert!(out.contains("; failover round "), "{out}");
    assert!(out.contains("  STANDBY  "), "{out}");
    assert!(out.contains("  FAILOVER_S"), "{out}");

    let (code, out, err) = fedsky(&["placement", "solve", "-f", STANDBY, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let standby = &v["status"]["selected"]["standby"];
    assert!(standby["region"].is_string(), "{v}");
    assert_ne!(standby["region"], v["status"]["selected"]["region"]);
    let failover = standby["failoverRoundTimeSeconds"]
        .as_f64()
        .expect("a number");
    assert!(failover > 0.0 && failover <= 50.0, "{failover}");
    assert_eq!(
        v["outcome"]["front"][0]["standby"]["mode"], "Warm",
        "the outcome carries the standby's details"
    );
    assert!(
        v["candidateCounts"]["standbyPairs"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );

    let (code, out, _) = fedsky(&["placement", "solve", "-f", STANDBY, "-o", "yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains("failoverRoundTimeSeconds: "), "{out}");
}

#[test]
fn standby_rules_that_leave_no_pair_exit_2_naming_the_rule() {
    let dir = tempdir();
    let path = dir.join("one-cloud.yaml");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(STANDBY),
    )
    .expect("example exists")
    .replace("clouds: [aws, gcp]", "clouds: [gcp]")
    .replace("distinctCloud: false", "distinctCloud: true");
    std::fs::write(&path, text).expect("writes");
    let p = path.to_string_lossy().into_owned();
    let (code, out, _) = fedsky(&["placement", "solve", "-f", &p]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "INFEASIBLE: requirements.standby.distinctCloud needs the standby in another cloud \
             than the primary, but all "
        ) && out.contains(" are in gcp; allow a second cloud or set distinctCloud false"),
        "{out}"
    );
}

/// A fresh directory in the system temp dir, removed when dropped (tests
/// must not write the source tree).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fedsky-cli-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("creates");
    TempDir(dir)
}
