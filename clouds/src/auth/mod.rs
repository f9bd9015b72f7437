//! Validating credentials against each cloud and getting what calls need (a signed SDK
//! session, an access token, a Keystone token with its catalog).
//!
//! [`validate`] answers `Valid { identity, expires_at }` or an [`AuthError`] whose
//! [`AuthError::reason`] is the condition reason fedsky reports.

pub mod aws;
pub mod gcp;
pub mod openstack;

use crate::Cloud;
use crate::credentials::Credentials;
use jiff::Timestamp;

/// Credentials that a cloud accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// Who the cloud says the caller is: an ARN, a service-account email, a Keystone
    /// user and project.
    pub identity: String,
    /// When the credentials (or the session they give) expire; `None` for long-term keys.
    pub expires_at: Option<Timestamp>,
}

/// Why credentials are not usable. Messages never contain secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The cloud refused them (unknown key, bad signature, not allowed to assume a role).
    #[error("{cloud} rejected the credentials in {operation} at {endpoint}: {detail}")]
    Rejected {
        /// Cloud.
        cloud: Cloud,
        /// Endpoint asked.
        endpoint: String,
        /// API call.
        operation: &'static str,
        /// The cloud's error code and message.
        detail: String,
    },
    /// They expired (known locally or said by the cloud).
    #[error("the {cloud} credentials expired: {detail}")]
    Expired {
        /// Cloud.
        cloud: Cloud,
        /// When, or the cloud's message.
        detail: String,
    },
    /// The endpoint did not answer.
    #[error("cannot reach {cloud} at {endpoint} for {operation}: {detail}")]
    Unreachable {
        /// Cloud.
        cloud: Cloud,
        /// Endpoint.
        endpoint: String,
        /// API call.
        operation: &'static str,
        /// Transport error.
        detail: String,
    },
    /// They cannot even be sent (an unreadable token file, a key that does not sign).
    #[error("the {cloud} credentials cannot be used: {detail}")]
    Unusable {
        /// Cloud.
        cloud: Cloud,
        /// What is wrong.
        detail: String,
    },
    /// The cloud answered something else (a server error, an unexpected body).
    #[error("{cloud} {operation} at {endpoint} failed: {detail}")]
    Failed {
        /// Cloud.
        cloud: Cloud,
        /// Endpoint.
        endpoint: String,
        /// API call.
        operation: &'static str,
        /// What came back.
        detail: String,
    },
}

/// Condition reason: the credentials were refused or cannot be used.
pub const REASON_INVALID: &str = "InvalidCredentials";
/// Condition reason: the credentials expired.
pub const REASON_EXPIRED: &str = "ExpiredCredentials";
/// Condition reason: the cloud's endpoint did not answer.
pub const REASON_UNREACHABLE: &str = "EndpointUnreachable";
/// Condition reason: any other failure of the check.
pub const REASON_FAILED: &str = "ValidationFailed";

impl AuthError {
    /// The CamelCase condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rejected { .. } | Self::Unusable { .. } => REASON_INVALID,
            Self::Expired { .. } => REASON_EXPIRED,
            Self::Unreachable { .. } => REASON_UNREACHABLE,
            Self::Failed { .. } => REASON_FAILED,
        }
    }

    /// Whether only a change of the credentials (not time) can fix it.
    pub fn needs_new_credentials(&self) -> bool {
        matches!(
            self,
            Self::Rejected { .. } | Self::Unusable { .. } | Self::Expired { .. }
        )
    }
}

/// Checks `creds` against their cloud. `region` is the region of the cluster or VM
/// they are for, used where the Secret names none.
pub async fn validate(creds: &Credentials, region: Option<&str>) -> Result<Valid, AuthError> {
    match creds {
        Credentials::Aws(c) => aws::session(c, region).await.map(|s| s.valid()),
        Credentials::Gcp(c) => gcp::access_token(c).await.map(|t| t.valid()),
        Credentials::OpenStack(c) => openstack::authenticate(c).await.map(|t| t.valid()),
    }
}

/// `Expired` when `expires_at` is at or before `now`.
pub fn check_expiry(
    cloud: Cloud,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), AuthError> {
    match expires_at {
        Some(t) if t <= now => Err(AuthError::Expired {
            cloud,
            detail: format!("they expired at {t}; put fresh ones in the Secret"),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_the_documented_condition_reasons() {
        let rejected = AuthError::Rejected {
            cloud: Cloud::Aws,
            endpoint: "e".into(),
            operation: "GetCallerIdentity",
            detail: "InvalidClientTokenId".into(),
        };
        assert_eq!(rejected.reason(), "InvalidCredentials");
        assert!(rejected.needs_new_credentials());
        let down = AuthError::Unreachable {
            cloud: Cloud::Gcp,
            endpoint: "e".into(),
            operation: "token",
            detail: "refused".into(),
        };
        assert_eq!(down.reason(), "EndpointUnreachable");
        assert!(!down.needs_new_credentials());
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let t = |s| Timestamp::from_second(s).expect("t");
        assert!(check_expiry(Cloud::Aws, None, t(10)).is_ok());
        assert!(check_expiry(Cloud::Aws, Some(t(11)), t(10)).is_ok());
        let e = check_expiry(Cloud::Aws, Some(t(10)), t(10)).expect_err("expired");
        assert_eq!(e.reason(), "ExpiredCredentials");
        assert!(e.to_string().contains("1970-01-01T00:00:10Z"), "{e}");
    }
}
