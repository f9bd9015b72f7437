//! OpenStack: a Nova server per job with the job's metadata, found again by its
//! deterministic name and that metadata (Nova has no idempotency token), and a Neutron
//! security group that admits only the gRPC port from the given CIDRs. Endpoints come
//! from the Keystone token's catalog.

use super::rest::{Answer, failure, send};
use super::{
    Instance, InstanceState, JobOwner, Location, MANAGED_BY, ProvisionError, Provisioner,
    Remaining, VmSpec, cidr_diff, keep_one,
};
use crate::Cloud;
use crate::auth::AuthError;
use crate::auth::openstack::{KeystoneToken, authenticate, keystone_message};
use crate::credentials::OpenStackCredentials;
use crate::http;
use base64::Engine;
use serde_json::{Value, json};

/// Server metadata key: the owning job as `<namespace>/<name>` (Nova metadata keys allow
/// letters, digits, `-_:. ` only).
pub const META_JOB: &str = "fedsky:job";
/// Server metadata key: the owning job's UID.
pub const META_JOB_UID: &str = "fedsky:job-uid";
/// Server metadata key: who manages the server.
pub const META_MANAGED_BY: &str = "fedsky:managed-by";

/// Nova and Neutron with a Keystone token.
#[derive(Debug)]
pub struct OpenStackProvisioner {
    client: reqwest::Client,
    token: KeystoneToken,
    nova: String,
    neutron: String,
}

impl OpenStackProvisioner {
    /// Authenticates and picks the compute and network endpoints from the catalog.
    pub async fn connect(c: &OpenStackCredentials) -> Result<Self, AuthError> {
        let token = authenticate(c).await?;
        let pick = |service: &str| {
            token
                .endpoint(service, &c.interface, c.region.as_deref())
                .ok_or_else(|| AuthError::Failed {
                    cloud: Cloud::OpenStack,
                    endpoint: c.auth_url.clone(),
                    operation: "service catalog",
                    detail: format!(
                        "no {} `{service}` endpoint{} in the token's catalog",
                        c.interface,
                        c.region
                            .as_deref()
                            .map(|r| format!(" in region {r}"))
                            .unwrap_or_default()
                    ),
                })
        };
        let nova = pick("compute")?;
        let neutron = pick("network")?;
        let client = http::client(c.ca_cert.as_deref()).map_err(|e| AuthError::Unusable {
            cloud: Cloud::OpenStack,
            detail: format!("OS_CACERT: {e}"),
        })?;
        Ok(Self {
            client,
            token,
            nova,
            neutron,
        })
    }

    async fn call(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ProvisionError> {
        let mut req = self
            .client
            .request(method, url)
            .header("X-Auth-Token", self.token.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        send(Cloud::OpenStack, operation, req).await
    }

    fn fail(&self, endpoint: &str, operation: &'static str, a: &Answer) -> ProvisionError {
        failure(
            Cloud::OpenStack,
            endpoint,
            operation,
            a.status,
            &keystone_message(&a.body),
        )
    }

    /// A successful answer's JSON, else the error.
    async fn ok(
        &self,
        endpoint: &str,
        operation: &'static str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProvisionError> {
        let a = self.call(operation, method, url, body).await?;
        if !a.status.is_success() {
            return Err(self.fail(endpoint, operation, &a));
        }
        if a.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        a.json(Cloud::OpenStack, operation)
    }

    async fn security_groups(&self, owner: &JobOwner) -> Result<Vec<Value>, ProvisionError> {
        let url = format!("{}/v2.0/security-groups", self.neutron);
        let a = self
            .call(
                "security-groups list",
                reqwest::Method::GET,
                &format!("{url}?name={}", owner.resource_name()),
                None,
            )
            .await?;
        if !a.status.is_success() {
            return Err(self.fail(&self.neutron, "security-groups list", &a));
        }
        let v: Value = a.json(Cloud::OpenStack, "security-groups list")?;
        let mut groups: Vec<Value> = v["security_groups"].as_array().cloned().unwrap_or_default();
        groups.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        Ok(groups)
    }

    async fn ensure_security_group(&self, spec: &VmSpec) -> Result<String, ProvisionError> {
        let n = &self.neutron;
        let group = match self.security_groups(&spec.owner).await?.into_iter().next() {
            Some(g) => g,
            None => {
                let body = json!({ "security_group": {
                    "name": spec.owner.resource_name(),
                    "description": format!("fedsky aggregator gRPC of job {}", spec.owner.reference()),
                }});
                let v = self
                    .ok(
                        n,
                        "security-groups create",
                        reqwest::Method::POST,
                        &format!("{n}/v2.0/security-groups"),
                        Some(&body),
                    )
                    .await?;
                v["security_group"].clone()
            }
        };
        let id = group["id"].as_str().unwrap_or_default().to_string();
        let port = u64::from(spec.grpc_port);
        let rules: Vec<(String, String)> = group["security_group_rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["direction"] == "ingress"
                    && r["protocol"] == "tcp"
                    && r["port_range_min"].as_u64() == Some(port)
            })
            .filter_map(|r| {
                Some((
                    r["remote_ip_prefix"].as_str()?.to_string(),
                    r["id"].as_str()?.to_string(),
                ))
            })
            .collect();
        let have: Vec<String> = rules.iter().map(|r| r.0.clone()).collect();
        let (add, remove) = cidr_diff(&have, &spec.source_cidrs);
        for cidr in add {
            let body = json!({ "security_group_rule": {
                "security_group_id": id,
                "direction": "ingress",
                "ethertype": if cidr.contains(':') { "IPv6" } else { "IPv4" },
                "protocol": "tcp",
                "port_range_min": port,
                "port_range_max": port,
                "remote_ip_prefix": cidr,
            }});
            let a = self
                .call(
                    "security-group-rules create",
                    reqwest::Method::POST,
                    &format!("{n}/v2.0/security-group-rules"),
                    Some(&body),
                )
                .await?;
            // 409: the same rule exists (a concurrent reconcile).
            if !a.status.is_success() && a.status.as_u16() != 409 {
                return Err(self.fail(n, "security-group-rules create", &a));
            }
        }
        for cidr in remove {
            if let Some((_, rule)) = rules.iter().find(|r| r.0 == cidr) {
                let a = self
                    .call(
                        "security-group-rules delete",
                        reqwest::Method::DELETE,
                        &format!("{n}/v2.0/security-group-rules/{rule}"),
                        None,
                    )
                    .await?;
                if !a.status.is_success() && a.status.as_u16() != 404 {
                    return Err(self.fail(n, "security-group-rules delete", &a));
                }
            }
        }
        Ok(id)
    }

    /// The job's servers that are not deleted.
    async fn servers(&self, owner: &JobOwner) -> Result<Vec<Instance>, ProvisionError> {
        let url = format!("{}/servers/detail", self.nova);
        let name = format!("^{}$", owner.resource_name());
        let req = self
            .client
            .get(&url)
            .header("X-Auth-Token", self.token.token.expose())
            .query(&[("name", name.as_str())]);
        let a = send(Cloud::OpenStack, "servers list", req).await?;
        if !a.status.is_success() {
            return Err(self.fail(&self.nova, "servers list", &a));
        }
        let v: Value = a.json(Cloud::OpenStack, "servers list")?;
        Ok(v["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["metadata"][META_JOB_UID] == owner.uid.as_str()
                    && s["metadata"][META_MANAGED_BY] == MANAGED_BY
                    && !matches!(s["status"].as_str(), Some("DELETED" | "SOFT_DELETED"))
            })
            .map(server)
            .collect())
    }

    async fn delete_server(&self, id: &str) -> Result<(), ProvisionError> {
        let a = self
            .call(
                "servers delete",
                reqwest::Method::DELETE,
                &format!("{}/servers/{id}", self.nova),
                None,
            )
            .await?;
        if a.status.is_success() || a.status.as_u16() == 404 {
            Ok(())
        } else {
            Err(self.fail(&self.nova, "servers delete", &a))
        }
    }

    /// The id of the flavour named (or with id) `flavor`.
    async fn flavor_id(&self, flavor: &str) -> Result<String, ProvisionError> {
        let v = self
            .ok(
                &self.nova,
                "flavors list",
                reqwest::Method::GET,
                &format!("{}/flavors", self.nova),
                None,
            )
            .await?;
        v["flavors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == flavor || f["id"] == flavor)
            .and_then(|f| f["id"].as_str().map(str::to_string))
            .ok_or_else(|| ProvisionError::Refused {
                cloud: Cloud::OpenStack,
                operation: "flavors list",
                detail: format!("no flavour named `{flavor}` is offered to this project"),
            })
    }
}

fn server(s: &Value) -> Instance {
    let state = match s["status"].as_str().unwrap_or("") {
        "ACTIVE" => InstanceState::Running,
        "SHUTOFF" | "STOPPED" | "PAUSED" | "SUSPENDED" | "SHELVED" | "SHELVED_OFFLOADED" => {
            InstanceState::Stopped
        }
        "DELETED" | "SOFT_DELETED" => InstanceState::Terminating,
        "ERROR" => InstanceState::Failed(format!(
            "ERROR: {}",
            s["fault"]["message"].as_str().unwrap_or("no fault message")
        )),
        _ => InstanceState::Pending,
    };
    let mut public = s["accessIPv4"]
        .as_str()
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    let mut private = None;
    for addrs in s["addresses"]
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
    {
        for a in addrs.as_array().into_iter().flatten() {
            let ip = a["addr"].as_str().map(str::to_string);
            match a["OS-EXT-IPS:type"].as_str() {
                Some("floating") => public = public.or(ip),
                _ if a["version"].as_u64() != Some(6) => private = private.or(ip),
                _ => {}
            }
        }
    }
    Instance {
        id: s["id"].as_str().unwrap_or_default().to_string(),
        state,
        public_address: public,
        private_address: private,
    }
}

/// The `POST /servers` body.
pub fn create_body(spec: &VmSpec, flavor_id: &str) -> Value {
    let mut server = json!({
        "name": spec.owner.resource_name(),
        "flavorRef": flavor_id,
        "imageRef": spec.image,
        "user_data": base64::engine::general_purpose::STANDARD.encode(&spec.user_data),
        "metadata": {
            META_JOB: spec.owner.reference(),
            META_JOB_UID: spec.owner.uid,
            META_MANAGED_BY: MANAGED_BY,
        },
        "security_groups": [{ "name": spec.owner.resource_name() }],
        "networks": match &spec.network {
            Some(n) => json!([{ "uuid": n }]),
            None => json!("auto"),
        },
    });
    if let Some(z) = &spec.location.zone {
        server["availability_zone"] = json!(z);
    }
    json!({ "server": server })
}

impl Provisioner for OpenStackProvisioner {
    fn cloud(&self) -> Cloud {
        Cloud::OpenStack
    }

    async fn ensure(&self, spec: &VmSpec) -> Result<Instance, ProvisionError> {
        self.ensure_security_group(spec).await?;
        let (keep, extra) = keep_one(self.servers(&spec.owner).await?);
        for e in extra {
            self.delete_server(&e.id).await?;
        }
        if let Some(i) = keep {
            return Ok(i);
        }
        let flavor = self.flavor_id(&spec.instance_type).await?;
        let v = self
            .ok(
                &self.nova,
                "servers create",
                reqwest::Method::POST,
                &format!("{}/servers", self.nova),
                Some(&create_body(spec, &flavor)),
            )
            .await?;
        let id = v["server"]["id"].as_str().unwrap_or_default().to_string();
        tracing::info!(job = %spec.owner.reference(), server = %id, "created aggregator server");
        let v = self
            .ok(
                &self.nova,
                "servers get",
                reqwest::Method::GET,
                &format!("{}/servers/{id}", self.nova),
                None,
            )
            .await?;
        Ok(server(&v["server"]))
    }

    async fn find(
        &self,
        owner: &JobOwner,
        _location: &Location,
    ) -> Result<Vec<Instance>, ProvisionError> {
        self.servers(owner).await
    }

    async fn delete(
        &self,
        owner: &JobOwner,
        _location: &Location,
    ) -> Result<Remaining, ProvisionError> {
        for s in self.servers(owner).await? {
            self.delete_server(&s.id).await?;
        }
        let instances = self.servers(owner).await?.len();
        let mut firewalls = 0;
        for g in self.security_groups(owner).await? {
            // Ports of a server being deleted keep the group in use.
            if instances > 0 {
                firewalls += 1;
                continue;
            }
            let id = g["id"].as_str().unwrap_or_default();
            let url = format!("{}/v2.0/security-groups/{id}", self.neutron);
            let a = self
                .call(
                    "security-groups delete",
                    reqwest::Method::DELETE,
                    &url,
                    None,
                )
                .await?;
            match a.status.as_u16() {
                200..=299 | 404 => {}
                409 => firewalls += 1,
                _ => return Err(self.fail(&self.neutron, "security-groups delete", &a)),
            }
        }
        Ok(Remaining {
            instances,
            firewalls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_read_state_and_prefer_floating_addresses() {
        let s = server(&json!({
            "id": "u1", "status": "ACTIVE",
            "addresses": { "private": [
                { "addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed" },
                { "addr": "203.0.113.9", "version": 4, "OS-EXT-IPS:type": "floating" },
            ]},
        }));
        assert_eq!(s.state, InstanceState::Running);
        assert_eq!(s.public_address.as_deref(), Some("203.0.113.9"));
        assert_eq!(s.private_address.as_deref(), Some("10.0.0.5"));
        let e = server(
            &json!({ "id": "u2", "status": "ERROR", "fault": { "message": "No valid host" } }),
        );
        assert_eq!(
            e.state,
            InstanceState::Failed("ERROR: No valid host".into())
        );
    }

    #[test]
    fn create_body_uses_valid_metadata_keys() {
        let spec = VmSpec {
            owner: JobOwner {
                namespace: "covid".into(),
                name: "xray".into(),
                uid: "u".into(),
            },
            location: Location {
                region: "RegionOne".into(),
                zone: Some("nova".into()),
            },
            instance_type: "m1.large".into(),
            image: "img".into(),
            network: Some("net-1".into()),
            grpc_port: 50051,
            source_cidrs: vec![],
            user_data: "#cloud-config\n".into(),
        };
        let b = create_body(&spec, "3");
        let meta = b["server"]["metadata"].as_object().expect("metadata");
        for k in meta.keys() {
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c)),
                "{k}"
            );
        }
        assert_eq!(b["server"]["networks"][0]["uuid"], "net-1");
        assert_eq!(b["server"]["availability_zone"], "nova");
        assert_eq!(b["server"]["flavorRef"], "3");
    }
}
