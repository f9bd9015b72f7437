//! AWS credentials: access keys, an assumed role on top of them, or a web identity
//! (EKS IRSA and other OIDC providers).
//!
//! Keys, as the AWS SDKs name them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`, `AWS_EXTERNAL_ID`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`; plus fedsky's
//! `AWS_WEB_IDENTITY_TOKEN` (the token inline) and `AWS_SESSION_EXPIRATION` (RFC 3339 expiry
//! of temporary keys, so it can be reported and acted on before AWS rejects them).

use super::{CredentialsError, Fields};
use crate::secret::Sensitive;
use jiff::Timestamp;
use std::path::PathBuf;

/// STS and EC2 region when neither the Secret nor the caller names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// AWS credentials and where to send requests.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCredentials {
    /// How to authenticate.
    pub auth: AwsAuth,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), if set.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL`: one endpoint for every service (moto, LocalStack, a proxy).
    pub endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_STS`, over `endpoint` for STS.
    pub sts_endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_EC2`, over `endpoint` for EC2.
    pub ec2_endpoint: Option<String>,
}

/// The ways fedsky authenticates to AWS.
#[derive(Debug, Clone, PartialEq)]
pub enum AwsAuth {
    /// Long-term or temporary access keys.
    AccessKeys(StaticKeys),
    /// `sts:AssumeRole` with access keys.
    AssumeRole {
        /// The keys that assume the role.
        keys: StaticKeys,
        /// ARN of the role.
        role_arn: String,
        /// Session name (CloudTrail shows it).
        session_name: String,
        /// External ID the role's trust policy asks for.
        external_id: Option<Sensitive>,
    },
    /// `sts:AssumeRoleWithWebIdentity` with an OIDC token.
    WebIdentity {
        /// ARN of the role.
        role_arn: String,
        /// Session name.
        session_name: String,
        /// The token or the file it is read from (rotated by the kubelet for IRSA).
        token: WebIdentityToken,
    },
}

/// Access keys.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticKeys {
    /// Access key id (not secret; AWS shows it in errors).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Sensitive,
    /// Session token of temporary keys.
    pub session_token: Option<Sensitive>,
    /// When temporary keys expire, if known.
    pub expires_at: Option<Timestamp>,
}

/// Where a web identity token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum WebIdentityToken {
    /// The token itself.
    Inline(Sensitive),
    /// A file read at each use (a projected service-account token rotates).
    File(PathBuf),
}

const KEYS_HINT: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optionally AWS_ROLE_ARN to \
     assume a role), or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE for a web identity";

/// Session name when the Secret sets none.
pub const DEFAULT_SESSION_NAME: &str = "fedsky-operator";

pub(crate) fn parse(f: &Fields<'_>) -> Result<AwsCredentials, CredentialsError> {
    let region = match f.text("AWS_REGION")? {
        Some(r) => Some(r),
        None => f.text("AWS_DEFAULT_REGION")?,
    };
    let role_arn = f.text("AWS_ROLE_ARN")?;
    if let Some(arn) = &role_arn
        && !(arn.starts_with("arn:") && arn.contains(":role/"))
    {
        return Err(f.invalid(
            "AWS_ROLE_ARN",
            "expected a role ARN such as arn:aws:iam::123456789012:role/fedsky",
        ));
    }
    let session_name = f
        .text("AWS_ROLE_SESSION_NAME")?
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
    let token = match (
        f.secret("AWS_WEB_IDENTITY_TOKEN")?,
        f.text("AWS_WEB_IDENTITY_TOKEN_FILE")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(CredentialsError::Conflicting {
                cloud: f.cloud,
                first: "AWS_WEB_IDENTITY_TOKEN",
                second: "AWS_WEB_IDENTITY_TOKEN_FILE",
            });
        }
        (Some(t), None) => Some(WebIdentityToken::Inline(t)),
        (None, Some(p)) => Some(WebIdentityToken::File(PathBuf::from(p))),
        (None, None) => None,
    };
    let has_key = f.text("AWS_ACCESS_KEY_ID")?.is_some();
    let auth = match (token, role_arn) {
        (Some(_), _) if has_key => {
            return Err(CredentialsError::Conflicting {
                cloud: f.cloud,
                first: "AWS_ACCESS_KEY_ID",
                second: "a web identity token",
            });
        }
        (Some(_), None) => {
            return Err(CredentialsError::MissingKey {
                cloud: f.cloud,
                key: "AWS_ROLE_ARN",
                hint: "a web identity token needs the role to assume",
            });
        }
        (Some(token), Some(role_arn)) => AwsAuth::WebIdentity {
            role_arn,
            session_name,
            token,
        },
        (None, Some(_)) if !has_key => {
            return Err(CredentialsError::MissingKey {
                cloud: f.cloud,
                key: "AWS_WEB_IDENTITY_TOKEN_FILE",
                hint: "AWS_ROLE_ARN needs either access keys to assume it with or a web identity token",
            });
        }
        (None, Some(role_arn)) => AwsAuth::AssumeRole {
            keys: keys(f)?,
            role_arn,
            session_name,
            external_id: f.secret("AWS_EXTERNAL_ID")?,
        },
        (None, None) => AwsAuth::AccessKeys(keys(f)?),
    };
    Ok(AwsCredentials {
        auth,
        region,
        endpoint: f.url("AWS_ENDPOINT_URL")?,
        sts_endpoint: f.url("AWS_ENDPOINT_URL_STS")?,
        ec2_endpoint: f.url("AWS_ENDPOINT_URL_EC2")?,
    })
}

fn keys(f: &Fields<'_>) -> Result<StaticKeys, CredentialsError> {
    let access_key_id = f.required("AWS_ACCESS_KEY_ID", KEYS_HINT)?;
    let secret_access_key = Sensitive::new(f.required("AWS_SECRET_ACCESS_KEY", KEYS_HINT)?);
    let expires_at = match f.text("AWS_SESSION_EXPIRATION")? {
        Some(t) => Some(t.parse::<Timestamp>().map_err(|_| {
            f.invalid(
                "AWS_SESSION_EXPIRATION",
                "expected an RFC 3339 time such as 2030-01-01T00:00:00Z",
            )
        })?),
        None => None,
    };
    Ok(StaticKeys {
        access_key_id,
        secret_access_key,
        session_token: f.secret("AWS_SESSION_TOKEN")?,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::data;
    use super::super::{Credentials, parse};
    use super::*;
    use crate::Cloud;

    fn aws(pairs: &[(&str, &str)]) -> Result<AwsCredentials, CredentialsError> {
        match parse(Cloud::Aws, &data(pairs))? {
            Credentials::Aws(a) => Ok(a),
            other => panic!("not AWS: {other:?}"),
        }
    }

    #[test]
    fn access_keys_with_session_token_region_and_endpoint() {
        let c = aws(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE\n"),
            ("AWS_SECRET_ACCESS_KEY", "wJalr"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_SESSION_EXPIRATION", "2030-01-01T00:00:00Z"),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/"),
        ])
        .expect("parses");
        let AwsAuth::AccessKeys(k) = &c.auth else {
            panic!("{c:?}")
        };
        assert_eq!(k.access_key_id, "AKIAEXAMPLE");
        assert_eq!(k.secret_access_key.expose(), "wJalr");
        assert_eq!(k.session_token.as_ref().map(Sensitive::expose), Some("tok"));
        assert_eq!(
            k.expires_at,
            Some("2030-01-01T00:00:00Z".parse().expect("t"))
        );
        assert_eq!(c.region.as_deref(), Some("eu-central-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("wJalr") && !printed.contains("tok\""),
            "{printed}"
        );
    }

    #[test]
    fn role_arn_with_keys_assumes_the_role() {
        let c = aws(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/fedsky"),
            ("AWS_EXTERNAL_ID", "ext"),
        ])
        .expect("parses");
        let AwsAuth::AssumeRole {
            role_arn,
            session_name,
            external_id,
            ..
        } = c.auth
        else {
            panic!("not assume-role")
        };
        assert_eq!(role_arn, "arn:aws:iam::123456789012:role/fedsky");
        assert_eq!(session_name, DEFAULT_SESSION_NAME);
        assert_eq!(external_id, Some(Sensitive::new("ext")));
    }

    #[test]
    fn role_arn_with_token_file_is_a_web_identity() {
        let c = aws(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa"),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            ("AWS_ROLE_SESSION_NAME", "fedsky-eu"),
        ])
        .expect("parses");
        assert_eq!(
            c.auth,
            AwsAuth::WebIdentity {
                role_arn: "arn:aws:iam::123456789012:role/irsa".into(),
                session_name: "fedsky-eu".into(),
                token: WebIdentityToken::File(
                    "/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into()
                ),
            }
        );
    }

    #[test]
    fn errors_name_the_missing_or_bad_key() {
        let e = aws(&[("AWS_ACCESS_KEY_ID", "AKIA")]).expect_err("no secret");
        assert!(
            e.to_string()
                .starts_with("the aws credentials Secret has no key `AWS_SECRET_ACCESS_KEY`"),
            "{e}"
        );
        let e = aws(&[]).expect_err("empty");
        assert!(e.to_string().contains("`AWS_ACCESS_KEY_ID`"), "{e}");
        let e = aws(&[("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")]).expect_err("no token");
        assert!(e.to_string().contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
        let e = aws(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ROLE_ARN", "fedsky"),
        ])
        .expect_err("bad arn");
        assert!(e.to_string().contains("`AWS_ROLE_ARN`"), "{e}");
        let e = aws(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_SESSION_EXPIRATION", "tomorrow"),
        ])
        .expect_err("bad time");
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        let e = aws(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ENDPOINT_URL", "127.0.0.1:5000"),
        ])
        .expect_err("bad url");
        assert!(e.to_string().contains("http://"), "{e}");
        let e = aws(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN", "t"),
        ])
        .expect_err("two ways");
        assert!(matches!(e, CredentialsError::Conflicting { .. }), "{e}");
    }
}
