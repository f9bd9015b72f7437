//! What runs: each site's nodes (the shared site cache) and the job's participants there
//! (through [`crate::workloads::Workloads`]), for the plan.

use super::context::JobContext;
use super::plan::SiteObs;
use super::validate::ValidJob;
use crate::controllers::participant_pool::nodes::site_nodes;

/// Every site of `job`, in order; a site whose nodes or participants cannot be read says
/// why.
pub(super) async fn sites(ctx: &JobContext, job: &ValidJob) -> Vec<SiteObs> {
    let mut out = Vec::with_capacity(job.sites.len());
    for site in &job.sites {
        let seen = match site_nodes(&ctx.shared, site).await {
            Ok(views) => match ctx.workloads.participants(job, site).await {
                Ok(found) => Ok((views, found)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        out.push(SiteObs {
            site: site.name.clone(),
            seen,
        });
    }
    out
}
