//! A thin client of MLflow's REST API (`/api/2.0/mlflow/...`) and of its tracking
//! server's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`): the calls the
//! operator needs, each one request, answers decoded into the few fields it reads.
//! Decisions live in [`super::plan`]; this module only talks.

use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

/// Longest wait for one REST call.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a model upload (hundreds of MB for a large model).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// MLflow's error code for a missing experiment, run or model.
pub const RESOURCE_DOES_NOT_EXIST: &str = "RESOURCE_DOES_NOT_EXIST";
/// MLflow's error code for a name that is taken.
pub const RESOURCE_ALREADY_EXISTS: &str = "RESOURCE_ALREADY_EXISTS";
/// The path of the artifact proxy on a tracking server.
const ARTIFACTS_ROOT: &str = "api/2.0/mlflow-artifacts/artifacts";
/// The scheme of artifact locations the tracking server proxies.
const PROXIED_SCHEME: &str = "mlflow-artifacts:";
/// Most characters of an error body kept in a message.
const MAX_BODY_IN_MESSAGE: usize = 300;

/// How requests authenticate, as MLflow's clients do from `MLFLOW_TRACKING_USERNAME` and
/// `MLFLOW_TRACKING_PASSWORD` (basic) or `MLFLOW_TRACKING_TOKEN` (bearer). `Debug` shows
/// none of the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "Auth::None",
            Self::Basic { .. } => "Auth::Basic",
            Self::Bearer(_) => "Auth::Bearer",
        })
    }
}

/// Why a call to the tracking server failed.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// `spec.tracking.mlflow.trackingUri`, or the authority of a run's artifact location,
    /// is not a URL reqwest can call.
    #[error("{uri:?} is not a valid URL")]
    BadUri {
        /// The URI.
        uri: String,
        /// The parser's error (`url::ParseError`, which reqwest does not re-export).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer (connection refused, DNS, TLS, timeout).
    #[error("no answer from the MLflow tracking server at {url}")]
    Unreachable {
        /// What was called.
        url: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("MLflow {endpoint}: HTTP {status} {code}: {message}{hint}")]
    Api {
        /// The call, such as `runs/create`.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` (empty when the body is not MLflow's JSON).
        code: String,
        /// MLflow's `message`, or the start of the body.
        message: String,
        /// What the user can do about `status`, if anything (see [`MlflowError::api`]).
        hint: &'static str,
    },
    /// The answer was not what MLflow sends.
    #[error("MLflow {endpoint}: unexpected answer")]
    Decode {
        /// The call.
        endpoint: String,
        /// The decoder's error.
        #[source]
        source: reqwest::Error,
    },
    /// The run's artifacts are not behind the tracking server's artifact proxy, so the
    /// operator (which talks to the tracking server only) cannot upload there.
    #[error(
        "the run's artifact location {artifact_uri} is not served through the tracking server (mlflow-artifacts:); start `mlflow server` with artifact serving (its default, not --no-serve-artifacts) and use an experiment whose artifact location it chose"
    )]
    ArtifactsNotProxied {
        /// The run's `artifact_uri`.
        artifact_uri: String,
    },
}

/// What a user can do about an HTTP status.
fn hint(status: u16) -> &'static str {
    match status {
        401 => {
            " (the tracking server wants credentials: set or fix the Secret of spec.tracking.mlflow.credentialsSecretRef)"
        }
        403 => {
            " (the credentials lack permission: the user needs to create experiments, runs and registered models, or EDIT on existing ones)"
        }
        _ => "",
    }
}

impl MlflowError {
    /// The error of an answer with HTTP `status`, with what a user can do about it.
    pub fn api(endpoint: &str, status: u16, code: String, message: String) -> Self {
        Self::Api {
            endpoint: endpoint.to_string(),
            status,
            code,
            message,
            hint: hint(status),
        }
    }

    /// MLflow's error code, if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }
}

/// A metric value; MLflow takes `NaN` and infinities as strings (protobuf's JSON form),
/// so a diverged loss is logged rather than refused.
fn finite_or_word<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v > 0.0 {
        s.serialize_str("Infinity")
    } else {
        s.serialize_str("-Infinity")
    }
}

/// One metric value at a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Name.
    pub key: String,
    /// Value.
    #[serde(serialize_with = "finite_or_word")]
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Step: the round.
    pub step: i64,
}

/// A param or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// Name.
    pub key: String,
    /// Value.
    pub value: String,
}

/// An experiment, as far as the operator reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    /// Its ID.
    pub experiment_id: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// A run, as far as the operator reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    /// Identity and state.
    pub info: RunInfo,
    /// Latest metrics and params.
    #[serde(default)]
    pub data: RunData,
}

/// A run's identity and state.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    /// Its ID.
    pub run_id: String,
    /// Where its artifacts are, such as `mlflow-artifacts:/1/<run id>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// A run's latest metrics (one per key) and params.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    /// The latest value of each metric.
    #[serde(default)]
    pub metrics: Vec<LatestMetric>,
    /// Params.
    #[serde(default)]
    pub params: Vec<Param>,
}

/// The latest value of a metric (only its step is read).
#[derive(Debug, Clone, Deserialize)]
pub struct LatestMetric {
    /// Name.
    pub key: String,
    /// Step of the latest value.
    #[serde(default)]
    pub step: i64,
}

/// A registered model's version.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number, as MLflow sends it (a string).
    pub version: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct GetExperiment {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct CreateExperiment {
    experiment_id: String,
}

#[derive(Deserialize)]
struct OneRun {
    run: Run,
}

#[derive(Deserialize)]
struct SearchRuns {
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct OneModelVersion {
    model_version: ModelVersion,
}

#[derive(Deserialize)]
struct SearchModelVersions {
    #[serde(default)]
    model_versions: Vec<ModelVersion>,
}

/// The start of an error body, for a message.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(MAX_BODY_IN_MESSAGE) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

/// Maps a URL parser's error about `uri` to [`MlflowError::BadUri`].
fn bad_uri<E: std::error::Error + Send + Sync + 'static>(
    uri: &str,
) -> impl FnOnce(E) -> MlflowError + '_ {
    move |source| MlflowError::BadUri {
        uri: uri.to_string(),
        source: Box::new(source),
    }
}

/// The URL that uploads `path` into the artifacts at `artifact_uri` through the tracking
/// server at `tracking_uri`, as MLflow's own client resolves it: the tracking server's
/// scheme, the authority in the artifact URI if it names one (else the tracking
/// server's), the tracking server's path prefix, then the artifact proxy's route and the
/// artifact's path.
pub fn artifact_url(
    tracking_uri: &str,
    artifact_uri: &str,
    path: &str,
) -> Result<Url, MlflowError> {
    let not_proxied = || MlflowError::ArtifactsNotProxied {
        artifact_uri: artifact_uri.to_string(),
    };
    let rest = artifact_uri
        .strip_prefix(PROXIED_SCHEME)
        .ok_or_else(not_proxied)?;
    let (authority, location) = match rest.strip_prefix("//") {
        Some(after) => after.split_at(after.find('/').unwrap_or(after.len())),
        None => ("", rest),
    };
    let mut url = Url::parse(tracking_uri).map_err(bad_uri(tracking_uri))?;
    if !authority.is_empty() {
        let with = Url::parse(&format!("{}://{authority}/", url.scheme()))
            .map_err(bad_uri(artifact_uri))?;
        url.set_host(with.host_str())
            .map_err(bad_uri(artifact_uri))?;
        // Only a scheme without ports refuses one; http and https have them.
        url.set_port(with.port()).map_err(|()| not_proxied())?;
    }
    let joined = [url.path(), ARTIFACTS_ROOT, location, path]
        .iter()
        .flat_map(|part| part.split('/'))
        .filter(|segment| !segment.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    url.set_path(&format!("/{joined}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// A client of one tracking server, over the caller's reqwest client.
#[derive(Debug, Clone)]
pub struct Mlflow<'a> {
    http: &'a reqwest::Client,
    base: String,
    auth: Auth,
}

impl<'a> Mlflow<'a> {
    /// A client of the tracking server at `tracking_uri` (no trailing `/`).
    pub fn new(http: &'a reqwest::Client, tracking_uri: &str, auth: Auth) -> Self {
        Self {
            http,
            base: tracking_uri.trim_end_matches('/').to_string(),
            auth,
        }
    }

    fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
            Auth::Bearer(token) => req.bearer_auth(token),
        }
    }

    /// Sends `req` for `endpoint`; an answer other than 2xx becomes [`MlflowError::Api`].
    async fn send(
        &self,
        endpoint: &str,
        url: &str,
        req: RequestBuilder,
    ) -> Result<reqwest::Response, MlflowError> {
        let resp = self
            .authorize(req)
            .send()
            .await
            .map_err(|source| MlflowError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) if !e.error_code.is_empty() || !e.message.is_empty() => {
                (e.error_code, excerpt(&e.message))
            }
            _ => (String::new(), excerpt(&body)),
        };
        Err(MlflowError::api(endpoint, status.as_u16(), code, message))
    }

    /// Calls REST endpoint `endpoint` (`experiments/get-by-name`, ...) with a query (GET)
    /// or a JSON body (POST) and decodes the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .timeout(REQUEST_TIMEOUT)
            .query(query);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(endpoint, &url, req)
            .await?
            .json()
            .await
            .map_err(|source| MlflowError::Decode {
                endpoint: endpoint.to_string(),
                source,
            })
    }

    /// The experiment named `name`, `None` if there is none.
    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, MlflowError> {
        let got = self
            .call::<GetExperiment>(
                Method::GET,
                "experiments/get-by-name",
                &[("experiment_name", name)],
                None,
            )
            .await;
        match got {
            Ok(e) => Ok(Some(e.experiment)),
            Err(e) if e.code() == Some(RESOURCE_DOES_NOT_EXIST) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates experiment `name`; returns its ID.
    pub async fn create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        let body = serde_json::json!({ "name": name });
        let created: CreateExperiment = self
            .call(Method::POST, "experiments/create", &[], Some(&body))
            .await?;
        Ok(created.experiment_id)
    }

    /// The active runs of experiment `experiment_id` matching `filter` (at most 2: one is
    /// expected).
    pub async fn search_runs(
        &self,
        experiment_id: &str,
        filter: &str,
    ) -> Result<Vec<Run>, MlflowError> {
        let body = serde_json::json!({
            "experiment_ids": [experiment_id],
            "filter": filter,
            "run_view_type": "ACTIVE_ONLY",
            "max_results": 2,
        });
        let found: SearchRuns = self
            .call(Method::POST, "runs/search", &[], Some(&body))
            .await?;
        Ok(found.runs)
    }

    /// Creates a run in `experiment_id`.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[(String, String)],
    ) -> Result<Run, MlflowError> {
        let tags: Vec<Param> = tags
            .iter()
            .map(|(key, value)| Param {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        let body = serde_json::json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time_ms,
            "tags": tags,
        });
        let created: OneRun = self
            .call(Method::POST, "runs/create", &[], Some(&body))
            .await?;
        Ok(created.run)
    }

    /// Run `run_id` with its latest metrics and params.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        let got: OneRun = self
            .call(Method::GET, "runs/get", &[("run_id", run_id)], None)
            .await?;
        Ok(got.run)
    }

    /// Logs `metrics` and `params` to run `run_id` in one request.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({
            "run_id": run_id,
            "metrics": metrics,
            "params": params,
        });
        self.call::<serde::de::IgnoredAny>(Method::POST, "runs/log-batch", &[], Some(&body))
            .await?;
        Ok(())
    }

    /// Ends run `run_id` with `status` (`FINISHED`, `FAILED`) at `end_time_ms`.
    pub async fn end_run(
        &self,
        run_id: &str,
        status: &str,
        end_time_ms: i64,
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({
            "run_id": run_id,
            "status": status,
            "end_time": end_time_ms,
        });
        self.call::<serde::de::IgnoredAny>(Method::POST, "runs/update", &[], Some(&body))
            .await?;
        Ok(())
    }

    /// Uploads `bytes` as `path` into the artifacts at `artifact_uri` (a run's), through
    /// the tracking server's artifact proxy. The same upload again replaces the file.
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let url = artifact_url(&self.base, artifact_uri, path)?;
        let req = self
            .http
            .put(url.clone())
            .timeout(UPLOAD_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.send("mlflow-artifacts/artifacts", url.as_str(), req)
            .await?;
        Ok(())
    }

    /// Creates registered model `name`; one that exists already is fine.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<(), MlflowError> {
        let body = serde_json::json!({ "name": name });
        match self
            .call::<serde::de::IgnoredAny>(
                Method::POST,
                "registered-models/create",
                &[],
                Some(&body),
            )
            .await
        {
            Err(e) if e.code() != Some(RESOURCE_ALREADY_EXISTS) => Err(e),
            _ => Ok(()),
        }
    }

    /// The model versions created from run `run_id`.
    pub async fn model_versions_of_run(
        &self,
        run_id: &str,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        // Run IDs are hex: nothing to escape in the quoted string.
        let filter = format!("run_id = '{run_id}'");
        let found: SearchModelVersions = self
            .call(
                Method::GET,
                "model-versions/search",
                &[("filter", filter.as_str())],
                None,
            )
            .await?;
        Ok(found.model_versions)
    }

    /// Creates a version of registered model `name` from `source` (inside run `run_id`'s
    /// artifacts).
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Param],
    ) -> Result<ModelVersion, MlflowError> {
        let body = serde_json::json!({
            "name": name,
            "source": source,
            "run_id": run_id,
            "tags": tags,
        });
        let created: OneModelVersion = self
            .call(Method::POST, "model-versions/create", &[], Some(&body))
            .await?;
        Ok(created.model_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_uploaded_through_the_tracking_servers_proxy_as_mlflow_resolves_them() {
        let url = |t: &str, a: &str| {
            artifact_url(t, a, "model/model.safetensors")
                .map(|u| u.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            url("http://127.0.0.1:5000", "mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Ok(
                "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.safetensors"
            )
        );
        // A path prefix on the tracking server is kept; a trailing slash is not doubled.
        assert_eq!(
            url(
                "https://example.org/mlflow/",
                "mlflow-artifacts:///1/abc/artifacts/"
            )
            .as_deref(),
            Ok(
                "https://example.org/mlflow/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.safetensors"
            )
        );
        // An authority in the artifact URI is where the artifacts are served.
        assert_eq!(
            url(
                "https://mlflow.example.org",
                "mlflow-artifacts://artifacts.example.org:8443/1/abc/artifacts"
            )
            .as_deref(),
            Ok(
                "https://artifacts.example.org:8443/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.safetensors"
            )
        );
        let refused = url("http://mlflow", "s3://bucket/1/abc/artifacts").expect_err("s3");
        assert!(refused.contains("s3://bucket/1/abc/artifacts"), "{refused}");
        assert!(refused.contains("--no-serve-artifacts"), "{refused}");
    }

    #[test]
    fn nan_and_infinite_metrics_are_sent_as_protobuf_words() {
        let m = |value: f64| {
            serde_json::to_value(Metric {
                key: "loss".into(),
                value,
                timestamp: 1,
                step: 2,
            })
            .expect("json")["value"]
                .clone()
        };
        assert_eq!(m(0.5), serde_json::json!(0.5));
        assert_eq!(m(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(m(f64::INFINITY), serde_json::json!("Infinity"));
        assert_eq!(m(f64::NEG_INFINITY), serde_json::json!("-Infinity"));
    }

    #[test]
    fn api_errors_say_what_to_do_about_credentials() {
        let e = MlflowError::api(
            "runs/create",
            401,
            String::new(),
            "You are not authenticated.".into(),
        );
        let msg = e.to_string();
        assert!(msg.contains("HTTP 401"), "{msg}");
        assert!(msg.contains("credentialsSecretRef"), "{msg}");
        assert_eq!(e.code(), None);
        let e = MlflowError::api(
            "registered-models/create",
            400,
            RESOURCE_ALREADY_EXISTS.into(),
            "exists".into(),
        );
        assert_eq!(e.code(), Some(RESOURCE_ALREADY_EXISTS));
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), MAX_BODY_IN_MESSAGE + 1);
        assert_eq!(excerpt(" short \n"), "short");
    }

    #[test]
    fn auth_debug_hides_the_secrets() {
        let basic = Auth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer("tok-123".into())).contains("tok-123"));
    }
}
