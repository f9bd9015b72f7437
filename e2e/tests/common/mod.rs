//! Shared set-up for the API tests: one control plane per test binary with the CRDs
//! installed once.

#![allow(dead_code)]

pub use fedsky_e2e::repo_root;
use fedsky_e2e::{ControlPlane, kubectl};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn crd_yaml_path() -> PathBuf {
    repo_root().join("charts/fedsky/files/crds.yaml")
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
    cp.install_fedsky_crds().map_err(|e| e.to_string())
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
