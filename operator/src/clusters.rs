//! The member-cluster registry: one client per MemberCluster, built from the kubeconfig in
//! its Secret and rebuilt when that Secret changes (rotation needs no restart).

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Why a member cluster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The referenced Secret does not exist.
    #[error("Secret {namespace}/{name} not found")]
    SecretMissing {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
    },
    /// The Secret is outside the operator's Secret namespaces.
    #[error("spec.kubeconfigSecretRef: {0}")]
    OutOfScope(#[from] crate::secret_scope::OutOfScope),
    /// The Secret lacks the key.
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    KeyMissing {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The key looked for.
        key: String,
    },
    /// The kubeconfig in the Secret does not parse or lacks a usable context.
    #[error("kubeconfig in Secret {secret} is invalid: {reason}")]
    InvalidKubeconfig {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// The member's API server did not answer in time or refused us.
    #[error("member cluster {cluster} unreachable: {reason}")]
    Unreachable {
        /// MemberCluster name.
        cluster: String,
        /// The error from the probe.
        reason: String,
    },
    /// A call to the member's API server (or, for its kubeconfig Secret, the hub's) failed.
    #[error("member cluster {cluster} unreachable: {}{source}", doing_prefix(.doing.as_deref()))]
    Call {
        /// MemberCluster name (`hub` for the hub).
        cluster: String,
        /// What the call was doing (`"listing pods"`), if it says more than the error.
        doing: Option<String>,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// No client is registered for the named MemberCluster yet.
    #[error("member cluster {0} is not registered (not Ready yet?)")]
    NotRegistered(String),
}

impl ClusterError {
    /// Short label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::SecretMissing { .. } => "KubeconfigSecretMissing",
            Self::OutOfScope(_) => "KubeconfigSecretNotReadable",
            Self::KeyMissing { .. } => "KubeconfigKeyMissing",
            Self::InvalidKubeconfig { .. } => "KubeconfigInvalid",
            Self::Unreachable { .. } | Self::Call { .. } => "ClusterUnreachable",
            Self::NotRegistered(_) => "ClusterNotRegistered",
        }
    }

    /// Errors the user must fix (as opposed to transient ones).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::SecretMissing { .. }
                | Self::OutOfScope(_)
                | Self::KeyMissing { .. }
                | Self::InvalidKubeconfig { .. }
        )
    }
}

/// `"doing: "`, or nothing: what a failed call was doing, ahead of its error.
fn doing_prefix(doing: Option<&str>) -> String {
    doing.map(|d| format!("{d}: ")).unwrap_or_default()
}

#[derive(Clone)]
struct Entry {
    client: kube::Client,
    /// `resourceVersion` of the Secret the client was built from.
    secret_version: String,
}

/// Clients of member clusters by MemberCluster name.
#[derive(Clone, Default)]
pub struct ClusterRegistry {
    inner: Arc<RwLock<HashMap<String, Entry>>>,
}

impl std::fmt::Debug for ClusterRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .inner
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("ClusterRegistry")
            .field("clusters", &names)
            .finish()
    }
}

/// How long a probe or member API call may take before the cluster counts as unreachable.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `call` against member `cluster`, at most [`MEMBER_TIMEOUT`]; a timeout or an error
/// is the cluster being unreachable, with `what` it was doing (`"listing pods"`).
pub async fn bounded<T>(
    cluster: &str,
    what: &str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(MEMBER_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ClusterError::Call {
            cluster: cluster.to_owned(),
            doing: Some(what.to_owned()),
            source,
        }),
        Err(_) => Err(ClusterError::Unreachable {
            cluster: cluster.to_owned(),
            reason: format!("{what} timed out"),
        }),
    }
}

impl ClusterRegistry {
    /// The client for a member cluster, if registered.
    pub fn get(&self, cluster: &str) -> Result<kube::Client, ClusterError> {
        self.inner
            .read()
            .ok()
            .and_then(|m| m.get(cluster).map(|e| e.client.clone()))
            .ok_or_else(|| ClusterError::NotRegistered(cluster.to_string()))
    }

    /// The client for `cluster`, built from `secret[key]` unless one built from the same
    /// Secret version exists.
    pub async fn client_for(
        &self,
        cluster: &str,
        secret: &Secret,
        key: &str,
    ) -> Result<kube::Client, ClusterError> {
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        if let Some(e) = self.inner.read().ok().and_then(|m| m.get(cluster).cloned())
            && e.secret_version == version
        {
            return Ok(e.client);
        }
        let client = client_from_secret(secret, key).await?;
        if let Ok(mut m) = self.inner.write() {
            m.insert(
                cluster.to_string(),
                Entry {
                    client: client.clone(),
                    secret_version: version,
                },
            );
        }
        Ok(client)
    }

    /// Forgets a member cluster (its MemberCluster was deleted).
    pub fn remove(&self, cluster: &str) {
        if let Ok(mut m) = self.inner.write() {
            m.remove(cluster);
        }
    }
}

async fn client_from_secret(secret: &Secret, key: &str) -> Result<kube::Client, ClusterError> {
    let ns = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| ClusterError::KeyMissing {
            namespace: ns.clone(),
            name: name.clone(),
            key: key.into(),
        })?;
    let invalid = |reason: String| ClusterError::InvalidKubeconfig {
        secret: format!("{ns}/{name}"),
        reason,
    };
    let text = String::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| invalid(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| invalid(e.to_string()))?;
    config.connect_timeout = Some(MEMBER_TIMEOUT);
    config.read_timeout = Some(MEMBER_TIMEOUT);
    config.write_timeout = Some(MEMBER_TIMEOUT);
    kube::Client::try_from(config).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_failed_call_reads_as_before_and_keeps_its_cause() {
        let cause =
            || kube::Error::SerdeError(serde_json::from_str::<u8>("x").expect_err("not a number"));
        let plain = ClusterError::Call {
            cluster: "eu".into(),
            doing: None,
            source: cause(),
        };
        assert_eq!(
            plain.to_string(),
            format!("member cluster eu unreachable: {}", cause())
        );
        let listing = ClusterError::Call {
            cluster: "eu".into(),
            doing: Some("listing pods".into()),
            source: cause(),
        };
        assert_eq!(
            listing.to_string(),
            format!("member cluster eu unreachable: listing pods: {}", cause())
        );
        assert_eq!(
            listing.source().map(ToString::to_string),
            Some(cause().to_string())
        );
        assert_eq!(listing.category(), "ClusterUnreachable");
        assert!(!listing.is_user_error());
    }
}
