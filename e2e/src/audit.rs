//! The API server's audit log as tests read it: who asked for what and what they got.

use serde::Deserialize;

/// One answered request (`ResponseComplete` or `Panic` stage, `Metadata` level).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// The authenticated user.
    pub user: User,
    /// The user the request acted as, when it impersonated one.
    #[serde(default)]
    pub impersonated_user: Option<User>,
    /// The object or collection asked for; absent for non-resource URLs.
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// The answer.
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    /// The request URI, for messages.
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
}

/// A user in an audit event.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    /// User name, e.g. `system:serviceaccount:fedsky-system:fedsky`.
    #[serde(default)]
    pub username: String,
}

/// What a request addressed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Resource, e.g. `secrets`.
    #[serde(default)]
    pub resource: String,
    /// Subresource, e.g. `status`.
    #[serde(default)]
    pub subresource: Option<String>,
    /// API group; empty for the core group.
    #[serde(default)]
    pub api_group: Option<String>,
    /// Namespace, for namespaced resources.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name, when one object was addressed.
    #[serde(default)]
    pub name: Option<String>,
}

/// The response code.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ResponseStatus {
    /// HTTP status code.
    #[serde(default)]
    pub code: u16,
}

impl AuditEvent {
    /// The user whose permissions were checked: the impersonated one if any.
    pub fn acting_user(&self) -> &str {
        self.impersonated_user
            .as_ref()
            .map_or(&self.user.username, |u| &u.username)
    }

    /// The response code (0 when the log has none).
    pub fn code(&self) -> u16 {
        self.response_status.as_ref().map_or(0, |r| r.code)
    }

    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn resource(&self) -> String {
        let Some(o) = &self.object_ref else {
            return String::new();
        };
        match &o.subresource {
            Some(sub) if !sub.is_empty() => format!("{}/{sub}", o.resource),
            _ => o.resource.clone(),
        }
    }

    /// The API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.api_group.as_deref())
            .unwrap_or("")
    }

    /// The namespace, for namespaced requests.
    pub fn namespace(&self) -> Option<&str> {
        self.object_ref
            .as_ref()
            .and_then(|o| o.namespace.as_deref())
    }
}

impl std::fmt::Display for AuditEvent {
    /// `verb URI`, as a test reports a request.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.request_uri)
    }
}

/// The events of the audit log at `path` so far; none when it does not exist yet.
pub fn read(path: &std::path::Path) -> std::io::Result<Vec<AuditEvent>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Events from JSON lines; lines that are not events (a partly written last line) are
/// skipped.
pub fn parse(text: &str) -> Vec<AuditEvent> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<AuditEvent>(l).ok())
        .collect()
}

/// The requests of `user` that RBAC refused (403).
pub fn forbidden<'a>(events: &'a [AuditEvent], user: &str) -> Vec<&'a AuditEvent> {
    events
        .iter()
        .filter(|e| e.acting_user() == user && e.code() == 403)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"kind":"Event","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/fedsky-system/secrets/x","verb":"get","user":{"username":"admin"},"impersonatedUser":{"username":"system:serviceaccount:fedsky-system:fedsky"},"objectRef":{"resource":"secrets","namespace":"fedsky-system","name":"x","apiVersion":"v1"},"responseStatus":{"code":403}}
{"kind":"Event","level":"Metadata","stage":"ResponseComplete","requestURI":"/apis/fl.fedsky.dev/v1alpha1/namespaces/a/federatedjobs/j/status","verb":"patch","user":{"username":"system:serviceaccount:fedsky-system:fedsky"},"objectRef":{"resource":"federatedjobs","subresource":"status","namespace":"a","name":"j","apiGroup":"fl.fedsky.dev"},"responseStatus":{"code":200}}
{"kind":"Event","level":"Metadata","stage":"ResponseComplete","requestURI":"/readyz","verb":"get","user":{"username":"admin"},"responseStatus":{"code":200}}
{"kind":"Event","trunc"#;

    #[test]
    fn events_read_with_impersonation_subresources_and_partial_lines() {
        let ev = parse(LOG);
        assert_eq!(ev.len(), 3, "the truncated last line is skipped");
        let sa = "system:serviceaccount:fedsky-system:fedsky";
        assert_eq!(ev[0].acting_user(), sa);
        assert_eq!(
            (ev[0].group(), ev[0].resource().as_str(), ev[0].code()),
            ("", "secrets", 403)
        );
        assert_eq!(ev[1].resource(), "federatedjobs/status");
        assert_eq!(ev[1].group(), "fl.fedsky.dev");
        assert_eq!(ev[2].resource(), "");
        assert_eq!(ev[2].to_string(), "get /readyz");
        let refused = forbidden(&ev, sa);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].namespace(), Some("fedsky-system"));
        assert!(forbidden(&ev, "admin").is_empty());
    }
}
