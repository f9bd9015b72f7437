//! The aggregator on a VM: when the placed region has no Ready public MemberCluster and
//! the AggregatorPlacement has a `provisioning` section, the operator creates a VM there
//! with `fedsky-clouds` (cloud-init from the FL initializer starts the aggregator), reports
//! it as `vm/<cloud>/<region>/<id>` in `status.placement.memberCluster` and its address as
//! the aggregator endpoint, and the job's finalizer deletes the VM and its firewall.
//!
//! The cloud, not the job status, is the record: every reconcile looks the VM up by the
//! job's ownership tags, so a crash between the create call and the status write never
//! makes a second VM, and cleanup finds the VM even when status never recorded it.

use super::{DesiredAggregator, ParticipantObs, Start, WorkloadError, Workloads};
use crate::Context;
use crate::controllers::federated_job::status::AggregatorObs;
use crate::controllers::federated_job::validate::ValidJob;
use crate::controllers::member_cluster::credentials::{
    REASON_SECRET_NOT_READABLE, cloud_of, secret_data,
};
use crate::names::{GRPC_PORT, HTTP_PORT};
use fedsky_clouds::Sensitive;
use fedsky_clouds::credentials::{self, Credentials};
use fedsky_clouds::initializer::{self, InitSpec, TlsFiles};
use fedsky_clouds::provision::{
    AnyProvisioner, InstanceState, JobOwner, Location, ProvisionError, Provisioner, VmSpec,
};
use fedsky_crds::aggregator_placement::{CloudProvisioning, PlacementOption, ProvisioningSpec};
use fedsky_crds::common::CloudProvider;
use fedsky_crds::participant_pool::Site;
use fedsky_crds::{AggregatorPlacement, FederatedJob};
use fedsky_placement_spec::cloud_name;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use std::sync::Arc;

/// Prefix of `status.placement.memberCluster` for an aggregator on a VM.
pub const VM_PREFIX: &str = "vm/";

/// `vm/<cloud>/<region>/<id>`.
pub fn vm_ref(cloud: &str, region: &str, id: &str) -> String {
    format!("{VM_PREFIX}{cloud}/{region}/{id}")
}

/// `(cloud, region, id)` of a `vm/…` reference.
pub fn parse_vm_ref(s: &str) -> Option<(String, String, String)> {
    let mut parts = s.strip_prefix(VM_PREFIX)?.splitn(3, '/');
    Some((
        parts.next()?.to_string(),
        parts.next()?.to_string(),
        parts.next()?.to_string(),
    ))
}

/// The aggregator on a VM where the placed region has no member cluster to run it, over
/// `inner` for everything else (see [`Workloads`] on why a decorator).
pub struct VmWorkloads {
    hub: Arc<Context>,
    inner: Arc<dyn Workloads>,
}

impl std::fmt::Debug for VmWorkloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmWorkloads")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl VmWorkloads {
    /// VMs through the hub's placements and Secrets (those `hub.secrets` allows), over
    /// `inner`.
    pub fn new(hub: Arc<Context>, inner: Arc<dyn Workloads>) -> Self {
        Self { hub, inner }
    }
}

impl Workloads for VmWorkloads {
    fn ensure_aggregator<'a>(
        &'a self,
        job: &'a ValidJob,
        want: &'a DesiredAggregator,
    ) -> BoxFuture<'a, AggregatorObs> {
        async move {
            if want.cluster.is_none()
                && let Some(obs) = realise(&self.hub, job, &want.option).await
            {
                return obs;
            }
            self.inner.ensure_aggregator(job, want).await
        }
        .boxed()
    }

    fn participants<'a>(
        &'a self,
        job: &'a ValidJob,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Vec<ParticipantObs>, WorkloadError>> {
        self.inner.participants(job, site)
    }

    fn start_participant<'a>(
        &'a self,
        job: &'a ValidJob,
        start: Start<'a>,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        self.inner.start_participant(job, start)
    }

    fn remove_participant<'a>(
        &'a self,
        job: &'a ValidJob,
        site: &'a Site,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        self.inner.remove_participant(job, site, name)
    }

    fn cleanup<'a>(&'a self, job: &'a FederatedJob) -> BoxFuture<'a, Result<(), WorkloadError>> {
        async move {
            cleanup(&self.hub, job).await?;
            self.inner.cleanup(job).await
        }
        .boxed()
    }
}

/// The image for `region`: its own entry, else `*`.
pub fn image_for<'a>(entry: &'a CloudProvisioning, region: &str) -> Option<&'a str> {
    entry
        .images
        .get(region)
        .or_else(|| entry.images.get("*"))
        .map(String::as_str)
}

/// What the job's placement says about VMs.
struct Placement {
    owner: JobOwner,
    job: FederatedJob,
    ap: Option<AggregatorPlacement>,
}

impl Placement {
    fn provisioning(&self) -> Option<&ProvisioningSpec> {
        self.ap.as_ref()?.spec.provisioning.as_ref()
    }

    fn entry(&self, cloud: &str) -> Option<&CloudProvisioning> {
        self.provisioning()?
            .clouds
            .iter()
            .find(|c| cloud_name(c.cloud) == cloud)
    }
}

async fn placement(client: &kube::Client, job: &FederatedJob) -> Result<Placement, kube::Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job
        .spec
        .placement
        .placement_ref
        .as_ref()
        .map_or_else(|| job.name_any(), |r| r.name.clone());
    let ap = Api::<AggregatorPlacement>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await?;
    Ok(Placement {
        owner: JobOwner {
            namespace: ns,
            name: job.name_any(),
            uid: job.uid().unwrap_or_default(),
        },
        job: job.clone(),
        ap,
    })
}

/// Reads and parses the entry's credentials Secret.
async fn credentials_for(
    hub: &Context,
    namespace: &str,
    entry: &CloudProvisioning,
) -> Result<Credentials, (&'static str, String)> {
    let cloud = cloud_of(entry.cloud);
    let name = &entry.credentials_secret_ref.name;
    hub.secrets.check(namespace, name).map_err(|e| {
        (
            REASON_SECRET_NOT_READABLE,
            format!("provisioning credentials: {e}"),
        )
    })?;
    let secret = Api::<Secret>::namespaced(hub.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| ("HubApiError", e.to_string()))?
        .ok_or_else(|| {
            (
                "SecretNotFound",
                format!("provisioning credentials Secret {namespace}/{name} not found"),
            )
        })?;
    credentials::parse(cloud, &secret_data(cloud, &secret, None))
        .map_err(|e| (fedsky_clouds::auth::REASON_INVALID, e.to_string()))
}

/// The aggregator on a VM in the placed region, or `None` when the placement has no
/// `provisioning` section (the caller then waits for a member cluster).
pub async fn realise(
    hub: &Context,
    job: &ValidJob,
    option: &PlacementOption,
) -> Option<AggregatorObs> {
    let (ns, name) = job.reference.split_once('/')?;
    let object = match Api::<FederatedJob>::namespaced(hub.client.clone(), ns)
        .get_opt(name)
        .await
    {
        Ok(Some(j)) => j,
        Ok(None) => return None,
        Err(e) => return Some(AggregatorObs::Waiting("HubApiError", e.to_string())),
    };
    let p = match placement(&hub.client, &object).await {
        Ok(p) => p,
        Err(e) => return Some(AggregatorObs::Waiting("HubApiError", e.to_string())),
    };
    let prov = p.provisioning()?;
    Some(match ensure(hub, job, &p, prov, option).await {
        Ok(obs) => obs,
        Err((reason, message)) => AggregatorObs::Waiting(reason, message),
    })
}

async fn ensure(
    hub: &Context,
    job: &ValidJob,
    p: &Placement,
    prov: &ProvisioningSpec,
    option: &PlacementOption,
) -> Result<AggregatorObs, (&'static str, String)> {
    let entry = p.entry(&option.cloud).ok_or_else(|| {
        (
            "NoProvisioningForCloud",
            format!(
                "no Ready public MemberCluster in {}/{} and spec.provisioning.clouds has no {} entry",
                option.cloud, option.region, option.cloud
            ),
        )
    })?;
    let image = image_for(entry, &option.region).ok_or_else(|| {
        (
            "NoImageForRegion",
            format!(
                "spec.provisioning.clouds[{}].images has neither {} nor `*`",
                option.cloud, option.region
            ),
        )
    })?;
    // The placement moved: the VM in the old cloud or region goes first.
    if let Some((cloud, region, _)) = recorded(&p.job)
        && (cloud != option.cloud || region != option.region)
    {
        sweep(hub, p, &cloud, &region).await.map_err(|e| {
            (
                e.reason(),
                format!("deleting the aggregator VM in {cloud}/{region}: {e}"),
            )
        })?;
    }
    let creds = credentials_for(hub, &p.owner.namespace, entry).await?;
    let server = crate::controllers::federated_job::build::aggregator_certificate(job)
        .map_err(|e| ("CertificateError", e.to_string()))?;
    let user_data = initializer::render(&InitSpec {
        binary_url: prov.aggregator_binary.url.clone(),
        binary_sha256: prov.aggregator_binary.sha256.clone(),
        job_json: job.aggregator_file.clone(),
        token: job.token.clone(),
        tls: Some(TlsFiles {
            cert_pem: server.cert_pem,
            key_pem: Sensitive::new(server.key_pem),
            client_ca_pem: job.ca.cert_pem.clone(),
        }),
        grpc_port: u16::try_from(GRPC_PORT).unwrap_or(50051),
        http_port: u16::try_from(HTTP_PORT).unwrap_or(8081),
        store: job.store.vm(),
    })
    .map_err(|e| ("InvalidProvisioning", e.to_string()))?;
    let spec = VmSpec {
        owner: p.owner.clone(),
        location: Location {
            region: option.region.clone(),
            zone: None,
        },
        instance_type: option.instance_type.clone(),
        image: image.to_string(),
        network: entry.network.clone(),
        grpc_port: u16::try_from(GRPC_PORT).unwrap_or(50051),
        source_cidrs: prov.allowed_source_cidrs.clone(),
        user_data,
    };
    let provisioner = AnyProvisioner::connect(&creds, &option.region)
        .await
        .map_err(|e| (e.reason(), e.to_string()))?;
    let vm = provisioner
        .ensure(&spec)
        .await
        .map_err(|e| (e.reason(), e.to_string()))?;
    let cluster = vm_ref(&option.cloud, &option.region, &vm.id);
    Ok(match (&vm.state, vm.address()) {
        (InstanceState::Running, Some(addr)) => AggregatorObs::Ready {
            cluster,
            endpoint: format!("{addr}:{GRPC_PORT}"),
            model_url: format!("https://{addr}:{HTTP_PORT}"),
        },
        (InstanceState::Pending | InstanceState::Running, _) => AggregatorObs::Starting { cluster },
        (state, _) => AggregatorObs::Waiting(
            "AggregatorVmNotRunning",
            format!("aggregator VM {cluster} is {state:?}; fedsky does not restart stopped VMs"),
        ),
    })
}

/// `(cloud, region, id)` of the VM the job's status records.
fn recorded(job: &FederatedJob) -> Option<(String, String, String)> {
    let s = job
        .status
        .as_ref()?
        .placement
        .as_ref()?
        .member_cluster
        .as_deref()?;
    parse_vm_ref(s)
}

/// Deletes the job's VM and firewall in one cloud and region; an error while anything
/// is left, so the finalizer comes back.
async fn sweep(
    hub: &Context,
    p: &Placement,
    cloud: &str,
    region: &str,
) -> Result<(), ProvisionError> {
    let refused = |detail: String| ProvisionError::Refused {
        cloud: cloud_of(match cloud {
            "gcp" => CloudProvider::Gcp,
            "openstack" => CloudProvider::Openstack,
            _ => CloudProvider::Aws,
        }),
        operation: "cleanup",
        detail,
    };
    let entry = p.entry(cloud).ok_or_else(|| {
        refused(format!(
            "the AggregatorPlacement has no provisioning entry for {cloud} any more, so the \
             aggregator VM in {region} cannot be deleted: restore the entry, or delete the VM by \
             hand and remove the finalizer"
        ))
    })?;
    let creds = credentials_for(hub, &p.owner.namespace, entry)
        .await
        .map_err(|(_, m)| refused(format!("{m}; it is needed to delete the aggregator VM")))?;
    let provisioner = AnyProvisioner::connect(&creds, region).await?;
    let location = Location {
        region: region.to_string(),
        zone: None,
    };
    let left = provisioner.delete(&p.owner, &location).await?;
    if left.is_clean() {
        return Ok(());
    }
    Err(ProvisionError::Transient {
        cloud: provisioner.cloud(),
        operation: "cleanup",
        detail: format!(
            "{} instance(s) and {} firewall(s) of job {} still going away in {region}",
            left.instances,
            left.firewalls,
            p.owner.reference()
        ),
    })
}

/// Deletes the job's VMs wherever they may be: the region status recorded and the
/// placed region (status may not have recorded a VM made just before a crash).
pub async fn cleanup(hub: &Context, job: &FederatedJob) -> Result<(), WorkloadError> {
    let p = placement(&hub.client, job)
        .await
        .map_err(WorkloadError::Hub)?;
    let mut places: Vec<(String, String)> = Vec::new();
    if let Some((cloud, region, _)) = recorded(job) {
        places.push((cloud, region));
    }
    let placed = job
        .status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .and_then(|c| c.option.clone())
        .into_iter()
        .chain(
            p.ap.as_ref()
                .and_then(|a| a.status.as_ref())
                .and_then(|s| s.selected.clone()),
        );
    for o in placed {
        if p.entry(&o.cloud).is_some() {
            places.push((o.cloud, o.region));
        }
    }
    places.sort();
    places.dedup();
    for (cloud, region) in places {
        sweep(hub, &p, &cloud, &region).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_refs_round_trip_and_are_no_member_cluster_name() {
        let r = vm_ref("aws", "eu-central-1", "i-0abc");
        assert_eq!(r, "vm/aws/eu-central-1/i-0abc");
        assert_eq!(
            parse_vm_ref(&r),
            Some(("aws".into(), "eu-central-1".into(), "i-0abc".into()))
        );
        assert_eq!(parse_vm_ref("hospital-eu"), None);
    }

    #[test]
    fn images_fall_back_to_any_region() {
        let entry: CloudProvisioning = serde_json::from_value(serde_json::json!({
            "cloud": "aws",
            "credentialsSecretRef": { "name": "aws" },
            "images": { "eu-central-1": "ami-eu", "*": "ami-any" },
        }))
        .expect("entry");
        assert_eq!(image_for(&entry, "eu-central-1"), Some("ami-eu"));
        assert_eq!(image_for(&entry, "us-east-1"), Some("ami-any"));
    }
}
