//! moto's server (a real implementation of the AWS APIs, in Python) on loopback, one per
//! test, stopped when dropped or when the test process ends.
//!
//! moto comes from `FEDSKY_MOTO_SERVER`, else from the venv named by `FEDSKY_VENV`, else
//! from the workspace's `.venv` (created with `python3 -m venv` and
//! `pip install "moto[server]"` when missing, as `requirements-dev.txt` pins it).
//!
//! With [`MotoOptions::auth_after`], moto checks signatures and IAM policies after that
//! many requests (its `INITIAL_NO_AUTH_ACTION_COUNT`): a test makes its IAM users in the
//! first, unauthenticated requests, and from then on unknown keys are rejected as AWS
//! rejects them.

use crate::error::{Error, io};
use crate::process::{free_port, tail, wait_listening, watchdog};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How moto runs.
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// Requests served before authentication is enforced; `None`: never enforced.
    pub auth_after: Option<u32>,
}

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace() -> PathBuf {
    crate::repo_root()
}

/// The Python venv tests use (moto, boto3).
pub fn venv() -> PathBuf {
    std::env::var_os("FEDSKY_VENV").map_or_else(|| workspace().join(".venv"), PathBuf::from)
}

/// The venv's Python, for boto3 set-up scripts.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// The `moto_server` program, installed into the venv first when missing.
pub fn moto_server() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("FEDSKY_MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    venv_program("moto_server", "moto[server]")
}

/// `program` from the tests' venv, `pip install`ed from `requirement` first when missing
/// (and the venv created when there is none).
pub(crate) fn venv_program(program: &str, requirement: &str) -> Result<PathBuf, Error> {
    let venv = venv();
    let bin = venv.join("bin").join(program);
    if bin.exists() {
        return Ok(bin);
    }
    let ok = (venv.join("bin/pip").exists()
        || Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success()))
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", requirement])
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        Ok(bin)
    } else {
        Err(Error::Binaries(format!(
            "{program} is missing and `pip install \"{requirement}\"` into {} failed",
            venv.display()
        )))
    }
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it listens.
    pub fn start(options: &MotoOptions) -> Result<Self, Error> {
        let program = moto_server()?;
        let dir = tempfile::Builder::new()
            .prefix("fedsky-moto-")
            .tempdir()
            .map_err(io("create", std::env::temp_dir()))?;
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).map_err(io("create", &log))?;
        let err = out.try_clone().map_err(io("clone handle of", &log))?;
        let port = free_port()?;
        let mut cmd = Command::new(&program);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(n) = options.auth_after {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            name: format!("moto ({})", program.display()),
            source,
        })?;
        watchdog(&[child.id()], None)?;
        let mut moto = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        wait_listening(
            &mut moto.child,
            port,
            &moto.log,
            "moto",
            Duration::from_secs(60),
        )?;
        Ok(moto)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines of moto's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Turns authentication on from the next request (moto's `/moto-api/reset-auth`):
    /// a test makes its IAM users first, then unknown keys are rejected.
    pub fn enforce_auth(&self) -> Result<(), Error> {
        use std::io::{Read, Write};
        let addr = format!("127.0.0.1:{}", self.port);
        let mut s = TcpStream::connect(&addr).map_err(io("connect to", &addr))?;
        s.write_all(
            b"POST /moto-api/reset-auth HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Length: 1\r\nConnection: close\r\n\r\n0",
        )
        .map_err(io("write to", &addr))?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .map_err(io("read from", &addr))?;
        if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(Error::NotHealthy {
                component: "moto reset-auth".into(),
                seconds: 0,
                log_tail: answer,
            })
        }
    }

    /// Runs a Python script with boto3 against this server (`sys.argv[1]` is the
    /// endpoint) and returns its standard output.
    pub fn python(&self, script: &str) -> Result<String, Error> {
        let out = Command::new(python())
            .args(["-c", script, &self.endpoint()])
            .output()
            .map_err(|source| Error::Spawn {
                name: "python".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::NotHealthy {
                component: "boto3 script".into(),
                seconds: 0,
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
