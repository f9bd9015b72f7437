//! The connection to the cluster, as the user's kubeconfig says: the plugin holds no
//! credentials of its own, so the API server judges every request by the user's RBAC.

use std::path::Path;

use fedsky_crds::{AggregatorPlacement, FederatedJob};
use http_body_util::BodyExt;
use kube::api::Api;
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Config};

use super::GlobalArgs;
use super::error::{Access, PluginError};

/// The API group of fedsky's custom resources.
pub const FL_GROUP: &str = "fl.fedsky.dev";

/// A client and the namespace commands act in.
#[derive(Clone)]
pub struct Cluster {
    /// The user's client.
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Loads the configuration the way kubectl does: `--kubeconfig`, else `$KUBECONFIG`,
/// else `~/.kube/config`, with `--context` or the current context; with neither flag and
/// no kubeconfig at all, the pod's service account (the plugin run inside a cluster).
pub async fn connect(args: &GlobalArgs) -> Result<Cluster, PluginError> {
    let mut config = match (&args.kubeconfig, &args.context) {
        (None, None) => Config::infer()
            .await
            .map_err(|source| PluginError::NoConfig { source })?,
        (path, context) => {
            let kubeconfig_error = |source| PluginError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kubeconfig = match path {
                Some(p) => Kubeconfig::read_from(p),
                None => Kubeconfig::read(),
            }
            .map_err(kubeconfig_error)?;
            let options = KubeConfigOptions {
                context: context.clone(),
                ..KubeConfigOptions::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(kubeconfig_error)?
        }
    };
    // kube's default retries a 429/503/504 up to 15 times with backoff to 1000 s, which
    // suits a controller; a person at a terminal wants the error now, as kubectl gives it
    // (an unavailable model API would otherwise hang a download for minutes).
    config.default_retry = false;
    let namespace = match &args.namespace {
        Some(ns) => valid_name("namespace", ns)?.to_string(),
        None => config.default_namespace.clone(),
    };
    let client = Client::try_from(config).map_err(|e| PluginError::Client {
        source: Box::new(e),
    })?;
    Ok(Cluster { client, namespace })
}

/// Checks that `value` can be an object name or namespace, so that it can go into a URL
/// path unescaped and a typo gets a clear message rather than a 404.
pub fn valid_name<'a>(what: &'static str, value: &'a str) -> Result<&'a str, PluginError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value
            .bytes()
            .next()
            .zip(value.bytes().last())
            .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if ok {
        Ok(value)
    } else {
        Err(PluginError::InvalidName {
            what,
            value: value.to_string(),
        })
    }
}

/// `get` of a FederatedJob.
pub fn job_access(namespace: &str, name: &str) -> Access {
    Access {
        verb: "get",
        group: FL_GROUP,
        resource: "federatedjobs",
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// `get` of an AggregatorPlacement.
pub fn placement_access(namespace: &str, name: &str) -> Access {
    Access {
        verb: "get",
        group: FL_GROUP,
        resource: "aggregatorplacements",
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// Reads a FederatedJob.
pub async fn get_job(cluster: &Cluster, name: &str) -> Result<FederatedJob, PluginError> {
    let access = job_access(&cluster.namespace, valid_name("name", name)?);
    Api::<FederatedJob>::namespaced(cluster.client.clone(), &cluster.namespace)
        .get(name)
        .await
        .map_err(|e| typed_error(access, "FederatedJob", e))
}

/// Reads an AggregatorPlacement.
pub async fn get_placement(
    cluster: &Cluster,
    name: &str,
) -> Result<AggregatorPlacement, PluginError> {
    let access = placement_access(&cluster.namespace, valid_name("name", name)?);
    Api::<AggregatorPlacement>::namespaced(cluster.client.clone(), &cluster.namespace)
        .get(name)
        .await
        .map_err(|e| typed_error(access, "AggregatorPlacement", e))
}

/// Maps a typed request's failure to what the user can do about it.
pub fn typed_error(access: Access, kind: &'static str, e: kube::Error) -> PluginError {
    match e {
        kube::Error::Api(status) => status_error(access, kind, &status),
        other => PluginError::Transport {
            access,
            source: Box::new(other),
        },
    }
}

/// Maps an API server `Status` to an error. A 404 whose details name the object means
/// the object is missing; without details the resource itself is not served (no CRD).
pub fn status_error(access: Access, kind: &'static str, status: &Status) -> PluginError {
    let message = status.message.clone();
    match status.code {
        401 => PluginError::Unauthorized { access, message },
        403 => PluginError::Forbidden { access, message },
        404 if status.details.as_ref().is_some_and(|d| !d.name.is_empty()) => {
            PluginError::NotFound {
                kind,
                name: access.name.into(),
                namespace: access.namespace.into(),
            }
        }
        404 => PluginError::NotServed {
            resource: access.resource,
            group: access.group,
            message,
        },
        code => PluginError::Http {
            access,
            code,
            message,
        },
    }
}

/// A raw request's refusal: the HTTP code and the server's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status code.
    pub code: u16,
    /// The `Status` message, else the body's text (shortened).
    pub message: String,
}

/// Error bodies are `Status` objects or short text; more than this is not worth showing.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Sends a `GET` to `path` (with its query) through the user's client and returns the
/// response when it is a success; otherwise the refusal, for the caller to name.
pub async fn get_raw(
    cluster: &Cluster,
    path_and_query: &str,
    accept: &str,
    access: &Access,
) -> Result<Result<http::Response<Body>, Refusal>, PluginError> {
    let request = http::Request::get(path_and_query)
        .header(http::header::ACCEPT, accept)
        .body(Body::empty())
        .map_err(|e| PluginError::Transport {
            access: access.clone(),
            source: Box::new(kube::Error::HttpError(e)),
        })?;
    let response = cluster
        .client
        .send(request)
        .await
        .map_err(|e| PluginError::Transport {
            access: access.clone(),
            source: Box::new(e),
        })?;
    if response.status().is_success() {
        return Ok(Ok(response));
    }
    let code = response.status().as_u16();
    let body = read_limited(response.into_body(), ERROR_BODY_LIMIT).await;
    Ok(Err(Refusal {
        code,
        message: refusal_message(&body),
    }))
}

/// The body's first `limit` bytes; a broken connection just ends it, since this is only
/// read to explain an error that is already known.
async fn read_limited(mut body: Body, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    out.truncate(limit);
    out
}

/// The `message` of a `Status` body, else the body as text (one line, shortened).
pub fn refusal_message(body: &[u8]) -> String {
    if let Ok(status) = serde_json::from_slice::<Status>(body)
        && !status.message.is_empty()
    {
        return status.message;
    }
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "no message".into()
    } else if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}

/// The file a download is written to before it is verified: `FILE.tmp` next to `FILE`,
/// so the final rename stays on one filesystem and is atomic.
pub fn temp_path(output: &Path) -> std::path::PathBuf {
    let mut name = output
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    output.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_names() {
        assert!(valid_name("name", "covid-xray").is_ok());
        assert!(valid_name("name", "a.b-1").is_ok());
        for bad in ["", "Covid", "-a", "a-", "a/b", "a?version=1", "a b"] {
            assert!(valid_name("name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refusal_message_prefers_the_status_message() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"models.models.fedsky.dev \"j\" is forbidden","reason":"Forbidden","code":403}"#;
        assert_eq!(
            refusal_message(body),
            "models.models.fedsky.dev \"j\" is forbidden"
        );
        assert_eq!(
            refusal_message(b"service\nunavailable\n"),
            "service unavailable"
        );
        assert_eq!(refusal_message(b""), "no message");
    }

    #[test]
    fn a_404_with_details_is_a_missing_object_without_them_a_missing_crd() {
        let access = job_access("ns", "j");
        let mut status = Status::failure("federatedjobs.fl.fedsky.dev \"j\" not found", "NotFound")
            .with_code(404);
        assert!(matches!(
            status_error(access.clone(), "FederatedJob", &status),
            PluginError::NotServed { .. }
        ));
        status.details = Some(
            serde_json::from_value(serde_json::json!({"name": "j", "kind": "federatedjobs"}))
                .expect("details"),
        );
        let e = status_error(access.clone(), "FederatedJob", &status);
        assert_eq!(
            e.to_string(),
            "FederatedJob \"j\" not found in namespace ns"
        );
        let forbidden = Status::failure("User \"u\" cannot get ...", "Forbidden").with_code(403);
        let e = status_error(access, "FederatedJob", &forbidden).to_string();
        assert!(
            e.contains(
                "grant `get` on `federatedjobs` in API group `fl.fedsky.dev` in namespace `ns`"
            ),
            "{e}"
        );
    }

    #[test]
    fn temp_file_sits_next_to_the_output() {
        assert_eq!(
            temp_path(Path::new("/x/model.safetensors")),
            Path::new("/x/model.safetensors.tmp")
        );
        assert_eq!(temp_path(Path::new("m")), Path::new("m.tmp"));
    }
}
