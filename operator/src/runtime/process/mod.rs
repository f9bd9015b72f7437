//! The process runtime: the aggregator and participants of a job run as local processes,
//! supervised through files so that an operator restart loses nothing.
//!
//! Layout under the state directory, per job key:
//! `aggregator/{job.json,token,ca.crt,tls.crt,tls.key,initial.safetensors,ports.json,store/,run/}`
//! (`store/` only for a volume model store; an S3 one gets its keys as environment)
//! and `participants/<name>/{meta.json,token,ca.crt,tls.crt,tls.key,state/,run/}` (credentials
//! mode 0600), where `run/` holds `pid`, `log`
//! and, once the process has ended, `exit` (its status). Each process runs under a small
//! `sh` wrapper in its own process group that records the exit status even when the
//! operator is gone, like a kubelet records a container's.

mod files;
mod supervise;
#[cfg(test)]
mod tests;

use super::netem::NetemError;
use crate::controllers::federated_job::model_store::StoreSpec;
use crate::pki::Leaf;
use crate::workloads::command::{self, AggregatorIo, StoreArgs, TlsPaths};
use files::{create_dir, io, ports, remove_dir, write_credentials, write_if_changed};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use supervise::{last_line, pid, ready, recently_ended, spawn, state, stop, tail};

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
    Credentials(#[source] crate::pki::PkiError),
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
        /// Base URL of the model manager (`https://127.0.0.1:<port>`).
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

/// Don't restart a crashed aggregator more often than this.
const RESTART_BACKOFF: Duration = Duration::from_secs(5);

/// Runs jobs' workloads as local processes. Cloning it is cheap: its state is in files.
#[derive(Debug, Clone)]
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
    /// A volume `store` is the job directory's `store/`; an S3 store's keys are the
    /// process's `AWS_*` environment.
    pub async fn ensure_aggregator(
        &self,
        key: &str,
        job_json: &str,
        creds: &Credentials<'_>,
        init_model: &[String],
        store: &StoreSpec,
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
        // The model manager serves TLS with the job's certificate (valid for 127.0.0.1).
        let http = format!("https://127.0.0.1:{}", ports.http);
        match state(&run) {
            ProcState::Running => {
                return Ok(if ready(&http, creds).await {
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
        let store_dir = s(&dir.join("store"));
        let args = command::aggregator(&AggregatorIo {
            job_file: &s(&dir.join("job.json")),
            grpc_listen: &grpc,
            http_listen: &format!("127.0.0.1:{}", ports.http),
            token_file: &s(&files.token),
            store: StoreArgs::of(store, &store_dir),
            keep_versions: store.keep_versions,
            initial_model: &s(&initial),
            tls: TlsPaths {
                ca: &ca,
                cert: &cert,
                key: &tls_key,
            },
            // Local processes are scraped with the job's credentials; there is no
            // cluster-wide Prometheus Secret to read.
            metrics_token_file: None,
        });
        let env = store.s3().map(|(_, keys)| keys.env());
        let env = env.as_ref().map_or(&[][..], |e| &e[..]);
        spawn(&run, &self.settings.aggregator_bin, &args, env).await?;
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
