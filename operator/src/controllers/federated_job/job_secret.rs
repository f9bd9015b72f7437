//! A Secret a FederatedJob field references (`spec.modelStore.s3.credentialsSecretRef`,
//! `spec.tracking.mlflow.credentialsSecretRef`): it must be in the job's namespace and
//! readable by the operator, and its values are text. Pure: the caller reads the Secret.

use crate::secret_scope::{OutOfScope, SecretScope};
use fedsky_crds::common::SecretKeyRef;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

/// Why a referenced Secret cannot be used; every message starts with the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// `namespace` names another namespace than the job's.
    #[error(
        "{field}.namespace: {given} is not the job's namespace {job}; the Secret must be in the job's namespace (leave namespace unset)"
    )]
    OtherNamespace {
        /// The field, e.g. `spec.modelStore.s3.credentialsSecretRef`.
        field: &'static str,
        /// The namespace given.
        given: String,
        /// The job's.
        job: String,
    },
    /// The operator may not read Secrets in the job's namespace.
    #[error("{field}: {source}")]
    OutOfScope {
        /// The field.
        field: &'static str,
        /// Which namespaces it may read.
        #[source]
        source: OutOfScope,
    },
    /// A key's value is not text.
    #[error("{field}: key {key} of Secret {secret} is not UTF-8 text")]
    NotText {
        /// The field.
        field: &'static str,
        /// `namespace/name`.
        secret: String,
        /// The key.
        key: &'static str,
    },
}

/// The name of the Secret `r` names for the job in `job_namespace`, once it is known to be
/// there and readable.
pub fn secret_name(
    field: &'static str,
    job_namespace: &str,
    r: &SecretKeyRef,
    scope: &SecretScope,
) -> Result<String, RefError> {
    if let Some(given) = r.namespace.as_ref().filter(|n| *n != job_namespace) {
        return Err(RefError::OtherNamespace {
            field,
            given: given.clone(),
            job: job_namespace.to_string(),
        });
    }
    scope
        .check(job_namespace, &r.name)
        .map_err(|source| RefError::OutOfScope { field, source })?;
    Ok(r.name.clone())
}

/// The value of `key` in the data of Secret `secret` (`namespace/name`, for messages),
/// trimmed (a newline from `echo`); `None` when absent or empty.
pub fn text(
    field: &'static str,
    secret: &str,
    data: &BTreeMap<String, ByteString>,
    key: &'static str,
) -> Result<Option<String>, RefError> {
    let Some(v) = data.get(key) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&v.0).map_err(|_| RefError::NotText {
        field,
        secret: secret.to_string(),
        key,
    })?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}
