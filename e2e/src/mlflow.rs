//! MLflow's tracking server (PyPI `mlflow`, as `requirements-dev.txt` pins it) on
//! loopback, one per test, stopped when dropped or when the test process ends.
//!
//! It runs as `mlflow server` does in production: a SQLite backend store, artifacts
//! served through the server's artifact proxy from a temporary directory, and MLflow's
//! `basic-auth` app with one admin user, so that a request without the credentials is
//! refused as a protected server refuses it.
//!
//! `mlflow` comes from `FEDSKY_MLFLOW`, else from the venv named by `FEDSKY_VENV`, else
//! from the workspace's `.venv` (installed there with the pin of `requirements-dev.txt`
//! when missing).

use crate::error::{Error, io};
use crate::process::{free_port, tail, wait_listening};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin user of the server's basic-auth app.
pub const USERNAME: &str = "admin";
/// Its password.
pub const PASSWORD: &str = "fedsky-mlflow-test";
/// How long the server may take to answer (it migrates two SQLite databases first; tens
/// of seconds on a busy two-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(240);

/// A running MLflow tracking server.
#[derive(Debug)]
pub struct Mlflow {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// Kills process group `pgid` (never 0 or 1).
fn kill_group(pgid: u32) {
    if pgid > 1 {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        // `mlflow server` runs the server (uvicorn) as its own child: the group, not the
        // process, is what has to go.
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// Kills process group `pgid` once this process is gone (even if it panics or is killed,
/// where `Drop` never runs). [`crate::process`]'s watchdog kills processes, and killing
/// `mlflow server` would leave its uvicorn child behind.
fn group_watchdog(pgid: u32) -> Result<(), Error> {
    let script = r#"parent=$1; group=$2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
kill -TERM -- "-$group" 2>/dev/null; sleep 1; kill -KILL -- "-$group" 2>/dev/null"#;
    crate::process::spawn_detached_sh(&[
        "-c".into(),
        script.into(),
        "fedsky-e2e-mlflow-watchdog".into(),
        std::process::id().to_string(),
        pgid.to_string(),
    ])
}

/// The `mlflow` requirement of `requirements-dev.txt` (such as `mlflow[auth]==3.18.0`).
fn pinned_requirement() -> String {
    let path = crate::repo_root().join("requirements-dev.txt");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .map(str::trim)
                .find(|l| l.starts_with("mlflow"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "mlflow[auth]".to_string())
}

/// The `mlflow` program, installed into the venv first when missing.
pub fn mlflow_program() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("FEDSKY_MLFLOW") {
        return Ok(PathBuf::from(p));
    }
    crate::moto::venv_program("mlflow", &pinned_requirement())
}

/// The HTTP status of `GET path` on loopback `port`, if it answers.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

impl Mlflow {
    /// Starts the server on a free loopback port and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        let program = mlflow_program()?;
        let dir = tempfile::Builder::new()
            .prefix("fedsky-mlflow-")
            .tempdir()
            .map_err(io("create", std::env::temp_dir()))?;
        let root = dir.path();
        let auth_config = root.join("basic_auth.ini");
        let ini = format!(
            "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\n\
             admin_username = {USERNAME}\nadmin_password = {PASSWORD}\n\
             authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
            root.join("auth.db").display()
        );
        std::fs::write(&auth_config, ini).map_err(io("write", &auth_config))?;
        let log = root.join("mlflow.log");
        let out = std::fs::File::create(&log).map_err(io("create", &log))?;
        let err = out.try_clone().map_err(io("clone handle of", &log))?;
        let port = free_port()?;
        let child = Command::new(&program)
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", root.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(root.join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1", "--app-name", "basic-auth"])
            .env("MLFLOW_AUTH_CONFIG_PATH", &auth_config)
            // The basic-auth app's CSRF protection refuses to start without a key.
            .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "fedsky-e2e")
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .current_dir(root)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn {
                name: format!("mlflow ({})", program.display()),
                source,
            })?;
        group_watchdog(child.id())?;
        let mut mlflow = Self {
            child,
            port,
            log,
            dir,
        };
        let start = Instant::now();
        wait_listening(
            &mut mlflow.child,
            port,
            &mlflow.log,
            "mlflow",
            START_TIMEOUT,
        )?;
        while get_status(port, "/health") != Some(200) {
            if start.elapsed() > START_TIMEOUT || mlflow.child.try_wait().ok().flatten().is_some() {
                return Err(Error::NotHealthy {
                    component: "mlflow".into(),
                    seconds: start.elapsed().as_secs(),
                    log_tail: mlflow.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(mlflow)
    }

    /// The tracking URI, `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps artifacts (its `--artifacts-destination`).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}
