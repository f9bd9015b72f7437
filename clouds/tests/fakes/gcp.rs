//! FAKE Google Cloud (no emulator we could run checks what these tests need; see
//! `mod.rs`): the OAuth 2.0 token endpoint of a service-account key (RFC 7523 JWT
//! bearer, RS256 signature verified with the key's public part, `iss`/`aud`/`exp`
//! checked) and the Compute Engine v1 calls fedsky makes — regions.get,
//! instances.insert/get/delete/aggregatedList (with `labels.K = "V"` filters),
//! firewalls.insert/get/patch/delete and zoneOperations.get — with the status codes and
//! error bodies of the REST reference.

use super::{form, serve};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the fake holds; tests read and switch it.
#[derive(Debug, Default)]
pub struct State {
    /// The only project.
    pub project: String,
    /// The service account whose key signs assertions.
    pub client_email: String,
    /// Its public key (PKCS#1 RSAPublicKey DER).
    pub public_key: Vec<u8>,
    /// Issued access tokens.
    pub tokens: BTreeSet<String>,
    /// Region → zones.
    pub regions: BTreeMap<String, Vec<String>>,
    /// (zone, name) → instance.
    pub instances: BTreeMap<(String, String), Value>,
    /// Firewall rules by name.
    pub firewalls: BTreeMap<String, Value>,
    /// Operations by name.
    pub operations: BTreeMap<String, Value>,
    /// Compute calls to answer `503` before doing anything.
    pub fail_next: usize,
    /// Do the next insert, then answer `503` as if the answer were lost.
    pub lose_next_insert: bool,
    /// Instances ever created.
    pub created: usize,
    seq: u64,
}

/// A running fake.
#[derive(Debug, Clone)]
pub struct Fake {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    /// `http://addr/token`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// `http://addr/compute/v1`.
    pub fn compute(&self) -> String {
        format!("http://{}/compute/v1", self.addr)
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lock")
    }
}

/// Starts the fake for `project`, trusting the key `client_email` signs with, whose
/// public part is `public_key`.
pub async fn start(project: &str, client_email: &str, public_key: Vec<u8>) -> Fake {
    let state = Arc::new(Mutex::new(State {
        project: project.into(),
        client_email: client_email.into(),
        public_key,
        regions: BTreeMap::from([
            (
                "europe-west1".to_string(),
                vec![
                    "europe-west1-d".into(),
                    "europe-west1-b".into(),
                    "europe-west1-c".into(),
                ],
            ),
            (
                "us-central1".to_string(),
                vec!["us-central1-a".into(), "us-central1-f".into()],
            ),
        ]),
        ..State::default()
    }));
    let s = state.clone();
    let router = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move { handle(&s, &method, &uri, &headers, &body) }
        },
    );
    let addr = serve(router).await;
    Fake { addr, state }
}

fn error(code: u16, message: &str, reason: &str) -> Response {
    let status = StatusCode::from_u16(code).expect("status");
    (
        status,
        axum::Json(json!({ "error": {
            "code": code, "message": message,
            "errors": [{ "message": message, "domain": "global", "reason": reason }],
        }})),
    )
        .into_response()
}

fn handle(
    s: &Mutex<State>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut st = s.lock().expect("lock");
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let path = uri.path();
    if path == "/token" && method == Method::POST {
        return token(&mut st, &host, body);
    }
    let Some(rest) = path.strip_prefix("/compute/v1/projects/") else {
        return error(404, "Not Found", "notFound");
    };
    let authorised = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| st.tokens.contains(t));
    if !authorised {
        return error(
            401,
            "Request is missing required authentication credential. Expected OAuth 2 access token.",
            "required",
        );
    }
    if st.fail_next > 0 {
        st.fail_next -= 1;
        return error(503, "Backend Error", "backendError");
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts[0] != st.project {
        return error(
            403,
            &format!("Project {} not found or not allowed", parts[0]),
            "forbidden",
        );
    }
    let query: BTreeMap<String, String> = form(uri.query().unwrap_or(""));
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let base = format!("http://{host}/compute/v1/projects/{}", st.project);
    match (method.clone(), &parts[1..]) {
        (Method::GET, ["regions", region]) => match st.regions.get(*region) {
            Some(zones) => axum::Json(json!({
                "kind": "compute#region", "name": region,
                "zones": zones.iter().map(|z| format!("{base}/zones/{z}")).collect::<Vec<_>>(),
            }))
            .into_response(),
            None => error(
                404,
                &format!(
                    "The resource 'projects/{}/regions/{region}' was not found",
                    st.project
                ),
                "notFound",
            ),
        },
        (Method::POST, ["zones", zone, "instances"]) => insert(&mut st, &base, zone, &body),
        (Method::GET, ["zones", zone, "instances", name]) => {
            let key = (zone.to_string(), name.to_string());
            match st.instances.get_mut(&key) {
                Some(i) => {
                    // Booting takes one look.
                    let shown = i.clone();
                    if i["status"] == "PROVISIONING" {
                        i["status"] = json!("RUNNING");
                    }
                    axum::Json(shown).into_response()
                }
                None => error(
                    404,
                    &format!(
                        "The resource 'projects/{}/zones/{zone}/instances/{name}' was not found",
                        st.project
                    ),
                    "notFound",
                ),
            }
        }
        (Method::DELETE, ["zones", zone, "instances", name]) => {
            if st
                .instances
                .remove(&(zone.to_string(), name.to_string()))
                .is_none()
            {
                return error(
                    404,
                    &format!(
                        "The resource 'projects/{}/zones/{zone}/instances/{name}' was not found",
                        st.project
                    ),
                    "notFound",
                );
            }
            axum::Json(operation(&mut st, &base, Some(zone), "delete", "DONE")).into_response()
        }
        (Method::GET, ["aggregated", "instances"]) => {
            aggregated(&st, query.get("filter").map(String::as_str))
        }
        (Method::GET, ["zones", _zone, "operations", name]) => match st.operations.get_mut(*name) {
            Some(op) => {
                let shown = op.clone();
                op["status"] = json!("DONE");
                axum::Json(shown).into_response()
            }
            None => error(404, "operation not found", "notFound"),
        },
        (Method::POST, ["global", "firewalls"]) => {
            let Some(name) = body["name"].as_str().map(str::to_string) else {
                return error(400, "Invalid value for field 'resource.name'", "invalid");
            };
            if st.firewalls.contains_key(&name) {
                return error(
                    409,
                    &format!(
                        "The resource 'projects/{}/global/firewalls/{name}' already exists",
                        st.project
                    ),
                    "alreadyExists",
                );
            }
            if body["sourceRanges"].as_array().is_none_or(Vec::is_empty) {
                return error(
                    400,
                    "Invalid value for field 'resource.sourceRanges': ''. Must specify at least one source.",
                    "invalid",
                );
            }
            st.firewalls.insert(name, body);
            axum::Json(operation(&mut st, &base, None, "insert", "DONE")).into_response()
        }
        (Method::GET, ["global", "firewalls", name]) => match st.firewalls.get(*name) {
            Some(f) => axum::Json(f.clone()).into_response(),
            None => error(
                404,
                &format!(
                    "The resource 'projects/{}/global/firewalls/{name}' was not found",
                    st.project
                ),
                "notFound",
            ),
        },
        (Method::PATCH, ["global", "firewalls", name]) => match st.firewalls.get_mut(*name) {
            Some(f) => {
                for (k, v) in body.as_object().into_iter().flatten() {
                    f[k] = v.clone();
                }
                axum::Json(operation(&mut st, &base, None, "patch", "DONE")).into_response()
            }
            None => error(404, "firewall not found", "notFound"),
        },
        (Method::DELETE, ["global", "firewalls", name]) => {
            if st.firewalls.remove(*name).is_none() {
                return error(
                    404,
                    &format!(
                        "The resource 'projects/{}/global/firewalls/{name}' was not found",
                        st.project
                    ),
                    "notFound",
                );
            }
            axum::Json(operation(&mut st, &base, None, "delete", "DONE")).into_response()
        }
        _ => error(404, &format!("no fake for {method} {path}"), "notFound"),
    }
}

fn operation(st: &mut State, base: &str, zone: Option<&str>, kind: &str, status: &str) -> Value {
    st.seq += 1;
    let name = format!("operation-{}", st.seq);
    let op = json!({
        "kind": "compute#operation", "name": name, "operationType": kind, "status": status,
        "zone": zone.map(|z| format!("{base}/zones/{z}")),
        "selfLink": format!("{base}/zones/{}/operations/{name}", zone.unwrap_or("global")),
    });
    st.operations.insert(name, op.clone());
    op
}

fn insert(st: &mut State, base: &str, zone: &str, body: &Value) -> Response {
    if !st.regions.values().flatten().any(|z| z == zone) {
        return error(
            404,
            &format!(
                "The resource 'projects/{}/zones/{zone}' was not found",
                st.project
            ),
            "notFound",
        );
    }
    let Some(name) = body["name"].as_str().map(str::to_string) else {
        return error(400, "Invalid value for field 'resource.name'", "invalid");
    };
    let valid_name = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_name {
        return error(
            400,
            &format!("Invalid value for field 'resource.name': '{name}'"),
            "invalid",
        );
    }
    let image = body["disks"][0]["initializeParams"]["sourceImage"]
        .as_str()
        .unwrap_or("");
    if image.is_empty() || image.contains("missing") {
        return error(
            404,
            &format!("The resource '{image}' was not found"),
            "notFound",
        );
    }
    for (k, v) in body["labels"].as_object().into_iter().flatten() {
        let ok = |s: &str| {
            s.len() <= 63
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !ok(k) || !v.as_str().is_some_and(ok) {
            return error(
                400,
                &format!("Invalid value for field 'resource.labels': '{k}'"),
                "invalid",
            );
        }
    }
    let key = (zone.to_string(), name.clone());
    if st.instances.contains_key(&key) {
        return error(
            409,
            &format!(
                "The resource 'projects/{}/zones/{zone}/instances/{name}' already exists",
                st.project
            ),
            "alreadyExists",
        );
    }
    st.created += 1;
    let n = st.created;
    let mut instance = body.clone();
    instance["kind"] = json!("compute#instance");
    instance["status"] = json!("PROVISIONING");
    instance["zone"] = json!(format!("{base}/zones/{zone}"));
    instance["selfLink"] = json!(format!("{base}/zones/{zone}/instances/{name}"));
    instance["networkInterfaces"][0]["networkIP"] = json!(format!("10.128.0.{n}"));
    instance["networkInterfaces"][0]["accessConfigs"][0]["natIP"] = json!(format!("34.0.0.{n}"));
    st.instances.insert(key, instance);
    let op = operation(st, base, Some(zone), "insert", "RUNNING");
    if st.lose_next_insert {
        st.lose_next_insert = false;
        return error(503, "Backend Error", "backendError");
    }
    axum::Json(op).into_response()
}

/// `labels.K = "V"` terms of a filter, all of which must hold.
fn label_terms(filter: &str) -> Vec<(String, String)> {
    filter
        .split(['(', ')'])
        .filter_map(|t| {
            let (k, v) = t.trim().split_once('=')?;
            let k = k.trim().strip_prefix("labels.")?;
            Some((k.to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

fn aggregated(st: &State, filter: Option<&str>) -> Response {
    let terms = filter.map(label_terms).unwrap_or_default();
    let mut items = serde_json::Map::new();
    for zone in st.regions.values().flatten() {
        let found: Vec<Value> = st
            .instances
            .iter()
            .filter(|((z, _), i)| {
                z == zone && terms.iter().all(|(k, v)| i["labels"][k] == v.as_str())
            })
            .map(|(_, i)| i.clone())
            .collect();
        let entry = if found.is_empty() {
            json!({ "warning": { "code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope" } })
        } else {
            json!({ "instances": found })
        };
        items.insert(format!("zones/{zone}"), entry);
    }
    axum::Json(json!({ "kind": "compute#instanceAggregatedList", "items": items })).into_response()
}

fn token(st: &mut State, host: &str, body: &[u8]) -> Response {
    let bad = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant", "error_description": why })),
        )
            .into_response()
    };
    let f = form(&String::from_utf8_lossy(body));
    if f.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "unsupported_grant_type", "error_description": "Invalid grant_type" })),
        )
            .into_response();
    }
    let Some(jwt) = f.get("assertion") else {
        return bad("Missing required parameter: assertion");
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, sig] = parts.as_slice() else {
        return bad("Invalid JWT: not three parts");
    };
    let decode = |p: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(sig)) = (decode(h), decode(c), URL_SAFE_NO_PAD.decode(sig))
    else {
        return bad("Invalid JWT: undecodable");
    };
    if header["alg"] != "RS256" {
        return bad("Invalid JWT: alg must be RS256");
    }
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &st.public_key,
    );
    if key.verify(format!("{h}.{c}").as_bytes(), &sig).is_err() {
        return bad("Invalid JWT Signature.");
    }
    let now = jiff::Timestamp::now().as_second();
    let iat = claims["iat"].as_i64().unwrap_or(0);
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if claims["iss"] != st.client_email.as_str() {
        return bad("Invalid JWT: unknown issuer");
    }
    if claims["aud"] != format!("http://{host}/token").as_str() {
        return bad("Invalid JWT: audience mismatch");
    }
    if exp <= now || iat > now + 60 || exp - iat > 3600 {
        return bad(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if !claims["scope"]
        .as_str()
        .is_some_and(|s| s.contains("compute") || s.contains("cloud-platform"))
    {
        return bad("Invalid JWT: no scope");
    }
    st.seq += 1;
    let token = format!("ya29.fake-{}", st.seq);
    st.tokens.insert(token.clone());
    axum::Json(json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" }))
        .into_response()
}
