//! FAKE OpenStack from the API reference: Keystone v3 (`POST /v3/auth/tokens` with an
//! application credential, answering `X-Subject-Token`, the token body and a catalog
//! pointing at this fake), Nova v2.1 (flavors, servers create/list/detail/get/delete,
//! metadata key syntax, security groups by name) and Neutron v2.0 (security groups and
//! their rules; a group in use by a server cannot be deleted).

use super::serve;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the fake holds; tests read and switch it.
#[derive(Debug, Default)]
pub struct State {
    /// The application credential id it accepts.
    pub credential_id: String,
    /// Its secret.
    pub credential_secret: String,
    /// Seconds until issued tokens expire.
    pub token_lifetime: i64,
    /// Issued tokens.
    pub tokens: BTreeSet<String>,
    /// Flavours: id → name.
    pub flavors: BTreeMap<String, String>,
    /// Images that exist.
    pub images: BTreeSet<String>,
    /// Servers by id.
    pub servers: BTreeMap<String, Value>,
    /// Security groups by id.
    pub groups: BTreeMap<String, Value>,
    /// Nova/Neutron calls to answer `503` first.
    pub fail_next: usize,
    /// Create the next server, then answer `500` as if the answer were lost.
    pub lose_next_create: bool,
    /// Servers ever created.
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
    /// Keystone's URL as `OS_AUTH_URL` names it.
    pub fn auth_url(&self) -> String {
        format!("http://{}/identity", self.addr)
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lock")
    }
}

/// Starts the fake accepting the application credential `id` / `secret`.
pub async fn start(id: &str, secret: &str) -> Fake {
    let state = Arc::new(Mutex::new(State {
        credential_id: id.into(),
        credential_secret: secret.into(),
        token_lifetime: 3600,
        flavors: BTreeMap::from([
            ("1".to_string(), "m1.small".to_string()),
            ("3".to_string(), "m1.large".to_string()),
        ]),
        images: BTreeSet::from(["ubuntu-24.04".to_string()]),
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

fn nova_error(code: u16, kind: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(code).expect("status");
    (
        status,
        axum::Json(json!({ kind: { "code": code, "message": message } })),
    )
        .into_response()
}

fn neutron_error(code: u16, kind: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(code).expect("status");
    (
        status,
        axum::Json(json!({ "NeutronError": { "type": kind, "message": message, "detail": "" } })),
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
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if path == "/identity/v3/auth/tokens" && method == Method::POST {
        return keystone(&mut st, &host, &body);
    }
    let token_ok = headers
        .get("x-auth-token")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|t| st.tokens.contains(t));
    if !token_ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": { "code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication." } })),
        )
            .into_response();
    }
    if st.fail_next > 0 {
        st.fail_next -= 1;
        return nova_error(503, "serviceUnavailable", "Service Unavailable");
    }
    let query = super::form(uri.query().unwrap_or(""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["compute", "v2.1", "flavors"]) => axum::Json(json!({
            "flavors": st.flavors.iter().map(|(id, name)| json!({ "id": id, "name": name })).collect::<Vec<_>>(),
        }))
        .into_response(),
        (Method::POST, ["compute", "v2.1", "servers"]) => create_server(&mut st, &body),
        (Method::GET, ["compute", "v2.1", "servers", "detail"]) => {
            let name = query.get("name").cloned().unwrap_or_default();
            let exact = name.strip_prefix('^').and_then(|n| n.strip_suffix('$'));
            let servers: Vec<Value> = st
                .servers
                .values()
                .filter(|srv| {
                    let n = srv["name"].as_str().unwrap_or("");
                    match exact {
                        Some(e) => n == e,
                        None => n.contains(&name),
                    }
                })
                .cloned()
                .collect();
            axum::Json(json!({ "servers": servers })).into_response()
        }
        (Method::GET, ["compute", "v2.1", "servers", id]) => match st.servers.get_mut(*id) {
            Some(srv) => {
                let shown = srv.clone();
                // Building takes one look.
                if srv["status"] == "BUILD" {
                    srv["status"] = json!("ACTIVE");
                }
                axum::Json(json!({ "server": shown })).into_response()
            }
            None => nova_error(404, "itemNotFound", &format!("Instance {id} could not be found.")),
        },
        (Method::DELETE, ["compute", "v2.1", "servers", id]) => {
            if st.servers.remove(*id).is_none() {
                return nova_error(404, "itemNotFound", &format!("Instance {id} could not be found."));
            }
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::GET, ["network", "v2.0", "security-groups"]) => {
            let groups: Vec<Value> = st
                .groups
                .values()
                .filter(|g| query.get("name").is_none_or(|n| g["name"] == n.as_str()))
                .cloned()
                .collect();
            axum::Json(json!({ "security_groups": groups })).into_response()
        }
        (Method::POST, ["network", "v2.0", "security-groups"]) => {
            let g = &body["security_group"];
            let Some(name) = g["name"].as_str() else {
                return neutron_error(400, "HTTPBadRequest", "name is required");
            };
            st.seq += 1;
            let id = format!("sg-{:04}", st.seq);
            // Neutron adds the two default egress rules to every new group.
            let group = json!({
                "id": id, "name": name, "description": g["description"],
                "security_group_rules": [
                    { "id": format!("{id}-e4"), "direction": "egress", "ethertype": "IPv4", "security_group_id": id },
                    { "id": format!("{id}-e6"), "direction": "egress", "ethertype": "IPv6", "security_group_id": id },
                ],
            });
            st.groups.insert(id, group.clone());
            (StatusCode::CREATED, axum::Json(json!({ "security_group": group }))).into_response()
        }
        (Method::DELETE, ["network", "v2.0", "security-groups", id]) => {
            let Some(name) = st.groups.get(*id).and_then(|g| g["name"].as_str().map(str::to_string)) else {
                return neutron_error(404, "SecurityGroupNotFound", &format!("Security group {id} does not exist"));
            };
            let in_use = st
                .servers
                .values()
                .any(|srv| srv["security_groups"].as_array().into_iter().flatten().any(|g| g["name"] == name.as_str()));
            if in_use {
                return neutron_error(409, "SecurityGroupInUse", &format!("Security Group {id} in use."));
            }
            st.groups.remove(*id);
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::POST, ["network", "v2.0", "security-group-rules"]) => {
            let r = body["security_group_rule"].clone();
            let gid = r["security_group_id"].as_str().unwrap_or("").to_string();
            st.seq += 1;
            let rid = format!("rule-{:04}", st.seq);
            let Some(group) = st.groups.get_mut(&gid) else {
                return neutron_error(404, "SecurityGroupNotFound", &format!("Security group {gid} does not exist"));
            };
            let rules = group["security_group_rules"].as_array_mut().expect("rules");
            let same = |x: &Value| {
                ["direction", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix"]
                    .iter()
                    .all(|k| x[k] == r[k])
            };
            if rules.iter().any(same) {
                return neutron_error(409, "SecurityGroupRuleExists", "Security group rule already exists.");
            }
            let mut rule = r.clone();
            rule["id"] = json!(rid);
            rules.push(rule.clone());
            (StatusCode::CREATED, axum::Json(json!({ "security_group_rule": rule }))).into_response()
        }
        (Method::DELETE, ["network", "v2.0", "security-group-rules", id]) => {
            for g in st.groups.values_mut() {
                let rules = g["security_group_rules"].as_array_mut().expect("rules");
                if let Some(pos) = rules.iter().position(|r| r["id"] == *id) {
                    rules.remove(pos);
                    return StatusCode::NO_CONTENT.into_response();
                }
            }
            neutron_error(404, "SecurityGroupRuleNotFound", &format!("Security group rule {id} does not exist"))
        }
        _ => nova_error(404, "itemNotFound", &format!("no fake for {method} {path}")),
    }
}

fn create_server(st: &mut State, body: &Value) -> Response {
    let s = &body["server"];
    let Some(name) = s["name"].as_str().map(str::to_string) else {
        return nova_error(
            400,
            "badRequest",
            "Invalid input for field/attribute server. 'name' is a required property",
        );
    };
    let flavor = s["flavorRef"].as_str().unwrap_or("");
    if !st.flavors.contains_key(flavor) {
        return nova_error(
            400,
            "badRequest",
            &format!("Flavor {flavor} could not be found."),
        );
    }
    let image = s["imageRef"].as_str().unwrap_or("");
    if !st.images.contains(image) {
        return nova_error(
            400,
            "badRequest",
            &format!("Image {image} could not be found."),
        );
    }
    for (k, v) in s["metadata"].as_object().into_iter().flatten() {
        let key_ok = !k.is_empty()
            && k.len() <= 255
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
        if !key_ok || !v.is_string() {
            return nova_error(
                400,
                "badRequest",
                &format!("Invalid input for field/attribute metadata. Value: {k}"),
            );
        }
    }
    if let Some(ud) = s["user_data"].as_str()
        && base64::engine::general_purpose::STANDARD
            .decode(ud)
            .is_err()
    {
        return nova_error(400, "badRequest", "User data needs to be valid base 64.");
    }
    for g in s["security_groups"].as_array().into_iter().flatten() {
        let gname = g["name"].as_str().unwrap_or("");
        if !st.groups.values().any(|x| x["name"] == gname) {
            return nova_error(
                400,
                "badRequest",
                &format!("Security group {gname} not found for project."),
            );
        }
    }
    st.created += 1;
    let n = st.created;
    let id = format!("00000000-0000-4000-8000-{n:012}");
    let server = json!({
        "id": id, "name": name, "status": "BUILD",
        "flavor": { "id": flavor }, "image": { "id": image },
        "metadata": s["metadata"], "security_groups": s["security_groups"],
        "addresses": { "private": [{ "addr": format!("10.0.0.{n}"), "version": 4, "OS-EXT-IPS:type": "fixed" }] },
        "accessIPv4": "",
    });
    st.servers.insert(id.clone(), server);
    if st.lose_next_create {
        st.lose_next_create = false;
        return nova_error(500, "computeFault", "Unexpected API Error.");
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "server": { "id": id, "links": [] } })),
    )
        .into_response()
}

fn keystone(st: &mut State, host: &str, body: &Value) -> Response {
    let ident = &body["auth"]["identity"];
    let cred = &ident["application_credential"];
    let ok = ident["methods"][0] == "application_credential"
        && cred["id"] == st.credential_id.as_str()
        && cred["secret"] == st.credential_secret.as_str();
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": { "code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication." } })),
        )
            .into_response();
    }
    st.seq += 1;
    let token = format!("gAAAAAfake{}", st.seq);
    st.tokens.insert(token.clone());
    let expires =
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + st.token_lifetime)
            .expect("time")
            .strftime("%Y-%m-%dT%H:%M:%S.000000Z")
            .to_string();
    let endpoint = |path: &str| {
        json!([
            { "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": format!("http://{host}/{path}") },
            { "interface": "internal", "region": "RegionOne", "region_id": "RegionOne", "url": "http://internal.invalid" },
        ])
    };
    let answer = json!({ "token": {
        "methods": ["application_credential"],
        "expires_at": expires,
        "user": { "id": "u-1", "name": "fedsky", "domain": { "id": "default", "name": "Default" } },
        "project": { "id": "p-1", "name": "hospital-eu", "domain": { "id": "default", "name": "Default" } },
        "application_credential": { "id": st.credential_id, "restricted": true },
        "catalog": [
            { "type": "compute", "name": "nova", "endpoints": endpoint("compute/v2.1") },
            { "type": "network", "name": "neutron", "endpoints": endpoint("network") },
            { "type": "identity", "name": "keystone", "endpoints": endpoint("identity") },
        ],
    }});
    let mut resp = (StatusCode::CREATED, axum::Json(answer)).into_response();
    resp.headers_mut()
        .insert("x-subject-token", token.parse().expect("header"));
    resp
}
