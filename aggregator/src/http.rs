//! The model manager HTTP API, the status endpoint the operator reads,
//! Prometheus metrics and health checks.
//!
//! | route | what | who may call |
//! | --- | --- | --- |
//! | `GET /v1/status` | phase, round, participants, last metrics | job certificate, job token |
//! | `GET /v1/versions` | every stored version (see `--keep-versions`): round, metrics, sha256, size, time | job certificate, job token |
//! | `GET /v1/versions/{v}` | one version's info; `v` is a number, `latest` or `best` | job certificate, job token |
//! | `GET /v1/versions/{v}/model` | its safetensors bytes | job certificate, job token |
//! | `GET /v1/participants` | the participants admitted: `{"participants": [names]}`, `null` while no list is set (anyone with a job certificate) | job certificate, job token |
//! | `PUT /v1/participants` | sets that list, same body; registered participants left out are revoked at once; answers the list and `revoked` | operator certificate only (`403` for anyone else) |
//! | `GET /metrics` | Prometheus text format | job certificate, job token, scrape token |
//! | `GET /healthz`, `GET /readyz` | liveness and readiness | job certificate, job token |
//!
//! The port serves TLS with the gRPC port's certificate (plain HTTP only with
//! `--insecure-plaintext`); "job certificate" is a client certificate from the job's CA,
//! "operator certificate" one whose CN is `fedsky-operator` ([`http_auth::OPERATOR_CN`]),
//! "job token" `Authorization: Bearer <job token>`, "scrape token" the
//! `--metrics-token-file` one. Everything else gets `401` (see [`crate::http_auth`]).
//! The job token cannot set the list: every participant holds it, revoked ones too.
//!
//! `best` takes `?metric=NAME` (default `eval_accuracy`) and `&order=max|min`
//! (default `min` for names containing `loss`, else `max`).

use std::collections::BTreeSet;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::coordinator::{Coordinator, CoreError};
use crate::http_auth::{self, Caller, HttpAuth};
use crate::identity::validate_id;
use crate::round::ParticipantId;
use crate::store::VersionInfo;
pub use crate::store::best_version;

/// Errors of the HTTP API, each a status code and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Unknown version or no version has the metric.
    #[error("{0}")]
    NotFound(String),
    /// A malformed selector, query or body.
    #[error("{0}")]
    BadRequest(String),
    /// An admitted caller that may not use this route.
    #[error("{0}")]
    Forbidden(String),
    /// Reading the model failed.
    #[error("reading the model failed: {0}")]
    Core(#[source] CoreError),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let code = match &self {
            HttpError::NotFound(_) | HttpError::Core(CoreError::VersionNotFound { .. }) => {
                StatusCode::NOT_FOUND
            }
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::Core(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = serde_json::json!({ "error": self.to_string() });
        (code, axum::Json(body)).into_response()
    }
}

/// Most names `PUT /v1/participants` takes: far above any job, low enough that a body
/// cannot make the list a memory problem.
pub const MAX_ALLOWED: usize = 10_000;

/// The body of `PUT /v1/participants` and the answer to `GET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantList {
    /// Participant names (certificate CNs); `null` (only in answers): no list is set, anyone
    /// with a certificate from the job's CA is admitted.
    pub participants: Option<BTreeSet<String>>,
}

/// The answer to `PUT /v1/participants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantsSet {
    /// The list now in force.
    pub participants: BTreeSet<String>,
    /// Registered participants this call removed.
    pub revoked: Vec<String>,
}

/// Query of `best`.
#[derive(Debug, Default, Deserialize)]
pub struct BestQuery {
    /// Metric name (`eval_accuracy`, `train_loss`, ...).
    pub metric: Option<String>,
    /// `max` or `min`.
    pub order: Option<String>,
}

/// The router, every route (and the fallback) behind `auth`; serve it with `axum::serve`
/// and connect info [`http_auth::Peer`], which tells the middleware about the client
/// certificate.
pub fn router(core: Coordinator, auth: HttpAuth) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/participants", get(participants).put(set_participants))
        .route("/v1/versions", get(versions))
        .route("/v1/versions/{selector}", get(version))
        .route("/v1/versions/{selector}/model", get(model))
        .with_state(core)
        .layer(middleware::from_fn_with_state(auth, http_auth::require))
}

async fn metrics(State(core): State<Coordinator>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        core.metrics().encode(),
    )
        .into_response()
}

async fn status(State(core): State<Coordinator>) -> Response {
    axum::Json(core.status()).into_response()
}

async fn participants(State(core): State<Coordinator>) -> Response {
    let list = ParticipantList {
        participants: core
            .allowed()
            .map(|set| set.into_iter().map(|id| id.0).collect()),
    };
    Json(list).into_response()
}

/// The names of a `PUT /v1/participants` body, each a valid participant id.
fn parse_list(body: &[u8]) -> Result<BTreeSet<ParticipantId>, HttpError> {
    let list: ParticipantList = serde_json::from_slice(body).map_err(|e| {
        HttpError::BadRequest(format!(
            "the body must be {{\"participants\": [names]}}: {e}"
        ))
    })?;
    let names = list.participants.ok_or_else(|| {
        HttpError::BadRequest("participants must be a list of names, not null".into())
    })?;
    if names.len() > MAX_ALLOWED {
        return Err(HttpError::BadRequest(format!(
            "{} participants listed; at most {MAX_ALLOWED} are accepted",
            names.len()
        )));
    }
    names
        .iter()
        .map(|n| validate_id(n).map_err(|e| HttpError::BadRequest(e.to_string())))
        .collect()
}

async fn set_participants(
    State(core): State<Coordinator>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Response, HttpError> {
    // Checked before the body is parsed, so a participant learns nothing from the
    // answer but that it may not call this.
    match caller.as_ref().map(|Extension(c)| c) {
        Some(c) if c.is_operator() => {}
        other => {
            let who = other.map_or_else(|| "anonymous".to_string(), Caller::describe);
            tracing::warn!(caller = %who, "refused PUT /v1/participants: not the operator");
            return Err(HttpError::Forbidden(format!(
                "only the operator's certificate ({}) may set the participant list",
                http_auth::OPERATOR_CN
            )));
        }
    }
    let allowed = parse_list(&body)?;
    let participants = allowed.iter().map(|id| id.0.clone()).collect();
    let revoked = core.set_allowed(allowed);
    tracing::info!(revoked = ?revoked, "participant list set by the operator");
    Ok(Json(ParticipantsSet {
        participants,
        revoked: revoked.into_iter().map(|id| id.0).collect(),
    })
    .into_response())
}

async fn versions(State(core): State<Coordinator>) -> Response {
    axum::Json(core.versions()).into_response()
}

fn resolve(core: &Coordinator, selector: &str, q: &BestQuery) -> Result<VersionInfo, HttpError> {
    let versions = core.versions();
    match selector {
        "latest" => versions
            .last()
            .cloned()
            .ok_or_else(|| HttpError::NotFound("no model version yet".into())),
        "best" => {
            let metric = q.metric.as_deref().unwrap_or("eval_accuracy");
            let maximise = match q.order.as_deref() {
                Some("max") => true,
                Some("min") => false,
                Some(other) => {
                    return Err(HttpError::BadRequest(format!(
                        "order must be max or min, got {other:?}"
                    )));
                }
                None => !metric.contains("loss"),
            };
            best_version(&versions, metric, maximise)
                .ok_or_else(|| HttpError::NotFound(format!("no version has the metric {metric:?}")))
        }
        n => {
            let v: u64 = n.parse().map_err(|_| {
                HttpError::BadRequest(format!(
                    "version must be a number, latest or best; got {n:?}"
                ))
            })?;
            versions
                .into_iter()
                .find(|i| i.version == v)
                .ok_or_else(|| HttpError::NotFound(format!("model version {v} does not exist")))
        }
    }
}

async fn version(
    State(core): State<Coordinator>,
    Path(selector): Path<String>,
    Query(q): Query<BestQuery>,
) -> Result<Response, HttpError> {
    Ok(axum::Json(resolve(&core, &selector, &q)?).into_response())
}

async fn model(
    State(core): State<Coordinator>,
    Path(selector): Path<String>,
    Query(q): Query<BestQuery>,
) -> Result<Response, HttpError> {
    let info = resolve(&core, &selector, &q)?;
    let blob = core
        .model(Some(info.version))
        .await
        .map_err(HttpError::Core)?;
    let disposition = format!(
        "attachment; filename=\"{}-v{}.safetensors\"",
        core.job().name,
        blob.version
    );
    let mut resp = blob.bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in [
        (header::CONTENT_DISPOSITION, disposition),
        (header::ETAG, format!("\"{}\"", blob.sha256)),
        (
            header::HeaderName::from_static("x-fedsky-sha256"),
            blob.sha256,
        ),
        (
            header::HeaderName::from_static("x-fedsky-version"),
            blob.version.to_string(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(resp)
}
