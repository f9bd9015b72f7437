//! The tracking server's credentials from the Secret `spec.tracking.mlflow.credentialsSecretRef`
//! names, under the keys MLflow's own clients read. Pure: the caller reads the Secret.

use super::mlflow::Auth;
use crate::controllers::federated_job::job_secret::{self, RefError};
use crate::secret_scope::SecretScope;
use fedsky_crds::FederatedJob;
use k8s_openapi::ByteString;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The field that names the credentials Secret, for messages.
const FIELD: &str = "spec.tracking.mlflow.credentialsSecretRef";
/// User name for HTTP basic authentication.
pub const USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// Password for HTTP basic authentication.
pub const PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// Bearer token.
pub const TOKEN: &str = "MLFLOW_TRACKING_TOKEN";

/// Why the credentials cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Not in the job's namespace, not readable, or not text.
    #[error(transparent)]
    Ref(#[from] RefError),
    /// The Secret does not exist.
    #[error("spec.tracking.mlflow.credentialsSecretRef: Secret {secret} not found")]
    NotFound {
        /// `namespace/name`.
        secret: String,
    },
    /// Neither a user name and password nor a token.
    #[error(
        "spec.tracking.mlflow.credentialsSecretRef: Secret {secret} has neither {USERNAME} and {PASSWORD} nor {TOKEN} (or they are empty)"
    )]
    Empty {
        /// `namespace/name`.
        secret: String,
    },
    /// Half of a user name and password, and no token.
    #[error(
        "spec.tracking.mlflow.credentialsSecretRef: Secret {secret} has {present} but not {missing} (or it is empty); basic authentication needs both"
    )]
    HalfBasic {
        /// `namespace/name`.
        secret: String,
        /// The key that is there.
        present: &'static str,
        /// The key that is not.
        missing: &'static str,
    },
}

/// The name of the credentials Secret to read (in the job's namespace), `None` when the
/// job names none.
pub fn secret_name(
    job: &FederatedJob,
    scope: &SecretScope,
) -> Result<Option<String>, CredentialsError> {
    let Some(r) = job
        .spec
        .tracking
        .as_ref()
        .and_then(|t| t.mlflow.as_ref())
        .and_then(|m| m.credentials_secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let ns = job.namespace().unwrap_or_default();
    Ok(Some(job_secret::secret_name(FIELD, &ns, r, scope)?))
}

/// The authentication in the data of Secret `secret` (`namespace/name`, for messages):
/// basic when it has a user name and password, else bearer when it has a token, as
/// MLflow's clients choose. Surrounding whitespace (a newline from `echo`) is dropped.
pub fn auth(secret: &str, data: &BTreeMap<String, ByteString>) -> Result<Auth, CredentialsError> {
    let read = |key| job_secret::text(FIELD, secret, data, key);
    let (username, password, token) = (read(USERNAME)?, read(PASSWORD)?, read(TOKEN)?);
    let half = |present, missing| CredentialsError::HalfBasic {
        secret: secret.to_string(),
        present,
        missing,
    };
    match (username, password, token) {
        (Some(username), Some(password), _) => Ok(Auth::Basic { username, password }),
        (_, _, Some(token)) => Ok(Auth::Bearer(token)),
        (Some(_), None, None) => Err(half(USERNAME, PASSWORD)),
        (None, Some(_), None) => Err(half(PASSWORD, USERNAME)),
        (None, None, None) => Err(CredentialsError::Empty {
            secret: secret.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::federated_job::validate::tests::example_job;
    use fedsky_crds::federated_job::Tracking;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    fn job_with(secret_ref: &serde_json::Value) -> FederatedJob {
        let mut job = example_job();
        job.spec.tracking = Some(
            serde_json::from_value::<Tracking>(serde_json::json!({
                "mlflow": { "trackingUri": "http://mlflow:5000",
                            "credentialsSecretRef": secret_ref }
            }))
            .expect("tracking"),
        );
        job
    }

    #[test]
    fn basic_wins_over_a_token_as_in_mlflows_clients() {
        let got = auth(
            "ns/s",
            &data(&[(USERNAME, "ops\n"), (PASSWORD, "pw"), (TOKEN, "t")]),
        );
        assert_eq!(
            got,
            Ok(Auth::Basic {
                username: "ops".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            auth("ns/s", &data(&[(TOKEN, " tok ")])),
            Ok(Auth::Bearer("tok".into()))
        );
        // A token with half of basic: the token.
        assert_eq!(
            auth("ns/s", &data(&[(USERNAME, "ops"), (TOKEN, "tok")])),
            Ok(Auth::Bearer("tok".into()))
        );
    }

    #[test]
    fn missing_keys_are_named() {
        let msg = |d: &[(&str, &str)]| auth("ns/s", &data(d)).expect_err("refused").to_string();
        assert_eq!(
            msg(&[(USERNAME, "ops")]),
            "spec.tracking.mlflow.credentialsSecretRef: Secret ns/s has MLFLOW_TRACKING_USERNAME but not MLFLOW_TRACKING_PASSWORD (or it is empty); basic authentication needs both"
        );
        assert!(msg(&[(PASSWORD, "pw")]).contains("not MLFLOW_TRACKING_USERNAME"));
        assert_eq!(
            msg(&[(TOKEN, "  ")]),
            "spec.tracking.mlflow.credentialsSecretRef: Secret ns/s has neither MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD nor MLFLOW_TRACKING_TOKEN (or they are empty)"
        );
        let binary = BTreeMap::from([(TOKEN.to_string(), ByteString(vec![0xff, 0xfe]))]);
        assert!(matches!(
            auth("ns/s", &binary),
            Err(CredentialsError::Ref(RefError::NotText { key: TOKEN, .. }))
        ));
    }

    #[test]
    fn the_secret_must_be_in_the_jobs_namespace_and_readable() {
        let job = job_with(&serde_json::json!({ "name": "mlflow-creds" }));
        let ns = job.namespace().unwrap_or_default();
        let scope = SecretScope::new("fedsky-system", [ns.clone()]);
        assert_eq!(
            secret_name(&job, &scope),
            Ok(Some("mlflow-creds".to_string()))
        );
        let err = secret_name(&job, &SecretScope::default()).expect_err("out of scope");
        assert!(err.to_string().contains("rbac.secretNamespaces"), "{err}");
        let elsewhere = job_with(&serde_json::json!({ "name": "c", "namespace": "other" }));
        assert_eq!(
            secret_name(&elsewhere, &scope),
            Err(CredentialsError::Ref(RefError::OtherNamespace {
                field: FIELD,
                given: "other".into(),
                job: ns,
            }))
        );
        assert_eq!(secret_name(&example_job(), &scope), Ok(None));
    }
}
