//! Compute Engine (REST v1): one instance per job, labelled with the job's UID and found
//! again through `aggregated/instances` with a label filter, plus a firewall rule that
//! admits only the gRPC port from the given CIDRs to instances with the job's network
//! tag. The instance name is derived from the job, so a retried insert answers
//! `409 alreadyExists` instead of making a second instance.

use super::rest::{Answer, failure, send};
use super::{
    Instance, InstanceState, JobOwner, Location, MANAGED_BY, ProvisionError, Provisioner,
    Remaining, VmSpec, cidr_diff, keep_one,
};
use crate::Cloud;
use crate::auth::AuthError;
use crate::auth::gcp::{AccessToken, access_token};
use crate::credentials::GcpCredentials;
use crate::http;
use serde_json::{Value, json};
use std::time::Duration;

/// Label: who manages the instance (GCP label keys allow no `/` or `.`).
pub const LABEL_MANAGED_BY: &str = "fedsky-managed-by";
/// Label: the owning job's UID.
pub const LABEL_JOB_UID: &str = "fedsky-job-uid";
/// How long `ensure` waits for an insert operation before reporting the instance as it is.
const OPERATION_WAIT: Duration = Duration::from_secs(60);

/// Compute Engine with an access token.
#[derive(Debug)]
pub struct GcpProvisioner {
    client: reqwest::Client,
    token: AccessToken,
    project: String,
    base: String,
}

/// An instance with the zone it lives in (needed to delete it).
#[derive(Debug, Clone)]
struct Found {
    zone: String,
    instance: Instance,
}

impl GcpProvisioner {
    /// Gets an access token with `c`.
    pub async fn connect(c: &GcpCredentials) -> Result<Self, AuthError> {
        Ok(Self {
            client: http::client(None).map_err(|e| AuthError::Unusable {
                cloud: Cloud::Gcp,
                detail: format!("building the HTTP client: {e}"),
            })?,
            token: access_token(c).await?,
            project: c.project.clone(),
            base: c.compute_endpoint.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/projects/{}/{path}", self.base, self.project)
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
            .bearer_auth(self.token.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        send(Cloud::Gcp, operation, req).await
    }

    fn fail(&self, operation: &'static str, a: &Answer) -> ProvisionError {
        let message = serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| http::excerpt(&a.body, 200));
        failure(Cloud::Gcp, &self.base, operation, a.status, &message)
    }

    /// `GET` that answers `None` on 404.
    async fn get(
        &self,
        operation: &'static str,
        url: &str,
    ) -> Result<Option<Value>, ProvisionError> {
        let a = self
            .call(operation, reqwest::Method::GET, url, None)
            .await?;
        match a.status.as_u16() {
            200 => Ok(Some(a.json(Cloud::Gcp, operation)?)),
            404 => Ok(None),
            _ => Err(self.fail(operation, &a)),
        }
    }

    /// The zone to use: the spec's, else the region's first zone in name order.
    async fn zone(&self, location: &Location) -> Result<String, ProvisionError> {
        if let Some(z) = &location.zone {
            return Ok(z.clone());
        }
        let region = self
            .get(
                "regions.get",
                &self.url(&format!("regions/{}", location.region)),
            )
            .await?
            .ok_or_else(|| ProvisionError::Refused {
                cloud: Cloud::Gcp,
                operation: "regions.get",
                detail: format!(
                    "region {} does not exist in project {}",
                    location.region, self.project
                ),
            })?;
        let mut zones: Vec<String> = region["zones"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|z| {
                z.as_str()
                    .and_then(|s| s.rsplit('/').next())
                    .map(str::to_string)
            })
            .collect();
        zones.sort();
        zones
            .into_iter()
            .next()
            .ok_or_else(|| ProvisionError::Refused {
                cloud: Cloud::Gcp,
                operation: "regions.get",
                detail: format!("region {} lists no zones", location.region),
            })
    }

    async fn ensure_firewall(&self, spec: &VmSpec, network: &str) -> Result<(), ProvisionError> {
        let name = spec.owner.resource_name();
        let url = self.url(&format!("global/firewalls/{name}"));
        let desired = json!({
            "name": name,
            "description": format!("fedsky aggregator gRPC of job {}", spec.owner.reference()),
            "network": network,
            "direction": "INGRESS",
            "allowed": [{ "IPProtocol": "tcp", "ports": [spec.grpc_port.to_string()] }],
            "sourceRanges": spec.source_cidrs,
            "targetTags": [name],
        });
        match self.get("firewalls.get", &url).await? {
            None => {
                let a = self
                    .call(
                        "firewalls.insert",
                        reqwest::Method::POST,
                        &self.url("global/firewalls"),
                        Some(&desired),
                    )
                    .await?;
                // 409: a concurrent reconcile made it.
                if !a.status.is_success() && a.status.as_u16() != 409 {
                    return Err(self.fail("firewalls.insert", &a));
                }
            }
            Some(current) => {
                let have: Vec<String> = current["sourceRanges"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                let (add, remove) = cidr_diff(&have, &spec.source_cidrs);
                if !add.is_empty() || !remove.is_empty() {
                    let a = self
                        .call(
                            "firewalls.patch",
                            reqwest::Method::PATCH,
                            &url,
                            Some(&json!({ "sourceRanges": spec.source_cidrs })),
                        )
                        .await?;
                    if !a.status.is_success() {
                        return Err(self.fail("firewalls.patch", &a));
                    }
                }
            }
        }
        Ok(())
    }

    /// The job's instances in every zone.
    async fn list(&self, owner: &JobOwner) -> Result<Vec<Found>, ProvisionError> {
        let filter = format!(
            "(labels.{LABEL_MANAGED_BY} = \"{MANAGED_BY}\") (labels.{LABEL_JOB_UID} = \"{}\")",
            owner.uid_label()
        );
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut req = self
                .client
                .get(self.url("aggregated/instances"))
                .bearer_auth(self.token.token.expose())
                .query(&[("filter", filter.as_str())]);
            if let Some(p) = &page {
                req = req.query(&[("pageToken", p.as_str())]);
            }
            let a = send(Cloud::Gcp, "instances.aggregatedList", req).await?;
            if !a.status.is_success() {
                return Err(self.fail("instances.aggregatedList", &a));
            }
            let v: Value = a.json(Cloud::Gcp, "instances.aggregatedList")?;
            for (scope, list) in v["items"].as_object().into_iter().flatten() {
                let zone = scope.trim_start_matches("zones/").to_string();
                for i in list["instances"].as_array().into_iter().flatten() {
                    out.push(Found {
                        zone: zone.clone(),
                        instance: instance(i),
                    });
                }
            }
            match v["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => page = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn delete_instance(&self, f: &Found) -> Result<(), ProvisionError> {
        let url = self.url(&format!("zones/{}/instances/{}", f.zone, f.instance.id));
        let a = self
            .call("instances.delete", reqwest::Method::DELETE, &url, None)
            .await?;
        if a.status.is_success() || a.status.as_u16() == 404 {
            Ok(())
        } else {
            Err(self.fail("instances.delete", &a))
        }
    }

    /// Polls a zonal operation until it is `DONE`; its error, if any, is the call's.
    async fn wait(&self, zone: &str, op: &Value) -> Result<(), ProvisionError> {
        let Some(name) = op["name"].as_str() else {
            return Ok(());
        };
        let url = self.url(&format!("zones/{zone}/operations/{name}"));
        let start = std::time::Instant::now();
        let mut op = op.clone();
        while op["status"].as_str() != Some("DONE") {
            if start.elapsed() > OPERATION_WAIT {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            op = match self.get("zoneOperations.get", &url).await? {
                Some(v) => v,
                None => return Ok(()),
            };
        }
        match op["error"]["errors"].as_array() {
            Some(errors) if !errors.is_empty() => Err(ProvisionError::Refused {
                cloud: Cloud::Gcp,
                operation: "instances.insert",
                detail: errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["code"].as_str().unwrap_or("ERROR"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            _ => Ok(()),
        }
    }
}

fn instance(v: &Value) -> Instance {
    let state = match v["status"].as_str().unwrap_or("") {
        "PROVISIONING" | "STAGING" | "REPAIRING" | "" => InstanceState::Pending,
        "RUNNING" => InstanceState::Running,
        // TERMINATED is Compute Engine's word for a stopped instance.
        "STOPPING" | "STOPPED" | "SUSPENDING" | "SUSPENDED" | "TERMINATED" => {
            InstanceState::Stopped
        }
        other => InstanceState::Failed(other.to_string()),
    };
    let nic = &v["networkInterfaces"][0];
    Instance {
        id: v["name"].as_str().unwrap_or_default().to_string(),
        state,
        public_address: nic["accessConfigs"][0]["natIP"]
            .as_str()
            .map(str::to_string),
        private_address: nic["networkIP"].as_str().map(str::to_string),
    }
}

/// A network name or path as the API wants it.
fn network_path(network: Option<&str>) -> String {
    match network {
        Some(n) if n.contains('/') => n.to_string(),
        Some(n) => format!("global/networks/{n}"),
        None => "global/networks/default".to_string(),
    }
}

/// The `instances.insert` body.
pub fn insert_body(spec: &VmSpec, zone: &str) -> Value {
    let name = spec.owner.resource_name();
    json!({
        "name": name,
        "description": format!("fedsky aggregator of job {}", spec.owner.reference()),
        "machineType": format!("zones/{zone}/machineTypes/{}", spec.instance_type),
        "labels": {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_JOB_UID: spec.owner.uid_label(),
        },
        "tags": { "items": [name] },
        "metadata": { "items": [{ "key": "user-data", "value": spec.user_data }] },
        "disks": [{
            "boot": true,
            "autoDelete": true,
            "initializeParams": { "sourceImage": spec.image },
        }],
        "networkInterfaces": [{
            "network": network_path(spec.network.as_deref()),
            "accessConfigs": [{ "type": "ONE_TO_ONE_NAT", "name": "External NAT" }],
        }],
    })
}

impl Provisioner for GcpProvisioner {
    fn cloud(&self) -> Cloud {
        Cloud::Gcp
    }

    async fn ensure(&self, spec: &VmSpec) -> Result<Instance, ProvisionError> {
        self.ensure_firewall(spec, &network_path(spec.network.as_deref()))
            .await?;
        let found = self.list(&spec.owner).await?;
        let zones: Vec<(String, String)> = found
            .iter()
            .map(|f| (f.instance.id.clone(), f.zone.clone()))
            .collect();
        let (keep, extra) = keep_one(found.into_iter().map(|f| f.instance).collect());
        for e in extra {
            let zone = zones
                .iter()
                .find(|z| z.0 == e.id)
                .map(|z| z.1.clone())
                .unwrap_or_default();
            self.delete_instance(&Found { zone, instance: e }).await?;
        }
        if let Some(i) = keep {
            return Ok(i);
        }
        let zone = self.zone(&spec.location).await?;
        let a = self
            .call(
                "instances.insert",
                reqwest::Method::POST,
                &self.url(&format!("zones/{zone}/instances")),
                Some(&insert_body(spec, &zone)),
            )
            .await?;
        match a.status.as_u16() {
            200..=299 => {
                self.wait(&zone, &a.json(Cloud::Gcp, "instances.insert")?)
                    .await?
            }
            // The deterministic name exists already: a concurrent or earlier insert.
            409 => {}
            _ => return Err(self.fail("instances.insert", &a)),
        }
        let url = self.url(&format!(
            "zones/{zone}/instances/{}",
            spec.owner.resource_name()
        ));
        match self.get("instances.get", &url).await? {
            Some(v) => {
                tracing::info!(job = %spec.owner.reference(), %zone, "created aggregator instance");
                Ok(instance(&v))
            }
            None => Err(ProvisionError::Transient {
                cloud: Cloud::Gcp,
                operation: "instances.get",
                detail: "the inserted instance is not visible yet".into(),
            }),
        }
    }

    async fn find(
        &self,
        owner: &JobOwner,
        _location: &Location,
    ) -> Result<Vec<Instance>, ProvisionError> {
        Ok(self
            .list(owner)
            .await?
            .into_iter()
            .map(|f| f.instance)
            .collect())
    }

    async fn delete(
        &self,
        owner: &JobOwner,
        _location: &Location,
    ) -> Result<Remaining, ProvisionError> {
        for f in self.list(owner).await? {
            self.delete_instance(&f).await?;
        }
        let url = self.url(&format!("global/firewalls/{}", owner.resource_name()));
        let a = self
            .call("firewalls.delete", reqwest::Method::DELETE, &url, None)
            .await?;
        if !(a.status.is_success() || a.status.as_u16() == 404) {
            return Err(self.fail("firewalls.delete", &a));
        }
        // A firewall rule does not depend on the instances: it is gone now.
        Ok(Remaining {
            instances: self.list(owner).await?.len(),
            firewalls: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_body_carries_labels_tag_user_data_and_a_public_address() {
        let spec = VmSpec {
            owner: JobOwner {
                namespace: "covid".into(),
                name: "xray".into(),
                uid: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
            },
            location: Location {
                region: "europe-west1".into(),
                zone: None,
            },
            instance_type: "e2-standard-2".into(),
            image: "projects/debian-cloud/global/images/family/debian-12".into(),
            network: None,
            grpc_port: 50051,
            source_cidrs: vec!["203.0.113.0/24".into()],
            user_data: "#cloud-config\n".into(),
        };
        let b = insert_body(&spec, "europe-west1-b");
        assert_eq!(b["name"], "fedsky-agg-covid-xray-3f2504e0");
        assert_eq!(
            b["machineType"],
            "zones/europe-west1-b/machineTypes/e2-standard-2"
        );
        assert_eq!(
            b["labels"][LABEL_JOB_UID],
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        );
        assert_eq!(b["tags"]["items"][0], b["name"]);
        assert_eq!(b["metadata"]["items"][0]["key"], "user-data");
        assert_eq!(
            b["networkInterfaces"][0]["network"],
            "global/networks/default"
        );
        assert_eq!(network_path(Some("vpc-a")), "global/networks/vpc-a");
    }

    #[test]
    fn instances_read_state_and_addresses() {
        let i = instance(&json!({
            "name": "n", "status": "TERMINATED",
            "networkInterfaces": [{ "networkIP": "10.0.0.2", "accessConfigs": [{ "natIP": "34.1.2.3" }] }],
        }));
        assert_eq!(i.state, InstanceState::Stopped);
        assert_eq!(i.address(), Some("34.1.2.3"));
    }
}
