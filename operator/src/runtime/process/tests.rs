//! Tests of the process runtime with `/bin/sleep` and `/bin/false` standing in for the
//! binaries.

use super::*;

fn runtime(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::new(ProcessSettings {
        state_dir: dir.into(),
        aggregator_bin: "/bin/false".into(),
        participant_bin: "/bin/sleep".into(),
        data_root: None,
        participant_threads: 1,
        network: None,
    })
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_participant_runs_exits_with_its_status_and_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let meta = ParticipantMeta {
        site: "eu".into(),
        node: "eu-1".into(),
        n: 0,
    };
    rt.start_participant("k", "p-0", &meta, &["30".into()])
        .await
        .expect("start");
    let procs = rt.participants("k");
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].meta, meta);
    assert_eq!(procs[0].state, ProcState::Running);
    // Starting it again is a no-op while it runs.
    rt.start_participant("k", "p-0", &meta, &["30".into()])
        .await
        .expect("again");
    let first_pid = pid(&rt.participant_dir("k", "p-0").join("run"));
    // Kill the binary, not the wrapper: the wrapper records 128 + 9.
    let child_of = |parent: Option<u32>| {
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit(')').next().map(str::to_string))
                    .and_then(|r| r.split_whitespace().nth(1).map(str::to_string))
                    == parent.map(|p| p.to_string())
            })
    };
    // The wrapper forks the binary a moment after it starts.
    until("the wrapper's child", || child_of(first_pid).is_some()).await;
    let bin_pid = child_of(first_pid).expect("child of the wrapper");
    std::process::Command::new("kill")
        .args(["-KILL", &bin_pid.to_string()])
        .status()
        .expect("kill");
    until("exit status", || {
        rt.participants("k")[0].state == ProcState::Exited(137)
    })
    .await;
    rt.remove_participant("k", "p-0").await.expect("remove");
    assert!(rt.participants("k").is_empty());
}

#[tokio::test]
async fn stopping_the_wrapper_leaves_no_process_and_reads_as_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let meta = ParticipantMeta {
        site: "eu".into(),
        node: "eu-1".into(),
        n: 1,
    };
    rt.start_participant("k", "p-1", &meta, &["30".into()])
        .await
        .expect("start");
    let run = rt.participant_dir("k", "p-1").join("run");
    stop(&run).await;
    until("stopped", || state(&run) == ProcState::Lost).await;
    rt.cleanup("k").await.expect("cleanup");
    assert!(!rt.job_dir("k").exists());
}

#[tokio::test]
async fn a_failing_init_model_is_reported_with_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = ProcessRuntime::new(ProcessSettings {
        participant_bin: "/bin/sh".into(),
        ..runtime(dir.path()).settings
    });
    let script = "echo no such architecture >&2; exit 3";
    let leaf = Leaf {
        cert_pem: "cert".into(),
        key_pem: "key".into(),
    };
    let creds = Credentials {
        token: "t",
        ca_pem: "ca",
        leaf: &leaf,
    };
    let store = crate::controllers::federated_job::validate::tests::valid_job().store;
    let err = rt
        .ensure_aggregator("k", "{}", &creds, &["-c".into(), script.into()], &store)
        .await
        .expect_err("the script fails");
    let msg = err.to_string();
    assert!(
        msg.contains("no such architecture") && msg.contains('3'),
        "{msg}"
    );
    assert!(!dir.path().join("k/aggregator/initial.safetensors").exists());
}

#[test]
fn pvc_data_needs_a_data_root_and_host_paths_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rt = runtime(dir.path());
    let mut site: fedsky_crds::participant_pool::Site = serde_json::from_value(
        serde_json::json!({"name": "eu", "memberCluster": "m", "cloud": "aws",
            "region": "eu-central-1", "dataVolume": {"persistentVolumeClaim": "xray"}}),
    )
    .expect("site");
    let err = rt.data_dir(&site).expect_err("no data root");
    assert!(err.to_string().contains("--process-data-root"), "{err}");
    rt.settings.data_root = Some("/srv/data".into());
    assert_eq!(
        rt.data_dir(&site).expect("dir"),
        PathBuf::from("/srv/data/xray")
    );
    site.data_volume.host_path = Some("/mnt/xray".into());
    assert_eq!(rt.data_dir(&site).expect("dir"), PathBuf::from("/mnt/xray"));
}

#[test]
fn writes_are_atomic_and_token_files_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("token");
    write_if_changed(&p, b"secret", 0o600).expect("write");
    let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!p.with_extension("tmp").exists());
    let ports1 = ports(&dir.path().join("ports.json")).expect("ports");
    let ports2 = ports(&dir.path().join("ports.json")).expect("ports");
    assert_eq!((ports1.grpc, ports1.http), (ports2.grpc, ports2.http));
}

#[tokio::test]
async fn an_s3_aggregator_gets_its_keys_as_environment_and_its_store_as_flags() {
    use crate::controllers::federated_job::model_store::tests::{job_with_store, keys};
    use crate::controllers::federated_job::validate::{tests, validate};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = dir.path().join("seen");
    // Stands in for the aggregator: records its environment, then its arguments.
    let bin = dir.path().join("aggregator.sh");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\nenv > {0}.env\nprintf '%s\\n' \"$@\" > {0}.args\n",
            seen.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rt = ProcessRuntime::new(ProcessSettings {
        aggregator_bin: bin,
        participant_bin: "/bin/sh".into(),
        ..runtime(&dir.path().join("state")).settings
    });
    let spec = job_with_store(serde_json::json!({
        "s3": { "endpoint": "http://127.0.0.1:9000", "bucket": "models", "prefix": "jobs/x",
                "credentialsSecretRef": { "name": "s3" } },
        "keepVersions": 2
    }));
    let job = validate(
        &spec,
        &tests::example_pool(),
        "tok",
        &tests::test_ca(),
        Some(keys()),
    )
    .expect("valid");
    let leaf = Leaf {
        cert_pem: "cert".into(),
        key_pem: "key".into(),
    };
    let creds = Credentials {
        token: "t",
        ca_pem: "ca",
        leaf: &leaf,
    };
    // `sh -c SCRIPT --out FILE`: $1 is the initial model's path.
    let init = ["-c".to_string(), "echo model > \"$1\"".to_string()];
    let state = rt
        .ensure_aggregator("k", "{}", &creds, &init, &job.store)
        .await
        .expect("started");
    assert_eq!(state, AggregatorState::Starting);
    let args_file = seen.with_extension("args");
    until("the aggregator's arguments", || {
        std::fs::read_to_string(&args_file).is_ok_and(|a| a.contains("--client-ca"))
    })
    .await;
    let args: Vec<String> = std::fs::read_to_string(&args_file)
        .expect("args")
        .lines()
        .map(str::to_string)
        .collect();
    let flag = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    assert_eq!(flag("--s3-bucket").as_deref(), Some("models"));
    assert_eq!(flag("--s3-prefix").as_deref(), Some("jobs/x"));
    assert_eq!(flag("--keep-versions").as_deref(), Some("2"));
    assert_eq!(flag("--store-dir"), None);
    assert!(!args.iter().any(|a| a.contains(&keys().secret_access_key)));
    let env = std::fs::read_to_string(seen.with_extension("env")).expect("env");
    assert!(
        env.lines()
            .any(|l| l == format!("AWS_ACCESS_KEY_ID={}", keys().access_key_id))
    );
    assert!(
        env.lines()
            .any(|l| l == format!("AWS_SECRET_ACCESS_KEY={}", keys().secret_access_key))
    );
    assert!(env.lines().any(|l| l == "AWS_SESSION_TOKEN="), "{env}");
    rt.cleanup("k").await.expect("cleanup");
}
