//! AWS: STS `GetCallerIdentity` with the Secret's keys, after `AssumeRole` or
//! `AssumeRoleWithWebIdentity` where configured. The resulting [`AwsSession`] signs the
//! EC2 calls of the provisioner with the same (possibly assumed) credentials.

use super::{AuthError, Valid, check_expiry};
use crate::Cloud;
use crate::credentials::aws::{
    AwsAuth, AwsCredentials, DEFAULT_REGION, StaticKeys, WebIdentityToken,
};
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use jiff::Timestamp;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Limit of one STS or EC2 attempt, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts per call (the SDK's standard retry on throttling and 5xx).
pub const MAX_ATTEMPTS: u32 = 3;

/// Credentials AWS accepted, ready to sign further calls.
#[derive(Clone)]
pub struct AwsSession {
    /// Region the session's clients sign for by default.
    pub region: String,
    /// ARN of the caller (`…:user/…` or `…:assumed-role/…`).
    pub identity: String,
    /// Account id.
    pub account: Option<String>,
    /// When the (session) credentials expire; `None` for long-term keys.
    pub expires_at: Option<Timestamp>,
    credentials: Credentials,
    ec2_endpoint: Option<String>,
}

impl fmt::Debug for AwsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSession")
            .field("region", &self.region)
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .field("ec2_endpoint", &self.ec2_endpoint)
            .finish_non_exhaustive()
    }
}

impl AwsSession {
    /// What validation reports.
    pub fn valid(&self) -> Valid {
        Valid {
            identity: self.identity.clone(),
            expires_at: self.expires_at,
        }
    }

    /// An EC2 client for `region` signed with this session.
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        use aws_sdk_ec2::config as c;
        let mut b = c::Builder::new()
            .behavior_version(c::BehaviorVersion::latest())
            .region(c::Region::new(region.to_string()))
            .credentials_provider(self.credentials.clone())
            .http_client(https())
            .retry_config(c::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                c::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(e) = &self.ec2_endpoint {
            b = b.endpoint_url(e.clone());
        }
        aws_sdk_ec2::Client::from_conf(b.build())
    }

    /// The EC2 endpoint as errors name it.
    pub fn ec2_endpoint(&self, region: &str) -> String {
        self.ec2_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"))
    }
}

fn https() -> aws_sdk_sts::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn sdk_keys(k: &StaticKeys) -> Credentials {
    Credentials::new(
        k.access_key_id.clone(),
        k.secret_access_key.expose().to_string(),
        k.session_token.as_ref().map(|t| t.expose().to_string()),
        k.expires_at.and_then(to_system_time),
        "fedsky-secret",
    )
}

fn to_system_time(t: Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.as_second()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

fn sts(region: &str, endpoint: Option<&str>, creds: Option<Credentials>) -> aws_sdk_sts::Client {
    let mut b = aws_sdk_sts::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .http_client(https())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(c) = creds {
        b = b.credentials_provider(c);
    }
    if let Some(e) = endpoint {
        b = b.endpoint_url(e.to_string());
    }
    aws_sdk_sts::Client::from_conf(b.build())
}

/// Error codes AWS answers for keys it does not accept.
const REJECTED: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "AuthFailure",
    "AccessDenied",
    "InvalidIdentityToken",
    "IDPRejectedClaim",
    "MalformedPolicyDocument",
];
/// Error codes AWS answers for expired session credentials or tokens.
const EXPIRED: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "TokenRefreshRequired",
];

/// Sorts an SDK error by what the user must do about it.
pub fn classify<E>(operation: &'static str, endpoint: &str, err: &SdkError<E>) -> AuthError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let cloud = Cloud::Aws;
    let endpoint = endpoint.to_string();
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AuthError::Unreachable {
            cloud,
            endpoint,
            operation,
            detail: DisplayErrorContext(err).to_string(),
        },
        SdkError::ServiceError(_) => {
            let (code, message) = code_and_message(err);
            let status = err.raw_response().map(|r| r.status().as_u16());
            let detail = format!("{code}: {message}");
            if EXPIRED.contains(&code.as_str()) {
                AuthError::Expired { cloud, detail }
            } else if REJECTED.contains(&code.as_str())
                || (code == "Unknown" && matches!(status, Some(401 | 403)))
            {
                AuthError::Rejected {
                    cloud,
                    endpoint,
                    operation,
                    detail,
                }
            } else {
                AuthError::Failed {
                    cloud,
                    endpoint,
                    operation,
                    detail,
                }
            }
        }
        _ => AuthError::Failed {
            cloud,
            endpoint,
            operation,
            detail: DisplayErrorContext(err).to_string(),
        },
    }
}

/// The error's code and message; read from the raw XML body when the SDK could not parse
/// them (some S3/STS-compatible servers wrap `<Error>` in `<Errors>` as EC2 does).
pub fn code_and_message<E>(err: &SdkError<E>) -> (String, String)
where
    E: ProvideErrorMetadata,
{
    if let Some(code) = err.code() {
        return (
            code.to_string(),
            err.message().unwrap_or("no message").to_string(),
        );
    }
    let body = err
        .raw_response()
        .and_then(|r| r.body().bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = body.find(&open)? + open.len();
        let end = start + body[start..].find(&format!("</{t}>"))?;
        Some(body[start..end].to_string())
    };
    (
        tag("Code").unwrap_or_else(|| "Unknown".to_string()),
        tag("Message").unwrap_or_else(|| "no message".to_string()),
    )
}

fn assumed(
    operation: &'static str,
    endpoint: &str,
    c: Option<&aws_sdk_sts::types::Credentials>,
) -> Result<(Credentials, Option<Timestamp>), AuthError> {
    let c = c.ok_or_else(|| AuthError::Failed {
        cloud: Cloud::Aws,
        endpoint: endpoint.to_string(),
        operation,
        detail: "the answer holds no credentials".into(),
    })?;
    let expires = Timestamp::from_second(c.expiration().secs()).ok();
    let creds = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        expires.and_then(to_system_time),
        "fedsky-sts",
    );
    Ok((creds, expires))
}

/// Authenticates (assuming the role where configured) and asks STS who the caller is.
/// `region` is used when the Secret names none.
pub async fn session(c: &AwsCredentials, region: Option<&str>) -> Result<AwsSession, AuthError> {
    let region = c
        .region
        .as_deref()
        .or(region)
        .unwrap_or(DEFAULT_REGION)
        .to_string();
    let sts_endpoint = c.sts_endpoint.as_deref().or(c.endpoint.as_deref());
    let label = sts_endpoint.map_or_else(
        || format!("https://sts.{region}.amazonaws.com"),
        str::to_string,
    );
    let now = Timestamp::now();
    let (credentials, expires_at) = match &c.auth {
        AwsAuth::AccessKeys(k) => {
            check_expiry(Cloud::Aws, k.expires_at, now)?;
            (sdk_keys(k), k.expires_at)
        }
        AwsAuth::AssumeRole {
            keys,
            role_arn,
            session_name,
            external_id,
        } => {
            check_expiry(Cloud::Aws, keys.expires_at, now)?;
            let out = sts(&region, sts_endpoint, Some(sdk_keys(keys)))
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(session_name)
                .set_external_id(external_id.as_ref().map(|e| e.expose().to_string()))
                .send()
                .await
                .map_err(|e| classify("AssumeRole", &label, &e))?;
            assumed("AssumeRole", &label, out.credentials())?
        }
        AwsAuth::WebIdentity {
            role_arn,
            session_name,
            token,
        } => {
            let token = match token {
                WebIdentityToken::Inline(t) => t.expose().to_string(),
                WebIdentityToken::File(p) => tokio::fs::read_to_string(p)
                    .await
                    .map_err(|e| AuthError::Unusable {
                        cloud: Cloud::Aws,
                        detail: format!(
                            "cannot read the web identity token file {}: {e}",
                            p.display()
                        ),
                    })?
                    .trim()
                    .to_string(),
            };
            // Unsigned: the token is the proof.
            let out = sts(&region, sts_endpoint, None)
                .assume_role_with_web_identity()
                .role_arn(role_arn)
                .role_session_name(session_name)
                .web_identity_token(token)
                .send()
                .await
                .map_err(|e| classify("AssumeRoleWithWebIdentity", &label, &e))?;
            assumed("AssumeRoleWithWebIdentity", &label, out.credentials())?
        }
    };
    let who = sts(&region, sts_endpoint, Some(credentials.clone()))
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify("GetCallerIdentity", &label, &e))?;
    Ok(AwsSession {
        identity: who.arn().unwrap_or("unknown").to_string(),
        account: who.account().map(str::to_string),
        expires_at,
        credentials,
        ec2_endpoint: c.ec2_endpoint.clone().or_else(|| c.endpoint.clone()),
        region,
    })
}
