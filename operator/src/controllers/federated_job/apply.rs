//! Apply: carry out the plan through [`crate::workloads::Workloads`] — the aggregator
//! where the plan puts it, replaced participants removed, new ones started — and publish
//! what happened.

use super::context::JobContext;
use super::plan::{self, ParticipantsOutcome, ParticipantsPlan};
use super::status::AggregatorObs;
use super::validate::ValidJob;
use super::{dereference, observe, report};
use crate::names;
use crate::orchestrator::QueueState;
use crate::workloads::Start;
use fedsky_crds::FederatedJob;
use fedsky_crds::aggregator_placement::PlacementOption;
use fedsky_crds::federated_job::ParticipantPhase;
use fedsky_crds::federated_job::ParticipantState;
use kube::runtime::events::EventType;

/// Starts or updates the aggregator where the plan puts it and reports its state.
pub(super) async fn aggregator(
    ctx: &JobContext,
    job: &ValidJob,
    option: &PlacementOption,
) -> AggregatorObs {
    match dereference::member_clusters(&ctx.shared).await {
        Ok(members) => {
            let want = plan::desired_aggregator(&members, option);
            ctx.workloads.ensure_aggregator(job, &want).await
        }
        Err(e) => AggregatorObs::Waiting("HubApiError", e.to_string()),
    }
}

/// Where the participants dial the aggregator.
pub(super) struct Aggregator<'a> {
    /// Its gRPC endpoint.
    pub endpoint: &'a str,
    /// Its `(cloud, region)`.
    pub placed: Option<(&'a str, &'a str)>,
}

/// Observes the participants, plans starts and replacements, and carries them out.
/// `prev` is the status's participant list.
pub(super) async fn participants(
    ctx: &JobContext,
    job: &ValidJob,
    aggregator: &Aggregator<'_>,
    queue: &mut QueueState,
    replacements: u32,
    prev: &[ParticipantState],
    now: i64,
) -> ParticipantsOutcome {
    let sites = observe::sites(ctx, job).await;
    let mut planned = plan::participants(job, &sites, queue, replacements, prev, now);
    execute(ctx, job, aggregator, &mut planned).await;
    plan::settle(job, planned)
}

/// Removes the replaced participants and starts the new ones; each start adds its status
/// entry (with why it could not start, if so).
async fn execute(
    ctx: &JobContext,
    job: &ValidJob,
    aggregator: &Aggregator<'_>,
    planned: &mut ParticipantsPlan,
) {
    for (o, _) in &planned.plan.replaced {
        if let Err(e) = ctx
            .workloads
            .remove_participant(job, job.site(&o.site), &o.name)
            .await
        {
            tracing::warn!(participant = %o.name, error = %e, "removing a replaced participant");
        }
    }
    for c in &planned.plan.create {
        let name = names::participant(&job.key, &c.site, c.n);
        let start = Start {
            plan: c,
            name: &name,
            site: job.site(&c.site),
            endpoint: aggregator.endpoint,
            placed: aggregator.placed,
        };
        let msg = ctx
            .workloads
            .start_participant(job, start)
            .await
            .err()
            .map(|e| format!("cannot start: {e}"));
        planned.states.push(plan::state(
            &name,
            &c.site,
            &c.node,
            ParticipantPhase::Pending,
            msg,
        ));
    }
}

/// Tells the user and the site cache what the plan did.
pub(super) async fn announce(
    ctx: &JobContext,
    job: &FederatedJob,
    valid: &ValidJob,
    outcome: &ParticipantsOutcome,
) {
    // The next reader of these sites must see the participants just started.
    for c in &outcome.plan.create {
        ctx.shared.sites.invalidate(valid.site(&c.site));
    }
    for (o, why) in &outcome.plan.replaced {
        report::publish(
            ctx,
            job,
            EventType::Warning,
            "ParticipantReplaced",
            &format!("{why}; starting a replacement"),
        )
        .await;
        tracing::info!(participant = %o.name, %why, "participant replaced");
    }
    for c in &outcome.plan.create {
        let name = names::participant(&valid.key, &c.site, c.n);
        report::publish(
            ctx,
            job,
            EventType::Normal,
            "ParticipantStarted",
            &format!("{name} on {}/{}", c.site, c.node),
        )
        .await;
    }
}
