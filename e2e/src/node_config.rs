//! The configuration files of a real node's containerd, CNI, kubelet and kube-proxy.
//! Pure: rendered from a [`NodeLayout`], written by [`crate::node`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a node keeps its state, and what it is called on the network.
#[derive(Debug, Clone)]
pub(crate) struct NodeLayout {
    pub name: String,
    pub dir: PathBuf,
    pub address: std::net::Ipv4Addr,
    pub pod_cidr: String,
    pub cgroup_root: String,
}

impl NodeLayout {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// containerd: its own root, state and socket; the CRI plugin with runc, our pause image,
/// the node's CNI configuration, and OOM scores kept at or above containerd's own (this
/// machine refuses lowering them, as rootless setups do).
pub(crate) fn containerd(l: &NodeLayout, pause_image: &str) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        root = l.p("containerd/root"),
        state = l.p("containerd/state"),
        sock = l.p("containerd.sock"),
        cni = l.p("cni"),
    )
}

/// The pod network: a bridge per node with host-local addresses from the node's range,
/// masquerading traffic that leaves it (so replies find their way back through the lab
/// network), and port mappings.
pub(crate) fn cni(l: &NodeLayout) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "fedsky-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": l.pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": l.p("cni-ipam"),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "loopback" },
        ],
    })
    .to_string()
}

/// The kubelet: cgroupfs on this machine's v1 hierarchy, pods under the node's own cgroup
/// root (no QoS tree, so that nodes side by side never touch each other's cgroups), x509
/// authentication of the API server, no eviction or image garbage collection (the tests'
/// disks are the machine's, shared by all nodes).
pub(crate) fn kubelet(l: &NodeLayout, ca_file: &Path) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
cgroupRoot: {cgroup_root}
address: {address}
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
clusterDomain: cluster.local
failSwapOn: false
containerRuntimeEndpoint: unix://{sock}
resolvConf: /etc/resolv.conf
podLogsDir: {logs}
evictionHard: {{}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podCIDR: {pod_cidr}
localStorageCapacityIsolation: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
fileCheckFrequency: 5s
",
        cgroup_root = l.cgroup_root,
        address = l.address,
        ca = ca_file.display(),
        sock = l.p("containerd.sock"),
        pod_cidr = l.pod_cidr,
        // Per node: a kubelet removes the log directories of pods it does not know.
        logs = l.p("pod-logs"),
    )
}

/// The kubelet's flags: what its configuration file cannot say.
pub(crate) fn kubelet_flags(l: &NodeLayout, labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut flags = vec![
        format!("--config={}", l.p("kubelet.yaml")),
        format!("--kubeconfig={}", l.p("kubelet.kubeconfig")),
        format!("--root-dir={}", l.p("kubelet")),
        format!("--cert-dir={}", l.p("kubelet-pki")),
        format!("--hostname-override={}", l.name),
        format!("--node-ip={}", l.address),
        "--v=1".into(),
    ];
    if !labels.is_empty() {
        let list: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        flags.push(format!("--node-labels={}", list.join(",")));
    }
    flags
}

/// kube-proxy in iptables mode, routing Service addresses (cluster IPs, load-balancer
/// addresses) inside the node's own network namespace.
pub(crate) fn kube_proxy(l: &NodeLayout, pod_supernet: &str) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
hostnameOverride: {name}
clusterCIDR: {pod_supernet}
nodePortAddresses: [primary]
conntrack: {{maxPerCore: 0}}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
",
        kubeconfig = l.p("kube-proxy.kubeconfig"),
        name = l.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> NodeLayout {
        NodeLayout {
            name: "eu-1".into(),
            dir: PathBuf::from("/tmp/n"),
            address: std::net::Ipv4Addr::new(10, 250, 1, 10),
            pod_cidr: "10.128.0.0/24".into(),
            cgroup_root: "/fedsky-lab-fsk-n0".into(),
        }
    }

    #[test]
    fn the_files_name_the_nodes_own_paths_and_ranges() {
        let l = layout();
        let c = containerd(&l, "localhost/pause:1");
        assert!(c.contains(r#"address = "/tmp/n/containerd.sock""#), "{c}");
        assert!(c.contains("restrict_oom_score_adj = true"));
        let net: serde_json::Value = serde_json::from_str(&cni(&l)).expect("json");
        assert_eq!(
            net["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.128.0.0/24"
        );
        let k = kubelet(&l, Path::new("/tmp/ca.crt"));
        assert!(k.contains("failCgroupV1: false") && k.contains("cgroupRoot: /fedsky-lab-fsk-n0"));
        let _: serde_yaml::Value = serde_yaml::from_str(&k).expect("kubelet yaml");
        let p = kube_proxy(&l, "10.128.0.0/16");
        let _: serde_yaml::Value = serde_yaml::from_str(&p).expect("kube-proxy yaml");
    }

    #[test]
    fn labels_become_one_flag() {
        let labels = BTreeMap::from([
            (
                "topology.kubernetes.io/region".to_string(),
                "eu-west-1".to_string(),
            ),
            (
                "node.kubernetes.io/instance-type".to_string(),
                "m5.large".to_string(),
            ),
        ]);
        let flags = kubelet_flags(&layout(), &labels);
        assert!(flags.contains(&"--node-labels=node.kubernetes.io/instance-type=m5.large,topology.kubernetes.io/region=eu-west-1".to_string()));
        assert!(
            kubelet_flags(&layout(), &BTreeMap::new())
                .iter()
                .all(|f| !f.starts_with("--node-labels"))
        );
    }
}
