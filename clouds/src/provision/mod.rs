//! Aggregator VMs, one per job, behind one trait for every cloud.
//!
//! Every resource carries the job's ownership marks (AWS tags, GCP labels, Nova
//! metadata), and [`Provisioner::ensure`] looks them up before creating anything, so a
//! retry after a crash between the create call and the caller's own bookkeeping finds the
//! instance it already made instead of making a second one. [`Provisioner::delete`]
//! removes the instance and its firewall (security group) and reports what is still
//! going away, so the caller repeats it until nothing is left.

pub mod aws;
pub mod gcp;
mod naming;
pub mod openstack;
mod rest;

pub use naming::{JobOwner, LABEL_JOB, LABEL_JOB_UID, LABEL_MANAGED_BY, MANAGED_BY};

use crate::Cloud;
use crate::auth::AuthError;
use crate::credentials::Credentials;
use std::future::Future;

/// Where a VM goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Region (`eu-central-1`, `europe-west1`, `RegionOne`).
    pub region: String,
    /// Zone or availability zone; the provider picks one when `None`.
    pub zone: Option<String>,
}

/// The aggregator VM of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The job that owns it.
    pub owner: JobOwner,
    /// Where.
    pub location: Location,
    /// Instance type, machine type or flavour (the placement's choice).
    pub instance_type: String,
    /// AMI id, GCP image URL or family, OpenStack image id.
    pub image: String,
    /// AWS subnet id, GCP network, OpenStack network id; the default network when `None`.
    pub network: Option<String>,
    /// The aggregator's gRPC port: the only port the firewall opens.
    pub grpc_port: u16,
    /// Source CIDRs allowed to reach the gRPC port.
    pub source_cidrs: Vec<String>,
    /// Cloud-init user data (see [`crate::initializer`]).
    pub user_data: String,
}

/// Lifecycle state of an instance, across clouds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    /// Being created or booting.
    Pending,
    /// Running.
    Running,
    /// Stopping or stopped.
    Stopped,
    /// Being deleted.
    Terminating,
    /// Gone or failed for good (the cloud's word in `0`).
    Failed(String),
}

/// An aggregator VM as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The cloud's id (`i-…`, the GCP instance name, the Nova server UUID).
    pub id: String,
    /// State.
    pub state: InstanceState,
    /// Public address, when it has one.
    pub public_address: Option<String>,
    /// Private address.
    pub private_address: Option<String>,
}

impl Instance {
    /// The address participants dial: public if any, else private.
    pub fn address(&self) -> Option<&str> {
        self.public_address
            .as_deref()
            .or(self.private_address.as_deref())
    }
}

/// What a delete left behind (still terminating, or blocked until it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Remaining {
    /// Instances not gone yet.
    pub instances: usize,
    /// Firewalls / security groups not deleted yet.
    pub firewalls: usize,
}

impl Remaining {
    /// Nothing is left.
    pub fn is_clean(&self) -> bool {
        self.instances == 0 && self.firewalls == 0
    }
}

/// Why a provisioning call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// Authentication failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The cloud refused a request for a reason the spec or the account must fix (an
    /// unknown image, an instance type not offered there, a quota, a permission).
    #[error("{cloud} {operation}: {detail}")]
    Refused {
        /// Cloud.
        cloud: Cloud,
        /// API call.
        operation: &'static str,
        /// Code and message.
        detail: String,
    },
    /// A call failed in a way a retry may fix (throttling, a server error, no answer).
    #[error("{cloud} {operation} failed (will retry): {detail}")]
    Transient {
        /// Cloud.
        cloud: Cloud,
        /// API call.
        operation: &'static str,
        /// What happened.
        detail: String,
    },
}

impl ProvisionError {
    /// Condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Auth(e) => e.reason(),
            Self::Refused { .. } => "ProvisioningRefused",
            Self::Transient { .. } => "ProvisioningRetrying",
        }
    }

    /// Whether only a change by the user can fix it.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Auth(e) => e.needs_new_credentials(),
            Self::Refused { .. } => true,
            Self::Transient { .. } => false,
        }
    }
}

/// Creates, finds and deletes one job's aggregator VM in one cloud.
pub trait Provisioner: Send + Sync {
    /// The cloud.
    fn cloud(&self) -> Cloud;

    /// The job's instance, created with its firewall if it does not exist; its firewall
    /// rule is brought to `spec.source_cidrs`. Never makes a second instance for a job.
    fn ensure(
        &self,
        spec: &VmSpec,
    ) -> impl Future<Output = Result<Instance, ProvisionError>> + Send;

    /// The job's instances that are not terminated.
    fn find(
        &self,
        owner: &JobOwner,
        location: &Location,
    ) -> impl Future<Output = Result<Vec<Instance>, ProvisionError>> + Send;

    /// Deletes the job's instances and firewall; answers what is still going away.
    fn delete(
        &self,
        owner: &JobOwner,
        location: &Location,
    ) -> impl Future<Output = Result<Remaining, ProvisionError>> + Send;
}

/// A provisioner for any cloud, chosen by the credentials.
#[derive(Debug)]
pub enum AnyProvisioner {
    /// EC2.
    Aws(aws::AwsProvisioner),
    /// Compute Engine.
    Gcp(gcp::GcpProvisioner),
    /// Nova and Neutron.
    OpenStack(openstack::OpenStackProvisioner),
}

impl AnyProvisioner {
    /// Authenticates with `creds` (for `region` where they name none).
    pub async fn connect(creds: &Credentials, region: &str) -> Result<Self, AuthError> {
        Ok(match creds {
            Credentials::Aws(c) => Self::Aws(aws::AwsProvisioner::connect(c, region).await?),
            Credentials::Gcp(c) => Self::Gcp(gcp::GcpProvisioner::connect(c).await?),
            Credentials::OpenStack(c) => {
                Self::OpenStack(openstack::OpenStackProvisioner::connect(c).await?)
            }
        })
    }
}

impl Provisioner for AnyProvisioner {
    fn cloud(&self) -> Cloud {
        match self {
            Self::Aws(p) => p.cloud(),
            Self::Gcp(p) => p.cloud(),
            Self::OpenStack(p) => p.cloud(),
        }
    }

    async fn ensure(&self, spec: &VmSpec) -> Result<Instance, ProvisionError> {
        match self {
            Self::Aws(p) => p.ensure(spec).await,
            Self::Gcp(p) => p.ensure(spec).await,
            Self::OpenStack(p) => p.ensure(spec).await,
        }
    }

    async fn find(
        &self,
        owner: &JobOwner,
        location: &Location,
    ) -> Result<Vec<Instance>, ProvisionError> {
        match self {
            Self::Aws(p) => p.find(owner, location).await,
            Self::Gcp(p) => p.find(owner, location).await,
            Self::OpenStack(p) => p.find(owner, location).await,
        }
    }

    async fn delete(
        &self,
        owner: &JobOwner,
        location: &Location,
    ) -> Result<Remaining, ProvisionError> {
        match self {
            Self::Aws(p) => p.delete(owner, location).await,
            Self::Gcp(p) => p.delete(owner, location).await,
            Self::OpenStack(p) => p.delete(owner, location).await,
        }
    }
}

/// The firewall rules to add and to remove to go from `current` to `desired` source
/// CIDRs (order-insensitive, duplicates ignored).
pub fn cidr_diff(current: &[String], desired: &[String]) -> (Vec<String>, Vec<String>) {
    use std::collections::BTreeSet;
    let cur: BTreeSet<&String> = current.iter().collect();
    let want: BTreeSet<&String> = desired.iter().collect();
    (
        want.difference(&cur).map(|s| (*s).clone()).collect(),
        cur.difference(&want).map(|s| (*s).clone()).collect(),
    )
}

/// Of several live instances for one job (possible only after a race the cloud did not
/// de-duplicate), the one to keep: the smallest id, so every caller keeps the same one.
pub fn keep_one(mut live: Vec<Instance>) -> (Option<Instance>, Vec<Instance>) {
    live.sort_by(|a, b| a.id.cmp(&b.id));
    let mut it = live.into_iter();
    let keep = it.next();
    (keep, it.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn cidr_diff_adds_missing_and_removes_extra() {
        let (add, remove) = cidr_diff(
            &s(&["10.0.0.0/8", "1.2.3.4/32"]),
            &s(&["1.2.3.4/32", "5.6.7.0/24", "5.6.7.0/24"]),
        );
        assert_eq!(add, s(&["5.6.7.0/24"]));
        assert_eq!(remove, s(&["10.0.0.0/8"]));
        assert_eq!(cidr_diff(&s(&["a"]), &s(&["a"])), (vec![], vec![]));
    }

    #[test]
    fn keep_one_is_deterministic() {
        let i = |id: &str| Instance {
            id: id.into(),
            state: InstanceState::Running,
            public_address: None,
            private_address: Some("10.0.0.1".into()),
        };
        let (keep, extra) = keep_one(vec![i("i-b"), i("i-a"), i("i-c")]);
        assert_eq!(keep.map(|k| k.id), Some("i-a".into()));
        assert_eq!(extra.len(), 2);
        assert_eq!(keep_one(vec![]).0, None);
        assert_eq!(i("x").address(), Some("10.0.0.1"));
    }
}
