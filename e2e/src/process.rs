//! Child processes with their output in log files, and a watchdog that stops them when
//! the test process ends (even if it panics or is killed, where `Drop` never runs).

use crate::error::{Error, io};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running component.
#[derive(Debug)]
pub(crate) struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> Result<Self, Error> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(io("create", &log))?;
        let err = out.try_clone().map_err(io("clone handle of", &log))?;
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn {
                name: format!("{name} ({})", program.display()),
                source,
            })?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// Whether the process has exited (and if so, how).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    pub(crate) fn stop(&mut self) {
        // SIGKILL is fine: every component's state lives in the run directory we delete.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts a shell watchdog that kills `pids` and removes `dir` (if given) once this
/// process is gone.
pub(crate) fn watchdog(pids: &[u32], dir: Option<&Path>) -> Result<(), Error> {
    let script = r#"parent=$1; dir=$2; shift 2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
kill "$@" 2>/dev/null; sleep 1; kill -9 "$@" 2>/dev/null; [ -z "$dir" ] || rm -rf "$dir""#;
    let mut args = vec![
        "-c".to_string(),
        script.to_string(),
        "fedsky-e2e-watchdog".to_string(),
        std::process::id().to_string(),
        dir.map(|d| d.display().to_string()).unwrap_or_default(),
    ];
    args.extend(pids.iter().map(u32::to_string));
    spawn_detached_sh(&args)
}

/// Runs `sh ARGS` in the background with no standard streams, for watchdogs that must
/// outlive this process.
pub(crate) fn spawn_detached_sh(args: &[String]) -> Result<(), Error> {
    Command::new("sh")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| Error::Spawn {
            name: "watchdog".into(),
            source,
        })?;
    Ok(())
}

/// A free TCP port on loopback (the OS picks; we release it for the component to bind).
pub(crate) fn free_port() -> Result<u16, Error> {
    free_ports::<1>().map(|[port]| port)
}

/// `N` distinct free TCP ports on loopback. Each is held until all are picked
/// (a port released at once can come straight back), then all are released
/// for the components to bind.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind", "127.0.0.1:0"))?;
        *port = l
            .local_addr()
            .map_err(io("read address of", "127.0.0.1:0"))?
            .port();
        held.push(l);
    }
    Ok(ports)
}

/// Waits until something listens on loopback `port`; fails with the end of `log` when
/// `child` exits first or `timeout` passes.
pub(crate) fn wait_listening(
    child: &mut Child,
    port: u16,
    log: &Path,
    component: &str,
    timeout: std::time::Duration,
) -> Result<(), Error> {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > timeout || child.try_wait().ok().flatten().is_some() {
            return Err(Error::NotHealthy {
                component: component.into(),
                seconds: start.elapsed().as_secs(),
                log_tail: tail(log, 20),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_picked_together_are_distinct() {
        let ports = free_ports::<16>().expect("ports");
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        assert!(ports.iter().all(|p| *p != 0));
    }
}
