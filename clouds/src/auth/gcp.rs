//! Google Cloud: a service-account key signs an RS256 JWT that the key's `token_uri`
//! exchanges for an access token (RFC 7523, as Google's client libraries do); workload
//! identity asks the metadata server instead.

use super::{AuthError, Valid};
use crate::Cloud;
use crate::credentials::gcp::{GcpAuth, GcpCredentials, ServiceAccountKey};
use crate::http::{self, excerpt, transport_error};
use crate::secret::Sensitive;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;

/// OAuth scope of the token: Compute Engine only, the least the provisioner needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/compute";
/// Lifetime asked for the JWT (Google's maximum).
const JWT_LIFETIME_SECS: i64 = 3600;

/// An access token and whose it is.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// Bearer token for the Compute API.
    pub token: Sensitive,
    /// Service-account email.
    pub identity: String,
    /// When the token expires.
    pub expires_at: Option<Timestamp>,
}

impl AccessToken {
    /// What validation reports.
    pub fn valid(&self) -> Valid {
        Valid {
            identity: self.identity.clone(),
            expires_at: self.expires_at,
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(serde::Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Gets an access token with `c`.
pub async fn access_token(c: &GcpCredentials) -> Result<AccessToken, AuthError> {
    let client = http::client(None).map_err(|e| AuthError::Unusable {
        cloud: Cloud::Gcp,
        detail: format!("building the HTTP client: {e}"),
    })?;
    match &c.auth {
        GcpAuth::ServiceAccountKey(key) => exchange(&client, key).await,
        GcpAuth::WorkloadIdentity { metadata_url } => metadata(&client, metadata_url).await,
    }
}

/// The signed JWT assertion for `key` at `now` (`header.claims.signature`).
pub fn assertion(key: &ServiceAccountKey, now: Timestamp) -> Result<String, AuthError> {
    let unusable = |detail: String| AuthError::Unusable {
        cloud: Cloud::Gcp,
        detail,
    };
    let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    if let Some(kid) = &key.private_key_id {
        header["kid"] = serde_json::json!(kid);
    }
    let iat = now.as_second();
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": iat,
        "exp": iat + JWT_LIFETIME_SECS,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let der = pem_body(key.private_key.expose(), "PRIVATE KEY")
        .ok_or_else(|| unusable("`private_key` is not a PEM PKCS#8 key".into()))?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| unusable(format!("`private_key` is not an RSA key ring accepts: {e}")))?;
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| unusable("signing the JWT failed".into()))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The DER bytes between `-----BEGIN {label}-----` and `-----END {label}-----`.
pub fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

async fn exchange(
    client: &reqwest::Client,
    key: &ServiceAccountKey,
) -> Result<AccessToken, AuthError> {
    const OP: &str = "token exchange";
    let now = Timestamp::now();
    let jwt = assertion(key, now)?;
    let resp = client
        .post(&key.token_uri)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", jwt.as_str()),
        ])
        .send()
        .await
        .map_err(|e| transport_error(Cloud::Gcp, OP, &key.token_uri, &e))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| transport_error(Cloud::Gcp, OP, &key.token_uri, &e))?;
    if !status.is_success() {
        return Err(oauth_error(&key.token_uri, status, &body));
    }
    let answer: TokenAnswer = serde_json::from_str(&body).map_err(|e| AuthError::Failed {
        cloud: Cloud::Gcp,
        endpoint: key.token_uri.clone(),
        operation: OP,
        detail: format!("not a token answer: {e}"),
    })?;
    Ok(AccessToken {
        token: Sensitive::new(answer.access_token),
        identity: key.client_email.clone(),
        expires_at: expiry(now, answer.expires_in),
    })
}

fn expiry(now: Timestamp, expires_in: Option<i64>) -> Option<Timestamp> {
    expires_in.and_then(|s| Timestamp::from_second(now.as_second().saturating_add(s)).ok())
}

/// A non-2xx answer of an OAuth token endpoint as an [`AuthError`].
pub fn oauth_error(endpoint: &str, status: reqwest::StatusCode, body: &str) -> AuthError {
    let cloud = Cloud::Gcp;
    let operation = "token exchange";
    let Ok(e) = serde_json::from_str::<OAuthError>(body) else {
        return AuthError::Failed {
            cloud,
            endpoint: endpoint.to_string(),
            operation,
            detail: format!("HTTP {status}: {}", excerpt(body, 200)),
        };
    };
    let detail = match &e.error_description {
        Some(d) => format!("{}: {d}", e.error),
        None => e.error.clone(),
    };
    if status.is_server_error() {
        AuthError::Failed {
            cloud,
            endpoint: endpoint.to_string(),
            operation,
            detail,
        }
    } else if detail.to_ascii_lowercase().contains("expired") {
        AuthError::Expired { cloud, detail }
    } else {
        AuthError::Rejected {
            cloud,
            endpoint: endpoint.to_string(),
            operation,
            detail,
        }
    }
}

async fn metadata(client: &reqwest::Client, base: &str) -> Result<AccessToken, AuthError> {
    const OP: &str = "metadata token";
    let url = format!("{base}/computeMetadata/v1/instance/service-accounts/default");
    let get = |path: &'static str| {
        client
            .get(format!("{url}/{path}"))
            .header("Metadata-Flavor", "Google")
            .send()
    };
    let now = Timestamp::now();
    let failed = |detail: String| AuthError::Failed {
        cloud: Cloud::Gcp,
        endpoint: base.to_string(),
        operation: OP,
        detail,
    };
    let resp = get("token")
        .await
        .map_err(|e| transport_error(Cloud::Gcp, OP, base, &e))?;
    if !resp.status().is_success() {
        return Err(AuthError::Rejected {
            cloud: Cloud::Gcp,
            endpoint: base.to_string(),
            operation: OP,
            detail: format!(
                "HTTP {}: no service account is attached for workload identity",
                resp.status()
            ),
        });
    }
    let answer: TokenAnswer = resp
        .json()
        .await
        .map_err(|e| failed(format!("not a token answer: {e}")))?;
    let email = get("email")
        .await
        .map_err(|e| transport_error(Cloud::Gcp, OP, base, &e))?
        .text()
        .await
        .map_err(|e| failed(format!("reading the email: {e}")))?;
    Ok(AccessToken {
        token: Sensitive::new(answer.access_token),
        identity: email.trim().to_string(),
        expires_at: expiry(now, answer.expires_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_are_sorted() {
        let bad = oauth_error(
            "https://oauth2.googleapis.com/token",
            reqwest::StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        );
        assert_eq!(bad.reason(), "InvalidCredentials");
        assert!(bad.to_string().contains("Invalid JWT Signature"), "{bad}");
        let old = oauth_error(
            "t",
            reqwest::StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_grant","error_description":"The key has expired."}"#,
        );
        assert_eq!(old.reason(), "ExpiredCredentials");
        let html = oauth_error("t", reqwest::StatusCode::BAD_GATEWAY, "<html>");
        assert_eq!(html.reason(), "ValidationFailed");
    }

    #[test]
    fn pem_bodies_are_decoded() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_body(pem, "PRIVATE KEY"), Some(vec![0, 1, 2, 3]));
        assert_eq!(pem_body(pem, "CERTIFICATE"), None);
    }

    #[test]
    fn a_key_that_is_not_rsa_is_unusable() {
        let key = ServiceAccountKey {
            client_email: "a@b".into(),
            private_key_id: None,
            private_key: Sensitive::new(
                "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----",
            ),
            token_uri: "t".into(),
        };
        let e = assertion(&key, Timestamp::UNIX_EPOCH).expect_err("not rsa");
        assert_eq!(e.reason(), "InvalidCredentials");
    }
}
