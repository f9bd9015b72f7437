//! Real control planes for fedsky's tests.
//!
//! [`ControlPlane::start`] runs etcd, kube-apiserver and, on request,
//! kube-controller-manager, kube-scheduler and kwok (simulated nodes) on loopback, with
//! certificates, a token and a kubeconfig generated per run. Several independent control
//! planes can run side by side, so a test can have a hub cluster and member clusters.
//! [`RealNode`]s (kubelet, containerd, runc, CNI, kube-proxy in their own namespaces on
//! the [`lab`] network) join a control plane started with [`Options::real_nodes`] and run
//! fedsky's [`images`] as real containers.
//! The binaries are built from the Go module proxy by `e2e/scripts/build-control-plane.sh`
//! and cached outside the clone; nothing here imitates an API server.

pub mod audit;
mod binaries;
mod control_plane;
mod error;
mod helm;
pub mod images;
mod kubectl;
pub mod lab;
pub mod load_balancer;
pub mod mlflow;
pub mod moto;
mod namespace;
mod node;
mod node_config;
mod pki;
mod process;
pub mod rbac;
pub mod testbed;
pub mod toxiproxy;
pub mod volumes;
pub mod workload;

pub use binaries::Binaries;
pub use control_plane::{ControlPlane, Options};
pub use error::Error;
pub use helm::{OFFLINE_KUBE_VERSION, helm};
pub use kubectl::{KubectlOutput, kubectl};
pub use namespace::TestNamespace;
pub use node::{NodeOptions, RealNode};

/// The root of the fedsky checkout the tests run in. Found at run time (the current
/// directory or one above it holding `charts/fedsky/files/crds.yaml`; cargo runs tests in
/// their crate's directory) rather than baked in at compile time: a build cache shared
/// between clones would otherwise point every clone at the one that built it first.
/// `FEDSKY_REPO_ROOT` overrides it.
pub fn repo_root() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("FEDSKY_REPO_ROOT") {
        return dir.into();
    }
    let marker = std::path::Path::new("charts/fedsky/files/crds.yaml");
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|d| d.join(marker).is_file())
                .map(std::path::Path::to_path_buf)
        })
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}
