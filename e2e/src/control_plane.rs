//! One control plane: etcd + kube-apiserver, optionally kube-controller-manager,
//! kube-scheduler and kwok, all on loopback in a private run directory.

use crate::binaries::Binaries;
use crate::error::{Error, io};
use crate::kubectl::kubectl;
use crate::pki::Pki;
use crate::process::{Proc, free_port, free_ports, watchdog};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Which components to start besides etcd and kube-apiserver.
#[derive(Clone, Debug)]
pub struct Options {
    /// Name used in logs and the kubeconfig context.
    pub name: String,
    /// Start kube-controller-manager (service accounts, Jobs, garbage collection, ...).
    pub controller_manager: bool,
    /// Start kube-scheduler (binds Pods to nodes).
    pub scheduler: bool,
    /// Start kwok, which keeps annotated Nodes Ready and runs their Pods.
    pub kwok: bool,
    /// How long to wait for health.
    pub timeout: Duration,
    /// Write an audit log of every request (see [`ControlPlane::audit_events`]) and run the
    /// `OwnerReferencesPermissionEnforcement` admission plugin, so that tests can prove
    /// what a client was allowed and refused, as a production API server would judge it.
    pub audit: bool,
    /// Listen on the [lab network](crate::lab)'s gateway instead of loopback, so that
    /// [real nodes](crate::RealNode) (and pods on them) reach the API server; its
    /// kubeconfig then names that address too.
    pub real_nodes: bool,
}

impl Options {
    /// An API server with etcd only: enough for anything the API server judges.
    pub fn api_only(name: &str) -> Self {
        Self {
            name: name.to_string(),
            controller_manager: false,
            scheduler: false,
            kwok: false,
            timeout: Duration::from_secs(120),
            audit: false,
            real_nodes: false,
        }
    }

    /// A cluster for [real nodes](crate::RealNode): controllers and scheduler, listening
    /// on the lab network; nodes are added with [`crate::RealNode::start`].
    pub fn real_nodes(name: &str) -> Self {
        Self {
            controller_manager: true,
            scheduler: true,
            real_nodes: true,
            ..Self::api_only(name)
        }
    }

    /// A working cluster: controllers, scheduler and simulated nodes.
    pub fn full(name: &str) -> Self {
        Self {
            controller_manager: true,
            scheduler: true,
            kwok: true,
            ..Self::api_only(name)
        }
    }
}

/// Every request at `Metadata` level (who, verb, resource, response code), once answered.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
";
/// The audit log's file in the run directory.
const AUDIT_LOG: &str = "audit.log";

/// The `kubernetes` Service's cluster IP: the first of `--service-cluster-ip-range`.
const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// Annotation that hands a Node to kwok.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// A running control plane. Dropping it stops every process and deletes its state.
#[derive(Debug)]
pub struct ControlPlane {
    name: String,
    dir: Option<tempfile::TempDir>,
    procs: Vec<Proc>,
    server: String,
    kubeconfig: PathBuf,
    kubeconfig_yaml: String,
    binaries: Binaries,
    pki: Pki,
    real_nodes: bool,
}

/// Starts tried before a lost port race is reported.
const START_ATTEMPTS: u32 = 3;

impl ControlPlane {
    /// Starts the components and waits until the API server is ready. Blocking: call it
    /// from `spawn_blocking` or before entering async code.
    ///
    /// Ports are picked free and released for the components to bind, so a process
    /// started in between (a parallel test's control plane) can take one; a start that
    /// fails that way is retried with new ports.
    pub fn start(opts: &Options) -> Result<Self, Error> {
        let mut attempt = 1;
        loop {
            match Self::start_once(opts) {
                Err(e) if attempt < START_ATTEMPTS && e.is_port_taken() => {
                    eprintln!("{}: a port was taken before use, retrying: {e}", opts.name);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn start_once(opts: &Options) -> Result<Self, Error> {
        let binaries = Binaries::locate()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("fedsky-e2e-{}-", opts.name))
            .tempdir()
            .map_err(io("create run directory in", std::env::temp_dir()))?;
        let root = dir.path().to_path_buf();
        let host = if opts.real_nodes {
            crate::lab::ensure_bridge()?;
            crate::lab::GATEWAY.to_string()
        } else {
            "127.0.0.1".to_string()
        };
        // Pods reach the API server through the `kubernetes` Service's first address.
        let extra_names: Vec<String> = if opts.real_nodes {
            vec![host.clone(), KUBERNETES_SERVICE_IP.into()]
        } else {
            Vec::new()
        };
        let pki = Pki::generate(&root, &extra_names)?;

        let token = random_token();
        let tokens = root.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{token},fedsky-e2e-admin,fedsky-e2e-admin,\"system:masters\"\n"),
        )
        .map_err(io("write", &tokens))?;

        let [etcd_port, peer_port, api_port] = free_ports()?;
        let server = format!("https://{host}:{api_port}");
        let kubeconfig_yaml = kubeconfig(
            &opts.name,
            &server,
            &pki.ca_pem,
            &format!("{}-admin", opts.name),
            &format!("    token: {token}"),
        );
        let kubeconfig = root.join("kubeconfig");
        std::fs::write(&kubeconfig, &kubeconfig_yaml).map_err(io("write", &kubeconfig))?;

        let mut cp = Self {
            name: opts.name.clone(),
            dir: Some(dir),
            procs: Vec::new(),
            server,
            kubeconfig,
            kubeconfig_yaml,
            binaries,
            pki: pki.clone(),
            real_nodes: opts.real_nodes,
        };
        let p = |path: &Path| path.display().to_string();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        cp.spawn(
            "etcd",
            &[
                "--name=etcd".into(),
                format!("--data-dir={}", p(&root.join("etcd"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=etcd={peer_url}"),
                // Test data is thrown away; fsync only slows the tests down.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let mut audit_args = Vec::new();
        if opts.audit {
            let policy = root.join("audit-policy.yaml");
            std::fs::write(&policy, AUDIT_POLICY).map_err(io("write", &policy))?;
            audit_args = vec![
                format!("--audit-policy-file={}", p(&policy)),
                format!("--audit-log-path={}", p(&root.join(AUDIT_LOG))),
                "--audit-log-format=json".into(),
                "--audit-log-mode=blocking".into(),
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            ];
        }
        // Logs and exec reach the kubelets by their InternalIP, as this client.
        let mut kubelet_args = Vec::new();
        if opts.real_nodes {
            let (cert, key) =
                pki.client("kube-apiserver-kubelet-client", Some("system:masters"))?;
            let (cert_file, key_file) = (
                root.join("kubelet-client.crt"),
                root.join("kubelet-client.key"),
            );
            std::fs::write(&cert_file, cert).map_err(io("write", &cert_file))?;
            std::fs::write(&key_file, key).map_err(io("write", &key_file))?;
            kubelet_args = vec![
                format!("--kubelet-client-certificate={}", p(&cert_file)),
                format!("--kubelet-client-key={}", p(&key_file)),
                "--kubelet-preferred-address-types=InternalIP".into(),
            ];
        }
        cp.spawn(
            "kube-apiserver",
            &[
                format!("--etcd-servers={etcd_url}"),
                format!("--bind-address={host}"),
                format!("--advertise-address={host}"),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", p(&root.join("certs"))),
                format!("--tls-cert-file={}", p(&pki.serving_cert)),
                format!("--tls-private-key-file={}", p(&pki.serving_key)),
                format!("--client-ca-file={}", p(&pki.ca_cert)),
                format!("--token-auth-file={}", p(&tokens)),
                // Aggregated APIs (the operator's model API): the API server proxies with
                // this client certificate and the caller's identity in headers, and dials
                // the APIService's endpoints directly (no kube-proxy here).
                format!("--requestheader-client-ca-file={}", p(&pki.front_proxy_ca)),
                format!(
                    "--requestheader-allowed-names={}",
                    crate::pki::FRONT_PROXY_CLIENT
                ),
                "--requestheader-username-headers=X-Remote-User".into(),
                "--requestheader-group-headers=X-Remote-Group".into(),
                "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
                format!("--proxy-client-cert-file={}", p(&pki.front_proxy_cert)),
                format!("--proxy-client-key-file={}", p(&pki.front_proxy_key)),
                "--enable-aggregator-routing=true".into(),
                // Kubelets are authorized as their Node (what they run, its Secrets).
                format!(
                    "--authorization-mode={}",
                    if opts.real_nodes { "Node,RBAC" } else { "RBAC" }
                ),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p(&pki.sa_pub)),
                format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--allow-privileged=true".into(),
                // Opt-in: the operator benchmark profiles the hub's API server with it.
                format!(
                    "--profiling={}",
                    std::env::var_os("FEDSKY_APISERVER_PROFILING").is_some()
                ),
                "--v=1".into(),
            ]
            .into_iter()
            .chain(audit_args)
            .chain(kubelet_args)
            .collect::<Vec<_>>(),
        )?;
        cp.wait_ready("kube-apiserver", opts.timeout)?;

        // A real node whose kubelet stops is NotReady in seconds rather than the default
        // 40, so fault tests stay short.
        let node_monitor: Vec<String> = if opts.real_nodes {
            vec![
                "--node-monitor-period=2s".into(),
                "--node-monitor-grace-period=16s".into(),
            ]
        } else {
            Vec::new()
        };
        if opts.controller_manager {
            cp.spawn(
                "kube-controller-manager",
                &[
                    format!("--kubeconfig={}", p(&cp.kubeconfig)),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                    format!("--service-account-private-key-file={}", p(&pki.sa_key)),
                    format!("--root-ca-file={}", p(&pki.ca_cert)),
                    format!("--cluster-signing-cert-file={}", p(&pki.ca_cert)),
                    format!("--cluster-signing-key-file={}", p(&pki.ca_key)),
                    "--use-service-account-credentials=false".into(),
                    "--controllers=*".into(),
                    "--v=1".into(),
                ]
                .into_iter()
                .chain(node_monitor)
                .collect::<Vec<_>>(),
            )?;
        }
        if opts.scheduler {
            cp.spawn(
                "kube-scheduler",
                &[
                    format!("--kubeconfig={}", p(&cp.kubeconfig)),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                    "--v=1".into(),
                ],
            )?;
        }
        if opts.kwok {
            let kwok_port = free_port()?;
            cp.spawn(
                "kwok",
                &[
                    format!("--kubeconfig={}", p(&cp.kubeconfig)),
                    "--manage-all-nodes=false".into(),
                    format!("--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"),
                    format!("--server-address=127.0.0.1:{kwok_port}"),
                    "--cidr=10.244.0.0/16".into(),
                    "--node-ip=127.0.0.1".into(),
                    format!("--config={}", p(&cp.binaries.path("kwok-stages.yaml"))),
                ],
            )?;
        }
        // Give the extra components a moment, then make sure none died on its flags.
        if opts.controller_manager || opts.scheduler || opts.kwok {
            std::thread::sleep(Duration::from_millis(500));
            cp.check_alive()?;
        }
        let pids: Vec<u32> = cp.procs.iter().map(|p| p.child.id()).collect();
        // With FEDSKY_E2E_KEEP set the run directory (logs, etcd data) outlives the test.
        let keep = std::env::var_os("FEDSKY_E2E_KEEP").is_some();
        watchdog(&pids, if keep { None } else { Some(&root) })?;
        Ok(cp)
    }

    /// A control plane shared by all tests of this test binary (API server and etcd only),
    /// started on first use and stopped by the watchdog when the process exits.
    pub fn shared() -> Result<&'static Self, Error> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start(&Options::api_only("shared")).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Binaries(format!("shared control plane failed to start: {e}")))
    }

    fn spawn(&mut self, name: &str, args: &[String]) -> Result<(), Error> {
        let program = self.binaries.path(name);
        let proc = Proc::spawn(name, &program, args, self.run_dir())?;
        self.procs.push(proc);
        Ok(())
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        for p in &mut self.procs {
            if let Some(status) = p.exited() {
                return Err(Error::NotHealthy {
                    component: format!("{} (exited: {status})", p.name),
                    seconds: 0,
                    log_tail: p.log_tail(30),
                });
            }
        }
        Ok(())
    }

    fn wait_ready(&mut self, component: &str, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            let out = kubectl(&self.kubeconfig, &["get", "--raw", "/readyz"])?;
            if out.success && out.stdout.trim() == "ok" {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let log_tail = self
                    .procs
                    .iter()
                    .find(|p| p.name == component)
                    .map(|p| p.log_tail(40))
                    .unwrap_or_default();
                return Err(Error::NotHealthy {
                    component: component.into(),
                    seconds: timeout.as_secs(),
                    log_tail,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Name given in [`Options`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `https://ADDRESS:PORT` of the API server: loopback, or the lab network's gateway
    /// with [`Options::real_nodes`].
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The API server's URL as nodes dial it; `None` when it listens on loopback only.
    pub fn node_server(&self) -> Option<String> {
        self.real_nodes.then(|| self.server.clone())
    }

    /// The cluster CA's certificate (PEM): it signs the API server's certificate and the
    /// client certificates it accepts.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// A kubeconfig for `server` that authenticates with a client certificate for user
    /// `cn` in group `group`, signed by the cluster CA.
    pub(crate) fn client_kubeconfig(
        &self,
        server: &str,
        cn: &str,
        group: Option<&str>,
    ) -> Result<String, Error> {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (cert, key) = self.pki.client(cn, group)?;
        let credentials = format!(
            "    client-certificate-data: {}\n    client-key-data: {}",
            b64(&cert),
            b64(&key)
        );
        Ok(kubeconfig(
            &self.name,
            server,
            &self.pki.ca_pem,
            cn,
            &credentials,
        ))
    }

    /// Path of the generated kubeconfig (cluster-admin via a static token).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubeconfig as YAML, for example to put in a MemberCluster's Secret.
    pub fn kubeconfig_yaml(&self) -> &str {
        &self.kubeconfig_yaml
    }

    /// Where the audit log is written when started with [`Options::audit`].
    pub fn audit_log_path(&self) -> PathBuf {
        self.run_dir().join(AUDIT_LOG)
    }

    /// The audit log's events so far; empty unless started with [`Options::audit`].
    pub fn audit_events(&self) -> Result<Vec<crate::audit::AuditEvent>, Error> {
        let path = self.audit_log_path();
        crate::audit::read(&path).map_err(io("read", &path))
    }

    /// Directory holding this run's state and logs.
    pub fn run_dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("/nonexistent"), |d| d.path())
    }

    /// The binaries this control plane runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The admin's client configuration, for a client that differs (impersonation).
    pub async fn config(&self) -> Result<kube::Config, Error> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml)
            .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))
    }

    /// A client for this control plane, bound to the calling tokio runtime.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.config().await?).map_err(Error::Kube)
    }

    /// Registers a simulated node that kwok keeps Ready, with the given labels and capacity
    /// (`cpu`, `memory`, and optionally `nvidia.com/gpu`).
    pub async fn add_node(
        &self,
        client: &kube::Client,
        name: &str,
        labels: BTreeMap<String, String>,
        capacity: BTreeMap<String, String>,
    ) -> Result<Node, Error> {
        let mut cap = capacity;
        cap.entry("pods".into()).or_insert_with(|| "110".into());
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": { KWOK_NODE_ANNOTATION: "fake" },
            },
            "spec": {},
            "status": { "capacity": cap, "allocatable": cap },
        }))
        .map_err(|e| Error::Kubeconfig(format!("node manifest: {e}")))?;
        Ok(Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await?)
    }

    /// Installs fedsky's generated CRDs (`charts/fedsky/files/crds.yaml`) and waits until they are
    /// Established and served by discovery.
    pub fn install_fedsky_crds(&self) -> Result<(), Error> {
        let file = crate::repo_root().join("charts/fedsky/files/crds.yaml");
        let file = file.display().to_string();
        let run = |args: &[&str]| -> Result<String, Error> {
            let out = kubectl(&self.kubeconfig, args)?;
            if out.success {
                Ok(out.stdout)
            } else {
                Err(Error::Kubeconfig(format!(
                    "kubectl {}: {}",
                    args.join(" "),
                    out.stderr
                )))
            }
        };
        run(&["apply", "--server-side", "--force-conflicts", "-f", &file])?;
        run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &file,
        ])?;
        // Discovery lags Established by a moment.
        let start = Instant::now();
        loop {
            let kinds = run(&["api-resources", "--api-group=fl.fedsky.dev", "-o", "name"])?;
            if kinds.lines().count() >= 4 {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(Error::Kubeconfig(format!(
                    "fedsky kinds not in discovery: {kinds}"
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Freezes (`SIGSTOP`) a component, for example `kube-apiserver`, so the cluster looks
    /// hung to clients; [`ControlPlane::resume`] continues it.
    pub fn pause(&self, component: &str) -> Result<(), Error> {
        self.signal(component, "-STOP")
    }

    /// Continues a component frozen by [`ControlPlane::pause`].
    pub fn resume(&self, component: &str) -> Result<(), Error> {
        self.signal(component, "-CONT")
    }

    fn signal(&self, component: &str, signal: &str) -> Result<(), Error> {
        let proc = self
            .procs
            .iter()
            .find(|p| p.name == component)
            .ok_or_else(|| {
                Error::Binaries(format!("{component} is not running in {}", self.name))
            })?;
        let status = std::process::Command::new("kill")
            .args([signal, &proc.child.id().to_string()])
            .status()
            .map_err(|source| Error::Spawn {
                name: "kill".into(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Binaries(format!(
                "kill {signal} {component} failed: {status}"
            )))
        }
    }

    /// Stops every process now (also done on drop).
    pub fn stop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
        self.procs.clear();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("FEDSKY_E2E_KEEP").is_some()
            && let Some(d) = self.dir.take()
        {
            eprintln!("keeping {} run directory {}", self.name, d.keep().display());
        }
    }
}

fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Two independently seeded hashers give 128 bits; enough for a loopback-only token.
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{a:016x}{:016x}", h.finish())
}

/// A kubeconfig of one cluster, one user and one context; `credentials` are the user's
/// YAML lines (indented by four spaces).
fn kubeconfig(name: &str, server: &str, ca_pem: &str, user: &str, credentials: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
{credentials}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {user}
current-context: {name}
"
    )
}
