//! OpenStack: a Keystone v3 token from an application credential
//! (`POST /v3/auth/tokens`, method `application_credential`). The token's catalog gives
//! the Nova and Neutron endpoints the provisioner uses.

use super::{AuthError, Valid};
use crate::Cloud;
use crate::credentials::OpenStackCredentials;
use crate::http::{self, excerpt, transport_error};
use crate::secret::Sensitive;
use jiff::Timestamp;

/// A Keystone token and what it says.
#[derive(Debug, Clone)]
pub struct KeystoneToken {
    /// The `X-Subject-Token` to send as `X-Auth-Token`.
    pub token: Sensitive,
    /// User name (or id when the answer has no name).
    pub user: String,
    /// Project name (or id).
    pub project: String,
    /// When the token expires.
    pub expires_at: Option<Timestamp>,
    /// Service catalog.
    pub catalog: Vec<CatalogService>,
}

/// One service of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CatalogService {
    /// `compute`, `network`, `identity`, …
    #[serde(rename = "type")]
    pub type_: String,
    /// Its endpoints.
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

/// One endpoint of a catalog service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CatalogEndpoint {
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// Region id.
    #[serde(default)]
    pub region: Option<String>,
    /// Base URL.
    pub url: String,
}

impl KeystoneToken {
    /// What validation reports.
    pub fn valid(&self) -> Valid {
        Valid {
            identity: format!("user {} in project {}", self.user, self.project),
            expires_at: self.expires_at,
        }
    }

    /// The URL of `service_type` for `interface` in `region` (any region when `None`),
    /// without a trailing `/`.
    pub fn endpoint(
        &self,
        service_type: &str,
        interface: &str,
        region: Option<&str>,
    ) -> Option<String> {
        self.catalog
            .iter()
            .filter(|s| s.type_ == service_type)
            .flat_map(|s| &s.endpoints)
            .find(|e| {
                e.interface == interface && region.is_none_or(|r| e.region.as_deref() == Some(r))
            })
            .map(|e| e.url.trim_end_matches('/').to_string())
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    token: TokenBody,
}

#[derive(serde::Deserialize)]
struct TokenBody {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    user: Option<Named>,
    #[serde(default)]
    project: Option<Named>,
    #[serde(default)]
    catalog: Vec<CatalogService>,
}

#[derive(serde::Deserialize)]
struct Named {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl Named {
    fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.id.clone())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Parses Keystone's `expires_at` (`2026-05-09T10:00:00.000000Z`).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok().or_else(|| format!("{s}Z").parse().ok())
}

/// Gets a token with the application credential.
pub async fn authenticate(c: &OpenStackCredentials) -> Result<KeystoneToken, AuthError> {
    const OP: &str = "POST /v3/auth/tokens";
    let url = format!("{}/auth/tokens", c.auth_url);
    let client = http::client(c.ca_cert.as_deref()).map_err(|e| AuthError::Unusable {
        cloud: Cloud::OpenStack,
        detail: format!("OS_CACERT: {e}"),
    })?;
    let body = serde_json::json!({
        "auth": { "identity": {
            "methods": ["application_credential"],
            "application_credential": {
                "id": c.application_credential_id,
                "secret": c.application_credential_secret.expose(),
            },
        }}
    });
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| transport_error(Cloud::OpenStack, OP, &c.auth_url, &e))?;
    let status = resp.status();
    let token = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(Sensitive::from);
    let text = resp
        .text()
        .await
        .map_err(|e| transport_error(Cloud::OpenStack, OP, &c.auth_url, &e))?;
    let failed = |detail: String| AuthError::Failed {
        cloud: Cloud::OpenStack,
        endpoint: c.auth_url.clone(),
        operation: OP,
        detail,
    };
    if status.as_u16() == 401 || status.as_u16() == 403 {
        let detail = keystone_message(&text);
        return Err(if detail.to_ascii_lowercase().contains("expired") {
            AuthError::Expired {
                cloud: Cloud::OpenStack,
                detail,
            }
        } else {
            AuthError::Rejected {
                cloud: Cloud::OpenStack,
                endpoint: c.auth_url.clone(),
                operation: OP,
                detail: format!("HTTP {status}: {detail}"),
            }
        });
    }
    if status.as_u16() == 404 {
        return Err(failed(format!(
            "no Keystone v3 API at {url} (HTTP 404): check OS_AUTH_URL"
        )));
    }
    if !status.is_success() {
        return Err(failed(format!(
            "HTTP {status}: {}",
            keystone_message(&text)
        )));
    }
    let token = token.ok_or_else(|| failed("the answer has no X-Subject-Token header".into()))?;
    let answer: Answer =
        serde_json::from_str(&text).map_err(|e| failed(format!("not a token answer: {e}")))?;
    let t = answer.token;
    Ok(KeystoneToken {
        token,
        user: t
            .user
            .as_ref()
            .map_or_else(|| "unknown".into(), Named::label),
        project: t
            .project
            .as_ref()
            .map_or_else(|| "unknown".into(), Named::label),
        expires_at: t.expires_at.as_deref().and_then(parse_time),
        catalog: t.catalog,
    })
}

/// The `error.message` of a Keystone (or Nova/Neutron) error body, else an excerpt.
pub fn keystone_message(body: &str) -> String {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    v.as_ref()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("NeutronError"))
                .or_else(|| v.as_object().and_then(|o| o.values().next()))
        })
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .map_or_else(|| excerpt(body, 200), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keystone_times_and_messages() {
        assert_eq!(
            parse_time("2026-05-09T10:00:00.000000Z"),
            "2026-05-09T10:00:00Z".parse().ok()
        );
        assert_eq!(
            parse_time("2026-05-09T10:00:00.000000"),
            "2026-05-09T10:00:00Z".parse().ok()
        );
        assert_eq!(
            keystone_message(
                r#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#
            ),
            "The request you have made requires authentication."
        );
        assert_eq!(
            keystone_message(
                r#"{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}"#
            ),
            "Instance x could not be found."
        );
    }

    #[test]
    fn catalog_lookup_by_type_interface_and_region() {
        let t = KeystoneToken {
            token: Sensitive::new("t"),
            user: "u".into(),
            project: "p".into(),
            expires_at: None,
            catalog: vec![CatalogService {
                type_: "compute".into(),
                endpoints: vec![
                    CatalogEndpoint {
                        interface: "internal".into(),
                        region: Some("RegionOne".into()),
                        url: "http://nova-internal/v2.1".into(),
                    },
                    CatalogEndpoint {
                        interface: "public".into(),
                        region: Some("RegionOne".into()),
                        url: "https://nova.example/v2.1/".into(),
                    },
                ],
            }],
        };
        assert_eq!(
            t.endpoint("compute", "public", Some("RegionOne"))
                .as_deref(),
            Some("https://nova.example/v2.1")
        );
        assert_eq!(
            t.endpoint("compute", "public", None).as_deref(),
            Some("https://nova.example/v2.1")
        );
        assert_eq!(t.endpoint("compute", "public", Some("RegionTwo")), None);
        assert_eq!(t.endpoint("network", "public", None), None);
        assert_eq!(t.valid().identity, "user u in project p");
    }
}
