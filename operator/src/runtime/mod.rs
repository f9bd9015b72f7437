//! Where workloads run: as pods in member clusters (the default) or as local processes
//! (`--runtime process`, for one machine and tests). Placement, node choice by the
//! orchestrator, replacements and status are the same in both; only the last step —
//! starting, observing and stopping the aggregator and participants — differs.

pub mod netem;
pub mod process;

pub use netem::{NetemError, NetworkEmulator};
pub use process::{ProcessError, ProcessRuntime, ProcessSettings};

/// The workload runtime the operator uses.
#[derive(Debug)]
pub enum Runtime {
    /// Deployments and Jobs in member clusters, from these images.
    Kubernetes(crate::images::Images),
    /// Local processes supervised through files under a state directory.
    Process(ProcessRuntime),
}

impl Default for Runtime {
    /// Pods of this release's images.
    fn default() -> Self {
        Self::Kubernetes(crate::images::Images::default())
    }
}

impl Runtime {
    /// The process runtime, when it is the one in use.
    pub fn process(&self) -> Option<&ProcessRuntime> {
        match self {
            Self::Kubernetes(_) => None,
            Self::Process(p) => Some(p),
        }
    }
}
