//! Where the operator reads and writes Secrets on the hub. It holds no cluster-wide
//! Secret access: it writes only in its own namespace (each job's token and CA) and reads
//! MemberClusters' kubeconfig and cloud-credential Secrets only from the namespaces it is
//! given (its own by default). The chart grants exactly these namespaces. Pure.

use std::collections::BTreeSet;

/// The operator's Secret namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretScope {
    home: String,
    readable: BTreeSet<String>,
}

/// A MemberCluster references a Secret outside the operator's namespaces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Secret {namespace}/{name} is in a namespace the operator does not read; move it to one of \
     [{allowed}] or add {namespace} to the operator's --secret-namespaces (chart value \
     rbac.secretNamespaces)"
)]
pub struct OutOfScope {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// The namespaces the operator reads, comma-separated.
    pub allowed: String,
}

impl SecretScope {
    /// The operator's own namespace `home` plus `extra` namespaces it may read.
    pub fn new(home: &str, extra: impl IntoIterator<Item = String>) -> Self {
        let mut readable: BTreeSet<String> = extra
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        readable.insert(home.to_string());
        Self {
            home: home.to_string(),
            readable,
        }
    }

    /// The operator's own namespace: job credentials live here.
    pub fn home(&self) -> &str {
        &self.home
    }

    /// Every namespace whose Secrets the operator reads (and watches).
    pub fn readable(&self) -> impl Iterator<Item = &str> {
        self.readable.iter().map(String::as_str)
    }

    /// Whether a MemberCluster may reference Secret `namespace/name`.
    pub fn check(&self, namespace: &str, name: &str) -> Result<(), OutOfScope> {
        if self.readable.contains(namespace) {
            return Ok(());
        }
        Err(OutOfScope {
            namespace: namespace.to_string(),
            name: name.to_string(),
            allowed: self.readable().collect::<Vec<_>>().join(", "),
        })
    }
}

impl Default for SecretScope {
    /// `fedsky-system` only, the chart's default release namespace.
    fn default() -> Self {
        Self::new("fedsky-system", [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_always_readable_and_blanks_are_ignored() {
        let s = SecretScope::new("ops", ["team-a".into(), " ".into(), "ops".into()]);
        assert_eq!(s.home(), "ops");
        assert_eq!(s.readable().collect::<Vec<_>>(), ["ops", "team-a"]);
        assert!(s.check("ops", "x").is_ok());
        assert!(s.check("team-a", "x").is_ok());
    }

    #[test]
    fn a_secret_elsewhere_is_refused_with_what_to_do() {
        let s = SecretScope::new("fedsky-system", ["team-a".into()]);
        let err = s.check("default", "eu-kubeconfig").expect_err("outside");
        let msg = err.to_string();
        assert!(msg.contains("default/eu-kubeconfig"), "{msg}");
        assert!(msg.contains("[fedsky-system, team-a]"), "{msg}");
        assert!(msg.contains("--secret-namespaces"), "{msg}");
        assert!(msg.contains("rbac.secretNamespaces"), "{msg}");
    }
}
