//! The process runtime: the aggregator and participants of a job run as local processes,
//! supervised through files so that an operator restart loses nothing.
//!
//! Layout under the state directory, per job key:
//! `aggregator/{job.json,token,ca.crt,tls.crt,tls.key,initial.safetensors,ports.json,store/,run/}`
//! and `participants/<name>/{meta.json,token,ca.crt,tls.crt,tls.key,state/,run/}` (credentials
//! mode 0600), where `run/` holds `pid`, `log`
//! and, once the process has ended, `exit` (its status). Each process runs under a small
//! `sh` wrapper in its own process group that records the exit status even when the
//! operator is gone, like a kubelet records a container's.

use super::netem::NetemError;
use crate::controllers::federated_job::command::{self, AggregatorIo, TlsPaths};
use crate::controllers::federated_job::pki::Leaf;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Settings of the process runtime (operator flags).
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Where job directories live.
    pub state_dir: PathBuf,
    /// The `fedsky-aggregator` binary.
    pub aggregator_bin: PathBuf,
    /// The `fedsky-participant` binary (also writes each job's initial model).
    pub participant_bin: PathBuf,
    /// Data volumes given as PersistentVolumeClaims are read from `<data_root>/<claim>`;
    /// `hostPath` volumes are read where they are.
    pub data_root: Option<PathBuf>,
    /// CPU threads per participant (several share one machine).
    pub participant_threads: usize,
    /// Emulated regions: each participant dials the aggregator through a Toxiproxy path
    /// shaped like the network between its site's region and the aggregator's.
    pub network: Option<super::netem::NetworkEmulator>,
}

/// What went wrong running a local process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A file of the runtime could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A binary could not be started.
    #[error("starting {}: {source}", bin.display())]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the job's initial model failed.
    #[error("writing the initial model with {}: {detail}", bin.display())]
    InitModel {
        /// The participant binary.
        bin: PathBuf,
        /// Exit status and the end of its output.
        detail: String,
    },
    /// A site's data volume has no local path.
    #[error(
        "site {site}: data volume {volume} is a PersistentVolumeClaim; the process runtime reads it from <data root>/{volume}: start the operator with --process-data-root"
    )]
    NoDataRoot {
        /// The site.
        site: String,
        /// The claim name.
        volume: String,
    },
    /// The emulated network could not shape a participant's path.
    #[error("emulated network: {0}")]
    Network(#[from] super::netem::NetemError),
    /// A site has no data volume at all.
    #[error("site {0}: dataVolume sets neither persistentVolumeClaim nor hostPath")]
    NoDataVolume(String),
    /// A certificate could not be issued.
    #[error("issuing credentials: {0}")]
    Credentials(String),
}

/// What a process authenticates with: the job token and its side of the job's mutual TLS.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The job token.
    pub token: &'a str,
    /// The job's CA certificate.
    pub ca_pem: &'a str,
    /// This process's certificate and key.
    pub leaf: &'a Leaf,
}

/// Credential files of one process, written 0600 next to each other.
#[derive(Debug, Clone)]
pub struct CredentialFiles {
    /// Job token file.
    pub token: PathBuf,
    /// The job's CA certificate.
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Writes `creds` into `dir` (each file only when its content changed).
fn write_credentials(dir: &Path, creds: &Credentials<'_>) -> Result<CredentialFiles, ProcessError> {
    let files = CredentialFiles {
        token: dir.join("token"),
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    write_if_changed(&files.token, creds.token.as_bytes(), 0o600)?;
    write_if_changed(&files.ca, creds.ca_pem.as_bytes(), 0o600)?;
    write_if_changed(&files.cert, creds.leaf.cert_pem.as_bytes(), 0o600)?;
    write_if_changed(&files.key, creds.leaf.key_pem.as_bytes(), 0o600)?;
    Ok(files)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ProcessError {
    let path = path.to_path_buf();
    move |source| ProcessError::Io { what, path, source }
}

/// A supervised process as its files describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcState {
    /// Never started here.
    Absent,
    /// Alive.
    Running,
    /// Ended with this status (128 + n after signal n, as `sh` reports it).
    Exited(i32),
    /// Gone without an exit status (killed together with its wrapper, or the machine
    /// restarted).
    Lost,
}

/// The aggregator of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregatorState {
    /// Started, not answering yet.
    Starting,
    /// Serving: gRPC and model-manager addresses.
    Ready {
        /// `host:port` participants dial.
        grpc: String,
        /// Base URL of the model manager.
        http: String,
    },
    /// Ended and about to be restarted; the last line it logged.
    Restarting(String),
}

/// Where a participant runs and which replacement it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantMeta {
    /// Site.
    pub site: String,
    /// Node the orchestrator picked (the process runs on this machine; the node stands
    /// for the capacity it uses and fails with it).
    pub node: String,
    /// Index of this start at its site.
    pub n: u32,
}

/// A participant process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantProc {
    /// Its name (the same as the participant Job's would be).
    pub name: String,
    /// Placement.
    pub meta: ParticipantMeta,
    /// Liveness.
    pub state: ProcState,
}

/// Paths a participant process is started with.
#[derive(Debug, Clone)]
pub struct ParticipantPaths {
    /// Job token file.
    pub token: PathBuf,
    /// The job's CA certificate.
    pub ca: PathBuf,
    /// The participant's certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Directory that keeps an open round's update across restarts.
    pub state: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ports {
    grpc: u16,
    http: u16,
}

/// Don't restart a crashed aggregator more often than this.
const RESTART_BACKOFF: Duration = Duration::from_secs(5);

/// Runs jobs' workloads as local processes.
#[derive(Debug)]
pub struct ProcessRuntime {
    settings: ProcessSettings,
}

impl ProcessRuntime {
    /// A runtime over `settings`.
    pub fn new(settings: ProcessSettings) -> Self {
        Self { settings }
    }

    /// Its settings.
    pub fn settings(&self) -> &ProcessSettings {
        &self.settings
    }

    fn job_dir(&self, key: &str) -> PathBuf {
        self.settings.state_dir.join(key)
    }

    fn aggregator_dir(&self, key: &str) -> PathBuf {
        self.job_dir(key).join("aggregator")
    }

    fn participant_dir(&self, key: &str, name: &str) -> PathBuf {
        self.job_dir(key).join("participants").join(name)
    }

    /// Local directory of a site's data volume.
    pub fn data_dir(
        &self,
        site: &fedsky_crds::participant_pool::Site,
    ) -> Result<PathBuf, ProcessError> {
        let v = &site.data_volume;
        match (&v.host_path, &v.persistent_volume_claim) {
            (Some(path), _) => Ok(PathBuf::from(path)),
            (None, Some(claim)) => match &self.settings.data_root {
                Some(root) => Ok(root.join(claim)),
                None => Err(ProcessError::NoDataRoot {
                    site: site.name.clone(),
                    volume: claim.clone(),
                }),
            },
            (None, None) => Err(ProcessError::NoDataVolume(site.name.clone())),
        }
    }

    /// Starts the job's aggregator if it is not running and reports whether it serves.
    /// `init_model` is the participant binary's `init-model` command line without `--out`.
    pub async fn ensure_aggregator(
        &self,
        key: &str,
        job_json: &str,
        creds: &Credentials<'_>,
        init_model: &[String],
    ) -> Result<AggregatorState, ProcessError> {
        let dir = self.aggregator_dir(key);
        let run = dir.join("run");
        create_dir(&run)?;
        write_if_changed(&dir.join("job.json"), job_json.as_bytes(), 0o644)?;
        let files = write_credentials(&dir, creds)?;
        let initial = dir.join("initial.safetensors");
        if !initial.exists() {
            self.init_model(init_model, &initial).await?;
        }
        let ports = ports(&dir.join("ports.json"))?;
        let grpc = format!("127.0.0.1:{}", ports.grpc);
        let http = format!("http://127.0.0.1:{}", ports.http);
        match state(&run) {
            ProcState::Running => {
                return Ok(if ready(&http).await {
                    AggregatorState::Ready { grpc, http }
                } else {
                    AggregatorState::Starting
                });
            }
            ProcState::Exited(_) | ProcState::Lost if recently_ended(&run) => {
                return Ok(AggregatorState::Restarting(last_line(&run.join("log"))));
            }
            _ => {}
        }
        let s = |p: &Path| p.display().to_string();
        let (ca, cert, tls_key) = (s(&files.ca), s(&files.cert), s(&files.key));
        let args = command::aggregator(&AggregatorIo {
            job_file: &s(&dir.join("job.json")),
            grpc_listen: &grpc,
            http_listen: &format!("127.0.0.1:{}", ports.http),
            token_file: &s(&files.token),
            store_dir: &s(&dir.join("store")),
            initial_model: &s(&initial),
            tls: TlsPaths {
                ca: &ca,
                cert: &cert,
                key: &tls_key,
            },
        });
        spawn(&run, &self.settings.aggregator_bin, &args, &[]).await?;
        Ok(AggregatorState::Starting)
    }

    async fn init_model(&self, args: &[String], out: &Path) -> Result<(), ProcessError> {
        let bin = &self.settings.participant_bin;
        let tmp = out.with_extension("tmp");
        let output = tokio::time::timeout(
            Duration::from_secs(300),
            tokio::process::Command::new(bin)
                .args(args)
                .arg("--out")
                .arg(&tmp)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| ProcessError::InitModel {
            bin: bin.clone(),
            detail: "timed out after 300 s".into(),
        })?
        .map_err(|source| ProcessError::Spawn {
            bin: bin.clone(),
            source,
        })?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            return Err(ProcessError::InitModel {
                bin: bin.clone(),
                detail: format!("{}: {}", output.status, tail(&err, 400)),
            });
        }
        std::fs::rename(&tmp, out).map_err(io("initial model", out))
    }

    /// The job's participant processes.
    pub fn participants(&self, key: &str) -> Vec<ParticipantProc> {
        let root = self.job_dir(key).join("participants");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Vec::new();
        };
        let mut out: Vec<ParticipantProc> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let dir = e.path();
                let meta: ParticipantMeta =
                    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
                Some(ParticipantProc {
                    name: e.file_name().to_string_lossy().into_owned(),
                    meta,
                    state: state(&dir.join("run")),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The pid of a participant's wrapper, which leads its process group (experiments
    /// inject failures by signalling the group, as a dying node would).
    pub fn participant_pid(&self, key: &str, name: &str) -> Option<u32> {
        pid(&self.participant_dir(key, name).join("run"))
    }

    /// Files a participant is started with; its credentials are written there first.
    pub fn participant_paths(
        &self,
        key: &str,
        name: &str,
        creds: &Credentials<'_>,
    ) -> Result<ParticipantPaths, ProcessError> {
        let dir = self.participant_dir(key, name);
        create_dir(&dir.join("state"))?;
        let files = write_credentials(&dir, creds)?;
        Ok(ParticipantPaths {
            token: files.token,
            ca: files.ca,
            cert: files.cert,
            key: files.key,
            state: dir.join("state"),
        })
    }

    /// Starts a participant unless one of that name is already running.
    pub async fn start_participant(
        &self,
        key: &str,
        name: &str,
        meta: &ParticipantMeta,
        args: &[String],
    ) -> Result<(), ProcessError> {
        let dir = self.participant_dir(key, name);
        let run = dir.join("run");
        if state(&run) == ProcState::Running {
            return Ok(());
        }
        create_dir(&run)?;
        let meta_json = serde_json::to_vec(meta).unwrap_or_default();
        write_if_changed(&dir.join("meta.json"), &meta_json, 0o644)?;
        let threads = self.settings.participant_threads.to_string();
        spawn(
            &run,
            &self.settings.participant_bin,
            args,
            &[("FEDSKY_THREADS", threads.as_str())],
        )
        .await
    }

    /// The address a participant dials: the aggregator's own, or with an emulated network
    /// its path's proxy, shaped for the site's region (`site`) and the aggregator's
    /// placement (`aggregator`), each `(cloud, region)`.
    pub async fn participant_endpoint(
        &self,
        key: &str,
        name: &str,
        aggregator_endpoint: &str,
        site: Option<(&str, &str)>,
        aggregator: Option<(&str, &str)>,
    ) -> Result<String, ProcessError> {
        let Some(net) = &self.settings.network else {
            return Ok(aggregator_endpoint.to_string());
        };
        let missing = |what: String| ProcessError::Network(NetemError::MissingRegion(what));
        let site = site.ok_or_else(|| missing(format!("the site of participant {name}")))?;
        let aggregator =
            aggregator.ok_or_else(|| missing(format!("the aggregator of job {key}")))?;
        let proxy = super::netem::proxy_name(key, name);
        let (listen, shape) = net
            .ensure_path(&proxy, aggregator_endpoint, site, aggregator)
            .await?;
        tracing::info!(
            participant = name,
            site = %format!("{}:{}", site.0, site.1),
            aggregator = %format!("{}:{}", aggregator.0, aggregator.1),
            rtt_ms = shape.rtt_ms,
            rate_kb_per_s = shape.rate_kb_per_s,
            %listen,
            "emulated path"
        );
        Ok(listen)
    }

    /// Stops a participant and forgets it.
    pub async fn remove_participant(&self, key: &str, name: &str) -> Result<(), ProcessError> {
        let dir = self.participant_dir(key, name);
        stop(&dir.join("run")).await;
        if let Some(net) = &self.settings.network {
            net.remove(&super::netem::proxy_name(key, name)).await?;
        }
        remove_dir(&dir)
    }

    /// Stops every process of the job and removes its directory.
    pub async fn cleanup(&self, key: &str) -> Result<(), ProcessError> {
        for p in self.participants(key) {
            stop(&self.participant_dir(key, &p.name).join("run")).await;
        }
        stop(&self.aggregator_dir(key).join("run")).await;
        if let Some(net) = &self.settings.network {
            net.remove_job(key).await?;
        }
        remove_dir(&self.job_dir(key))
    }
}

fn create_dir(dir: &Path) -> Result<(), ProcessError> {
    std::fs::create_dir_all(dir).map_err(io("directory", dir))
}

fn remove_dir(dir: &Path) -> Result<(), ProcessError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("directory", dir)(e)),
        _ => Ok(()),
    }
}

/// Writes atomically (temporary file, then rename) unless the content is already there.
fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProcessError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("file", &tmp))?;
        f.write_all(bytes).map_err(io("file", &tmp))?;
        f.sync_all().map_err(io("file", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io("file", path))
}

/// Two free loopback ports, chosen once per job so that participants' endpoints stay
/// valid across aggregator and operator restarts.
fn ports(path: &Path) -> Result<Ports, ProcessError> {
    if let Some(p) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Ports>(&b).ok())
    {
        return Ok(p);
    }
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(io("free port", path))
    };
    let p = Ports {
        grpc: free()?,
        http: free()?,
    };
    let json = serde_json::to_vec(&p).unwrap_or_default();
    write_if_changed(path, &json, 0o644)?;
    Ok(p)
}

/// The wrapper: runs the binary, then records its status atomically. `$0` is the run
/// directory, so the command line identifies the process as ours.
const WRAPPER: &str = r#""$@"; s=$?; echo "$s" > "$0/exit.tmp" && mv "$0/exit.tmp" "$0/exit""#;

async fn spawn(
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

fn pid(run: &Path) -> Option<u32> {
    std::fs::read_to_string(run.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is alive and is our wrapper for `run` (guards against pid reuse).
fn alive(pid: u32, run: &Path) -> bool {
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

fn state(run: &Path) -> ProcState {
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

fn recently_ended(run: &Path) -> bool {
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
async fn stop(run: &Path) {
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

async fn ready(http: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(format!("{http}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

fn last_line(log: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(dir: &Path) -> ProcessRuntime {
        ProcessRuntime::new(ProcessSettings {
            state_dir: dir.into(),
            aggregator_bin: "/bin/false".into(),
            participant_bin: "/bin/sleep".into(),
            data_root: None,
            participant_threads: 1,
            network: None,
        })
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_participant_runs_exits_with_its_status_and_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = runtime(dir.path());
        let meta = ParticipantMeta {
            site: "eu".into(),
            node: "eu-1".into(),
            n: 0,
        };
        rt.start_participant("k", "p-0", &meta, &["30".into()])
            .await
            .expect("start");
        let procs = rt.participants("k");
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0].meta, meta);
        assert_eq!(procs[0].state, ProcState::Running);
        // Starting it again is a no-op while it runs.
        rt.start_participant("k", "p-0", &meta, &["30".into()])
            .await
            .expect("again");
        let first_pid = pid(&rt.participant_dir("k", "p-0").join("run"));
        // Kill the binary, not the wrapper: the wrapper records 128 + 9.
        let child_of = |parent: Option<u32>| {
            std::fs::read_dir("/proc")
                .ok()?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .ok()
                        .and_then(|s| s.rsplit(')').next().map(str::to_string))
                        .and_then(|r| r.split_whitespace().nth(1).map(str::to_string))
                        == parent.map(|p| p.to_string())
                })
        };
        // The wrapper forks the binary a moment after it starts.
        until("the wrapper's child", || child_of(first_pid).is_some()).await;
        let bin_pid = child_of(first_pid).expect("child of the wrapper");
        std::process::Command::new("kill")
            .args(["-KILL", &bin_pid.to_string()])
            .status()
            .expect("kill");
        until("exit status", || {
            rt.participants("k")[0].state == ProcState::Exited(137)
        })
        .await;
        rt.remove_participant("k", "p-0").await.expect("remove");
        assert!(rt.participants("k").is_empty());
    }

    #[tokio::test]
    async fn stopping_the_wrapper_leaves_no_process_and_reads_as_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = runtime(dir.path());
        let meta = ParticipantMeta {
            site: "eu".into(),
            node: "eu-1".into(),
            n: 1,
        };
        rt.start_participant("k", "p-1", &meta, &["30".into()])
            .await
            .expect("start");
        let run = rt.participant_dir("k", "p-1").join("run");
        stop(&run).await;
        until("stopped", || state(&run) == ProcState::Lost).await;
        rt.cleanup("k").await.expect("cleanup");
        assert!(!rt.job_dir("k").exists());
    }

    #[tokio::test]
    async fn a_failing_init_model_is_reported_with_its_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = ProcessRuntime::new(ProcessSettings {
            participant_bin: "/bin/sh".into(),
            ..runtime(dir.path()).settings
        });
        let script = "echo no such architecture >&2; exit 3";
        let leaf = Leaf {
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        let creds = Credentials {
            token: "t",
            ca_pem: "ca",
            leaf: &leaf,
        };
        let err = rt
            .ensure_aggregator("k", "{}", &creds, &["-c".into(), script.into()])
            .await
            .expect_err("the script fails");
        let msg = err.to_string();
        assert!(
            msg.contains("no such architecture") && msg.contains('3'),
            "{msg}"
        );
        assert!(!dir.path().join("k/aggregator/initial.safetensors").exists());
    }

    #[test]
    fn pvc_data_needs_a_data_root_and_host_paths_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rt = runtime(dir.path());
        let mut site: fedsky_crds::participant_pool::Site = serde_json::from_value(
            serde_json::json!({"name": "eu", "memberCluster": "m", "cloud": "aws",
                "region": "eu-central-1", "dataVolume": {"persistentVolumeClaim": "xray"}}),
        )
        .expect("site");
        let err = rt.data_dir(&site).expect_err("no data root");
        assert!(err.to_string().contains("--process-data-root"), "{err}");
        rt.settings.data_root = Some("/srv/data".into());
        assert_eq!(
            rt.data_dir(&site).expect("dir"),
            PathBuf::from("/srv/data/xray")
        );
        site.data_volume.host_path = Some("/mnt/xray".into());
        assert_eq!(rt.data_dir(&site).expect("dir"), PathBuf::from("/mnt/xray"));
    }

    #[test]
    fn writes_are_atomic_and_token_files_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("token");
        write_if_changed(&p, b"secret", 0o600).expect("write");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!p.with_extension("tmp").exists());
        let ports1 = ports(&dir.path().join("ports.json")).expect("ports");
        let ports2 = ports(&dir.path().join("ports.json")).expect("ports");
        assert_eq!((ports1.grpc, ports1.http), (ports2.grpc, ports2.http));
    }
}
