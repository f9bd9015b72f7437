//! Running the real `kubectl` against a control plane.

use crate::binaries::Binaries;
use crate::error::Error;
use std::path::Path;
use std::process::Command;

/// What a kubectl invocation printed and whether it succeeded.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// Exit status was zero.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<std::process::Output> for KubectlOutput {
    fn from(out: std::process::Output) -> Self {
        Self {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `kubectl --kubeconfig KUBECONFIG ARGS...` and captures its output.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<KubectlOutput, Error> {
    let bin = Binaries::locate()?.path("kubectl");
    let out = Command::new(&bin)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            name: format!("kubectl ({})", bin.display()),
            source,
        })?;
    Ok(out.into())
}
