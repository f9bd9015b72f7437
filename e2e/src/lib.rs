//! Real control planes for fedsky's tests.
//!
//! [`ControlPlane::start`] runs etcd, kube-apiserver and, on request,
//! kube-controller-manager, kube-scheduler and kwok (simulated nodes) on loopback, with
//! certificates, a token and a kubeconfig generated per run. Several independent control
//! planes can run side by side, so a test can have a hub cluster and member clusters.
//! The binaries are built from the Go module proxy by `e2e/scripts/build-control-plane.sh`
//! and cached outside the clone; nothing here imitates an API server.

mod binaries;
mod control_plane;
mod error;
mod kubectl;
pub mod moto;
mod namespace;
mod pki;
mod process;
pub mod testbed;

pub use binaries::Binaries;
pub use control_plane::{ControlPlane, Options};
pub use error::Error;
pub use kubectl::{KubectlOutput, kubectl};
pub use namespace::TestNamespace;
