//! Real nodes: a kubelet built from the same `k8s.io/kubernetes` release as the API
//! server, Debian's containerd 1.6 with runc, the CNI reference plugins (bridge,
//! host-local, portmap, loopback) and kube-proxy in iptables mode. Pods on them are real
//! containers.
//!
//! Each node lives in its own network, mount and PID namespaces, held by a small init
//! process: the node has its own address on the [lab network](crate::lab), its own
//! iptables (kube-proxy of different clusters never meet), and killing the init ends
//! every process of the node, containers included, and frees its mounts and links, even
//! when the test process dies first.
//!
//! What this machine needs from the node's configuration, found by trying:
//! `failCgroupV1: false` (the cgroup layout is v1), `restrict_oom_score_adj` in containerd
//! (lowering a process's OOM score is refused here), and daemons entered with `nsenter`
//! rather than `ip netns exec`, which remounts `/sys` and hides the cgroup mounts.

use crate::control_plane::ControlPlane;
use crate::error::{Error, io};
use crate::lab::{self, Slot};
use crate::node_config::{self, NodeLayout};
use crate::process::{Proc, tail, watchdog};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a real node is started with.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// The Node's name.
    pub name: String,
    /// Labels the kubelet registers the Node with (region, instance type, ...).
    pub labels: BTreeMap<String, String>,
    /// Image archives (`oci-archive`, see [`crate::images`]) loaded into its containerd.
    pub images: Vec<PathBuf>,
}

/// A running node. Dropping it ends every process and container on it.
#[derive(Debug)]
pub struct RealNode {
    slot: Slot,
    dir: Option<tempfile::TempDir>,
    /// `unshare`, whose child is the namespaces' init.
    holder: Child,
    /// The init's PID as this machine sees it (the target of `nsenter`).
    init: u32,
    procs: Vec<Proc>,
    kubelet_args: Vec<String>,
    layout: NodeLayout,
}

/// The v1 cgroup hierarchies the kubelet and runc place pods in.
const CGROUP_CONTROLLERS: [&str; 9] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
];

impl RealNode {
    /// Starts a node that joins `cp` and waits until it is Ready. `cp` must have been
    /// started with [`crate::Options::real_nodes`]. Blocking (a few seconds, more for
    /// large images).
    pub fn start(cp: &ControlPlane, opts: &NodeOptions) -> Result<Self, Error> {
        let server = cp.node_server().ok_or_else(|| {
            Error::Binaries(format!(
                "{} listens on loopback only: start it with Options::real_nodes",
                cp.name()
            ))
        })?;
        // The control plane made the lab bridge when it started.
        let begun = Instant::now();
        let slot = Slot::claim()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("fedsky-node-{}-", opts.name))
            .tempdir()
            .map_err(io("create run directory in", std::env::temp_dir()))?;
        let root = dir.path().to_path_buf();
        let (holder, init) = spawn_holder(&root)?;
        let layout = NodeLayout {
            name: opts.name.clone(),
            dir: root.clone(),
            address: slot.address(),
            pod_cidr: slot.pod_cidr(),
            // One cgroup per node at the top of each hierarchy, named by its slot (unique
            // on this machine); one level only, as a nested cpuset starts with no CPUs.
            cgroup_root: format!("/fedsky-lab-{}", slot.host_link()),
        };
        let mut node = Self {
            layout,
            slot,
            dir: Some(dir),
            holder,
            init,
            procs: Vec::new(),
            kubelet_args: Vec::new(),
        };
        // The watchdog ends the node (and with it every container) if this process dies.
        watchdog(&[node.holder.id()], Some(&root))?;
        node.wire()?;
        node.write_config(cp, &server, opts)?;
        node.spawn_daemon(
            "containerd",
            "containerd",
            &[format!(
                "--config={}",
                root.join("containerd.toml").display()
            )],
        )?;
        node.wait_for_socket(Duration::from_secs(30))?;
        let runtime_up = Instant::now();
        let mut images = vec![crate::images::pause_archive()?];
        images.extend(opts.images.iter().cloned());
        for image in &images {
            node.import(image)?;
        }
        let imported = Instant::now();
        node.kubelet_args = node_config::kubelet_flags(&node.layout, &opts.labels);
        node.start_kubelet(cp)?;
        let proxy = cp.binaries().path("kube-proxy").display().to_string();
        node.spawn_daemon(
            "kube-proxy",
            &proxy,
            &[format!(
                "--config={}",
                root.join("kube-proxy.yaml").display()
            )],
        )?;
        node.wait_ready(cp, Duration::from_secs(90))?;
        // What starting a node costs, for the test logs (`--nocapture`).
        eprintln!(
            "node {}: containerd up {:.1?}, {} images loaded {:.1?}, kubelet Ready {:.1?}",
            node.layout.name,
            runtime_up - begun,
            images.len(),
            imported - runtime_up,
            imported.elapsed()
        );
        Ok(node)
    }

    /// The Node's name.
    pub fn name(&self) -> &str {
        &self.layout.name
    }

    /// The node's address on the lab network (its `InternalIP`).
    pub fn address(&self) -> std::net::Ipv4Addr {
        self.slot.address()
    }

    /// The node's state directory (on this machine's file system, so a test can put
    /// data for `local` volumes there).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("/nonexistent"), |d| d.path())
    }

    /// Kills the kubelet (its containers keep running, as on a real node whose kubelet
    /// died); the Node turns NotReady once its lease expires.
    pub fn stop_kubelet(&mut self) {
        if let Some(i) = self.procs.iter().position(|p| p.name == "kubelet") {
            let mut p = self.procs.remove(i);
            kill_inner(&p);
            p.stop();
        }
    }

    /// Starts the kubelet again after [`RealNode::stop_kubelet`] and waits for Ready.
    pub fn restart_kubelet(&mut self, cp: &ControlPlane) -> Result<(), Error> {
        self.start_kubelet(cp)?;
        self.wait_ready(cp, Duration::from_secs(90))
    }

    /// Loads an image archive into the node's containerd, as a registry pull would.
    pub fn import(&self, archive: &Path) -> Result<(), Error> {
        let sock = self.dir().join("containerd.sock");
        let sock = sock.display().to_string();
        let file = archive.display().to_string();
        lab::run(
            "ctr",
            &["-a", &sock, "-n", "k8s.io", "images", "import", &file],
        )
        .map(|_| ())
    }

    fn start_kubelet(&mut self, cp: &ControlPlane) -> Result<(), Error> {
        let kubelet = cp.binaries().path("kubelet").display().to_string();
        let args = self.kubelet_args.clone();
        self.spawn_daemon("kubelet", &kubelet, &args)
    }

    /// The veth pair into the node's namespace, its address and routes, and the host's
    /// route to its pods.
    fn wire(&self) -> Result<(), Error> {
        let host = self.slot.host_link();
        let init = self.init.to_string();
        // A link left by a node whose slot was taken over would block the name.
        let _ = lab::run("ip", &["link", "del", &host]);
        lab::run(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &init,
            ],
        )?;
        lab::run("ip", &["link", "set", &host, "master", lab::BRIDGE, "up"])?;
        let inside = |args: &[&str]| -> Result<String, Error> {
            let mut all = vec!["-t", init.as_str(), "--net", "--"];
            all.extend_from_slice(args);
            lab::run("nsenter", &all)
        };
        inside(&[
            "ip",
            "addr",
            "add",
            &self.slot.address_cidr(),
            "dev",
            "eth0",
        ])?;
        inside(&["ip", "link", "set", "eth0", "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &lab::GATEWAY.to_string(),
        ])?;
        inside(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // Other nodes' pods are reached through the host, which knows every pod range.
        let _ = lab::run("ip", &["route", "del", &self.slot.pod_cidr()]);
        lab::run(
            "ip",
            &[
                "route",
                "add",
                &self.slot.pod_cidr(),
                "via",
                &self.slot.address().to_string(),
            ],
        )?;
        for c in CGROUP_CONTROLLERS {
            let d = self.cgroup_dir(c);
            std::fs::create_dir_all(&d).map_err(io("create cgroup", &d))?;
        }
        // A new cpuset has no CPUs or memory nodes; give it the machine's.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let all = Path::new("/sys/fs/cgroup/cpuset").join(file);
            let value = std::fs::read_to_string(&all).map_err(io("read", &all))?;
            let own = self.cgroup_dir("cpuset").join(file);
            std::fs::write(&own, value.trim()).map_err(io("write", &own))?;
        }
        Ok(())
    }

    fn cgroup_dir(&self, controller: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(self.layout.cgroup_root.trim_start_matches('/'))
    }

    /// Writes the daemons' configuration and credentials: the kubelet as
    /// `system:node:<name>` (group `system:nodes`), kube-proxy as `system:kube-proxy`, the
    /// identities the API server's default RBAC and Node authorizer expect.
    fn write_config(
        &self,
        cp: &ControlPlane,
        server: &str,
        opts: &NodeOptions,
    ) -> Result<(), Error> {
        let l = &self.layout;
        let write = |name: &str, text: &str| -> Result<(), Error> {
            let path = l.path(name);
            std::fs::write(&path, text).map_err(io("write", &path))
        };
        let ca = l.path("ca.crt");
        write("ca.crt", cp.ca_pem())?;
        write(
            "containerd.toml",
            &node_config::containerd(l, &crate::images::reference("pause")?),
        )?;
        let cni = l.path("cni");
        std::fs::create_dir_all(&cni).map_err(io("create", &cni))?;
        write("cni/10-fedsky-lab.conflist", &node_config::cni(l))?;
        write("kubelet.yaml", &node_config::kubelet(l, &ca))?;
        write(
            "kubelet.kubeconfig",
            &cp.client_kubeconfig(
                server,
                &format!("system:node:{}", opts.name),
                Some("system:nodes"),
            )?,
        )?;
        write(
            "kube-proxy.yaml",
            &node_config::kube_proxy(l, lab::POD_SUPERNET),
        )?;
        write(
            "kube-proxy.kubeconfig",
            &cp.client_kubeconfig(server, "system:kube-proxy", None)?,
        )?;
        Ok(())
    }

    fn spawn_daemon(&mut self, name: &str, program: &str, args: &[String]) -> Result<(), Error> {
        let mut all = vec![
            "-t".to_string(),
            self.init.to_string(),
            "--net".into(),
            "--mount".into(),
            "--pid".into(),
            "--".into(),
            program.to_string(),
        ];
        all.extend_from_slice(args);
        let p = Proc::spawn(name, Path::new("nsenter"), &all, self.dir())?;
        self.procs.push(p);
        Ok(())
    }

    fn wait_for_socket(&mut self, timeout: Duration) -> Result<(), Error> {
        let sock = self.dir().join("containerd.sock");
        let start = Instant::now();
        while !sock.exists() {
            self.check_alive()?;
            if start.elapsed() > timeout {
                return Err(self.not_healthy("containerd", timeout));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn wait_ready(&mut self, cp: &ControlPlane, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        let path = "{.status.conditions[?(@.type==\"Ready\")].status}";
        loop {
            self.check_alive()?;
            let out = crate::kubectl(
                cp.kubeconfig_path(),
                &[
                    "get",
                    "node",
                    &self.layout.name,
                    "-o",
                    &format!("jsonpath={path}"),
                ],
            )?;
            if out.success && out.stdout.trim() == "True" {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(self.not_healthy("kubelet", timeout));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        for p in &mut self.procs {
            if let Some(status) = p.exited() {
                return Err(Error::NotHealthy {
                    component: format!(
                        "{} on node {} (exited: {status})",
                        p.name, self.layout.name
                    ),
                    seconds: 0,
                    log_tail: p.log_tail(30),
                });
            }
        }
        Ok(())
    }

    fn not_healthy(&self, component: &str, timeout: Duration) -> Error {
        Error::NotHealthy {
            component: format!("{component} on node {}", self.layout.name),
            seconds: timeout.as_secs(),
            log_tail: tail(&self.dir().join(format!("{component}.log")), 40),
        }
    }

    /// Ends the node: the init's death takes every process in its namespaces with it.
    pub fn stop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        for p in &mut self.procs {
            p.stop();
        }
        self.procs.clear();
        for c in CGROUP_CONTROLLERS {
            remove_cgroup_tree(&self.cgroup_dir(c));
        }
        // The host's route to the node's pods stays with the bridge, not the veth.
        let _ = lab::run("ip", &["route", "del", &self.slot.pod_cidr()]);
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("FEDSKY_E2E_KEEP").is_some()
            && let Some(d) = self.dir.take()
        {
            eprintln!(
                "keeping node {} directory {}",
                self.layout.name,
                d.keep().display()
            );
        }
    }
}

/// Starts `unshare` with new network, mount and PID namespaces; its child, the
/// namespaces' init, reaps orphans (container shims re-parent to it) and is killed when
/// `unshare` dies (`--kill-child`), which ends the whole PID namespace.
fn spawn_holder(dir: &Path) -> Result<(Child, u32), Error> {
    let log = dir.join("init.log");
    let out = std::fs::File::create(&log).map_err(io("create", &log))?;
    let mut holder = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "sh",
            "-c",
            // `wait` reaps any child, adopted ones included.
            "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| Error::Spawn {
            name: "unshare".into(),
            source,
        })?;
    let pid = holder.id();
    let children = PathBuf::from(format!("/proc/{pid}/task/{pid}/children"));
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(init) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return Ok((holder, init));
        }
        if start.elapsed() > Duration::from_secs(5) || holder.try_wait().ok().flatten().is_some() {
            let _ = holder.kill();
            return Err(Error::NotHealthy {
                component: "node namespaces (unshare)".into(),
                seconds: start.elapsed().as_secs(),
                log_tail: tail(&log, 10),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the process `nsenter` started for `p` (nsenter forks to enter the PID
/// namespace, so its own PID is not the daemon's).
fn kill_inner(p: &Proc) {
    let pid = p.child.id();
    let children = format!("/proc/{pid}/task/{pid}/children");
    for child in std::fs::read_to_string(children)
        .unwrap_or_default()
        .split_whitespace()
    {
        let _ = Command::new("kill").args(["-9", child]).status();
    }
}

/// Removes a cgroup directory and the ones below it (deepest first); a cgroup goes only
/// once empty, which it is when the node's processes are gone.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
