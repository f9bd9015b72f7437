//! The side effects of a FederatedJob: the hub's token Secret and AggregatorPlacement, and
//! server-side applies into member clusters. Decisions live in the pure modules.

use super::build;
use super::command::{ParticipantIo, TlsPaths};
use super::names::{self, AGGREGATOR_NAMESPACE, GRPC_PORT, HTTP_PORT};
use super::participants::{self, Observed, Phase, Plan};
use super::pki::Ca;
use super::status::{AggregatorObs, PlacementObs};
use super::validate::ValidJob;
use crate::capacity::NodeView;
use crate::clusters::{ClusterError, MEMBER_TIMEOUT, bounded};
use crate::controllers::participant_pool::nodes::site_nodes;
use crate::orchestrator::{Candidate, QueueState};
use crate::runtime::ProcessRuntime;
use crate::runtime::process::{
    AggregatorState, Credentials, ParticipantMeta, ParticipantProc, ProcState, ProcessError,
};
use crate::{Context, Error, FIELD_MANAGER};
use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::conditions;
use fedsky_crds::federated_job::ParticipantState;
use fedsky_crds::member_cluster::ClusterTier;
use fedsky_crds::{AggregatorPlacement, FederatedJob, MemberCluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Name of the hub Secret holding a job's participant token.
pub fn token_secret(job: &str) -> String {
    format!("{job}-fedsky-token")
}

/// Name of the hub Secret holding a job's CA.
pub fn ca_secret(job: &str) -> String {
    format!("{job}-fedsky-ca")
}

/// The data of the hub Secret `name` owned by `job`, created once from `make` when it
/// does not exist or lacks `keys`. A create that loses a race (409) reads the winner's.
async fn ensure_hub_secret(
    ctx: &Context,
    job: &FederatedJob,
    name: &str,
    keys: &[&str],
    make: impl Fn() -> Result<BTreeMap<String, String>, Error>,
) -> Result<BTreeMap<String, String>, Error> {
    let ns = job.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let read = |s: &Secret| -> Option<BTreeMap<String, String>> {
        let data = s.data.as_ref()?;
        keys.iter()
            .map(|k| {
                let v = data.get(*k)?;
                Some(((*k).to_string(), String::from_utf8_lossy(&v.0).into_owned()))
            })
            .collect()
    };
    if let Some(s) = api.get_opt(name).await?
        && let Some(data) = read(&s)
    {
        return Ok(data);
    }
    let data = make()?;
    let mut secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "namespace": ns, "labels": { names::LABEL_JOB: job.name_any() } },
        "stringData": data,
    }))?;
    secret.metadata.owner_references = job.controller_owner_ref(&()).map(|r| vec![r]);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(data),
        // Another reconcile won the race: use its data.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api.get(name).await?;
            read(&s).ok_or_else(|| {
                Error::Runtime(format!(
                    "hub Secret {ns}/{name} exists without the keys {keys:?}; delete it so that the operator recreates it"
                ))
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The job's token, created once (random) in a hub Secret owned by the job.
pub async fn ensure_token(ctx: &Context, job: &FederatedJob) -> Result<String, Error> {
    let name = token_secret(&job.name_any());
    let mut data = ensure_hub_secret(ctx, job, &name, &["token"], || {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(BTreeMap::from([("token".to_string(), token)]))
    })
    .await?;
    Ok(data.remove("token").unwrap_or_default())
}

/// The job's CA, created once in a hub Secret owned by the job (deleted with it).
pub async fn ensure_ca(ctx: &Context, job: &FederatedJob) -> Result<Ca, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = ca_secret(&job.name_any());
    let reference = format!("{ns}/{}", job.name_any());
    let data = ensure_hub_secret(ctx, job, &name, &["ca.crt", "ca.key"], || {
        let ca = Ca::generate(&reference, k8s_openapi::jiff::Timestamp::now().as_second())?;
        Ok(BTreeMap::from([
            ("ca.crt".to_string(), ca.cert_pem.clone()),
            ("ca.key".to_string(), ca.key_pem().to_string()),
        ]))
    })
    .await?;
    let get = |k: &str| data.get(k).map_or("", String::as_str);
    Ok(Ca::from_pem(
        get("ca.crt"),
        get("ca.key"),
        &format!("{ns}/{name}"),
    )?)
}

/// The job's token and CA: from memory once read, else from (or into) their hub Secrets.
pub async fn credentials(
    ctx: &Context,
    job: &FederatedJob,
) -> Result<super::credentials::JobCredentials, Error> {
    let uid = job.uid().unwrap_or_default();
    if let Some(c) = ctx.credentials.get(&uid) {
        return Ok(c);
    }
    let creds = super::credentials::JobCredentials {
        token: ensure_token(ctx, job).await?,
        ca: ensure_ca(ctx, job).await?,
    };
    ctx.credentials.insert(&uid, creds.clone());
    Ok(creds)
}

/// Adopts the referenced AggregatorPlacement or applies one from the inline requirements,
/// and reads its result.
pub async fn ensure_placement(ctx: &Context, job: &FederatedJob) -> Result<PlacementObs, Error> {
    let ns = job.namespace().unwrap_or_default();
    let api: Api<AggregatorPlacement> = Api::namespaced(ctx.client.clone(), &ns);
    let name = match &job.spec.placement.placement_ref {
        Some(r) => match ctx.placements.get(Some(&ns), &r.name).await {
            Some(ap) => return Ok(placement_obs(r.name.clone(), &ap)),
            None => r.name.clone(),
        },
        None => {
            let requirements = job.spec.placement.requirements.clone().unwrap_or_default();
            // Applied once: a cached placement with this spec and owner needs no request.
            if let Some(ap) = ctx.placements.get(Some(&ns), &job.name_any()).await
                && ap
                    .spec
                    .participants
                    .pool_ref
                    .as_ref()
                    .map(|r| r.name.as_str())
                    == Some(job.spec.participants.pool_ref.name.as_str())
                && ap.spec.requirements == requirements
                && ap
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == job.metadata.uid.as_ref())
            {
                return Ok(placement_obs(job.name_any(), &ap));
            }
            let mut ap = serde_json::json!({
                "apiVersion": "fl.fedsky.dev/v1alpha1",
                "kind": "AggregatorPlacement",
                "metadata": { "name": job.name_any(), "namespace": ns },
                "spec": {
                    "participants": { "poolRef": { "name": job.spec.participants.pool_ref.name } },
                    "requirements": requirements,
                },
            });
            if let Some(owner) = job.controller_owner_ref(&()) {
                ap["metadata"]["ownerReferences"] = serde_json::json!([owner]);
            }
            api.patch(
                &job.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&ap),
            )
            .await?;
            job.name_any()
        }
    };
    let Some(ap) = api.get_opt(&name).await? else {
        return Ok(PlacementObs::Pending(format!(
            "spec.placement.placementRef: AggregatorPlacement {ns}/{name} not found"
        )));
    };
    Ok(placement_obs(name, &ap))
}

/// What a placement's status says for the jobs using it.
fn placement_obs(name: String, ap: &AggregatorPlacement) -> PlacementObs {
    let pending = || {
        PlacementObs::Pending(format!(
            "waiting for AggregatorPlacement {name} to be solved"
        ))
    };
    let Some(st) = &ap.status else {
        return pending();
    };
    if st.observed_generation != ap.metadata.generation {
        return pending();
    }
    if let Some(c) = conditions::find(&st.conditions, "Feasible")
        && c.status == "False"
    {
        return PlacementObs::Infeasible(format!("AggregatorPlacement {name}: {}", c.message));
    }
    match &st.selected {
        Some(option) => PlacementObs::Placed {
            option: option.clone(),
            name,
        },
        None => pending(),
    }
}

async fn ssa<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

async fn ensure_namespace(client: &kube::Client, ns: &str) -> Result<(), kube::Error> {
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": ns, "labels": { "app.kubernetes.io/managed-by": "fedsky" } },
    }))
    .map_err(kube::Error::SerdeError)?;
    ssa(&Api::<Namespace>::all(client.clone()), &obj)
        .await
        .map(|_| ())
}

/// Every MemberCluster, from the cache once it is filled.
async fn member_clusters(ctx: &Context) -> Result<Vec<MemberCluster>, kube::Error> {
    Ok(match ctx.member_clusters.ready().await {
        Some(store) => store.state().iter().map(|mc| (**mc).clone()).collect(),
        None => {
            Api::<MemberCluster>::all(ctx.client.clone())
                .list(&ListParams::default())
                .await?
                .items
        }
    })
}

/// A public, Ready MemberCluster in the placed cloud and region.
async fn aggregator_cluster(
    ctx: &Context,
    option: &PlacementOption,
) -> Result<Option<MemberCluster>, kube::Error> {
    let mut matching: Vec<MemberCluster> = member_clusters(ctx)
        .await?
        .into_iter()
        .filter(|mc| {
            mc.spec.tier == ClusterTier::Public
                && serde_json::to_value(mc.spec.provider)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    == Some(option.cloud.clone())
                && mc.spec.region == option.region
                && mc
                    .status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
        })
        .collect();
    matching.sort_by_key(ResourceExt::name_any);
    Ok(matching.into_iter().next())
}

/// Applies the aggregator's objects in the placed cluster and reports whether it serves.
pub async fn realise_aggregator(
    ctx: &Context,
    job: &ValidJob,
    option: &PlacementOption,
) -> AggregatorObs {
    let cluster = match aggregator_cluster(ctx, option).await {
        Ok(Some(mc)) => mc.name_any(),
        Ok(None) => {
            if let Some(obs) = super::vm::realise(ctx, job, option).await {
                return obs;
            }
            return AggregatorObs::Waiting(
                "NoMemberClusterInRegion",
                format!(
                    "no Ready public MemberCluster in {}/{}; register one there, or set spec.provisioning on the AggregatorPlacement to run the aggregator on a VM",
                    option.cloud, option.region
                ),
            );
        }
        Err(e) => return AggregatorObs::Waiting("HubApiError", e.to_string()),
    };
    if let Some(rt) = ctx.runtime.process() {
        return process_aggregator(rt, job, cluster).await;
    }
    match apply_aggregator(ctx, job, &cluster).await {
        Ok(Some((endpoint, model_url))) => AggregatorObs::Ready {
            cluster,
            endpoint,
            model_url,
        },
        Ok(None) => AggregatorObs::Starting { cluster },
        Err(e) => AggregatorObs::Waiting("MemberClusterError", format!("{cluster}: {e}")),
    }
}

/// The process runtime's aggregator, standing in for the one in `cluster`.
async fn process_aggregator(rt: &ProcessRuntime, job: &ValidJob, cluster: String) -> AggregatorObs {
    let config = job.aggregator_file.clone();
    let server = match super::build::aggregator_certificate(job) {
        Ok(s) => s,
        Err(e) => return AggregatorObs::Waiting("CertificateError", e.to_string()),
    };
    let creds = Credentials {
        token: &job.token,
        ca_pem: &job.ca.cert_pem,
        leaf: &server,
    };
    match rt
        .ensure_aggregator(&job.key, &config, &creds, &job.workload.init_model())
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

async fn apply_aggregator(
    ctx: &Context,
    job: &ValidJob,
    cluster: &str,
) -> Result<Option<(String, String)>, Error> {
    let client = ctx.clusters.get(cluster)?;
    ctx.member_watches.ensure(&ctx.clusters, cluster);
    let objs = build::aggregator(job, &ctx.images)?;
    let digest = super::applied::digest(
        cluster,
        &(&objs.secret, &objs.pvc, &objs.service, &objs.deployment),
    );
    // Unchanged since the last apply: read back, and apply again only if it was deleted
    // or changed by someone else.
    if let Some(generation) = ctx.applied.current(&job.key, digest) {
        let read = async {
            let dep = Api::<Deployment>::namespaced(client.clone(), AGGREGATOR_NAMESPACE)
                .get_opt(&names::aggregator(&job.key))
                .await?;
            let svc = Api::<Service>::namespaced(client.clone(), AGGREGATOR_NAMESPACE)
                .get_opt(&names::aggregator(&job.key))
                .await?;
            Ok::<_, kube::Error>(dep.zip(svc))
        };
        match tokio::time::timeout(MEMBER_TIMEOUT, read).await {
            Ok(Ok(Some((dep, svc)))) if dep.metadata.generation == generation => {
                return Ok(served(job, svc, dep));
            }
            Ok(Ok(other)) => {
                tracing::debug!(
                    found = other.is_some(),
                    "aggregator changed or gone; applying again"
                );
                ctx.applied.forget(&job.key);
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(ClusterError::Unreachable {
                    cluster: cluster.into(),
                    reason: "reading the aggregator timed out".into(),
                }
                .into());
            }
        }
    }
    let run = async {
        ensure_namespace(&client, AGGREGATOR_NAMESPACE).await?;
        ssa(
            &Api::<Secret>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
            &objs.secret,
        )
        .await?;
        ssa(
            &Api::<PersistentVolumeClaim>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
            &objs.pvc,
        )
        .await?;
        let svc = ssa(
            &Api::<Service>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
            &objs.service,
        )
        .await?;
        let dep = ssa(
            &Api::<Deployment>::namespaced(client.clone(), AGGREGATOR_NAMESPACE),
            &objs.deployment,
        )
        .await?;
        Ok::<_, kube::Error>((svc, dep))
    };
    let (svc, dep) = tokio::time::timeout(MEMBER_TIMEOUT * 4, run)
        .await
        .map_err(|_| ClusterError::Unreachable {
            cluster: cluster.into(),
            reason: "applying aggregator timed out".into(),
        })??;
    ctx.applied
        .record(&job.key, digest, dep.metadata.generation);
    Ok(served(job, svc, dep))
}

/// The aggregator's gRPC endpoint and model URL once its Deployment is available.
fn served(job: &ValidJob, svc: Service, dep: Deployment) -> Option<(String, String)> {
    let available = dep.status.and_then(|s| s.available_replicas).unwrap_or(0) >= 1;
    if !available {
        return None;
    }
    // A LoadBalancer address where the cloud assigned one; otherwise the in-cluster name.
    let host = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .and_then(|i| i.into_iter().next())
        .and_then(|i| i.ip.or(i.hostname))
        .unwrap_or_else(|| format!("{}.{AGGREGATOR_NAMESPACE}.svc", names::aggregator(&job.key)));
    Some((
        format!("{host}:{GRPC_PORT}"),
        format!("http://{host}:{HTTP_PORT}"),
    ))
}

/// The participant Jobs of job `key` in `site`'s cluster.
async fn list_participants(
    ctx: &Context,
    site: &fedsky_crds::participant_pool::Site,
    key: &str,
) -> Result<Vec<Job>, ClusterError> {
    let client = ctx.clusters.get(&site.member_cluster)?;
    let jobs: Api<Job> = Api::namespaced(client, &site.namespace);
    let params = ListParams::default().labels(&names::selector(key));
    let list = bounded(
        &site.member_cluster,
        "listing participant Jobs",
        jobs.list(&params),
    );
    Ok(list.await?.items)
}

/// What happened to participants this reconcile.
#[derive(Debug)]
pub struct ParticipantsOutcome {
    /// The plan that was applied.
    pub plan: Plan,
    /// Participants running after it.
    pub running: usize,
    /// Status entries.
    pub states: Vec<ParticipantState>,
}

/// Observes participant Jobs in the sites' clusters, plans starts and replacements, and
/// applies them. `prev` is the status's participant list. A site that cannot be read (its
/// nodes or its participant Jobs) keeps its last known participants, counted as still
/// there: starting others in their place would run more participants than the job asks
/// for once the site answers again (a member API timeout is not a failed participant).
#[allow(clippy::too_many_arguments)]
pub async fn run_participants(
    ctx: &Context,
    job: &ValidJob,
    endpoint: &str,
    placed: Option<(&str, &str)>,
    queue: &mut QueueState,
    replacements: u32,
    prev: &[ParticipantState],
    now: k8s_openapi::jiff::Timestamp,
) -> ParticipantsOutcome {
    let mut candidates = Vec::new();
    let mut observed = Vec::new();
    let mut unreachable_sites = Vec::new();
    let mut unobserved: Vec<&str> = Vec::new();
    for site in &job.sites {
        let views = match site_nodes(ctx, site).await {
            Ok(v) => v,
            Err(e) => {
                unreachable_sites.push(format!("{}: {e}", site.name));
                unobserved.push(&site.name);
                continue;
            }
        };
        if let Some(rt) = ctx.runtime.process() {
            observed.extend(
                rt.participants(&job.key)
                    .iter()
                    .filter(|p| p.meta.site == site.name)
                    .map(|p| observe_process(p, &views)),
            );
        } else {
            match list_participants(ctx, site, &job.key).await {
                Ok(jobs) => {
                    observed.extend(jobs.iter().filter_map(|j| observe(j, &site.name, &views)))
                }
                Err(e) => {
                    unreachable_sites.push(format!("{}: {e}", site.name));
                    unobserved.push(&site.name);
                    continue;
                }
            }
        }
        candidates.extend(views.iter().map(|v: &NodeView| Candidate {
            site: site.name.clone(),
            node: v.name.clone(),
            healthy: v.ready && v.schedulable && v.matches_selector,
            free: v.free,
        }));
    }
    let floor = participants::sequence_floor(
        &job.key,
        prev.iter().map(|p| (p.site.as_str(), p.name.as_str())),
    );
    // What runs at an unreadable site is its last known state, kept in the status.
    let (mut states, assumed) = participants::last_known(prev, &unobserved);
    let plan = participants::plan(
        &observed,
        &floor,
        &candidates,
        &job.need,
        job.policy,
        queue,
        job.max_per_round.saturating_sub(assumed),
        replacements,
        job.max_replacements,
        now.as_second(),
    );
    for (o, why) in &plan.replaced {
        let site = job.site(&o.site);
        if let Some(rt) = ctx.runtime.process() {
            if let Err(e) = rt.remove_participant(&job.key, &o.name).await {
                tracing::warn!(participant = %o.name, error = %e, "removing a replaced participant process");
            }
        } else if let Ok(client) = ctx.clusters.get(&site.member_cluster) {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            let _ = Api::<Job>::namespaced(client.clone(), &site.namespace)
                .delete(&o.name, &dp)
                .await;
            // Its certificate goes with it: a replaced participant must not rejoin.
            let _ = Api::<Secret>::namespaced(client, &site.namespace)
                .delete(&o.name, &dp)
                .await;
        }
        states.push(state(
            &o.name,
            &o.site,
            &o.node,
            "Replaced",
            Some(why.clone()),
        ));
    }
    let replaced: Vec<&str> = plan.replaced.iter().map(|(o, _)| o.name.as_str()).collect();
    for o in observed
        .iter()
        .filter(|o| !replaced.contains(&o.name.as_str()))
    {
        let s = match o.phase {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Completed",
            Phase::Failed => "Failed",
        };
        states.push(state(&o.name, &o.site, &o.node, s, None));
    }
    for c in &plan.create {
        let site = job.site(&c.site);
        let name = names::participant(&job.key, &c.site, c.n);
        if let Some(rt) = ctx.runtime.process() {
            let started = async {
                let region = match rt.settings().network {
                    Some(_) => site_region(ctx, site).await,
                    None => None,
                };
                let site_at = region.as_ref().map(|(c, r)| (c.as_str(), r.as_str()));
                let dial = rt
                    .participant_endpoint(&job.key, &name, endpoint, site_at, placed)
                    .await?;
                start_process(rt, job, c, &name, &dial).await
            };
            let msg = started.await.err().map(|e| format!("cannot start: {e}"));
            states.push(state(&name, &c.site, &c.node, "Pending", msg));
            continue;
        }
        let applied = async {
            let client = ctx.clusters.get(&site.member_cluster)?;
            ensure_namespace(&client, &site.namespace).await?;
            ssa(
                &Api::<Secret>::namespaced(client.clone(), &site.namespace),
                &build::participant_secret(job, c)?,
            )
            .await?;
            ssa(
                &Api::<Job>::namespaced(client, &site.namespace),
                &build::participant_job(job, c, endpoint, &ctx.images),
            )
            .await?;
            Ok::<_, Error>(())
        }
        .await;
        let msg = applied.err().map(|e| format!("cannot start: {e}"));
        states.push(state(&name, &c.site, &c.node, "Pending", msg));
    }
    let running = states
        .iter()
        .filter(|s| !unobserved.contains(&s.site.as_str()))
        .filter(|s| s.state == "Running" || s.state == "Completed")
        .count();
    let mut plan = plan;
    if plan.shortfall.is_none() && !unreachable_sites.is_empty() && running < job.max_per_round {
        plan.shortfall = Some(crate::orchestrator::SelectError::NotEnough {
            wanted: job.max_per_round,
            found: running,
            reason: format!("unreachable sites: {}", unreachable_sites.join("; ")),
        });
    }
    states.sort_by(|a, b| a.name.cmp(&b.name));
    ParticipantsOutcome {
        plan,
        running,
        states,
    }
}

fn state(name: &str, site: &str, node: &str, s: &str, message: Option<String>) -> ParticipantState {
    ParticipantState {
        name: name.into(),
        site: site.into(),
        node: Some(node.into()),
        state: s.into(),
        message,
        last_heartbeat: None,
    }
}

/// The `(cloud, region)` whose network models a site: its own fields, else its member
/// cluster's (as the placement takes them).
async fn site_region(
    ctx: &Context,
    site: &fedsky_crds::participant_pool::Site,
) -> Option<(String, String)> {
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
    c: &build::ParticipantPlan,
    name: &str,
    endpoint: &str,
) -> Result<(), ProcessError> {
    let data_root = rt.data_dir(job.site(&c.site))?;
    let leaf = job
        .ca
        .client(name)
        .map_err(|e| ProcessError::Credentials(e.to_string()))?;
    let paths = rt.participant_paths(
        &job.key,
        name,
        &Credentials {
            token: &job.token,
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

fn observe_process(p: &ParticipantProc, views: &[NodeView]) -> Observed {
    let phase = match p.state {
        ProcState::Absent => Phase::Pending,
        ProcState::Running => Phase::Running,
        ProcState::Exited(0) => Phase::Succeeded,
        ProcState::Exited(_) | ProcState::Lost => Phase::Failed,
    };
    Observed {
        name: p.name.clone(),
        site: p.meta.site.clone(),
        node: p.meta.node.clone(),
        n: p.meta.n,
        phase,
        node_ready: views.iter().any(|v| v.name == p.meta.node && v.ready),
    }
}

fn observe(job: &Job, site: &str, views: &[NodeView]) -> Option<Observed> {
    let name = job.name_any();
    let node = job
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .node_name
        .clone()?;
    let n = name.rsplit('-').next()?.parse().ok()?;
    let st = job.status.clone().unwrap_or_default();
    let phase = if st.failed.unwrap_or(0) > 0 {
        Phase::Failed
    } else if st.succeeded.unwrap_or(0) > 0 {
        Phase::Succeeded
    } else if st.ready.unwrap_or(0) > 0 || st.active.unwrap_or(0) > 0 && st.ready.is_none() {
        Phase::Running
    } else {
        Phase::Pending
    };
    let node_ready = views.iter().any(|v| v.name == node && v.ready);
    Some(Observed {
        name,
        site: site.into(),
        node,
        n,
        phase,
        node_ready,
    })
}

/// Deletes a job's aggregator objects (selected by `lp`) in one member cluster.
async fn delete_aggregator(
    client: kube::Client,
    lp: &ListParams,
    dp: &DeleteParams,
) -> Result<(), kube::Error> {
    let n = AGGREGATOR_NAMESPACE;
    Api::<Deployment>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    Api::<Service>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    Api::<Secret>::namespaced(client.clone(), n)
        .delete_collection(dp, lp)
        .await?;
    Api::<PersistentVolumeClaim>::namespaced(client, n)
        .delete_collection(dp, lp)
        .await?;
    Ok(())
}

/// Deletes the job's objects in every member cluster it may have used.
pub async fn cleanup(ctx: &Context, job: &FederatedJob) -> Result<(), Error> {
    super::vm::cleanup(ctx, job).await?;
    let ns = job.namespace().unwrap_or_default();
    let key = names::job_key(&ns, &job.name_any());
    if let Some(rt) = ctx.runtime.process() {
        rt.cleanup(&key)
            .await
            .map_err(|e| Error::Runtime(e.to_string()))?;
    }
    let lp = ListParams::default().labels(&names::selector(&key));
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    // The cluster the status names must be cleaned (retried until it is); the other
    // public clusters are cleaned as far as they answer, for an aggregator applied just
    // before a restart or a timeout kept its cluster out of the status.
    let recorded = job
        .status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .and_then(|p| p.member_cluster.clone());
    let members = member_clusters(ctx).await?;
    let mut candidates: Vec<String> = members
        .iter()
        .filter(|mc| mc.spec.tier == ClusterTier::Public)
        .map(ResourceExt::name_any)
        .collect();
    candidates.extend(recorded.clone());
    candidates.sort();
    candidates.dedup();
    for cluster in candidates {
        let required = recorded.as_deref() == Some(cluster.as_str())
            && members.iter().any(|mc| mc.name_any() == cluster);
        let done = match ctx.clusters.get(&cluster) {
            Ok(client) => delete_aggregator(client, &lp, &dp)
                .await
                .map_err(Error::from),
            Err(e) => Err(e.into()),
        };
        match done {
            Err(e) if required => return Err(e),
            Err(e) => tracing::debug!(%cluster, error = %e, "no aggregator cleanup there"),
            Ok(()) => {}
        }
    }
    let pool = Api::<fedsky_crds::ParticipantPool>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&job.spec.participants.pool_ref.name)
        .await?;
    for site in pool.map(|p| p.spec.sites).unwrap_or_default() {
        // A member that is gone for good would block deletion forever; skip unregistered ones.
        let Ok(client) = ctx.clusters.get(&site.member_cluster) else {
            continue;
        };
        Api::<Job>::namespaced(client.clone(), &site.namespace)
            .delete_collection(&dp, &lp)
            .await?;
        Api::<Secret>::namespaced(client, &site.namespace)
            .delete_collection(&dp, &lp)
            .await?;
    }
    Ok(())
}
