//! Locating the cached control-plane binaries (building them on a cache miss).

use crate::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// `FEDSKY_BIN_DIR` if set, otherwise the directory printed by the build script
    /// (which builds once and then answers from its cache). Resolved once per process.
    pub fn locate() -> Result<Self, Error> {
        static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        DIR.get_or_init(|| match std::env::var_os("FEDSKY_BIN_DIR") {
            Some(d) => Ok(PathBuf::from(d)),
            None => build_or_reuse(),
        })
        .clone()
        .map(|dir| Self { dir })
        .map_err(Error::Binaries)
    }

    /// Path of one binary, for example `kube-apiserver`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The directory holding all binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn build_or_reuse() -> Result<PathBuf, String> {
    let script = crate::repo_root().join("e2e/scripts/build-control-plane.sh");
    let out = Command::new(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err(format!("{} printed no directory", script.display()));
    }
    Ok(PathBuf::from(dir))
}
