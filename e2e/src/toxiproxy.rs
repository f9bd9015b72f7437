//! Toxiproxy (a real TCP proxy that adds latency and limits bandwidth per path, driven by
//! an HTTP API) on loopback, for the emulated multi-region testbed. Stopped when dropped
//! or when the test process ends.
//!
//! The binary comes from `FEDSKY_TOXIPROXY_BIN`, else from `e2e/scripts/build-toxiproxy.sh`
//! (built once from the Go module proxy into the cache).

use crate::error::{Error, io};
use crate::process::{Proc, free_port, wait_listening, watchdog};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running Toxiproxy server.
#[derive(Debug)]
pub struct Toxiproxy {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        self.proc.stop();
    }
}

/// The `toxiproxy-server` binary: `FEDSKY_TOXIPROXY_BIN`, else built (or found in the
/// cache) by the build script.
pub fn binary() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("FEDSKY_TOXIPROXY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let script = crate::repo_root().join("e2e/scripts/build-toxiproxy.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Binaries(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({})",
            script.display(),
            out.status
        )));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

impl Toxiproxy {
    /// Starts Toxiproxy's API on a free loopback port and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        let program = binary()?;
        let dir = tempfile::Builder::new()
            .prefix("fedsky-toxiproxy-")
            .tempdir()
            .map_err(io("create", std::env::temp_dir()))?;
        let port = free_port()?;
        let args = ["-host", "127.0.0.1", "-port", &port.to_string()].map(String::from);
        let mut proc = Proc::spawn("toxiproxy", &program, &args, dir.path())?;
        watchdog(&[proc.child.id()], None)?;
        wait_listening(
            &mut proc.child,
            port,
            &proc.log,
            "toxiproxy",
            Duration::from_secs(30),
        )?;
        Ok(Self {
            proc,
            port,
            _dir: dir,
        })
    }

    /// The API's URL, `http://127.0.0.1:<port>`.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}
