//! Running the real `helm` (built with the control plane) against a control plane or
//! offline, with its config, cache and data directories private to this process, so that
//! tests neither read nor write the user's helm state.

use crate::binaries::Binaries;
use crate::error::Error;
use crate::kubectl::KubectlOutput;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `--kube-version` for offline rendering: `helm template` otherwise assumes the version
/// compiled into helm, which for a source build is too old for the chart's `kubeVersion`.
/// The version the harness's control planes run.
pub const OFFLINE_KUBE_VERSION: &str = "v1.35.4";

fn home() -> Result<&'static Path, Error> {
    static HOME: OnceLock<Result<tempfile::TempDir, String>> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().map_err(|e| e.to_string()))
        .as_ref()
        .map(tempfile::TempDir::path)
        .map_err(|e| Error::Io {
            action: "creating helm's home",
            path: PathBuf::from("<temp dir>"),
            source: std::io::Error::other(e.clone()),
        })
}

/// Runs `helm ARGS...` (with `--kubeconfig KUBECONFIG` when given) in `cwd`.
pub fn helm(kubeconfig: Option<&Path>, cwd: &Path, args: &[&str]) -> Result<KubectlOutput, Error> {
    let bin = Binaries::locate()?.path("helm");
    let home = home()?;
    let mut cmd = Command::new(&bin);
    if let Some(k) = kubeconfig {
        cmd.arg(format!("--kubeconfig={}", k.display()));
    }
    let out = cmd
        .args(args)
        .current_dir(cwd)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .map_err(|source| Error::Spawn {
            name: format!("helm ({})", bin.display()),
            source,
        })?;
    Ok(out.into())
}
