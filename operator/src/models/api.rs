//! The routes of the model API, an aggregated Kubernetes API (`models.fedsky.dev/v1alpha1`)
//! that the hub's API server proxies to the operator after it has authorised the caller
//! with the caller's own RBAC:
//!
//! | route | RBAC the caller needs | what |
//! | --- | --- | --- |
//! | `GET /apis/models.fedsky.dev/v1alpha1` | (discovery) | the resources |
//! | `GET …/namespaces/{ns}/models/{job}` | `get models` | the archived versions |
//! | `GET …/namespaces/{ns}/models/{job}/content[?version=N]` | `get models/content` | the safetensors bytes of version N (default: the newest) |

use super::archive::{ArchiveError, ModelArchive};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// API group of the model API.
pub const GROUP: &str = "models.fedsky.dev";
/// Its version.
pub const VERSION: &str = "v1alpha1";
/// Header with the served version's number.
pub const VERSION_HEADER: &str = "x-fedsky-model-version";
/// Header with the served version's sha256.
pub const SHA256_HEADER: &str = "x-fedsky-model-sha256";

/// Errors as Kubernetes `Status` objects, which kubectl and client libraries print.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("no model of FederatedJob {namespace}/{job} is retained")]
    NoJob { namespace: String, job: String },
    #[error(
        "model version {version} of FederatedJob {namespace}/{job} is not retained (retained: {retained})"
    )]
    NoVersion {
        namespace: String,
        job: String,
        version: u64,
        retained: String,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, reason) = match &self {
            ApiError::NoJob { .. } | ApiError::NoVersion { .. } => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            ApiError::Archive(ArchiveError::InvalidName { .. }) => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
            ApiError::Archive(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        if code == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "model API");
        }
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.to_string(), "reason": reason,
            "code": code.as_u16(),
        });
        (code, axum::Json(body)).into_response()
    }
}

/// `?version=N`.
#[derive(Debug, Default, Deserialize)]
struct ContentQuery {
    version: Option<u64>,
}

/// The router over `archive`.
pub fn router(archive: Arc<ModelArchive>) -> Router {
    let base = format!("/apis/{GROUP}/{VERSION}");
    Router::new()
        .route(&base, get(discovery))
        .route(
            &format!("{base}/namespaces/{{ns}}/models/{{job}}"),
            get(index),
        )
        .route(
            &format!("{base}/namespaces/{{ns}}/models/{{job}}/content"),
            get(content),
        )
        .with_state(archive)
}

async fn discovery() -> Response {
    let resource = |name: &str| {
        serde_json::json!({
            "name": name, "singularName": if name == "models" { "model" } else { "" },
            "namespaced": true, "kind": "Model", "verbs": ["get"],
        })
    };
    axum::Json(serde_json::json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [resource("models"), resource("models/content")],
    }))
    .into_response()
}

async fn index(
    State(archive): State<Arc<ModelArchive>>,
    Path((ns, job)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let idx = archive
        .index(&ns, &job)?
        .ok_or(ApiError::NoJob { namespace: ns, job })?;
    Ok(axum::Json(idx).into_response())
}

async fn content(
    State(archive): State<Arc<ModelArchive>>,
    Path((ns, job)): Path<(String, String)>,
    Query(q): Query<ContentQuery>,
) -> Result<Response, ApiError> {
    let idx = archive.index(&ns, &job)?.ok_or_else(|| ApiError::NoJob {
        namespace: ns.clone(),
        job: job.clone(),
    })?;
    let Some(v) = idx.find(q.version) else {
        let retained: Vec<String> = idx.versions.iter().map(|v| v.version.to_string()).collect();
        return Err(ApiError::NoVersion {
            namespace: ns,
            job,
            version: q.version.unwrap_or_default(),
            retained: retained.join(", "),
        });
    };
    let path = archive.model_path(&ns, &job, v.version)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|source| ArchiveError::Io {
            op: "open",
            path: path.display().to_string(),
            source,
        })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(v.size_bytes));
    headers.insert(VERSION_HEADER, HeaderValue::from(v.version));
    if let Ok(sha) = HeaderValue::from_str(&v.sha256) {
        headers.insert(SHA256_HEADER, sha);
    }
    if let Ok(d) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{job}-v{}.safetensors\"",
        v.version
    )) {
        headers.insert(header::CONTENT_DISPOSITION, d);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::archive::ArchivedVersion;
    use axum::body::to_bytes;
    use axum::http::Request;
    use sha2::{Digest, Sha256};
    use tower::ServiceExt;

    fn archive_with(versions: &[(u64, &[u8])]) -> (tempfile::TempDir, Arc<ModelArchive>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ModelArchive::open(dir.path()).expect("open");
        for (v, bytes) in versions {
            let info = ArchivedVersion {
                version: *v,
                round: *v,
                sha256: hex::encode(Sha256::digest(bytes)),
                size_bytes: 0,
                metrics: Default::default(),
            };
            a.put("lab", "xray", "uid", info, bytes).expect("put");
        }
        (dir, Arc::new(a))
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = app
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let (parts, body) = resp.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.expect("body");
        (parts.status, parts.headers, bytes.to_vec())
    }

    const BASE: &str = "/apis/models.fedsky.dev/v1alpha1";

    #[tokio::test]
    async fn content_serves_the_newest_or_the_named_version_with_its_sha256() {
        let (_d, a) = archive_with(&[(2, b"two"), (5, b"five")]);
        let (code, headers, body) = get(
            router(a.clone()),
            &format!("{BASE}/namespaces/lab/models/xray/content"),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body, b"five");
        assert_eq!(headers[VERSION_HEADER], "5");
        assert_eq!(
            headers[SHA256_HEADER].to_str().expect("ascii"),
            hex::encode(Sha256::digest(b"five"))
        );
        let (code, _, body) = get(
            router(a),
            &format!("{BASE}/namespaces/lab/models/xray/content?version=2"),
        )
        .await;
        assert_eq!((code, body.as_slice()), (StatusCode::OK, &b"two"[..]));
    }

    #[tokio::test]
    async fn unknown_jobs_and_versions_are_404_statuses_naming_what_is_retained() {
        let (_d, a) = archive_with(&[(3, b"three")]);
        let (code, _, body) = get(
            router(a.clone()),
            &format!("{BASE}/namespaces/lab/models/other"),
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let status: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(status["kind"], "Status");
        let (code, _, body) = get(
            router(a),
            &format!("{BASE}/namespaces/lab/models/xray/content?version=9"),
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let status: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let message = status["message"].as_str().expect("message");
        assert!(
            message.contains("version 9") && message.contains("retained: 3"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn index_and_discovery_are_json() {
        let (_d, a) = archive_with(&[(1, b"one")]);
        let (code, _, body) = get(
            router(a.clone()),
            &format!("{BASE}/namespaces/lab/models/xray"),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let idx: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(idx["versions"][0]["sizeBytes"], 3);
        let (code, _, body) = get(router(a), BASE).await;
        assert_eq!(code, StatusCode::OK);
        let list: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(list["resources"][1]["name"], "models/content");
    }
}
