//! Typed credentials from a Secret's data, per cloud. Parsing is pure: it names the key
//! that is missing or malformed and never echoes a secret value.

pub mod aws;
pub mod gcp;
pub mod openstack;

pub use aws::{AwsAuth, AwsCredentials, StaticKeys, WebIdentityToken};
pub use gcp::{GcpAuth, GcpCredentials, ServiceAccountKey};
pub use openstack::OpenStackCredentials;

use crate::Cloud;
use crate::secret::Sensitive;
use std::collections::BTreeMap;

/// A Secret's `data`: key → bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Credentials for one cloud.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// AWS.
    Aws(AwsCredentials),
    /// Google Cloud.
    Gcp(GcpCredentials),
    /// OpenStack.
    OpenStack(OpenStackCredentials),
}

impl Credentials {
    /// The cloud these are for.
    pub fn cloud(&self) -> Cloud {
        match self {
            Self::Aws(_) => Cloud::Aws,
            Self::Gcp(_) => Cloud::Gcp,
            Self::OpenStack(_) => Cloud::OpenStack,
        }
    }
}

/// Why a Secret does not hold usable credentials. Messages name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A required key is absent.
    #[error("the {cloud} credentials Secret has no key `{key}`: {hint}")]
    MissingKey {
        /// Cloud.
        cloud: Cloud,
        /// The key.
        key: &'static str,
        /// What to set.
        hint: &'static str,
    },
    /// A key holds bytes that are not UTF-8 text.
    #[error("key `{key}` of the {cloud} credentials Secret is not UTF-8 text")]
    NotText {
        /// Cloud.
        cloud: Cloud,
        /// The key.
        key: String,
    },
    /// A key holds a value of the wrong form.
    #[error("key `{key}` of the {cloud} credentials Secret: {reason}")]
    Invalid {
        /// Cloud.
        cloud: Cloud,
        /// The key.
        key: String,
        /// What is wrong (never the value itself).
        reason: String,
    },
    /// Keys for two ways of authenticating are set at once.
    #[error(
        "the {cloud} credentials Secret sets {first} and {second}: keep one way of authenticating"
    )]
    Conflicting {
        /// Cloud.
        cloud: Cloud,
        /// One key.
        first: &'static str,
        /// The other key.
        second: &'static str,
    },
}

/// Parses the Secret data for `cloud`.
pub fn parse(cloud: Cloud, data: &SecretData) -> Result<Credentials, CredentialsError> {
    let fields = Fields { cloud, data };
    Ok(match cloud {
        Cloud::Aws => Credentials::Aws(aws::parse(&fields)?),
        Cloud::Gcp => Credentials::Gcp(gcp::parse(&fields)?),
        Cloud::OpenStack => Credentials::OpenStack(openstack::parse(&fields)?),
    })
}

/// Typed access to a Secret's keys with errors that name the key.
pub(crate) struct Fields<'a> {
    pub(crate) cloud: Cloud,
    pub(crate) data: &'a SecretData,
}

impl Fields<'_> {
    /// The key's text, trimmed (Secrets made with `--from-file` often end in a newline);
    /// `None` when absent or blank.
    pub(crate) fn text(&self, key: &str) -> Result<Option<String>, CredentialsError> {
        let Some(bytes) = self.data.get(key) else {
            return Ok(None);
        };
        let s = std::str::from_utf8(bytes).map_err(|_| CredentialsError::NotText {
            cloud: self.cloud,
            key: key.to_string(),
        })?;
        let s = s.trim();
        Ok((!s.is_empty()).then(|| s.to_string()))
    }

    /// A required key's text.
    pub(crate) fn required(
        &self,
        key: &'static str,
        hint: &'static str,
    ) -> Result<String, CredentialsError> {
        self.text(key)?.ok_or(CredentialsError::MissingKey {
            cloud: self.cloud,
            key,
            hint,
        })
    }

    /// A key's text as a secret.
    pub(crate) fn secret(&self, key: &str) -> Result<Option<Sensitive>, CredentialsError> {
        Ok(self.text(key)?.map(Sensitive::from))
    }

    /// An `http://` or `https://` URL without its trailing `/`.
    pub(crate) fn url(&self, key: &str) -> Result<Option<String>, CredentialsError> {
        let Some(u) = self.text(key)? else {
            return Ok(None);
        };
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(self.invalid(key, "expected an http:// or https:// URL"));
        }
        Ok(Some(u.trim_end_matches('/').to_string()))
    }

    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> CredentialsError {
        CredentialsError::Invalid {
            cloud: self.cloud,
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Secret data from `(key, value)` pairs.
    pub(crate) fn data(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn binary_values_are_rejected_by_key_name() {
        let mut d = data(&[("AWS_SECRET_ACCESS_KEY", "s")]);
        d.insert("AWS_ACCESS_KEY_ID".into(), vec![0xff, 0xfe]);
        let e = parse(Cloud::Aws, &d).expect_err("not text");
        assert_eq!(
            e.to_string(),
            "key `AWS_ACCESS_KEY_ID` of the aws credentials Secret is not UTF-8 text"
        );
    }
}
