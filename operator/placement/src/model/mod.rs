//! The aggregator placement model: a decision is the aggregator's (cloud,
//! region, instance type) plus, for each site that offers several, the
//! flavour it trains on. Two objectives, both minimised:
//!
//! - **monthly cost** = instance hours × on-demand price, plus rounds × Σ
//!   sites (model download priced at the aggregator region's egress to the
//!   site, plus model upload priced at the site region's egress to the
//!   aggregator when sites' egress is charged), plus Σ sites flavour hours
//!   × flavour price;
//! - **round time** = the slowest site's (local compute ÷ flavour speed +
//!   download + upload) + aggregation time, where one transfer takes
//!   `rttsPerTransfer` RTTs plus the model over `min(measured throughput,
//!   TCP window ÷ RTT)`, and aggregation folds every update at a per-vCPU
//!   rate.
//!
//! Constraints: `maxMonthlyCost`, `maxRoundTimeSeconds` (as `g <= 0`), and,
//! as filters on the candidate set, the allowed clouds/regions and the
//! instance memory the aggregation strategy needs.
//!
//! Optionally a **standby** aggregator (see [`standby`]): a second
//! candidate that adds its cost to the monthly cost, leaves the round time
//! alone, reports a failover round time, and must keep that failover round
//! within `maxRoundTimeSeconds`.
//!
//! Cost is a sum of per-site terms and round time a maximum of per-site
//! terms, so for a fixed aggregator and a round-time bound each site's
//! cheapest adequate flavour is independent of the others: [`decompose`]
//! uses this to get the exact Pareto front of spaces far too large to
//! enumerate.

pub mod decompose;
mod error;
mod input;
mod solve;
pub mod standby;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, RegionId, region_key};
use crate::problem::{Problem, Variable, choice};

pub use error::ModelError;
pub use input::{
    AggregationMemory, CandidateFilter, DEFAULT_FAILOVER_HOURS, FlavourInput, PlacementInput,
    RegionRef, Requirements, SiteInput, StandbyMode, StandbyRequirement, TimingModel, Workload,
};
pub use solve::{
    BindingConstraint, CostBreakdown, Infeasibility, PlacementOutcome, PlacementPoint,
    PlacementSolver, SiteFlavour, StandbyPoint, WeightedScore, pick_weighted, solve_placement,
    weighted_scores,
};

/// The rate one model stream gets on `link`: the measured throughput, capped at one TCP
/// window per RTT (the catalog's throughput was measured with many parallel streams).
/// The emulated testbed gives every participant-to-aggregator path this rate.
pub fn stream_bits_per_second(link: crate::catalog::Link, timing: &TimingModel) -> f64 {
    let window_bps = timing.tcp_window_mib * BYTES_PER_MIB * 8.0 / (link.rtt_ms / 1000.0);
    link.throughput_gbps
        .map_or(window_bps, |g| window_bps.min(g * 1.0e9))
}
use standby::StandbyModel;

const BYTES_PER_MB: f64 = 1.0e6;
const BYTES_PER_GB: f64 = 1.0e9;
const BYTES_PER_GIB: f64 = 1_073_741_824.0;
const BYTES_PER_MIB: f64 = 1_048_576.0;

/// One aggregator candidate: an instance type in a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregatorOption {
    /// Cloud, e.g. `aws`.
    pub cloud: String,
    /// Region name, e.g. `eu-central-1`.
    pub region: String,
    /// Instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// vCPUs of the type.
    pub vcpus: f64,
    /// Memory of the type in GiB.
    pub memory_gib: f64,
    /// GPUs of the type.
    pub gpus: u32,
    /// On-demand price in USD per hour.
    pub hourly_usd: f64,
    #[serde(skip)]
    region_id: RegionId,
}

/// A site as modelled: its region and its flavours (at least one).
#[derive(Debug, Clone, PartialEq)]
struct ModelSite {
    name: String,
    region: RegionId,
    flavours: Vec<FlavourInput>,
}

/// How many candidates each filter kept, for explanations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateCounts {
    /// Priced (instance type, region) pairs in the catalog.
    pub catalog: usize,
    /// After `candidates` (clouds, regions, instance types).
    pub after_candidates: usize,
    /// After data residency.
    pub after_residency: usize,
    /// After the memory requirement.
    pub after_memory: usize,
    /// With a standby: (primary, standby) pairs of those candidates that
    /// meet `distinctRegion` and `distinctCloud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_pairs: Option<u64>,
}

/// A decision: the aggregator, one flavour index per site, and the standby
/// aggregator when the model has one. Ordered field by field, which is the
/// tie-break between decisions with equal objectives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decision {
    /// Index of the aggregator in [`PlacementModel::aggregators`].
    pub aggregator: usize,
    /// Flavour index per site, in site order.
    pub flavours: Vec<usize>,
    /// Index of the standby in [`PlacementModel::aggregators`].
    pub standby: Option<usize>,
}

/// A placement problem ready to solve: resolved candidates and sites with
/// every per-site time and cost term precomputed.
#[derive(Debug, Clone)]
pub struct PlacementModel {
    catalog_version: String,
    aggregators: Vec<AggregatorOption>,
    sites: Vec<ModelSite>,
    requirements: Requirements,
    counts: CandidateCounts,
    /// Memory the aggregator needs, in GiB.
    memory_needed_gib: f64,
    /// Sites with more than one flavour, in gene order after gene 0.
    flavour_genes: Vec<usize>,
    /// For each site, the index of its gene in `x`, if it has one.
    gene_of_site: Vec<Option<usize>>,
    variables: Vec<Variable>,
    /// First term index of each site in a row of `site_time`/`site_cost`.
    site_offset: Vec<usize>,
    row_len: usize,
    /// Per aggregator: instance cost per month.
    instance_cost: Vec<f64>,
    /// Per aggregator: aggregation seconds per round.
    aggregation_time: Vec<f64>,
    /// `[a * row_len + site_offset[s] + f]`: site s on flavour f with
    /// aggregator a — seconds per round (compute + both transfers).
    site_time: Vec<f64>,
    /// Same layout: egress per month of both transfers (flavour-free).
    site_egress: Vec<f64>,
    /// Same layout: flavour cost per month.
    site_flavour_cost: Vec<f64>,
    /// Whether NSGA-II's new points get the cheapest adequate flavours.
    repair: bool,
    /// The standby's terms, when one is asked for; its gene is the last.
    standby: Option<StandbyModel>,
}

impl PlacementModel {
    /// Resolves `input` against `catalog`, filters the aggregator candidates
    /// and precomputes every per-site term.
    pub fn build(catalog: &Catalog, input: &PlacementInput) -> Result<Self, ModelError> {
        validate_numbers(input)?;
        let sites = resolve_sites(catalog, &input.sites)?;
        let n_sites = sites.len();
        let workload = &input.workload;
        let timing = &input.timing;
        let memory_needed_gib =
            workload.model_size_mb * BYTES_PER_MB * workload.memory.copies(n_sites) / BYTES_PER_GIB
                + timing.base_memory_gib;

        let (aggregators, counts) = candidates(catalog, input, &sites, memory_needed_gib)?;

        let mut site_offset = Vec::with_capacity(n_sites);
        let mut row_len = 0;
        for site in &sites {
            site_offset.push(row_len);
            row_len += site.flavours.len();
        }
        let size_bytes = workload.model_size_mb * BYTES_PER_MB;
        let size_gb = size_bytes / BYTES_PER_GB;
        let mut site_time = Vec::with_capacity(aggregators.len() * row_len);
        let mut site_egress = Vec::with_capacity(aggregators.len() * row_len);
        let mut site_flavour_cost = Vec::with_capacity(aggregators.len() * row_len);
        let mut instance_cost = Vec::with_capacity(aggregators.len());
        let mut aggregation_time = Vec::with_capacity(aggregators.len());
        for agg in &aggregators {
            instance_cost.push(agg.hourly_usd * workload.hours_per_month);
            let cores = agg.vcpus.min(n_sites as f64);
            aggregation_time
                .push(n_sites as f64 * size_gb / (timing.aggregation_gb_per_s_per_vcpu * cores));
            for site in &sites {
                // `candidates` dropped aggregators without a link to every site.
                let link =
                    catalog
                        .link(agg.region_id, site.region)
                        .unwrap_or(crate::catalog::Link {
                            rtt_ms: f64::INFINITY,
                            throughput_gbps: None,
                        });
                let rtt_s = link.rtt_ms / 1000.0;
                let bps = stream_bits_per_second(link, timing);
                let transfer = timing.rtts_per_transfer * rtt_s + size_bytes * 8.0 / bps;
                let down = catalog.egress_per_gb(agg.region_id, site.region);
                let up = if workload.charge_site_egress {
                    catalog.egress_per_gb(site.region, agg.region_id)
                } else {
                    0.0
                };
                let egress = workload.rounds_per_month * size_gb * (down + up);
                for flavour in &site.flavours {
                    site_time.push(
                        workload.local_compute_seconds / flavour.relative_speed + 2.0 * transfer,
                    );
                    site_egress.push(egress);
                    site_flavour_cost.push(flavour.hourly_usd * workload.hours_per_month);
                }
            }
        }

        let flavour_genes: Vec<usize> = (0..n_sites)
            .filter(|&s| sites[s].flavours.len() > 1)
            .collect();
        let mut gene_of_site = vec![None; n_sites];
        for (g, &s) in flavour_genes.iter().enumerate() {
            gene_of_site[s] = Some(g + 1);
        }
        let mut variables = vec![Variable::categorical(aggregators.len())];
        variables.extend(
            flavour_genes
                .iter()
                .map(|&s| Variable::categorical(sites[s].flavours.len())),
        );
        let standby = input
            .requirements
            .standby
            .as_ref()
            .map(|r| StandbyModel::build(catalog, &aggregators, r, workload));
        let mut counts = counts;
        if let Some(sb) = &standby {
            // After the flavour genes, so a model without a standby keeps
            // its gene layout.
            variables.push(Variable::categorical(aggregators.len()));
            counts.standby_pairs = Some(sb.pairs);
        }
        Ok(Self {
            catalog_version: catalog.version().to_string(),
            aggregators,
            sites,
            requirements: input.requirements.clone(),
            counts,
            memory_needed_gib,
            flavour_genes,
            gene_of_site,
            variables,
            site_offset,
            row_len,
            instance_cost,
            aggregation_time,
            site_time,
            site_egress,
            site_flavour_cost,
            repair: true,
            standby,
        })
    }

    /// Turns NSGA-II's repair on (the default) or off. The repair gives
    /// every new point, for its aggregator and its slowest site's time, the
    /// cheapest flavour at each site that is no slower than that: never worse
    /// in either objective, and it leaves NSGA-II to search aggregators and
    /// round-time bounds, which is where the exact decomposition shows the
    /// front lies. With a standby, flavours also keep the failover round
    /// within its limit (or no slower than it was), and the standby gene gets
    /// the least violating, then cheapest, standby for the point. Off,
    /// NSGA-II is the textbook algorithm (for benchmarks).
    pub fn set_repair(&mut self, on: bool) {
        self.repair = on;
    }

    /// The cheapest flavour of site `s` under aggregator `a` whose time
    /// stays within the round-time bound `bound` and that `admit` accepts;
    /// ties go to the faster, then the first.
    fn cheapest_within(
        &self,
        a: usize,
        s: usize,
        bound: f64,
        admit: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut best: Option<(f64, f64, usize)> = None;
        for f in 0..self.sites[s].flavours.len() {
            let t = self.term(a, s, f);
            let (time, cost) = (
                self.site_time[t],
                self.site_egress[t] + self.site_flavour_cost[t],
            );
            if time > bound || !admit(f) {
                continue;
            }
            if best.is_none_or(|(bc, bt, _)| cost < bc || (cost == bc && time < bt)) {
                best = Some((cost, time, f));
            }
        }
        best.map(|(_, _, f)| f)
    }

    /// Version of the catalog the model was built from.
    pub fn catalog_version(&self) -> &str {
        &self.catalog_version
    }

    /// The aggregator candidates, in gene order.
    pub fn aggregators(&self) -> &[AggregatorOption] {
        &self.aggregators
    }

    /// Site names, in input order.
    pub fn site_names(&self) -> Vec<&str> {
        self.sites.iter().map(|s| s.name.as_str()).collect()
    }

    /// How many candidates each filter kept.
    pub fn counts(&self) -> &CandidateCounts {
        &self.counts
    }

    /// Memory the aggregator needs, in GiB.
    pub fn memory_needed_gib(&self) -> f64 {
        self.memory_needed_gib
    }

    /// The requirements the model was built with.
    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }

    /// Whether the model plans a standby aggregator.
    pub fn has_standby(&self) -> bool {
        self.standby.is_some()
    }

    /// Number of decisions: aggregators × Π flavours per site (× standby
    /// aggregators, when planned, allowed pairs or not); `None` when it
    /// overflows `u128`.
    pub fn space_size(&self) -> Option<u128> {
        let primary = self
            .sites
            .iter()
            .try_fold(self.aggregators.len() as u128, |acc, s| {
                acc.checked_mul(s.flavours.len() as u128)
            })?;
        match self.standby {
            Some(_) => primary.checked_mul(self.aggregators.len() as u128),
            None => Some(primary),
        }
    }

    /// Per-site terms evaluated per aggregator.
    pub(crate) fn row_len(&self) -> usize {
        self.row_len
    }

    fn term(&self, a: usize, s: usize, f: usize) -> usize {
        a * self.row_len + self.site_offset[s] + f
    }

    /// Flavour index of every site for the genes `x` (sites with one
    /// flavour always use flavour 0).
    pub fn flavours_of(&self, x: &[f64]) -> Vec<usize> {
        (0..self.sites.len())
            .map(|s| self.flavour_in(x, s))
            .collect()
    }

    /// The decision held by the genes `x`.
    pub fn decision_of(&self, x: &[f64]) -> Decision {
        Decision {
            aggregator: self.aggregator_in(x),
            flavours: self.flavours_of(x),
            standby: self.standby_in(x),
        }
    }

    /// The genes of a decision.
    pub fn genes(&self, d: &Decision) -> Vec<f64> {
        let mut x = Vec::with_capacity(self.variables.len());
        x.push(d.aggregator as f64);
        x.extend(self.flavour_genes.iter().map(|&s| d.flavours[s] as f64));
        if self.standby.is_some() {
            x.push(d.standby.unwrap_or(0) as f64);
        }
        x
    }

    /// Objectives of a decision: (monthly cost, round time), with the
    /// parts that make them up and, with a standby, its figures.
    pub fn objectives(&self, d: &Decision) -> Objectives {
        self.objectives_by(d.aggregator, d.standby, |s| d.flavours[s])
    }

    fn aggregator_in(&self, x: &[f64]) -> usize {
        choice(x[0]).min(self.aggregators.len().saturating_sub(1))
    }

    /// The standby held by the genes `x`, when the model has one.
    fn standby_in(&self, x: &[f64]) -> Option<usize> {
        self.standby.as_ref().map(|_| {
            choice(x[self.variables.len() - 1]).min(self.aggregators.len().saturating_sub(1))
        })
    }

    /// The flavour of site `s` held by the genes `x`.
    fn flavour_in(&self, x: &[f64], s: usize) -> usize {
        self.gene_of_site[s].map_or(0, |g| choice(x[g]).min(self.sites[s].flavours.len() - 1))
    }

    /// The slowest site's (compute + transfers) time under aggregator `a`,
    /// and that site; sites run in order, so every caller gets the same bits.
    fn slowest(&self, a: usize, flavour: impl Fn(usize) -> usize) -> (f64, usize) {
        let mut slowest = 0.0_f64;
        let mut slowest_site = 0;
        for s in 0..self.sites.len() {
            let t = self.site_time[self.term(a, s, flavour(s))];
            if t > slowest {
                slowest = t;
                slowest_site = s;
            }
        }
        (slowest, slowest_site)
    }

    /// [`Self::objectives`] with the flavours given per site by `flavour`;
    /// sums run in site order, so every caller gets the same bits.
    fn objectives_by(
        &self,
        a: usize,
        standby: Option<usize>,
        flavour: impl Fn(usize) -> usize,
    ) -> Objectives {
        let mut egress = 0.0;
        let mut participants = 0.0;
        let mut slowest = 0.0_f64;
        let mut slowest_site = 0;
        for s in 0..self.sites.len() {
            let t = self.term(a, s, flavour(s));
            egress += self.site_egress[t];
            participants += self.site_flavour_cost[t];
            if self.site_time[t] > slowest {
                slowest = self.site_time[t];
                slowest_site = s;
            }
        }
        let instance = self.instance_cost[a];
        let mut o = Objectives {
            monthly_cost: instance + egress + participants,
            round_time: slowest + self.aggregation_time[a],
            instance,
            egress,
            participants,
            aggregation: self.aggregation_time[a],
            slowest_site,
            standby: None,
        };
        if let (Some(sb), Some(b)) = (&self.standby, standby) {
            let (standby_instance, replication) = sb.cost(a, b);
            let (failover_slowest, failover_site) = self.slowest(b, flavour);
            o.monthly_cost += standby_instance + replication;
            o.standby = Some(StandbyObjectives {
                instance: standby_instance,
                replication,
                failover_round_time: failover_slowest + self.aggregation_time[b],
                failover_slowest_site: failover_site,
                allowed: sb.allowed(a, b),
            });
        }
        o
    }

    /// Whether `b`'s failover round meets `maxRoundTimeSeconds` on site
    /// `s`'s flavour `f`: the round time is `aggregation + max over sites`,
    /// and rounding is monotone, so the round meets the limit exactly when
    /// every site's term does.
    pub(crate) fn failover_admits(&self, b: usize, s: usize, f: usize) -> bool {
        self.requirements
            .max_round_time_seconds
            .is_none_or(|max| self.site_time[self.term(b, s, f)] + self.aggregation_time[b] <= max)
    }

    /// The constraint values of objectives `o`, in [`Problem::evaluate`]'s
    /// order: cost, round time, then with a standby its failover round time
    /// and whether the pair is allowed.
    fn constraints_of(&self, o: &Objectives, constraints: &mut [f64]) {
        // Relative violations, so a dollar and a second weigh alike in
        // Deb's constraint domination.
        constraints[0] = self
            .requirements
            .max_monthly_cost
            .map_or(-1.0, |max| (o.monthly_cost - max) / max);
        constraints[1] = self
            .requirements
            .max_round_time_seconds
            .map_or(-1.0, |max| (o.round_time - max) / max);
        if let Some(sb) = &o.standby {
            constraints[2] = self
                .requirements
                .max_round_time_seconds
                .map_or(-1.0, |max| (sb.failover_round_time - max) / max);
            constraints[3] = if sb.allowed { -1.0 } else { 1.0 };
        }
    }

    /// Total constraint violation of objectives `o`, as the solvers sum it.
    fn violation_of(&self, o: &Objectives) -> f64 {
        let mut g = [0.0; 4];
        self.constraints_of(o, &mut g);
        g.iter().map(|v| v.max(0.0)).sum()
    }

    /// The standby repair: for primary `a` on `flavours`, the standby of
    /// least violation, then least cost. Standbys are tried cheapest first,
    /// and the search stops once the cost limit's violation alone (which
    /// grows with the cost) reaches the best violation found; without a
    /// round-time limit the cheapest allowed standby wins at once. When `a`
    /// has no allowed standby, `current` stays.
    fn best_standby(&self, a: usize, flavours: &[usize], current: usize) -> usize {
        let Some(sb) = &self.standby else {
            return current;
        };
        let primary = self.objectives_by(a, None, |s| flavours[s]);
        let limited = self.requirements.max_round_time_seconds.is_some();
        let mut best: Option<(f64, f64, usize)> = None;
        for &b in sb.by_cost(a) {
            let b = b as usize;
            let (instance, replication) = sb.cost(a, b);
            // The same sums as `objectives_by`, so the same bits.
            let mut o = Objectives {
                monthly_cost: primary.monthly_cost + (instance + replication),
                standby: Some(StandbyObjectives {
                    instance,
                    replication,
                    failover_round_time: 0.0,
                    failover_slowest_site: 0,
                    allowed: true,
                }),
                ..primary
            };
            if best.is_some_and(|(v, _, _)| self.violation_of(&o) >= v) {
                // A lower bound for this and every later standby: the
                // failover term is 0 here and cost only grows.
                break;
            }
            if limited && let Some(so) = o.standby.as_mut() {
                so.failover_round_time =
                    self.slowest(b, |s| flavours[s]).0 + self.aggregation_time[b];
            }
            let key = (self.violation_of(&o), o.monthly_cost);
            if best.is_none_or(|(v, c, _)| key.0 < v || (key.0 == v && key.1 < c)) {
                best = Some((key.0, key.1, b));
            }
        }
        best.map_or(current, |(_, _, b)| b)
    }
}

/// The objective values of one decision and their parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objectives {
    /// Total monthly cost in USD (the standby's included).
    pub monthly_cost: f64,
    /// Round time in seconds.
    pub round_time: f64,
    /// Instance part of the cost.
    pub instance: f64,
    /// Egress part of the cost.
    pub egress: f64,
    /// Participant flavour part of the cost.
    pub participants: f64,
    /// Aggregation part of the round time.
    pub aggregation: f64,
    /// Index of the site that bounds the round.
    pub slowest_site: usize,
    /// The standby's figures, when the decision has one.
    pub standby: Option<StandbyObjectives>,
}

/// A standby's part of a decision's objectives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StandbyObjectives {
    /// Standby instance cost per month.
    pub instance: f64,
    /// Checkpoint replication egress per month.
    pub replication: f64,
    /// Round time with the standby as the aggregator, in seconds.
    pub failover_round_time: f64,
    /// Index of the site that bounds the failover round.
    pub failover_slowest_site: usize,
    /// Whether the pair meets `distinctRegion` and `distinctCloud`.
    pub allowed: bool,
}

impl PlacementModel {
    /// The flavour repair with standby `b`: as without a standby, but a
    /// site's new flavour must also keep `b`'s failover round within the
    /// limit, or be no slower there than its slowest site already is, so the
    /// failover violation never grows. The current flavour always qualifies.
    fn repair_flavours(&self, a: usize, b: usize, flavours: &mut [usize]) {
        let bound = self.slowest(a, |s| flavours[s]).0;
        let failover_bound = self.slowest(b, |s| flavours[s]).0;
        for &s in &self.flavour_genes {
            let admit = |f| {
                self.failover_admits(b, s, f)
                    || self.site_time[self.term(b, s, f)] <= failover_bound
            };
            if let Some(f) = self.cheapest_within(a, s, bound, admit) {
                flavours[s] = f;
            }
        }
    }
}

impl Problem for PlacementModel {
    fn variables(&self) -> &[Variable] {
        &self.variables
    }

    fn n_objectives(&self) -> usize {
        2
    }

    fn n_constraints(&self) -> usize {
        if self.standby.is_some() { 4 } else { 2 }
    }

    fn evaluate(&self, x: &[f64], objectives: &mut [f64], constraints: &mut [f64]) {
        let a = self.aggregator_in(x);
        let o = self.objectives_by(a, self.standby_in(x), |s| self.flavour_in(x, s));
        objectives[0] = o.monthly_cost;
        objectives[1] = o.round_time;
        self.constraints_of(&o, constraints);
    }

    fn repair(&self, x: &mut [f64]) {
        if !self.repair {
            return;
        }
        let a = self.aggregator_in(x);
        let Some(b) = self.standby_in(x) else {
            if self.flavour_genes.is_empty() {
                return;
            }
            let bound = (0..self.sites.len())
                .map(|s| self.site_time[self.term(a, s, self.flavour_in(x, s))])
                .fold(0.0, f64::max);
            for (gene, &s) in x.iter_mut().skip(1).zip(&self.flavour_genes) {
                if let Some(f) = self.cheapest_within(a, s, bound, |_| true) {
                    *gene = f as f64;
                }
            }
            return;
        };
        let mut flavours = self.flavours_of(x);
        self.repair_flavours(a, b, &mut flavours);
        let standby = self.best_standby(a, &flavours, b);
        for (gene, &s) in x.iter_mut().skip(1).zip(&self.flavour_genes) {
            *gene = flavours[s] as f64;
        }
        let last = self.variables.len() - 1;
        x[last] = standby as f64;
    }
}

fn validate_numbers(input: &PlacementInput) -> Result<(), ModelError> {
    let w = &input.workload;
    let t = &input.timing;
    let r = &input.requirements;
    let positive = [
        ("workload.modelSizeMB", w.model_size_mb),
        ("workload.hoursPerMonth", w.hours_per_month),
        ("timing.tcpWindowMiB", t.tcp_window_mib),
        (
            "timing.aggregationGBPerSecondPerVcpu",
            t.aggregation_gb_per_s_per_vcpu,
        ),
    ];
    for (field, value) in positive {
        if !(value.is_finite() && value > 0.0) {
            return Err(invalid(field, value, "a finite number > 0"));
        }
    }
    let non_negative = [
        ("workload.roundsPerMonth", w.rounds_per_month),
        ("workload.localComputeSeconds", w.local_compute_seconds),
        ("timing.rttsPerTransfer", t.rtts_per_transfer),
        ("timing.baseMemoryGiB", t.base_memory_gib),
    ];
    for (field, value) in non_negative {
        if !(value.is_finite() && value >= 0.0) {
            return Err(invalid(field, value, "a finite number >= 0"));
        }
    }
    if !(0.0..=1.0).contains(&r.cost_weight) {
        return Err(invalid(
            "requirements.costWeight",
            r.cost_weight,
            "a weight in [0, 1] (1 = cheapest, 0 = fastest)",
        ));
    }
    for (field, value) in [
        ("requirements.maxMonthlyCost", r.max_monthly_cost),
        ("requirements.maxRoundTimeSeconds", r.max_round_time_seconds),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            return Err(invalid(field, v, "a finite limit > 0"));
        }
    }
    if let Some(standby) = &r.standby {
        let hours = standby.failover_hours_per_month;
        if !(hours.is_finite() && hours >= 0.0) {
            return Err(invalid(
                "requirements.standby.failoverHoursPerMonth",
                hours,
                "a finite number of hours >= 0",
            ));
        }
    }
    for site in &input.sites {
        for f in &site.flavours {
            let field = |name: &str| format!("site {} flavour {} {name}", site.name, f.name);
            if !(f.hourly_usd.is_finite() && f.hourly_usd >= 0.0) {
                return Err(ModelError::InvalidValue {
                    field: field("hourlyCost"),
                    value: f.hourly_usd,
                    expected: "a finite price >= 0",
                });
            }
            if !(f.relative_speed.is_finite() && f.relative_speed > 0.0) {
                return Err(ModelError::InvalidValue {
                    field: field("relativeSpeed"),
                    value: f.relative_speed,
                    expected: "a finite speed > 0",
                });
            }
        }
    }
    Ok(())
}

fn invalid(field: &str, value: f64, expected: &'static str) -> ModelError {
    ModelError::InvalidValue {
        field: field.to_string(),
        value,
        expected,
    }
}

/// Finds a region by `cloud:name` or a bare name unique across clouds.
fn resolve_region(
    catalog: &Catalog,
    region: &RegionRef,
    referenced_by: &str,
) -> Result<RegionId, ModelError> {
    if !region.cloud.is_empty() {
        return catalog
            .region_id(&region_key(&region.cloud, &region.name))
            .ok_or_else(|| ModelError::UnknownRegion {
                region: region.to_string(),
                referenced_by: referenced_by.to_string(),
                suggestions: suggest_regions(catalog, &region.name),
            });
    }
    match catalog.regions_named(&region.name).as_slice() {
        [one] => Ok(*one),
        [] => Err(ModelError::UnknownRegion {
            region: region.to_string(),
            referenced_by: referenced_by.to_string(),
            suggestions: suggest_regions(catalog, &region.name),
        }),
        many => Err(ModelError::AmbiguousRegion {
            region: region.name.clone(),
            referenced_by: referenced_by.to_string(),
            matches: many.iter().map(|&id| catalog.key_of(id)).collect(),
        }),
    }
}

/// Up to three catalog regions whose names are close to `name`.
fn suggest_regions(catalog: &Catalog, name: &str) -> Vec<String> {
    suggest(
        name,
        catalog
            .regions()
            .iter()
            .map(|r| (r.name.as_str(), region_key(&r.cloud, &r.name))),
    )
}

fn suggest<'a>(name: &str, options: impl Iterator<Item = (&'a str, String)>) -> Vec<String> {
    let limit = (name.len() / 3).max(2);
    let mut scored: Vec<(usize, String)> = options
        .map(|(candidate, label)| (edit_distance(name, candidate), label))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, l)| l).collect()
}

/// Levenshtein distance over bytes (region and type names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn resolve_sites(catalog: &Catalog, sites: &[SiteInput]) -> Result<Vec<ModelSite>, ModelError> {
    if sites.is_empty() {
        return Err(ModelError::NoSites);
    }
    let mut names = std::collections::BTreeSet::new();
    sites
        .iter()
        .map(|site| {
            if !names.insert(site.name.as_str()) {
                return Err(ModelError::DuplicateSite {
                    name: site.name.clone(),
                });
            }
            let region = resolve_region(catalog, &site.region, &format!("site {}", site.name))?;
            let flavours = if site.flavours.is_empty() {
                vec![FlavourInput {
                    name: "default".into(),
                    hourly_usd: 0.0,
                    relative_speed: 1.0,
                }]
            } else {
                site.flavours.clone()
            };
            Ok(ModelSite {
                name: site.name.clone(),
                region,
                flavours,
            })
        })
        .collect()
}

/// The aggregator candidates that pass every filter, sorted by cloud,
/// region, price and type so gene order is stable.
fn candidates(
    catalog: &Catalog,
    input: &PlacementInput,
    sites: &[ModelSite],
    memory_needed_gib: f64,
) -> Result<(Vec<AggregatorOption>, CandidateCounts), ModelError> {
    let known_clouds: std::collections::BTreeSet<&str> =
        catalog.regions().iter().map(|r| r.cloud.as_str()).collect();
    let check_clouds = |clouds: &[String], referenced_by: &str| {
        for cloud in clouds {
            if !known_clouds.contains(cloud.as_str()) {
                return Err(ModelError::UnknownCloud {
                    cloud: cloud.clone(),
                    referenced_by: referenced_by.to_string(),
                    known: known_clouds.iter().map(|c| c.to_string()).collect(),
                });
            }
        }
        Ok(())
    };
    let filter = &input.candidates;
    let req = &input.requirements;
    check_clouds(&filter.clouds, "candidates.clouds")?;
    check_clouds(
        &req.allowed_clouds,
        "requirements.dataResidency.allowedClouds",
    )?;
    let region_set = |names: &[String], referenced_by: &str| {
        names
            .iter()
            .map(|n| resolve_region(catalog, &RegionRef::parse(n), referenced_by))
            .collect::<Result<std::collections::BTreeSet<RegionId>, _>>()
    };
    let candidate_regions = region_set(&filter.regions, "candidates.regions")?;
    let allowed_regions = region_set(
        &req.allowed_regions,
        "requirements.dataResidency.allowedRegions",
    )?;
    for name in &filter.instance_types {
        if !catalog.instance_types().iter().any(|t| &t.name == name) {
            return Err(ModelError::UnknownInstanceType {
                name: name.clone(),
                suggestions: suggest(
                    name,
                    catalog
                        .instance_types()
                        .iter()
                        .map(|t| (t.name.as_str(), t.name.clone())),
                ),
            });
        }
    }

    let mut all = Vec::new();
    for t in catalog.instance_types() {
        for (region, &hourly) in &t.hourly_usd {
            // Validation guarantees every priced region exists.
            if let Some(region_id) = catalog.region_id(&region_key(&t.cloud, region)) {
                all.push(AggregatorOption {
                    cloud: t.cloud.clone(),
                    region: region.clone(),
                    instance_type: t.name.clone(),
                    vcpus: t.vcpus,
                    memory_gib: t.memory_gib,
                    gpus: t.gpus,
                    hourly_usd: hourly,
                    region_id,
                });
            }
        }
    }
    let mut counts = CandidateCounts {
        catalog: all.len(),
        ..CandidateCounts::default()
    };
    if all.is_empty() {
        return Err(ModelError::NoCandidates {
            reason: "the catalog prices no instance type in any region".into(),
        });
    }

    let in_list = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
    let in_set = |set: &std::collections::BTreeSet<RegionId>, id: RegionId| {
        set.is_empty() || set.contains(&id)
    };
    let picked: Vec<AggregatorOption> = all
        .into_iter()
        .filter(|o| {
            in_list(&filter.clouds, &o.cloud)
                && in_set(&candidate_regions, o.region_id)
                && in_list(&filter.instance_types, &o.instance_type)
        })
        .collect();
    counts.after_candidates = picked.len();
    if picked.is_empty() {
        return Err(ModelError::NoCandidates {
            reason: format!(
                "no catalog instance type is priced for candidates {} (an empty list allows all)",
                describe_filter(filter)
            ),
        });
    }

    let resident: Vec<AggregatorOption> = picked
        .into_iter()
        .filter(|o| in_list(&req.allowed_clouds, &o.cloud) && in_set(&allowed_regions, o.region_id))
        .collect();
    counts.after_residency = resident.len();
    if resident.is_empty() {
        return Err(ModelError::NoCandidates {
            reason: format!(
                "contradictory requirements: the {} candidates of {} all lie outside \
                 dataResidency (allowedClouds [{}], allowedRegions [{}])",
                counts.after_candidates,
                describe_filter(filter),
                req.allowed_clouds.join(", "),
                req.allowed_regions.join(", ")
            ),
        });
    }

    let largest = resident
        .iter()
        .map(|o| o.memory_gib)
        .fold(0.0_f64, f64::max);
    let mut fitting: Vec<AggregatorOption> = resident
        .into_iter()
        .filter(|o| o.memory_gib >= memory_needed_gib)
        .collect();
    counts.after_memory = fitting.len();
    if fitting.is_empty() {
        return Err(ModelError::NoCandidates {
            reason: format!(
                "the aggregation needs {memory_needed_gib:.2} GiB of memory (model {} MB x {} \
                 copies + {} GiB base) but the largest allowed instance has {largest} GiB",
                input.workload.model_size_mb,
                input.workload.memory.copies(sites.len()),
                input.timing.base_memory_gib
            ),
        });
    }

    // Validation guarantees links from priced regions to every region; keep
    // the check so a hand-built catalog cannot produce infinite times.
    for site in sites {
        if let Some(o) = fitting
            .iter()
            .find(|o| catalog.link(o.region_id, site.region).is_none())
        {
            return Err(ModelError::NoCandidates {
                reason: format!(
                    "the catalog has no network data between {}:{} and site {} ({})",
                    o.cloud,
                    o.region,
                    site.name,
                    catalog.key_of(site.region)
                ),
            });
        }
    }

    fitting.sort_by(|a, b| {
        (a.cloud.as_str(), a.region.as_str())
            .cmp(&(b.cloud.as_str(), b.region.as_str()))
            .then(a.hourly_usd.total_cmp(&b.hourly_usd))
            .then_with(|| a.instance_type.cmp(&b.instance_type))
    });
    Ok((fitting, counts))
}

fn describe_filter(filter: &CandidateFilter) -> String {
    format!(
        "clouds [{}], regions [{}], instanceTypes [{}]",
        filter.clouds.join(", "),
        filter.regions.join(", "),
        filter.instance_types.join(", ")
    )
}

#[cfg(test)]
mod tests;
