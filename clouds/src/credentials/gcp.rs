//! Google Cloud credentials: a service-account key (`credentials.json`, as
//! `gcloud iam service-accounts keys create` writes it) or workload identity (the
//! metadata server of the node or of GKE's workload identity).
//!
//! Keys: `credentials.json`; or `GCP_WORKLOAD_IDENTITY: "true"` with `GCP_PROJECT`.
//! Optional: `GCP_PROJECT` (over the key's `project_id`), `GCP_COMPUTE_ENDPOINT`,
//! `GCP_TOKEN_URI` (over the key's `token_uri`), `GCP_METADATA_URL`.

use super::{CredentialsError, Fields};
use crate::secret::Sensitive;

/// The public Compute Engine v1 API.
pub const COMPUTE_ENDPOINT: &str = "https://compute.googleapis.com/compute/v1";
/// The metadata server as seen from a GCE VM or a GKE pod.
pub const METADATA_URL: &str = "http://metadata.google.internal";
/// Google's OAuth 2.0 token endpoint.
pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Google Cloud credentials and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct GcpCredentials {
    /// How to get an access token.
    pub auth: GcpAuth,
    /// Project that owns the aggregator VMs.
    pub project: String,
    /// Compute Engine API base (`…/compute/v1`).
    pub compute_endpoint: String,
}

/// How fedsky gets a Google access token.
#[derive(Debug, Clone, PartialEq)]
pub enum GcpAuth {
    /// A signed JWT exchanged at the key's `token_uri`.
    ServiceAccountKey(ServiceAccountKey),
    /// The metadata server's token for the attached service account.
    WorkloadIdentity {
        /// Base URL of the metadata server.
        metadata_url: String,
    },
}

/// The parts of a service-account key file fedsky uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccountKey {
    /// `client_email`: the identity.
    pub client_email: String,
    /// `private_key_id`: put in the JWT header so Google picks the right public key.
    pub private_key_id: Option<String>,
    /// `private_key`: a PKCS#8 RSA key in PEM.
    pub private_key: Sensitive,
    /// Where the signed JWT is exchanged for an access token.
    pub token_uri: String,
}

#[derive(serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    type_: Option<String>,
    project_id: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
}

const KEY: &str = "credentials.json";
const HINT: &str = "put a service-account key file under `credentials.json`, or set \
     GCP_WORKLOAD_IDENTITY=true and GCP_PROJECT to use the metadata server";

pub(crate) fn parse(f: &Fields<'_>) -> Result<GcpCredentials, CredentialsError> {
    let compute_endpoint = f
        .url("GCP_COMPUTE_ENDPOINT")?
        .unwrap_or_else(|| COMPUTE_ENDPOINT.to_string());
    let project = f.text("GCP_PROJECT")?;
    let workload = f
        .text("GCP_WORKLOAD_IDENTITY")?
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let Some(json) = f.text(KEY)? else {
        if !workload {
            return Err(CredentialsError::MissingKey {
                cloud: f.cloud,
                key: KEY,
                hint: HINT,
            });
        }
        let project = project.ok_or(CredentialsError::MissingKey {
            cloud: f.cloud,
            key: "GCP_PROJECT",
            hint: "workload identity needs the project that owns the aggregator VMs",
        })?;
        return Ok(GcpCredentials {
            auth: GcpAuth::WorkloadIdentity {
                metadata_url: f
                    .url("GCP_METADATA_URL")?
                    .unwrap_or_else(|| METADATA_URL.to_string()),
            },
            project,
            compute_endpoint,
        });
    };
    if workload {
        return Err(CredentialsError::Conflicting {
            cloud: f.cloud,
            first: KEY,
            second: "GCP_WORKLOAD_IDENTITY",
        });
    }
    // serde_json's message may quote the input: keep only its position.
    let file: KeyFile = serde_json::from_str(&json).map_err(|e| {
        f.invalid(
            KEY,
            format!(
                "not a JSON key file (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    match file.type_.as_deref() {
        Some("service_account") => {}
        Some(other) => {
            return Err(f.invalid(
                KEY,
                format!(
                    "a `{other}` credential; fedsky takes a `service_account` key or workload identity"
                ),
            ));
        }
        None => return Err(f.invalid(KEY, "no `type` field; expected `service_account`")),
    }
    let need = |v: Option<String>, field: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| f.invalid(KEY, format!("the key file has no `{field}`")))
    };
    let private_key = need(file.private_key, "private_key")?;
    if !private_key.contains("-----BEGIN PRIVATE KEY-----") {
        return Err(f.invalid(KEY, "`private_key` is not a PKCS#8 PEM private key"));
    }
    let key = ServiceAccountKey {
        client_email: need(file.client_email, "client_email")?,
        private_key_id: file.private_key_id,
        private_key: Sensitive::new(private_key),
        token_uri: match f.url("GCP_TOKEN_URI")? {
            Some(u) => u,
            None => file.token_uri.unwrap_or_else(|| TOKEN_URI.to_string()),
        },
    };
    Ok(GcpCredentials {
        project: match project {
            Some(p) => p,
            None => need(file.project_id, "project_id")?,
        },
        auth: GcpAuth::ServiceAccountKey(key),
        compute_endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::data;
    use super::super::{Credentials, parse};
    use super::*;
    use crate::Cloud;

    fn gcp(pairs: &[(&str, &str)]) -> Result<GcpCredentials, CredentialsError> {
        match parse(Cloud::Gcp, &data(pairs))? {
            Credentials::Gcp(g) => Ok(g),
            other => panic!("not GCP: {other:?}"),
        }
    }

    fn key_json(private_key: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "fedsky-test",
            "private_key_id": "abc123",
            "private_key": private_key,
            "client_email": "fedsky@fedsky-test.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string()
    }

    #[test]
    fn service_account_key_file() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        let c = gcp(&[(KEY, &key_json(pem))]).expect("parses");
        assert_eq!(c.project, "fedsky-test");
        assert_eq!(c.compute_endpoint, COMPUTE_ENDPOINT);
        let GcpAuth::ServiceAccountKey(k) = &c.auth else {
            panic!("{c:?}")
        };
        assert_eq!(k.client_email, "fedsky@fedsky-test.iam.gserviceaccount.com");
        assert_eq!(k.private_key_id.as_deref(), Some("abc123"));
        assert!(!format!("{c:?}").contains("MIIE"));
        let c = gcp(&[
            (KEY, &key_json(pem)),
            ("GCP_TOKEN_URI", "http://127.0.0.1:9/token"),
            ("GCP_COMPUTE_ENDPOINT", "http://127.0.0.1:9/compute/v1/"),
            ("GCP_PROJECT", "other"),
        ])
        .expect("parses");
        assert_eq!(c.project, "other");
        assert_eq!(c.compute_endpoint, "http://127.0.0.1:9/compute/v1");
        let GcpAuth::ServiceAccountKey(k) = &c.auth else {
            panic!("{c:?}")
        };
        assert_eq!(k.token_uri, "http://127.0.0.1:9/token");
    }

    #[test]
    fn workload_identity_needs_a_project() {
        let c = gcp(&[("GCP_WORKLOAD_IDENTITY", "true"), ("GCP_PROJECT", "p")]).expect("ok");
        assert_eq!(
            c.auth,
            GcpAuth::WorkloadIdentity {
                metadata_url: METADATA_URL.into()
            }
        );
        let e = gcp(&[("GCP_WORKLOAD_IDENTITY", "true")]).expect_err("no project");
        assert!(e.to_string().contains("`GCP_PROJECT`"), "{e}");
    }

    #[test]
    fn bad_key_files_are_named_without_their_content() {
        let e = gcp(&[]).expect_err("missing");
        assert!(e.to_string().contains("`credentials.json`"), "{e}");
        let e = gcp(&[(KEY, "{\"private_key\": \"SECRET")]).expect_err("bad json");
        assert!(e.to_string().contains("not a JSON key file"), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = gcp(&[(KEY, "{\"type\": \"external_account\"}")]).expect_err("type");
        assert!(e.to_string().contains("external_account"), "{e}");
        let e = gcp(&[(KEY, &key_json("not pem"))]).expect_err("pem");
        assert!(e.to_string().contains("PKCS#8"), "{e}");
    }
}
