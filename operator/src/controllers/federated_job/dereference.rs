//! Dereference: what a FederatedJob refers to, read (or, for what the job owns on the
//! hub, created) before anything is decided: its pool, its token and CA Secrets, its model
//! store's S3 credentials Secret, its AggregatorPlacement, and the member clusters the
//! aggregator may run in.

use super::context::JobContext;
use super::credentials::JobCredentials;
use super::model_store::{self, CredentialsError, S3Credentials};
use super::status::PlacementObs;
use crate::names;
use crate::pki::Ca;
use crate::{Context, Error, FIELD_MANAGER};
use fedsky_crds::conditions;
use fedsky_crds::{AggregatorPlacement, FederatedJob, MemberCluster, ParticipantPool};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The job's pool from the cache (or the hub when the cache does not hold it); the inner
/// error says why the job is invalid without it.
pub(super) async fn pool(
    job: &FederatedJob,
    ctx: &Context,
) -> Result<Result<ParticipantPool, String>, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = &job.spec.participants.pool_ref.name;
    if let Some(p) = ctx.pools.get(Some(&ns), name).await {
        return Ok(Ok((*p).clone()));
    }
    let pools: Api<ParticipantPool> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(pools
        .get_opt(name)
        .await?
        .ok_or_else(|| format!("spec.participants.poolRef: ParticipantPool {ns}/{name} not found")))
}

/// The data of the Secret `name` in the operator's namespace that holds `what` of `job`,
/// created once from `make` when it does not exist or lacks `keys`. A create that loses a
/// race (409) reads the winner's. No owner reference (owners must share the namespace):
/// the job's finalizer deletes it ([`delete_credentials`]).
async fn ensure_hub_secret(
    ctx: &Context,
    job: &FederatedJob,
    what: &str,
    keys: &[&str],
    make: impl Fn() -> Result<BTreeMap<String, String>, Error>,
) -> Result<BTreeMap<String, String>, Error> {
    let ns = ctx.secrets.home().to_string();
    let name = names::job_secret(&job.uid().unwrap_or_default(), what);
    let job_ns = job.namespace().unwrap_or_default();
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
    if let Some(s) = api.get_opt(&name).await?
        && let Some(data) = read(&s)
    {
        return Ok(data);
    }
    let data = make()?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {
                names::LABEL_JOB: names::job_key(&job_ns, &job.name_any()),
                "app.kubernetes.io/managed-by": "fedsky",
            },
            "annotations": { names::ANNOTATION_JOB: format!("{job_ns}/{}", job.name_any()) },
        },
        "stringData": data,
    }))?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(data),
        // Another reconcile won the race: use its data.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api.get(&name).await?;
            read(&s).ok_or_else(|| Error::IncompleteSecret {
                secret: format!("{ns}/{name}"),
                keys: keys.iter().map(|k| (*k).to_string()).collect(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the job's token and CA Secrets (gone already is fine).
pub(super) async fn delete_credentials(ctx: &Context, job: &FederatedJob) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ctx.secrets.home());
    let uid = job.uid().unwrap_or_default();
    for what in [TOKEN, CA] {
        match api
            .delete(&names::job_secret(&uid, what), &Default::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Which of a job's Secrets holds its token.
const TOKEN: &str = "token";
/// Which of a job's Secrets holds its CA.
const CA: &str = "ca";

/// The job's token, created once (random) in a Secret of the operator's namespace.
async fn ensure_token(ctx: &Context, job: &FederatedJob) -> Result<String, Error> {
    let mut data = ensure_hub_secret(ctx, job, TOKEN, &["token"], || {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(BTreeMap::from([("token".to_string(), token)]))
    })
    .await?;
    Ok(data.remove("token").unwrap_or_default())
}

/// The job's CA, created once in a Secret of the operator's namespace (deleted with the
/// job).
async fn ensure_ca(ctx: &Context, job: &FederatedJob) -> Result<Ca, Error> {
    let ns = job.namespace().unwrap_or_default();
    let reference = format!("{ns}/{}", job.name_any());
    let data = ensure_hub_secret(ctx, job, CA, &["ca.crt", "ca.key"], || {
        let ca = Ca::generate(&reference, k8s_openapi::jiff::Timestamp::now().as_second())?;
        Ok(BTreeMap::from([
            ("ca.crt".to_string(), ca.cert_pem.clone()),
            ("ca.key".to_string(), ca.key_pem().to_string()),
        ]))
    })
    .await?;
    let get = |k: &str| data.get(k).map_or("", String::as_str);
    let secret = names::job_secret(&job.uid().unwrap_or_default(), CA);
    Ok(Ca::from_pem(
        get("ca.crt"),
        get("ca.key"),
        &format!("{}/{secret}", ctx.secrets.home()),
    )?)
}

/// The job's token and CA: from memory once read, else from (or into) their hub Secrets.
pub(super) async fn credentials(
    ctx: &JobContext,
    job: &FederatedJob,
) -> Result<JobCredentials, Error> {
    let uid = job.uid().unwrap_or_default();
    if let Some(c) = ctx.credentials.get(&uid) {
        return Ok(c);
    }
    let creds = JobCredentials {
        token: fedsky_clouds::Sensitive::new(ensure_token(&ctx.shared, job).await?),
        ca: ensure_ca(&ctx.shared, job).await?,
    };
    ctx.credentials.insert(&uid, creds.clone());
    Ok(creds)
}

/// The keys of the job's S3 model store from the Secret `spec.modelStore.s3.
/// credentialsSecretRef` names in the job's namespace (read each reconcile, so a rotated
/// Secret reaches the aggregator); `None` when the job uses no S3 store or names no
/// Secret. The inner error names the Secret and key the job cannot go on without.
pub(super) async fn s3_credentials(
    ctx: &Context,
    job: &FederatedJob,
) -> Result<Result<Option<S3Credentials>, String>, Error> {
    let name = match model_store::credentials_secret(job, &ctx.secrets) {
        Ok(Some(name)) => name,
        Ok(None) => return Ok(Ok(None)),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let ns = job.namespace().unwrap_or_default();
    let secret = format!("{ns}/{name}");
    let Some(found) = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?
    else {
        return Ok(Err(CredentialsError::NotFound { secret }.to_string()));
    };
    let data = found.data.unwrap_or_default();
    Ok(model_store::credentials(&secret, &data)
        .map(Some)
        .map_err(|e| e.to_string()))
}

/// Adopts the referenced AggregatorPlacement or applies one from the inline requirements,
/// and reads its result. Both controllers call it: the placer to place, the lifecycle
/// controller to follow a placement that changes.
pub(super) async fn placement(ctx: &Context, job: &FederatedJob) -> Result<PlacementObs, Error> {
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

/// Every MemberCluster (the candidates for the aggregator).
pub(super) async fn member_clusters(ctx: &Context) -> Result<Vec<MemberCluster>, kube::Error> {
    ctx.list_member_clusters().await
}
