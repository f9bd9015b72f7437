//! Cloud credentials of a MemberCluster: read the Secret that `spec.credentialsSecretRef`
//! names, check it with the cloud (`fedsky_clouds::auth`), and report `CredentialsValid`
//! with the identity and expiry — never a secret value. Bad credentials are a condition,
//! not a reconcile error, so they never make the controller back off or crash-loop; the
//! controller watches Secrets, so a rotated Secret is checked again at once.

use crate::secret_scope::{OutOfScope, SecretScope};
use fedsky_clouds::Cloud;
use fedsky_clouds::auth::{self, AuthError, Valid};
use fedsky_clouds::credentials::{self, CredentialsError, SecretData};
use fedsky_crds::MemberCluster;
use fedsky_crds::common::CloudProvider;
use fedsky_crds::conditions::{self, Setter};
use fedsky_crds::member_cluster::MemberClusterStatus;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use std::time::Duration;

/// Condition type.
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
/// Reason of `CredentialsValid=True`.
pub const REASON_VALID: &str = "Valid";
/// Reason: the referenced Secret does not exist.
pub const REASON_SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Reason: the Secret is in a namespace the operator does not read.
pub const REASON_SECRET_NOT_READABLE: &str = "SecretNotReadable";
/// Reason: the Secret could not be read from the hub.
pub const REASON_HUB_ERROR: &str = "HubApiError";
/// Key of a GCP service-account key file in the Secret when `key` is not set.
pub const GCP_KEY: &str = "credentials.json";

/// Why a MemberCluster's credentials are not valid.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsProblem {
    /// The Secret does not exist.
    #[error(
        "credentials Secret {namespace}/{name} not found; create it or fix spec.credentialsSecretRef"
    )]
    SecretNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Secret is outside the operator's Secret namespaces.
    #[error("spec.credentialsSecretRef: {0}")]
    OutOfScope(#[from] OutOfScope),
    /// Reading the Secret from the hub failed.
    #[error("reading credentials Secret {namespace}/{name}: {source}")]
    Hub {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Secret's keys do not form credentials.
    #[error(transparent)]
    Malformed(#[from] CredentialsError),
    /// The cloud did not accept them, or could not be asked.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl CredentialsProblem {
    /// Condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } => REASON_SECRET_NOT_FOUND,
            Self::OutOfScope(_) => REASON_SECRET_NOT_READABLE,
            Self::Hub { .. } => REASON_HUB_ERROR,
            Self::Malformed(_) => auth::REASON_INVALID,
            Self::Auth(e) => e.reason(),
        }
    }
}

/// What a check found.
pub type Outcome = Result<Valid, CredentialsProblem>;

/// fedsky-clouds' name of an API provider.
pub fn cloud_of(p: CloudProvider) -> Cloud {
    match p {
        CloudProvider::Aws => Cloud::Aws,
        CloudProvider::Gcp => Cloud::Gcp,
        CloudProvider::Openstack => Cloud::OpenStack,
    }
}

/// A Secret's data as fedsky-clouds reads it. For GCP, `key` names the entry holding the
/// key file when it is not `credentials.json`.
pub fn secret_data(cloud: Cloud, secret: &Secret, key: Option<&str>) -> SecretData {
    let mut data: SecretData = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    if cloud == Cloud::Gcp
        && let Some(k) = key.filter(|k| *k != GCP_KEY)
        && let Some(v) = data.get(k).cloned()
    {
        data.insert(GCP_KEY.to_string(), v);
    }
    data
}

/// Checks the MemberCluster's credentials; `None` when it references none.
pub async fn check(
    client: &kube::Client,
    scope: &SecretScope,
    mc: &MemberCluster,
) -> Option<Outcome> {
    let r = mc.spec.credentials_secret_ref.as_ref()?;
    let namespace = r.namespace.clone().unwrap_or_default();
    if let Err(e) = scope.check(&namespace, &r.name) {
        return Some(Err(e.into()));
    }
    let cloud = cloud_of(mc.spec.provider);
    let secret = match Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(&r.name)
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Some(Err(CredentialsProblem::SecretNotFound {
                namespace,
                name: r.name.clone(),
            }));
        }
        Err(source) => {
            return Some(Err(CredentialsProblem::Hub {
                namespace,
                name: r.name.clone(),
                source,
            }));
        }
    };
    let data = secret_data(cloud, &secret, r.key.as_deref());
    Some(match credentials::parse(cloud, &data) {
        Ok(c) => auth::validate(&c, Some(&mc.spec.region))
            .await
            .map_err(CredentialsProblem::from),
        Err(e) => Err(e.into()),
    })
}

/// The condition's message for a check.
pub fn message(cloud: Cloud, secret: &str, outcome: &Outcome) -> String {
    match outcome {
        Ok(v) => {
            let expiry = match v.expires_at {
                Some(t) => format!("they expire at {t}"),
                None => "long-term credentials without an expiry".to_string(),
            };
            format!(
                "{cloud} accepted Secret {secret} as {}; {expiry}",
                v.identity
            )
        }
        Err(e) => e.to_string(),
    }
}

/// Sets (or, with no credentials referenced, removes) `CredentialsValid` in `status`.
pub fn set_condition(
    status: &mut MemberClusterStatus,
    mc: &MemberCluster,
    outcome: Option<&Outcome>,
    now: Timestamp,
) {
    let mut set = Setter::new(&mut status.conditions, mc.metadata.generation, now);
    let (Some(outcome), Some(r)) = (outcome, mc.spec.credentials_secret_ref.as_ref()) else {
        set.remove(CREDENTIALS_VALID);
        return;
    };
    let secret = format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name);
    set.set(
        CREDENTIALS_VALID,
        outcome.is_ok(),
        match outcome {
            Ok(_) => REASON_VALID,
            Err(e) => e.reason(),
        },
        message(cloud_of(mc.spec.provider), &secret, outcome),
    );
}

/// When to check again: at the probe interval, but before valid credentials expire
/// (after 80 % of their remaining lifetime, at least 5 s from now).
pub fn requeue_after(outcome: Option<&Outcome>, now: Timestamp, every: Duration) -> Duration {
    let Some(Ok(Valid {
        expires_at: Some(t),
        ..
    })) = outcome
    else {
        return every;
    };
    let left = u64::try_from(t.as_second() - now.as_second()).unwrap_or(0);
    every.min(Duration::from_secs((left * 4 / 5).max(5)))
}

/// `Some((now_valid, event_reason))` when `CredentialsValid` changed (or appeared).
pub fn transition(
    prev: &MemberClusterStatus,
    next: &MemberClusterStatus,
) -> Option<(bool, String)> {
    let after = conditions::find(&next.conditions, CREDENTIALS_VALID)?;
    let before = conditions::find(&prev.conditions, CREDENTIALS_VALID);
    if before.is_some_and(|b| b.status == after.status && b.reason == after.reason) {
        return None;
    }
    Some((after.status == "True", after.reason.clone()))
}

/// The MemberClusters whose kubeconfig or credentials Secret is `secret`.
pub fn referencing(
    clusters: &[std::sync::Arc<MemberCluster>],
    secret: &Secret,
) -> Vec<ObjectRef<MemberCluster>> {
    let (ns, name) = (secret.namespace(), secret.name_any());
    clusters
        .iter()
        .filter(|mc| {
            let refs = [
                Some(&mc.spec.kubeconfig_secret_ref),
                mc.spec.credentials_secret_ref.as_ref(),
            ];
            refs.into_iter()
                .flatten()
                .any(|r| r.name == name && r.namespace == ns)
        })
        .map(|mc| ObjectRef::from_obj(mc.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::MemberClusterSpec;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("t")
    }

    fn mc(with_credentials: bool) -> MemberCluster {
        let spec: MemberClusterSpec = serde_json::from_value(serde_json::json!({
            "provider": "aws", "region": "eu-central-1", "tier": "public",
            "kubeconfigSecretRef": { "namespace": "fedsky-system", "name": "eu-kubeconfig" },
            "credentialsSecretRef": if with_credentials {
                serde_json::json!({ "namespace": "fedsky-system", "name": "eu-aws" })
            } else { serde_json::Value::Null },
        }))
        .expect("spec");
        let mut m = MemberCluster::new("eu", spec);
        m.metadata.generation = Some(3);
        m
    }

    #[test]
    fn valid_credentials_show_identity_and_expiry() {
        let mut s = MemberClusterStatus::default();
        let ok: Outcome = Ok(Valid {
            identity: "arn:aws:iam::123456789012:user/fedsky".into(),
            expires_at: Some(t(1_000_000)),
        });
        set_condition(&mut s, &mc(true), Some(&ok), t(10));
        let c = conditions::find(&s.conditions, CREDENTIALS_VALID).expect("condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Valid"));
        assert!(
            c.message.contains("arn:aws:iam::123456789012:user/fedsky"),
            "{}",
            c.message
        );
        assert!(c.message.contains("1970-01-12T13:46:40Z"), "{}", c.message);
        assert!(c.message.contains("fedsky-system/eu-aws"), "{}", c.message);
        assert_eq!(c.observed_generation, Some(3));
        // Removing the reference removes the condition.
        set_condition(&mut s, &mc(false), None, t(20));
        assert!(conditions::find(&s.conditions, CREDENTIALS_VALID).is_none());
    }

    #[test]
    fn problems_have_documented_reasons() {
        let missing: Outcome = Err(CredentialsProblem::SecretNotFound {
            namespace: "fedsky-system".into(),
            name: "eu-aws".into(),
        });
        let mut s = MemberClusterStatus::default();
        set_condition(&mut s, &mc(true), Some(&missing), t(10));
        let c = conditions::find(&s.conditions, CREDENTIALS_VALID).expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SecretNotFound")
        );
        let expired: Outcome = Err(CredentialsProblem::Auth(AuthError::Expired {
            cloud: Cloud::Aws,
            detail: "they expired".into(),
        }));
        let prev = s.clone();
        set_condition(&mut s, &mc(true), Some(&expired), t(20));
        assert_eq!(
            transition(&prev, &s),
            Some((false, "ExpiredCredentials".into()))
        );
        assert_eq!(transition(&s, &s), None);
        let down: Outcome = Err(CredentialsProblem::Auth(AuthError::Unreachable {
            cloud: Cloud::Aws,
            endpoint: "https://sts.eu-central-1.amazonaws.com".into(),
            operation: "GetCallerIdentity",
            detail: "connection refused".into(),
        }));
        assert_eq!(
            down.as_ref().expect_err("err").reason(),
            "EndpointUnreachable"
        );
    }

    #[test]
    fn requeues_before_expiry() {
        let every = Duration::from_secs(30);
        let valid = |exp| -> Outcome {
            Ok(Valid {
                identity: "x".into(),
                expires_at: exp,
            })
        };
        assert_eq!(requeue_after(None, t(0), every), every);
        assert_eq!(requeue_after(Some(&valid(None)), t(0), every), every);
        assert_eq!(
            requeue_after(Some(&valid(Some(t(3600)))), t(0), every),
            every
        );
        assert_eq!(
            requeue_after(Some(&valid(Some(t(20)))), t(0), every),
            Duration::from_secs(16)
        );
        assert_eq!(
            requeue_after(Some(&valid(Some(t(1)))), t(0), every),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn gcp_key_file_can_live_under_another_key() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "g", "namespace": "n" },
            "data": { "sa.json": "e30=" },
        }))
        .expect("secret");
        let d = secret_data(Cloud::Gcp, &secret, Some("sa.json"));
        assert_eq!(d.get(GCP_KEY).map(Vec::as_slice), Some(b"{}".as_slice()));
        let d = secret_data(Cloud::Aws, &secret, Some("sa.json"));
        assert!(!d.contains_key(GCP_KEY));
    }

    #[test]
    fn secrets_map_to_the_clusters_that_reference_them() {
        let clusters = vec![std::sync::Arc::new(mc(true))];
        let s = |ns: &str, name: &str| -> Secret {
            serde_json::from_value(
                serde_json::json!({ "metadata": { "name": name, "namespace": ns } }),
            )
            .expect("secret")
        };
        assert_eq!(
            referencing(&clusters, &s("fedsky-system", "eu-aws")).len(),
            1
        );
        assert_eq!(
            referencing(&clusters, &s("fedsky-system", "eu-kubeconfig")).len(),
            1
        );
        assert!(referencing(&clusters, &s("default", "eu-aws")).is_empty());
    }
}
