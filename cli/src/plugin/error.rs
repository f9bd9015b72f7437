//! Why `kubectl fedsky` failed, in words a user can act on.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Where the RBAC a user needs is written down; every refusal points there.
pub const RBAC_DOC: &str = "docs/kubectl-plugin.md";

/// One request to the API server, named the way RBAC names it, so a refusal can say
/// exactly which grant is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The RBAC verb, for example `get`.
    pub verb: &'static str,
    /// The API group, for example `fl.fedsky.dev`.
    pub group: &'static str,
    /// The resource, `resource/subresource` for a subresource.
    pub resource: &'static str,
    /// The namespace of the request (boxed strings keep every error small).
    pub namespace: Box<str>,
    /// The object's name.
    pub name: Box<str>,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} \"{}\" in API group {} in namespace {}",
            self.verb, self.resource, self.name, self.group, self.namespace
        )
    }
}

/// A sha256 that does not match.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The bytes received are not the bytes the model API announced.
    #[error(
        "sha256 mismatch for model version {version}: the download hashes to {computed}, \
         the model API announced {announced} (X-Fedsky-Model-Sha256); the download was \
         corrupted in transit or the archive is damaged, so it was discarded"
    )]
    Announced {
        /// The model version.
        version: i64,
        /// What the downloaded bytes hash to.
        computed: String,
        /// What the response header said.
        announced: String,
    },
    /// The model API serves other bytes than the job recorded for the same version.
    #[error(
        "sha256 mismatch for model version {version}: the model API serves {served}, \
         but FederatedJob {job}'s status.latestModel.sha256 is {recorded}; the archived \
         model is not the one the job produced, so it was discarded"
    )]
    Recorded {
        /// `namespace/name` of the job.
        job: String,
        /// The model version.
        version: i64,
        /// What the model API's bytes hash to.
        served: String,
        /// What the job's status says.
        recorded: String,
    },
}

/// Why a `kubectl fedsky` command failed.
#[derive(Debug, Error)]
pub enum PluginError {
    /// The kubeconfig named by `--kubeconfig` (or its `--context`) cannot be used.
    #[error("cannot use the kubeconfig {}: {source}", path.as_ref().map_or_else(|| "from $KUBECONFIG or ~/.kube/config".to_string(), |p| p.display().to_string()))]
    Kubeconfig {
        /// The file given with `--kubeconfig`, if any.
        path: Option<PathBuf>,
        /// What is wrong with it.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error(
        "no cluster configuration: set --kubeconfig or $KUBECONFIG, or write ~/.kube/config \
         ({source})"
    )]
    NoConfig {
        /// What kube tried.
        #[source]
        source: kube::config::InferConfigError,
    },
    /// The client could not be built from the configuration (TLS, auth plugin).
    #[error("cannot build a Kubernetes client from the kubeconfig: {source}")]
    Client {
        /// kube's error (boxed: it is large, and errors travel by value).
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server did not accept the user's credentials.
    #[error(
        "the API server rejected your credentials (401 Unauthorized) for {access}: {message}; \
         check the kubeconfig's user or log in again"
    )]
    Unauthorized {
        /// The request.
        access: Access,
        /// The API server's message.
        message: String,
    },
    /// The user's RBAC does not allow the request.
    #[error(
        "forbidden: you may not {access} ({message}); ask a cluster admin to grant \
         `{verb}` on `{resource}` in API group `{group}` in namespace `{namespace}`, for \
         example by binding the fedsky-viewer ClusterRole from {RBAC_DOC}",
        verb = access.verb, resource = access.resource, group = access.group,
        namespace = access.namespace
    )]
    Forbidden {
        /// The request refused.
        access: Access,
        /// The API server's message (it names the user).
        message: String,
    },
    /// The object does not exist.
    #[error("{kind} \"{name}\" not found in namespace {namespace}")]
    NotFound {
        /// Its kind, for example `FederatedJob`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The namespace searched.
        namespace: String,
    },
    /// The API server does not serve the resource at all.
    #[error(
        "the API server does not serve {resource}.{group}: are fedsky's CRDs installed \
         (helm install fedsky charts/fedsky)? ({message})"
    )]
    NotServed {
        /// The resource.
        resource: &'static str,
        /// Its API group.
        group: &'static str,
        /// The API server's message.
        message: String,
    },
    /// No model is retained for the job (or not the version asked for).
    #[error(
        "no retained model for {job} in namespace {namespace}{}: the job has not finished a \
         round yet, its model store was deleted, or the operator's model API is not \
         installed ({message})",
        version.map_or_else(String::new, |v| format!(" at version {v}"))
    )]
    NoRetainedModel {
        /// The job.
        job: String,
        /// Its namespace.
        namespace: String,
        /// The version asked for, if any.
        version: Option<u32>,
        /// The server's message.
        message: String,
    },
    /// The aggregated model API is registered but not serving.
    #[error(
        "the operator's model API (models.fedsky.dev) is unavailable (503): its APIService \
         v1alpha1.models.fedsky.dev is not Available; check the fedsky operator's pods and \
         `kubectl get apiservice v1alpha1.models.fedsky.dev` ({message})"
    )]
    ModelApiUnavailable {
        /// The API server's message.
        message: String,
    },
    /// Any other refusal or failure the API server answered with.
    #[error("{access} failed: HTTP {code}: {message}")]
    Http {
        /// The request.
        access: Access,
        /// The HTTP status code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The API server could not be reached, or the connection broke.
    #[error("cannot {access}: {source}")]
    Transport {
        /// The request.
        access: Access,
        /// kube's error (boxed: it is large, and errors travel by value).
        #[source]
        source: Box<kube::Error>,
    },
    /// A response body that should be JSON is not what the contract says.
    #[error("cannot read the answer to {access}: {source}")]
    Decode {
        /// The request.
        access: Access,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A name or namespace that cannot be a Kubernetes object name.
    #[error("`{value}` is not a valid {what}: use lowercase letters, digits, `-` and `.`")]
    InvalidName {
        /// `namespace` or `name`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The model API answered without a header the download needs.
    #[error(
        "the model API's answer has no valid {header} header ({found}), so the download cannot \
         be verified; is the operator's model API older than this plugin?"
    )]
    BadHeader {
        /// The header.
        header: &'static str,
        /// What was there instead.
        found: String,
    },
    /// The model API served another version than the one asked for.
    #[error("asked for model version {asked} but the model API served version {served}")]
    VersionMismatch {
        /// `--version`.
        asked: u32,
        /// `X-Fedsky-Model-Version`.
        served: i64,
    },
    /// The body ended before its announced length.
    #[error("the download of model version {version} stopped after {received} of {expected} bytes")]
    Truncated {
        /// The model version.
        version: i64,
        /// Bytes received.
        received: u64,
        /// `Content-Length`.
        expected: u64,
    },
    /// A sha256 check failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A local file could not be written, renamed or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {source}")]
    Runtime {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Ctrl-C; any partial download was removed.
    #[error("interrupted")]
    Interrupted,
}
