//! Supervising one process: the `sh` wrapper that records its exit status, its pid
//! file, liveness, stopping, and reading its log.

use super::files::{io, write_if_changed};
use super::{Credentials, ProcState, ProcessError, RESTART_BACKOFF};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The wrapper: runs the binary, then records its status atomically. `$0` is the run
/// directory, so the command line identifies the process as ours.
const WRAPPER: &str = r#""$@"; s=$?; echo "$s" > "$0/exit.tmp" && mv "$0/exit.tmp" "$0/exit""#;

pub(super) async fn spawn(
    run: &Path,
    bin: &Path,
    args: &[String],
    env: &[(&str, &str)],
) -> Result<(), ProcessError> {
    let _ = std::fs::remove_file(run.join("exit"));
    let log_path = run.join("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("log", &log_path))?;
    let err = log.try_clone().map_err(io("log", &log_path))?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg(run)
        .arg(bin)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own group: stopping it stops the binary too, and a Ctrl-C meant for the
        // operator does not reach it (pods outlive their operator as well).
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        bin: bin.to_path_buf(),
        source,
    })?;
    let pid = child.id().unwrap_or_default();
    write_if_changed(&run.join("pid"), pid.to_string().as_bytes(), 0o644)?;
    // Reap it, or a dead child would look alive (a zombie) until the operator exits.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}

pub(super) fn pid(run: &Path) -> Option<u32> {
    std::fs::read_to_string(run.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is alive and is our wrapper for `run` (guards against pid reuse).
pub(super) fn alive(pid: u32, run: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self").exists() {
        let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
            return false;
        };
        let zombie = std::fs::read_to_string(proc_dir.join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == run.as_os_str().as_encoded_bytes());
        return ours && !zombie;
    }
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn state(run: &Path) -> ProcState {
    if let Some(code) = std::fs::read_to_string(run.join("exit"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return ProcState::Exited(code);
    }
    match pid(run) {
        None => ProcState::Absent,
        Some(p) if alive(p, run) => ProcState::Running,
        Some(_) => ProcState::Lost,
    }
}

pub(super) fn recently_ended(run: &Path) -> bool {
    let marker = if run.join("exit").exists() {
        run.join("exit")
    } else {
        run.join("pid")
    };
    std::fs::metadata(marker)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < RESTART_BACKOFF)
}

/// Stops the process group of `run` (TERM, then KILL after 5 s) and waits for it.
pub(super) async fn stop(run: &Path) {
    let Some(pid) = pid(run) else { return };
    let signal = |sig: &str| {
        let _ = std::process::Command::new("kill")
            .args([sig, "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    };
    if !alive(pid, run) {
        return;
    }
    signal("-TERM");
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !alive(pid, run) {
            return;
        }
    }
    signal("-KILL");
}

/// Whether the aggregator at `http` (its `https://127.0.0.1:<port>`) answers `/readyz`:
/// over TLS verified against the job's CA (the certificate names 127.0.0.1), with the job
/// token, as the model manager requires of every caller.
pub(super) async fn ready(http: &str, creds: &Credentials<'_>) -> bool {
    let Ok(ca) = reqwest::Certificate::from_pem(creds.ca_pem.as_bytes()) else {
        return false;
    };
    let Ok(client) = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .https_only(true)
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(format!("{http}/readyz"))
        .bearer_auth(creds.token)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

pub(super) fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

pub(super) fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .map_or_else(|| "no output".into(), |l| tail(&l, 300))
}
