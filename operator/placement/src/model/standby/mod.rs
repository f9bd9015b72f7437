//! The optional standby aggregator: a second candidate that participants
//! fail over to.
//!
//! - **Cost** per month, added to the primary's: the standby instance
//!   (`Warm`: `hoursPerMonth` hours, like the primary; `Cold`:
//!   `failoverHoursPerMonth` hours) plus replication of the checkpoint, one
//!   model per round from the primary's region to the standby's, priced at
//!   the primary region's egress to it. Storing that one checkpoint costs
//!   cents at object-storage list prices and is left out.
//! - **Failover round time**: the round time with the standby as the
//!   aggregator and the same site flavours — reported, not optimised. When
//!   `maxRoundTimeSeconds` is set it bounds this round too, so a failover
//!   keeps the promise the limit makes.
//! - **Constraints** between the pair: another region (`distinctRegion`),
//!   another cloud (`distinctCloud`). The standby passes the same candidate,
//!   data-residency and memory filters as the primary, so it is chosen from
//!   the same list.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::{AggregatorOption, BYTES_PER_GB, BYTES_PER_MB, StandbyMode, StandbyRequirement};
use crate::catalog::Catalog;

/// The standby's precomputed terms over the model's aggregator list.
#[derive(Debug, Clone)]
pub(crate) struct StandbyModel {
    pub(crate) requirement: StandbyRequirement,
    /// Per aggregator: index of its region and of its cloud among the
    /// candidates' distinct ones.
    region_of: Vec<usize>,
    cloud_of: Vec<usize>,
    n_regions: usize,
    /// Per aggregator as standby: instance cost per month.
    instance: Vec<f64>,
    /// `[primary region * n_regions + standby region]`: replication egress
    /// per month.
    replication: Vec<f64>,
    /// Valid (primary, standby) pairs.
    pub(crate) pairs: u64,
    /// Per primary, its allowed standbys by (cost, gene order), built on
    /// first use: only NSGA-II's repair needs it.
    order: OnceLock<Vec<Vec<u32>>>,
}

impl StandbyModel {
    pub(crate) fn build(
        catalog: &Catalog,
        aggregators: &[AggregatorOption],
        requirement: &StandbyRequirement,
        workload: &super::Workload,
    ) -> Self {
        let mut regions = BTreeMap::new();
        let mut clouds = BTreeMap::new();
        let mut region_of = Vec::with_capacity(aggregators.len());
        let mut cloud_of = Vec::with_capacity(aggregators.len());
        let mut region_ids = Vec::new();
        for agg in aggregators {
            let next = regions.len();
            let r = *regions.entry(agg.region_id).or_insert_with(|| {
                region_ids.push(agg.region_id);
                next
            });
            let next = clouds.len();
            let c = *clouds.entry(agg.cloud.as_str()).or_insert(next);
            region_of.push(r);
            cloud_of.push(c);
        }
        let n_regions = region_ids.len();
        let hours = match requirement.mode {
            StandbyMode::Warm => workload.hours_per_month,
            StandbyMode::Cold => requirement.failover_hours_per_month,
        };
        let instance = aggregators.iter().map(|b| b.hourly_usd * hours).collect();
        let checkpoint_gb = workload.model_size_mb * BYTES_PER_MB / BYTES_PER_GB;
        let mut replication = Vec::with_capacity(n_regions * n_regions);
        for &from in &region_ids {
            for &to in &region_ids {
                replication.push(
                    workload.rounds_per_month * checkpoint_gb * catalog.egress_per_gb(from, to),
                );
            }
        }
        let mut model = Self {
            requirement: *requirement,
            region_of,
            cloud_of,
            n_regions,
            instance,
            replication,
            pairs: 0,
            order: OnceLock::new(),
        };
        let n = aggregators.len();
        model.pairs = (0..n)
            .map(|a| (0..n).filter(|&b| model.allowed(a, b)).count() as u64)
            .sum();
        model
    }

    /// Whether `b` may stand by for primary `a`.
    pub(crate) fn allowed(&self, a: usize, b: usize) -> bool {
        let r = &self.requirement;
        (!r.distinct_region || self.region_of[a] != self.region_of[b])
            && (!r.distinct_cloud || self.cloud_of[a] != self.cloud_of[b])
    }

    /// (instance, replication) cost per month of standby `b` for primary `a`.
    pub(crate) fn cost(&self, a: usize, b: usize) -> (f64, f64) {
        (
            self.instance[b],
            self.replication[self.region_of[a] * self.n_regions + self.region_of[b]],
        )
    }

    /// The standbys allowed with primary `a`, cheapest first (ties in gene
    /// order).
    pub(crate) fn by_cost(&self, a: usize) -> &[u32] {
        let order = self.order.get_or_init(|| {
            let n = self.region_of.len();
            (0..n)
                .map(|a| {
                    let cost = |b: usize| {
                        let (instance, replication) = self.cost(a, b);
                        instance + replication
                    };
                    let mut list: Vec<u32> = (0..n)
                        .filter(|&b| self.allowed(a, b))
                        .map(|b| b as u32)
                        .collect();
                    list.sort_by(|&x, &y| {
                        cost(x as usize)
                            .total_cmp(&cost(y as usize))
                            .then(x.cmp(&y))
                    });
                    list
                })
                .collect()
        });
        &order[a]
    }

    /// Whether some pair would be allowed without `distinctCloud`, that is,
    /// whether that rule alone empties the pairs.
    pub(crate) fn pairs_without_distinct_cloud(&self) -> bool {
        let n = self.region_of.len();
        !self.requirement.distinct_region
            || (0..n).any(|a| (0..n).any(|b| self.region_of[a] != self.region_of[b]))
    }
}

#[cfg(test)]
mod tests;
