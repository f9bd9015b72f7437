//! Container images of the pods the operator runs, and how they are pulled: operator-wide
//! defaults (flags, environment, chart values) that a FederatedJob's `spec.images` may
//! override. Pure.

use fedsky_crds::federated_job::JobImages;

/// Registry and repository prefix of the images built by `make images`.
pub const DEFAULT_REPOSITORY: &str = "ghcr.io/fedsky";

/// When the kubelet pulls an image (`imagePullPolicy`). Spelled as Kubernetes spells it,
/// which is what the chart passes (`images.pullPolicy`); clap's kebab-case is an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// On every start.
    #[value(name = "Always", alias = "always")]
    Always,
    /// When the node lacks the image.
    #[value(name = "IfNotPresent", alias = "if-not-present")]
    IfNotPresent,
    /// Never: the image must be on the node already.
    #[value(name = "Never", alias = "never")]
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The images of one job's pods and how to pull them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Aggregator image.
    pub aggregator: String,
    /// Participant image; also runs the aggregator's init container, which writes the
    /// initial model with libtorch.
    pub participant: String,
    /// `imagePullPolicy` of every container; `None` leaves Kubernetes' default (`Always`
    /// for `:latest` or no tag, else `IfNotPresent`).
    pub pull_policy: Option<PullPolicy>,
    /// `imagePullSecrets` of every pod: Secrets that must exist in the namespaces where
    /// the pods run, in each member cluster.
    pub pull_secrets: Vec<String>,
}

impl Default for Images {
    /// The images of this operator's release, by tag.
    fn default() -> Self {
        let v = env!("CARGO_PKG_VERSION");
        Self {
            aggregator: format!("{DEFAULT_REPOSITORY}/fedsky-aggregator:{v}"),
            participant: format!("{DEFAULT_REPOSITORY}/fedsky-participant:{v}"),
            pull_policy: None,
            pull_secrets: Vec::new(),
        }
    }
}

impl Images {
    /// The images of a job whose spec names `overrides`: each set entry replaces the
    /// operator's default; pull policy and secrets stay operator-wide.
    pub fn for_job(&self, overrides: Option<&JobImages>) -> Self {
        let mut out = self.clone();
        if let Some(o) = overrides {
            if let Some(a) = &o.aggregator {
                out.aggregator.clone_from(a);
            }
            if let Some(p) = &o.participant {
                out.participant.clone_from(p);
            }
        }
        out
    }

    /// `imagePullSecrets` as a pod spec lists them.
    pub fn pull_secret_refs(&self) -> serde_json::Value {
        self.pull_secrets
            .iter()
            .map(|name| serde_json::json!({ "name": name }))
            .collect()
    }

    /// `imagePullPolicy` as a container spec takes it (`null` is dropped on decoding).
    pub fn pull_policy_value(&self) -> serde_json::Value {
        self.pull_policy
            .map_or(serde_json::Value::Null, |p| p.as_str().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_this_release_by_tag() {
        let i = Images::default();
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            i.aggregator,
            format!("ghcr.io/fedsky/fedsky-aggregator:{v}")
        );
        assert_eq!(
            i.participant,
            format!("ghcr.io/fedsky/fedsky-participant:{v}")
        );
        assert_eq!(i.pull_policy_value(), serde_json::Value::Null);
        assert_eq!(i.pull_secret_refs(), serde_json::json!([]));
    }

    #[test]
    fn a_job_overrides_each_image_it_names_and_nothing_else() {
        let base = Images {
            pull_policy: Some(PullPolicy::Never),
            pull_secrets: vec!["regcred".into()],
            ..Images::default()
        };
        assert_eq!(base.for_job(None), base);
        assert_eq!(base.for_job(Some(&JobImages::default())), base);
        let only_participant = JobImages {
            participant: Some("reg.example:5000/p@sha256:".to_string() + &"a".repeat(64)),
            ..JobImages::default()
        };
        let got = base.for_job(Some(&only_participant));
        assert_eq!(got.aggregator, base.aggregator);
        assert_eq!(
            got.participant,
            only_participant.participant.unwrap_or_default()
        );
        assert_eq!(got.pull_policy, Some(PullPolicy::Never));
        assert_eq!(
            got.pull_secret_refs(),
            serde_json::json!([{ "name": "regcred" }])
        );
        assert_eq!(got.pull_policy_value(), serde_json::json!("Never"));
    }

    #[test]
    fn pull_policies_parse_as_the_chart_spells_them() {
        use clap::ValueEnum;
        for p in [
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ] {
            // `images.pullPolicy` of the chart reaches the operator in Kubernetes' spelling.
            assert_eq!(PullPolicy::from_str(p.as_str(), false), Ok(p));
        }
        assert_eq!(
            PullPolicy::from_str("if-not-present", false),
            Ok(PullPolicy::IfNotPresent)
        );
    }
}
