use std::path::PathBuf;

/// What can go wrong while starting or using a test control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane binaries are missing and could not be built.
    #[error("control-plane binaries unavailable: {0}")]
    Binaries(String),
    /// A file under the run directory could not be written or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// The component.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A component did not become healthy in time; the tail of its log is attached.
    #[error("{component} not healthy after {seconds}s; last log lines:\n{log_tail}")]
    NotHealthy {
        /// The component.
        component: String,
        /// How long we waited.
        seconds: u64,
        /// The end of its log file.
        log_tail: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Pki(#[from] rcgen::Error),
    /// Building a client from the generated kubeconfig failed.
    #[error("kube client: {0}")]
    Kubeconfig(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A command (helm, kubectl) or the reading of its output failed.
    #[error("{what} failed: {stderr}")]
    Command {
        /// What was run.
        what: String,
        /// Its standard error, or the parse error.
        stderr: String,
    },
    /// A testbed file asks for something the testbed cannot build.
    #[error("testbed: {0}")]
    Testbed(String),
}

impl Error {
    /// A component exited because a port picked for it was taken in between
    /// (ports are released before the component binds them).
    pub(crate) fn is_port_taken(&self) -> bool {
        matches!(self, Error::NotHealthy { log_tail, .. } if log_tail.contains("address already in use"))
    }
}

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_component_that_lost_its_port_counts_as_port_taken() {
        let exited = |log_tail: &str| Error::NotHealthy {
            component: "kube-apiserver (exited: exit status: 1)".into(),
            seconds: 0,
            log_tail: log_tail.into(),
        };
        let taken = exited(
            "failed to listen on 127.0.0.1:43203: listen tcp 127.0.0.1:43203: bind: address already in use",
        );
        assert!(taken.is_port_taken());
        assert!(!exited("error: unknown flag --bogus").is_port_taken());
        assert!(!Error::Binaries("address already in use".into()).is_port_taken());
    }
}
