//! Names and ownership marks of a job's cloud resources, deterministic so that every
//! reconcile (and every operator replica) arrives at the same ones.

/// Tag / metadata key: the owning job as `<namespace>/<name>` (AWS tags).
pub const LABEL_JOB: &str = "fedsky.dev/job";
/// Tag key: the owning job's UID.
pub const LABEL_JOB_UID: &str = "fedsky.dev/job-uid";
/// Tag key: who manages the resource.
pub const LABEL_MANAGED_BY: &str = "fedsky.dev/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "fedsky";

/// The FederatedJob that owns a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOwner {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (a UUID for Kubernetes objects).
    pub uid: String,
}

impl JobOwner {
    /// `<namespace>/<name>`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// A name for the job's VM and firewall that is a valid GCP resource name, AWS
    /// security-group name and Nova server name: lowercase, starts with a letter, at most
    /// 63 characters, and unique per job (it ends with the start of the UID).
    pub fn resource_name(&self) -> String {
        let uid: String = self
            .uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let mut key: String = format!("{}-{}", self.namespace, self.name)
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        // "fedsky-agg-" (11) + key + "-" + uid (8) <= 63.
        key.truncate(43);
        let key = key.trim_matches('-');
        format!("fedsky-agg-{key}-{uid}")
    }

    /// The UID as a GCP label value (lowercase letters, digits, `-`, `_`; at most 63).
    pub fn uid_label(&self) -> String {
        self.uid
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(63)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(ns: &str, name: &str) -> JobOwner {
        JobOwner {
            namespace: ns.into(),
            name: name.into(),
            uid: "3F2504E0-4F89-11D3-9A0C-0305E82C3301".into(),
        }
    }

    #[test]
    fn resource_names_are_valid_everywhere() {
        let n = owner("covid", "xray").resource_name();
        assert_eq!(n, "fedsky-agg-covid-xray-3f2504e0");
        let long = owner(
            "a-very-long-namespace-name-indeed",
            "and.an.even.longer.federated.job.name",
        )
        .resource_name();
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{long}"
        );
        assert!(long.ends_with("-3f2504e0"));
        assert!(!long.contains("--3f"), "{long}");
        assert_eq!(owner("a", "b").reference(), "a/b");
        assert_eq!(
            owner("a", "b").uid_label(),
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        );
    }
}
