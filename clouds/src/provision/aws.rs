//! EC2: one instance per job with a security group that admits only the aggregator's
//! gRPC port from the given CIDRs. Both carry the job's tags; the instance is found again
//! by them, and `RunInstances` carries a client token derived from the job's UID so that
//! AWS itself de-duplicates a retried launch.

use super::{
    Instance, InstanceState, JobOwner, LABEL_JOB, LABEL_JOB_UID, LABEL_MANAGED_BY, Location,
    MANAGED_BY, ProvisionError, Provisioner, Remaining, VmSpec, cidr_diff, keep_one,
};
use crate::Cloud;
use crate::auth::AuthError;
use crate::auth::aws::{AwsSession, classify, session};
use crate::credentials::AwsCredentials;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    IpPermission, IpRange, Placement, ResourceType, Tag, TagSpecification,
};
use base64::Engine;

/// EC2 through an authenticated [`AwsSession`].
#[derive(Debug, Clone)]
pub struct AwsProvisioner {
    session: AwsSession,
}

/// Codes EC2 answers for a condition a retry can clear.
const TRANSIENT: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "InsufficientInstanceCapacity",
    "DependencyViolation",
    "IncorrectInstanceState",
];

impl AwsProvisioner {
    /// Authenticates (see [`session`]).
    pub async fn connect(c: &AwsCredentials, region: &str) -> Result<Self, AuthError> {
        Ok(Self {
            session: session(c, Some(region)).await?,
        })
    }

    /// The session in use.
    pub fn session(&self) -> &AwsSession {
        &self.session
    }

    fn error<E>(&self, region: &str, operation: &'static str, err: &SdkError<E>) -> ProvisionError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let cloud = Cloud::Aws;
        let endpoint = self.session.ec2_endpoint(region);
        match err {
            SdkError::ServiceError(_) => {
                let code = err.code().unwrap_or("Unknown");
                let status = err.raw_response().map(|r| r.status().as_u16());
                match classify(operation, &endpoint, err) {
                    a @ (AuthError::Rejected { .. } | AuthError::Expired { .. })
                        if code != "AccessDenied" =>
                    {
                        ProvisionError::Auth(a)
                    }
                    _ => {
                        let detail = format!("{code}: {}", err.message().unwrap_or("no message"));
                        if TRANSIENT.contains(&code) || status.is_some_and(|s| s >= 500) {
                            ProvisionError::Transient {
                                cloud,
                                operation,
                                detail,
                            }
                        } else {
                            ProvisionError::Refused {
                                cloud,
                                operation,
                                detail,
                            }
                        }
                    }
                }
            }
            _ => ProvisionError::Transient {
                cloud,
                operation,
                detail: format!("{endpoint}: {}", DisplayErrorContext(err)),
            },
        }
    }

    fn owner_filters(owner: &JobOwner) -> Vec<Filter> {
        vec![
            Filter::builder()
                .name(format!("tag:{LABEL_JOB}"))
                .values(owner.reference())
                .build(),
            Filter::builder()
                .name(format!("tag:{LABEL_MANAGED_BY}"))
                .values(MANAGED_BY)
                .build(),
        ]
    }

    fn tags(owner: &JobOwner, resource: ResourceType) -> TagSpecification {
        let tag = |k: &str, v: String| Tag::builder().key(k).value(v).build();
        TagSpecification::builder()
            .resource_type(resource)
            .tags(tag("Name", owner.resource_name()))
            .tags(tag(LABEL_JOB, owner.reference()))
            .tags(tag(LABEL_JOB_UID, owner.uid.clone()))
            .tags(tag(LABEL_MANAGED_BY, MANAGED_BY.to_string()))
            .build()
    }

    /// The job's instances in the given states.
    async fn instances(
        &self,
        ec2: &Client,
        region: &str,
        owner: &JobOwner,
        states: &[&str],
    ) -> Result<Vec<Instance>, ProvisionError> {
        let mut req = ec2.describe_instances();
        for f in Self::owner_filters(owner) {
            req = req.filters(f);
        }
        req = req.filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(states.iter().map(|s| (*s).to_string()).collect()))
                .build(),
        );
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(region, "DescribeInstances", &e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().map(instance));
            }
        }
        Ok(out)
    }

    /// The job's security group, created when missing, with exactly the wanted rules.
    async fn ensure_security_group(
        &self,
        ec2: &Client,
        spec: &VmSpec,
    ) -> Result<String, ProvisionError> {
        let region = &spec.location.region;
        let group = match self
            .security_groups(ec2, region, &spec.owner)
            .await?
            .into_iter()
            .next()
        {
            Some(g) => g,
            None => {
                let vpc = match &spec.network {
                    Some(subnet) => ec2
                        .describe_subnets()
                        .subnet_ids(subnet)
                        .send()
                        .await
                        .map_err(|e| self.error(region, "DescribeSubnets", &e))?
                        .subnets()
                        .first()
                        .and_then(|s| s.vpc_id().map(str::to_string)),
                    None => None,
                };
                let created = ec2
                    .create_security_group()
                    .group_name(spec.owner.resource_name())
                    // No spaces in what EC2 gets as form fields: servers that re-encode the
                    // form to check the signature (moto) turn them into `+`, not `%20`.
                    .description(format!(
                        "fedsky-aggregator-grpc-for-job:{}",
                        spec.owner.reference()
                    ))
                    .set_vpc_id(vpc)
                    .tag_specifications(Self::tags(&spec.owner, ResourceType::SecurityGroup))
                    .send()
                    .await;
                match created {
                    Ok(out) => SecurityGroup {
                        id: out.group_id().unwrap_or_default().to_string(),
                        cidrs: Vec::new(),
                    },
                    // A concurrent reconcile made it first: use that one.
                    Err(e) if e.code() == Some("InvalidGroup.Duplicate") => self
                        .security_groups(ec2, region, &spec.owner)
                        .await?
                        .into_iter()
                        .next()
                        .ok_or_else(|| self.error(region, "CreateSecurityGroup", &e))?,
                    Err(e) => return Err(self.error(region, "CreateSecurityGroup", &e)),
                }
            }
        };
        let (add, remove) = cidr_diff(&group.cidrs, &spec.source_cidrs);
        let port = i32::from(spec.grpc_port);
        let rule = |cidrs: &[String]| {
            let mut p = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port);
            for c in cidrs {
                p = p.ip_ranges(
                    IpRange::builder()
                        .cidr_ip(c)
                        .description("fedsky-participants")
                        .build(),
                );
            }
            p.build()
        };
        if !add.is_empty() {
            let r = ec2
                .authorize_security_group_ingress()
                .group_id(&group.id)
                .ip_permissions(rule(&add))
                .send()
                .await;
            if let Err(e) = r
                && e.code() != Some("InvalidPermission.Duplicate")
            {
                return Err(self.error(region, "AuthorizeSecurityGroupIngress", &e));
            }
        }
        if !remove.is_empty() {
            ec2.revoke_security_group_ingress()
                .group_id(&group.id)
                .ip_permissions(rule(&remove))
                .send()
                .await
                .map_err(|e| self.error(region, "RevokeSecurityGroupIngress", &e))?;
        }
        Ok(group.id)
    }

    async fn security_groups(
        &self,
        ec2: &Client,
        region: &str,
        owner: &JobOwner,
    ) -> Result<Vec<SecurityGroup>, ProvisionError> {
        let mut req = ec2.describe_security_groups();
        for f in Self::owner_filters(owner) {
            req = req.filters(f);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.error(region, "DescribeSecurityGroups", &e))?;
        Ok(out
            .security_groups()
            .iter()
            .map(|g| SecurityGroup {
                id: g.group_id().unwrap_or_default().to_string(),
                cidrs: g
                    .ip_permissions()
                    .iter()
                    .flat_map(|p| p.ip_ranges())
                    .filter_map(|r| r.cidr_ip().map(str::to_string))
                    .collect(),
            })
            .collect())
    }
}

#[derive(Debug)]
struct SecurityGroup {
    id: String,
    cidrs: Vec<String>,
}

/// States in which an instance still exists for the job.
const LIVE: &[&str] = &["pending", "running", "stopping", "stopped"];

fn instance(i: &aws_sdk_ec2::types::Instance) -> Instance {
    let state = match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::Stopping | InstanceStateName::Stopped) => InstanceState::Stopped,
        Some(InstanceStateName::ShuttingDown) => InstanceState::Terminating,
        Some(other) => InstanceState::Failed(other.as_str().to_string()),
        None => InstanceState::Pending,
    };
    Instance {
        id: i.instance_id().unwrap_or_default().to_string(),
        state,
        public_address: i.public_ip_address().map(str::to_string),
        private_address: i.private_ip_address().map(str::to_string),
    }
}

/// The `RunInstances` client token of the job's `n`-th launch: stable across retries of
/// one launch, new after an instance was terminated (EC2 would otherwise answer the
/// terminated one again). At most 64 ASCII characters.
pub fn client_token(owner: &JobOwner, terminated_before: usize) -> String {
    let uid: String = owner
        .uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(48)
        .collect();
    format!("fedsky-{uid}-{terminated_before}")
}

impl Provisioner for AwsProvisioner {
    fn cloud(&self) -> Cloud {
        Cloud::Aws
    }

    async fn ensure(&self, spec: &VmSpec) -> Result<Instance, ProvisionError> {
        let region = &spec.location.region;
        let ec2 = self.session.ec2(region);
        let sg = self.ensure_security_group(&ec2, spec).await?;
        let live = self.instances(&ec2, region, &spec.owner, LIVE).await?;
        let (keep, extra) = keep_one(live);
        if !extra.is_empty() {
            // Only a race EC2 did not de-duplicate makes two; keep the same one everywhere.
            let ids: Vec<String> = extra.iter().map(|i| i.id.clone()).collect();
            tracing::warn!(job = %spec.owner.reference(), ?ids, "terminating duplicate aggregator instances");
            ec2.terminate_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await
                .map_err(|e| self.error(region, "TerminateInstances", &e))?;
        }
        if let Some(i) = keep {
            return Ok(i);
        }
        let gone = self
            .instances(&ec2, region, &spec.owner, &["shutting-down", "terminated"])
            .await?
            .len();
        let out = ec2
            .run_instances()
            .image_id(&spec.image)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .security_group_ids(sg)
            .set_subnet_id(spec.network.clone())
            .set_placement(
                spec.location
                    .zone
                    .as_ref()
                    .map(|z| Placement::builder().availability_zone(z).build()),
            )
            .user_data(base64::engine::general_purpose::STANDARD.encode(&spec.user_data))
            .client_token(client_token(&spec.owner, gone))
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .tag_specifications(Self::tags(&spec.owner, ResourceType::Instance))
            .tag_specifications(Self::tags(&spec.owner, ResourceType::Volume))
            .send()
            .await
            .map_err(|e| self.error(region, "RunInstances", &e))?;
        let made =
            out.instances()
                .first()
                .map(instance)
                .ok_or_else(|| ProvisionError::Transient {
                    cloud: Cloud::Aws,
                    operation: "RunInstances",
                    detail: "the answer lists no instance".into(),
                })?;
        tracing::info!(job = %spec.owner.reference(), instance = %made.id, "launched aggregator instance");
        Ok(made)
    }

    async fn find(
        &self,
        owner: &JobOwner,
        location: &Location,
    ) -> Result<Vec<Instance>, ProvisionError> {
        let ec2 = self.session.ec2(&location.region);
        let mut states = LIVE.to_vec();
        states.push("shutting-down");
        self.instances(&ec2, &location.region, owner, &states).await
    }

    async fn delete(
        &self,
        owner: &JobOwner,
        location: &Location,
    ) -> Result<Remaining, ProvisionError> {
        let region = &location.region;
        let ec2 = self.session.ec2(region);
        let live = self.instances(&ec2, region, owner, LIVE).await?;
        if !live.is_empty() {
            ec2.terminate_instances()
                .set_instance_ids(Some(live.iter().map(|i| i.id.clone()).collect()))
                .send()
                .await
                .map_err(|e| self.error(region, "TerminateInstances", &e))?;
        }
        let mut states = LIVE.to_vec();
        states.push("shutting-down");
        let instances = self.instances(&ec2, region, owner, &states).await?.len();
        let mut firewalls = 0;
        for g in self.security_groups(&ec2, region, owner).await? {
            // A group stays in use until its instances are terminated.
            if instances > 0 {
                firewalls += 1;
                continue;
            }
            match ec2.delete_security_group().group_id(&g.id).send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidGroup.NotFound") => {}
                Err(e) if e.code() == Some("DependencyViolation") => firewalls += 1,
                Err(e) => return Err(self.error(region, "DeleteSecurityGroup", &e)),
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
    fn client_tokens_are_stable_per_launch_and_fit_ec2() {
        let o = JobOwner {
            namespace: "covid".into(),
            name: "xray".into(),
            uid: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
        };
        assert_eq!(client_token(&o, 0), client_token(&o, 0));
        assert_ne!(client_token(&o, 0), client_token(&o, 1));
        assert!(client_token(&o, 999).len() <= 64);
    }
}
