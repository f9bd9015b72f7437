//! Where a job's aggregator and participants run: pods in member clusters ([`pods`]),
//! local processes ([`process`]) or, for the aggregator, a cloud VM ([`vm`]). The
//! FederatedJob controllers decide (placement, node choice, replacements, status) and
//! hand the decisions to one [`Workloads`], chosen once at start-up by [`select`].

pub mod command;
pub mod pods;
pub mod process;
pub mod vm;

use crate::Context;
use crate::clusters::ClusterError;
use crate::controllers::federated_job::build::ParticipantPlan;
use crate::controllers::federated_job::member_watch::MemberWatches;
use crate::controllers::federated_job::participants::Phase;
use crate::controllers::federated_job::status::AggregatorObs;
use crate::controllers::federated_job::validate::ValidJob;
use crate::pki::PkiError;
use crate::runtime::{ProcessError, Runtime};
use fedsky_clouds::provision::ProvisionError;
use fedsky_crds::FederatedJob;
use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::participant_pool::Site;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Starts, observes and removes a job's workloads. Object-safe (boxed futures), held as
/// `Arc<dyn Workloads>`; it makes no decisions: the controller plans, this executes and
/// reports what it finds.
///
/// Three implementations: [`pods::PodWorkloads`] (Deployments and Jobs in member
/// clusters), [`process::ProcessWorkloads`] (local processes) and [`vm::VmWorkloads`].
/// The VM one is a decorator over either of the others, not a third peer: a VM only ever
/// runs the aggregator, and only when the placed region has no Ready public member
/// cluster and the AggregatorPlacement asks for one (`spec.provisioning`), while the
/// participants still run wherever the runtime puts them (pods at the sites, or
/// processes). So it handles the aggregator when [`DesiredAggregator::cluster`] is `None`,
/// delegates everything else, and adds the VM's removal to cleanup. [`select`] always
/// wraps the runtime's implementation in it, as before every job could get a VM.
pub trait Workloads: Send + Sync + std::fmt::Debug {
    /// Starts or updates the job's aggregator where `want` says and reports its state.
    fn ensure_aggregator<'a>(
        &'a self,
        job: &'a ValidJob,
        want: &'a DesiredAggregator,
    ) -> BoxFuture<'a, AggregatorObs>;

    /// The job's participants at `site`; an error when the site cannot be read.
    fn participants<'a>(
        &'a self,
        job: &'a ValidJob,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Vec<ParticipantObs>, WorkloadError>>;

    /// Starts one planned participant.
    fn start_participant<'a>(
        &'a self,
        job: &'a ValidJob,
        start: Start<'a>,
    ) -> BoxFuture<'a, Result<(), WorkloadError>>;

    /// Stops and removes a participant (replaced: it must not come back).
    fn remove_participant<'a>(
        &'a self,
        job: &'a ValidJob,
        site: &'a Site,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), WorkloadError>>;

    /// Removes everything the job may have anywhere; an error while something is left.
    fn cleanup<'a>(&'a self, job: &'a FederatedJob) -> BoxFuture<'a, Result<(), WorkloadError>>;
}

/// Where the plan wants the aggregator.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredAggregator {
    /// The placement's choice.
    pub option: PlacementOption,
    /// The Ready public member cluster of the placed cloud and region, if there is one.
    pub cluster: Option<String>,
}

/// A participant as its runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantObs {
    /// Its name.
    pub name: String,
    /// Its site.
    pub site: String,
    /// The node it is pinned to.
    pub node: String,
    /// Sequence number at the site.
    pub n: u32,
    /// How it is doing.
    pub phase: Phase,
}

/// One participant to start.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// What the plan chose (site, node, sequence number).
    pub plan: &'a ParticipantPlan,
    /// Its name.
    pub name: &'a str,
    /// Its site.
    pub site: &'a Site,
    /// The aggregator's gRPC endpoint.
    pub endpoint: &'a str,
    /// The aggregator's `(cloud, region)`.
    pub placed: Option<(&'a str, &'a str)>,
}

/// Why a workload could not be started, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A call to the hub's API server failed.
    #[error("hub API: {0}")]
    Hub(#[source] kube::Error),
    /// A call to a member cluster's API server failed.
    #[error("member cluster API: {0}")]
    Member(#[source] kube::Error),
    /// A member cluster could not be reached or used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A local process could not be started, observed or stopped.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A certificate could not be issued.
    #[error("job PKI: {0}")]
    Pki(#[from] PkiError),
    /// A cloud call for an aggregator VM failed.
    #[error("cloud: {0}")]
    Cloud(#[from] ProvisionError),
    /// Deleted objects are still there (a claim waits for its pod to end): the job keeps
    /// its finalizer until they are gone, so a new job of the same name never finds them.
    #[error("waiting for {what} in member cluster {cluster} to be deleted")]
    StillDeleting {
        /// The member cluster.
        cluster: String,
        /// What is left, for example `1 PersistentVolumeClaim`.
        what: String,
    },
}

impl WorkloadError {
    /// Short label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Hub(_) | Self::Member(_) => "HubApiError",
            Self::Cluster(e) => e.category(),
            Self::Process(_) => "ProcessRuntimeError",
            Self::Pki(_) => "CertificateError",
            Self::Cloud(e) => e.reason(),
            Self::StillDeleting { .. } => "StillDeleting",
        }
    }

    /// Whether only the user can fix it (cloud credentials, a refused call).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::Cloud(e) if e.is_user_error())
    }
}

/// The implementation for `runtime`, wrapped for aggregators on VMs. `watches` are the
/// pods implementation's (the controller shares them).
pub fn select(runtime: &Runtime, ctx: Arc<Context>, watches: MemberWatches) -> Arc<dyn Workloads> {
    let inner: Arc<dyn Workloads> = match runtime {
        Runtime::Kubernetes(images) => Arc::new(pods::PodWorkloads::new(
            ctx.clone(),
            images.clone(),
            watches,
        )),
        Runtime::Process(rt) => Arc::new(process::ProcessWorkloads::new(rt.clone(), ctx.clone())),
    };
    Arc::new(vm::VmWorkloads::new(ctx, inner))
}

/// What the aggregator waits for when the placed region has no member cluster to run it.
pub fn no_member_cluster(option: &PlacementOption) -> AggregatorObs {
    AggregatorObs::Waiting(
        "NoMemberClusterInRegion",
        format!(
            "no Ready public MemberCluster in {}/{}; register one there, or set spec.provisioning on the AggregatorPlacement to run the aggregator on a VM",
            option.cloud, option.region
        ),
    )
}
