//! Shared set-up for the API tests: one control plane per test binary with the CRDs
//! installed once.

#![allow(dead_code)]

use fedsky_e2e::{ControlPlane, kubectl};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn crd_yaml_path() -> PathBuf {
    repo_root().join("charts/fedsky/crds/fedsky.yaml")
}

/// The shared control plane with fedsky's CRDs installed and Established.
pub fn hub() -> &'static ControlPlane {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let cp = match ControlPlane::shared() {
        Ok(cp) => cp,
        Err(e) => panic!("{e}"),
    };
    let ready = READY.get_or_init(|| install_crds(cp));
    if let Err(e) = ready {
        panic!("installing CRDs failed: {e}");
    }
    cp
}

fn install_crds(cp: &ControlPlane) -> Result<(), String> {
    let path = crd_yaml_path();
    let file = path.display().to_string();
    let out = kubectl(
        cp.kubeconfig_path(),
        &["apply", "--server-side", "-f", &file],
    )
    .map_err(|e| e.to_string())?;
    if !out.success {
        return Err(out.stderr);
    }
    let out = kubectl(
        cp.kubeconfig_path(),
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &file,
        ],
    )
    .map_err(|e| e.to_string())?;
    if !out.success {
        return Err(out.stderr);
    }
    // Discovery of new kinds lags Established by a moment; wait until kubectl sees them.
    let start = Instant::now();
    loop {
        let out = kubectl(
            cp.kubeconfig_path(),
            &["api-resources", "--api-group=fl.fedsky.dev", "-o", "name"],
        )
        .map_err(|e| e.to_string())?;
        if out.stdout.lines().count() >= 4 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("fedsky kinds not in discovery: {}", out.stdout));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs kubectl against the hub, panicking only if kubectl itself cannot run.
pub fn k(args: &[&str]) -> fedsky_e2e::KubectlOutput {
    match kubectl(hub().kubeconfig_path(), args) {
        Ok(o) => o,
        Err(e) => panic!("kubectl {args:?}: {e}"),
    }
}

/// A kubectl whose failure fails the test with kubectl's message.
pub fn k_ok(args: &[&str]) -> String {
    let out = k(args);
    assert!(out.success, "kubectl {args:?} failed:\n{}", out.stderr);
    out.stdout
}

/// Writes `contents` to a fresh temp file and returns its path (kept until process exit).
pub fn temp_manifest(contents: &str) -> tempfile::TempPath {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    f.write_all(contents.as_bytes())
        .expect("write temp manifest");
    f.into_temp_path()
}
