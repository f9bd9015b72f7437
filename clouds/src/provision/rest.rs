//! The REST plumbing the GCP and OpenStack provisioners share: send, read, and sort a
//! non-2xx answer into an auth, refused or transient error.

use super::ProvisionError;
use crate::Cloud;
use crate::auth::AuthError;
use crate::http::error_chain;
use reqwest::StatusCode;

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

impl Answer {
    /// The body as `T`, or a transient error naming the call.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        cloud: Cloud,
        operation: &'static str,
    ) -> Result<T, ProvisionError> {
        serde_json::from_str(&self.body).map_err(|e| ProvisionError::Transient {
            cloud,
            operation,
            detail: format!("unexpected answer ({e})"),
        })
    }
}

/// Sends `req` and reads the answer; no answer is a transient error.
pub(crate) async fn send(
    cloud: Cloud,
    operation: &'static str,
    req: reqwest::RequestBuilder,
) -> Result<Answer, ProvisionError> {
    let transient = |e: &reqwest::Error| ProvisionError::Transient {
        cloud,
        operation,
        detail: error_chain(e),
    };
    let resp = req.send().await.map_err(|e| transient(&e))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| transient(&e))?;
    Ok(Answer { status, body })
}

/// A non-2xx answer as an error; `message` is the cloud's error message.
pub(crate) fn failure(
    cloud: Cloud,
    endpoint: &str,
    operation: &'static str,
    status: StatusCode,
    message: &str,
) -> ProvisionError {
    let detail = format!("HTTP {}: {message}", status.as_u16());
    match status.as_u16() {
        401 => ProvisionError::Auth(AuthError::Rejected {
            cloud,
            endpoint: endpoint.to_string(),
            operation,
            detail,
        }),
        408 | 429 | 500..=599 => ProvisionError::Transient {
            cloud,
            operation,
            detail,
        },
        _ => ProvisionError::Refused {
            cloud,
            operation,
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_auth_transient_and_refused() {
        let f = |s: u16| {
            failure(
                Cloud::Gcp,
                "e",
                "op",
                StatusCode::from_u16(s).expect("s"),
                "m",
            )
        };
        assert_eq!(f(401).reason(), "InvalidCredentials");
        assert_eq!(f(503).reason(), "ProvisioningRetrying");
        assert_eq!(f(429).reason(), "ProvisioningRetrying");
        assert_eq!(f(400).reason(), "ProvisioningRefused");
        assert_eq!(f(403).reason(), "ProvisioningRefused");
    }
}
