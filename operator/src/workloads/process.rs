//! Workloads as local processes ([`crate::runtime::ProcessRuntime`]): the aggregator of a
//! job placed in a member cluster and its participants run on this machine instead.

use super::command::{ParticipantIo, TlsPaths};
use super::{DesiredAggregator, ParticipantObs, Start, WorkloadError, Workloads};
use crate::Context;
use crate::controllers::federated_job::participants::Phase;
use crate::controllers::federated_job::status::AggregatorObs;
use crate::controllers::federated_job::validate::ValidJob;
use crate::names;
use crate::runtime::ProcessRuntime;
use crate::runtime::process::{
    AggregatorState, Credentials, ParticipantMeta, ParticipantProc, ProcState, ProcessError,
};
use fedsky_crds::participant_pool::Site;
use fedsky_crds::{FederatedJob, MemberCluster};
use futures::FutureExt;
use futures::future::BoxFuture;
use kube::ResourceExt;
use kube::api::Api;
use std::sync::Arc;

/// Local processes supervised through files.
#[derive(Debug)]
pub struct ProcessWorkloads {
    rt: ProcessRuntime,
    ctx: Arc<Context>,
}

impl ProcessWorkloads {
    /// Processes of `rt`; `ctx` reads the hub (sites' regions) and cleans member clusters.
    pub fn new(rt: ProcessRuntime, ctx: Arc<Context>) -> Self {
        Self { rt, ctx }
    }
}

impl Workloads for ProcessWorkloads {
    fn ensure_aggregator<'a>(
        &'a self,
        job: &'a ValidJob,
        want: &'a DesiredAggregator,
    ) -> BoxFuture<'a, AggregatorObs> {
        async move {
            match want.cluster.clone() {
                Some(cluster) => process_aggregator(&self.rt, job, cluster).await,
                None => super::no_member_cluster(&want.option),
            }
        }
        .boxed()
    }

    fn participants<'a>(
        &'a self,
        job: &'a ValidJob,
        site: &'a Site,
    ) -> BoxFuture<'a, Result<Vec<ParticipantObs>, WorkloadError>> {
        let found: Vec<ParticipantObs> = self
            .rt
            .participants(&job.key)
            .iter()
            .filter(|p| p.meta.site == site.name)
            .map(observe_process)
            .collect();
        futures::future::ready(Ok(found)).boxed()
    }

    fn start_participant<'a>(
        &'a self,
        job: &'a ValidJob,
        start: Start<'a>,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        async move {
            let region = match self.rt.settings().network {
                Some(_) => site_region(&self.ctx, start.site).await,
                None => None,
            };
            let site_at = region.as_ref().map(|(c, r)| (c.as_str(), r.as_str()));
            let dial = self
                .rt
                .participant_endpoint(&job.key, start.name, start.endpoint, site_at, start.placed)
                .await?;
            start_process(&self.rt, job, &start, &dial).await?;
            Ok(())
        }
        .boxed()
    }

    fn remove_participant<'a>(
        &'a self,
        job: &'a ValidJob,
        _site: &'a Site,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        async move { Ok(self.rt.remove_participant(&job.key, name).await?) }.boxed()
    }

    fn cleanup<'a>(&'a self, job: &'a FederatedJob) -> BoxFuture<'a, Result<(), WorkloadError>> {
        async move {
            let key = names::job_key(&job.namespace().unwrap_or_default(), &job.name_any());
            self.rt.cleanup(&key).await?;
            // Member clusters are swept as under the pods runtime: the job may have run
            // there before the operator was restarted with processes.
            super::pods::remove_everywhere(&self.ctx, job).await
        }
        .boxed()
    }
}

/// The process runtime's aggregator, standing in for the one in `cluster`.
async fn process_aggregator(rt: &ProcessRuntime, job: &ValidJob, cluster: String) -> AggregatorObs {
    let config = job.aggregator_file.clone();
    let server = match crate::controllers::federated_job::build::aggregator_certificate(job) {
        Ok(s) => s,
        Err(e) => return AggregatorObs::Waiting("CertificateError", e.to_string()),
    };
    let creds = Credentials {
        token: job.token.expose(),
        ca_pem: &job.ca.cert_pem,
        leaf: &server,
    };
    match rt
        .ensure_aggregator(
            &job.key,
            &config,
            &creds,
            &job.workload.init_model(),
            &job.store,
        )
        .await
    {
        Ok(AggregatorState::Ready { grpc, http }) => AggregatorObs::Ready {
            cluster,
            endpoint: grpc,
            model_url: http,
        },
        Ok(AggregatorState::Starting) => AggregatorObs::Starting { cluster },
        Ok(AggregatorState::Restarting(line)) => AggregatorObs::Waiting(
            "AggregatorRestarting",
            format!("the aggregator process exited; restarting. Last output: {line}"),
        ),
        Err(e) => AggregatorObs::Waiting("ProcessRuntimeError", e.to_string()),
    }
}

/// The `(cloud, region)` whose network models a site: its own fields, else its member
/// cluster's (as the placement takes them).
async fn site_region(ctx: &Context, site: &Site) -> Option<(String, String)> {
    let cluster = match (&site.cloud, &site.region) {
        (Some(_), Some(_)) => None,
        _ => Api::<MemberCluster>::all(ctx.client.clone())
            .get_opt(&site.member_cluster)
            .await
            .ok()
            .flatten(),
    };
    let cloud = site.cloud.or(cluster.as_ref().map(|m| m.spec.provider))?;
    let region = site.region.clone().or(cluster.map(|m| m.spec.region))?;
    Some((fedsky_placement_spec::cloud_name(cloud).to_string(), region))
}

async fn start_process(
    rt: &ProcessRuntime,
    job: &ValidJob,
    start: &Start<'_>,
    endpoint: &str,
) -> Result<(), ProcessError> {
    let (c, name) = (start.plan, start.name);
    let data_root = rt.data_dir(start.site)?;
    let leaf = job.ca.client(name).map_err(ProcessError::Credentials)?;
    let paths = rt.participant_paths(
        &job.key,
        name,
        &Credentials {
            token: job.token.expose(),
            ca_pem: &job.ca.cert_pem,
            leaf: &leaf,
        },
    )?;
    let s = |p: &std::path::Path| p.display().to_string();
    let (ca, cert, key) = (s(&paths.ca), s(&paths.cert), s(&paths.key));
    let args = job.workload.participant(&ParticipantIo {
        name,
        endpoint,
        tls_domain: &names::aggregator_tls_name(&job.key),
        tls: TlsPaths {
            ca: &ca,
            cert: &cert,
            key: &key,
        },
        data_root: &s(&data_root),
        token_file: &s(&paths.token),
        state_dir: &s(&paths.state),
    });
    let meta = ParticipantMeta {
        site: c.site.clone(),
        node: c.node.clone(),
        n: c.n,
    };
    rt.start_participant(&job.key, name, &meta, &args).await
}

fn observe_process(p: &ParticipantProc) -> ParticipantObs {
    let phase = match p.state {
        ProcState::Absent => Phase::Pending,
        ProcState::Running => Phase::Running,
        ProcState::Exited(0) => Phase::Succeeded,
        ProcState::Exited(_) | ProcState::Lost => Phase::Failed,
    };
    ParticipantObs {
        name: p.name.clone(),
        site: p.meta.site.clone(),
        node: p.meta.node.clone(),
        n: p.meta.n,
        phase,
    }
}
