//! The cloud catalog the placement model prices and times candidates with:
//! regions and their egress prices, instance types and their on-demand
//! prices, and the inter-region network matrix (RTT, throughput).
//!
//! A catalog is a data file ([`CatalogData`], JSON or YAML) that is checked
//! once when loaded ([`Catalog::from_json`], [`Catalog::from_yaml`]); every
//! later lookup can then rely on it. The shipped catalog
//! ([`Catalog::builtin`]) is built from public data by
//! `operator/catalog/scripts/build_catalog.py`; a user overlay
//! ([`CatalogOverlay`], for example from a ConfigMap) adds or replaces
//! entries, such as private OpenStack sites with their measured latency.

#[cfg(feature = "aws")]
pub mod aws;
mod error;
mod overlay;
pub mod refresh;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

pub use error::CatalogError;
pub use overlay::CatalogOverlay;

/// The catalog compiled into the binary.
const BUILTIN_JSON: &str = include_str!("../../../catalog/catalog-2026-11.json");

/// A catalog file as written: what [`Catalog`] validates and indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogData {
    /// Version of the data, e.g. `2026-11`; reported with every solve.
    pub version: String,
    /// What the catalog holds and how it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the data came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRecord>,
    /// Values used where the network matrix has no entry of its own.
    #[serde(default)]
    pub defaults: NetworkDefaults,
    /// Regions where participants can be and aggregators can run.
    pub regions: Vec<RegionData>,
    /// Instance types with their on-demand price per region.
    #[serde(default)]
    pub instance_types: Vec<InstanceTypeData>,
    /// Measured network between pairs of regions (unordered).
    #[serde(default)]
    pub network: Vec<LinkData>,
}

/// Attribution of one input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRecord {
    /// Input file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What the file holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// Project, repository or publisher.
    pub source: String,
    /// When the data was measured or collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Licence of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
}

/// Network values for pairs the matrix does not list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkDefaults {
    /// RTT inside one region, in milliseconds.
    pub intra_region_rtt_ms: f64,
    /// Throughput inside one region, in Gbit/s.
    pub intra_region_throughput_gbps: f64,
}

impl Default for NetworkDefaults {
    /// 1 ms and 10 Gbit/s: typical of one cloud region across zones.
    fn default() -> Self {
        Self {
            intra_region_rtt_ms: 1.0,
            intra_region_throughput_gbps: 10.0,
        }
    }
}

/// One region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegionData {
    /// Cloud of the region: `aws`, `gcp`, `openstack` or another name
    /// (lowercase, no `:`).
    pub cloud: String,
    /// Region name in that cloud, e.g. `eu-central-1`.
    pub name: String,
    /// Human-readable location, e.g. `Frankfurt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Prices of traffic leaving the region.
    #[serde(default)]
    pub egress: EgressData,
    /// For user-declared sites: a region key (`cloud:name`) whose network
    /// entries stand in for this region's where it has none of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_like: Option<String>,
    /// Milliseconds added to RTTs borrowed through `networkLike` (the last
    /// mile from the site to that region).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_rtt_ms: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Egress prices of a region, in USD per GB (10^9 bytes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressData {
    /// Price of traffic to the internet, and to any region without an entry
    /// in `toRegionsPerGb`.
    #[serde(default)]
    pub internet_per_gb: f64,
    /// Price of traffic to particular regions (keys `cloud:name`), e.g.
    /// AWS inter-region transfer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to_regions_per_gb: BTreeMap<String, f64>,
}

/// One instance type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceTypeData {
    /// Cloud of the type.
    pub cloud: String,
    /// Type name, e.g. `m5.large`.
    pub name: String,
    /// vCPUs (fractional for shared-core types).
    pub vcpus: f64,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Attached GPUs.
    #[serde(default)]
    pub gpus: u32,
    /// GPU model, e.g. `T4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    /// On-demand price in USD per hour, by region name of the same cloud.
    /// Only these make a region a place the aggregator can run.
    pub hourly_usd: BTreeMap<String, f64>,
    /// Latest Linux spot price in USD per hour, by region name of the same
    /// cloud (the cheapest zone), where a refresh from the EC2 API found one
    /// ([`refresh`]). Informational: the model prices the aggregator
    /// on-demand, because a spot reclaim mid-round loses the round.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spot_hourly_usd: BTreeMap<String, f64>,
}

/// Measured network between two regions (either order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkData {
    /// One region, `cloud:name`.
    pub a: String,
    /// The other region, `cloud:name`.
    pub b: String,
    /// Typical round-trip time in milliseconds.
    pub rtt_ms: f64,
    /// Worst round-trip time seen, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<f64>,
    /// Measured throughput in Gbit/s (many parallel streams), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_gbps: Option<f64>,
    /// Notes on the measurement, e.g. `asymmetric`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// Index of a region in a [`Catalog`].
pub type RegionId = usize;

/// The network between two regions as the model uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Round-trip time in milliseconds.
    pub rtt_ms: f64,
    /// Measured throughput in Gbit/s, where known.
    pub throughput_gbps: Option<f64>,
}

/// A validated, indexed catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    data: CatalogData,
    region_index: HashMap<String, RegionId>,
    /// Network entries keyed by (smaller id, larger id).
    links: HashMap<(RegionId, RegionId), Link>,
}

/// Joins a cloud and a region name into the catalog's region key.
pub fn region_key(cloud: &str, name: &str) -> String {
    format!("{cloud}:{name}")
}

impl Catalog {
    /// Parses and validates a JSON catalog.
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        let data: CatalogData = serde_json::from_str(text).map_err(|e| CatalogError::Json {
            source: Arc::new(e),
        })?;
        Self::new(data)
    }

    /// Parses and validates a YAML catalog.
    pub fn from_yaml(text: &str) -> Result<Self, CatalogError> {
        let data: CatalogData = serde_yaml::from_str(text).map_err(|e| CatalogError::Yaml {
            source: Arc::new(e),
        })?;
        Self::new(data)
    }

    /// The catalog shipped with fedsky (`operator/catalog/`), parsed once.
    pub fn builtin() -> Result<&'static Self, CatalogError> {
        static BUILTIN: OnceLock<Result<Catalog, CatalogError>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| Self::from_json(BUILTIN_JSON))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Validates `data` and indexes it.
    pub fn new(data: CatalogData) -> Result<Self, CatalogError> {
        let region_index = validate::regions(&data)?;
        validate::instance_types(&data, &region_index)?;
        let links = validate::links(&data, &region_index)?;
        let catalog = Self {
            data,
            region_index,
            links,
        };
        validate::complete(&catalog)?;
        Ok(catalog)
    }

    /// The catalog as data (for printing or re-serialising).
    pub fn data(&self) -> &CatalogData {
        &self.data
    }

    /// The version string, e.g. `2026-11` or `2026-11+site-overrides`.
    pub fn version(&self) -> &str {
        &self.data.version
    }

    /// All regions, indexed by [`RegionId`].
    pub fn regions(&self) -> &[RegionData] {
        &self.data.regions
    }

    /// All instance types.
    pub fn instance_types(&self) -> &[InstanceTypeData] {
        &self.data.instance_types
    }

    /// The region with key `cloud:name`.
    pub fn region_id(&self, key: &str) -> Option<RegionId> {
        self.region_index.get(key).copied()
    }

    /// The key `cloud:name` of a region.
    pub fn key_of(&self, id: RegionId) -> String {
        self.data
            .regions
            .get(id)
            .map_or_else(String::new, |r| region_key(&r.cloud, &r.name))
    }

    /// Regions whose name (without cloud) is `name`, for resolving names
    /// given without a cloud.
    pub fn regions_named(&self, name: &str) -> Vec<RegionId> {
        self.data
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.name == name)
            .map(|(i, _)| i)
            .collect()
    }

    /// The network between two regions: the same region uses the intra-region
    /// defaults unless the matrix lists it; a region with `networkLike`
    /// borrows that region's entries (plus its `extraRttMs`) where it has no
    /// entry of its own. `None` when nothing describes the pair.
    pub fn link(&self, a: RegionId, b: RegionId) -> Option<Link> {
        if let Some(link) = self.links.get(&ordered(a, b)) {
            return Some(*link);
        }
        let (ra, rb) = (self.data.regions.get(a)?, self.data.regions.get(b)?);
        let a_like = self.like(ra);
        let b_like = self.like(rb);
        let (a2, b2) = (a_like.unwrap_or(a), b_like.unwrap_or(b));
        let extra = if a_like.is_some() {
            ra.extra_rtt_ms
        } else {
            0.0
        } + if b_like.is_some() {
            rb.extra_rtt_ms
        } else {
            0.0
        };
        let base = if a2 == b2 {
            self.links.get(&(a2, a2)).copied().unwrap_or(Link {
                rtt_ms: self.data.defaults.intra_region_rtt_ms,
                throughput_gbps: Some(self.data.defaults.intra_region_throughput_gbps),
            })
        } else {
            *self.links.get(&ordered(a2, b2))?
        };
        Some(Link {
            rtt_ms: base.rtt_ms + extra,
            throughput_gbps: base.throughput_gbps,
        })
    }

    fn like(&self, region: &RegionData) -> Option<RegionId> {
        region
            .network_like
            .as_deref()
            .and_then(|k| self.region_id(k))
    }

    /// Price in USD per GB of traffic from region `from` to region `to`:
    /// nothing inside one region, the region's listed price for `to` where
    /// it has one, its internet price otherwise.
    pub fn egress_per_gb(&self, from: RegionId, to: RegionId) -> f64 {
        if from == to {
            return 0.0;
        }
        let Some(region) = self.data.regions.get(from) else {
            return 0.0;
        };
        region
            .egress
            .to_regions_per_gb
            .get(&self.key_of(to))
            .copied()
            .unwrap_or(region.egress.internet_per_gb)
    }

    /// Applies `overlay` on a copy of this catalog and validates the result.
    pub fn with_overlay(&self, overlay: &CatalogOverlay) -> Result<Self, CatalogError> {
        Self::new(overlay::apply(&self.data, overlay)?)
    }
}

fn ordered(a: RegionId, b: RegionId) -> (RegionId, RegionId) {
    if a <= b { (a, b) } else { (b, a) }
}

mod validate {
    //! The checks a catalog passes before anything uses it.

    use super::*;

    fn finite_non_negative(value: f64) -> bool {
        value.is_finite() && value >= 0.0
    }

    fn valid_name(s: &str) -> bool {
        !s.is_empty() && !s.contains(':') && !s.chars().any(char::is_whitespace)
    }

    pub(super) fn regions(data: &CatalogData) -> Result<HashMap<String, RegionId>, CatalogError> {
        if data.version.trim().is_empty() {
            return Err(CatalogError::MissingVersion);
        }
        if data.regions.is_empty() {
            return Err(CatalogError::NoRegions);
        }
        let d = &data.defaults;
        for (field, value) in [
            ("defaults.intraRegionRttMs", d.intra_region_rtt_ms),
            (
                "defaults.intraRegionThroughputGbps",
                d.intra_region_throughput_gbps,
            ),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(CatalogError::InvalidValue {
                    what: field.to_string(),
                    value,
                    expected: "a finite number > 0",
                });
            }
        }
        let mut index = HashMap::with_capacity(data.regions.len());
        for (i, region) in data.regions.iter().enumerate() {
            if !valid_name(&region.cloud) || !valid_name(&region.name) {
                return Err(CatalogError::InvalidName {
                    what: "region",
                    name: region_key(&region.cloud, &region.name),
                });
            }
            let key = region_key(&region.cloud, &region.name);
            if index.insert(key.clone(), i).is_some() {
                return Err(CatalogError::Duplicate {
                    what: "region",
                    key,
                });
            }
        }
        for region in &data.regions {
            let key = region_key(&region.cloud, &region.name);
            let egress = &region.egress;
            if !finite_non_negative(egress.internet_per_gb) {
                return Err(CatalogError::InvalidValue {
                    what: format!("egress.internetPerGb of region {key}"),
                    value: egress.internet_per_gb,
                    expected: "a finite price >= 0",
                });
            }
            for (to, &price) in &egress.to_regions_per_gb {
                if !index.contains_key(to) {
                    return Err(CatalogError::UnknownRegion {
                        region: to.clone(),
                        referenced_by: format!("egress.toRegionsPerGb of region {key}"),
                    });
                }
                if !finite_non_negative(price) {
                    return Err(CatalogError::InvalidValue {
                        what: format!("egress price from {key} to {to}"),
                        value: price,
                        expected: "a finite price >= 0",
                    });
                }
            }
            if !finite_non_negative(region.extra_rtt_ms) {
                return Err(CatalogError::InvalidValue {
                    what: format!("extraRttMs of region {key}"),
                    value: region.extra_rtt_ms,
                    expected: "a finite number of milliseconds >= 0",
                });
            }
            if let Some(like) = &region.network_like {
                let Some(&target) = index.get(like) else {
                    return Err(CatalogError::UnknownRegion {
                        region: like.clone(),
                        referenced_by: format!("networkLike of region {key}"),
                    });
                };
                // One level only, so a borrowed entry is never itself borrowed.
                if data.regions[target].network_like.is_some() || like == &key {
                    return Err(CatalogError::NetworkLikeChain {
                        region: key,
                        like: like.clone(),
                    });
                }
            }
        }
        Ok(index)
    }

    pub(super) fn instance_types(
        data: &CatalogData,
        index: &HashMap<String, RegionId>,
    ) -> Result<(), CatalogError> {
        let mut seen = std::collections::HashSet::new();
        for t in &data.instance_types {
            let key = region_key(&t.cloud, &t.name);
            if !valid_name(&t.cloud) || t.name.trim().is_empty() {
                return Err(CatalogError::InvalidName {
                    what: "instance type",
                    name: key,
                });
            }
            if !seen.insert(key.clone()) {
                return Err(CatalogError::Duplicate {
                    what: "instance type",
                    key,
                });
            }
            for (field, value) in [("vcpus", t.vcpus), ("memoryGib", t.memory_gib)] {
                if !(value.is_finite() && value > 0.0) {
                    return Err(CatalogError::InvalidValue {
                        what: format!("{field} of instance type {key}"),
                        value,
                        expected: "a finite number > 0",
                    });
                }
            }
            let prices = [("hourly", &t.hourly_usd), ("spot", &t.spot_hourly_usd)];
            for (kind, map) in prices {
                for (region, &price) in map {
                    let region_key = region_key(&t.cloud, region);
                    if !index.contains_key(&region_key) {
                        return Err(CatalogError::UnknownRegion {
                            region: region_key,
                            referenced_by: format!("the {kind} prices of instance type {key}"),
                        });
                    }
                    if !finite_non_negative(price) {
                        return Err(CatalogError::InvalidValue {
                            what: format!("{kind} price of {key} in {region}"),
                            value: price,
                            expected: "a finite price >= 0",
                        });
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn links(
        data: &CatalogData,
        index: &HashMap<String, RegionId>,
    ) -> Result<HashMap<(RegionId, RegionId), Link>, CatalogError> {
        let mut links = HashMap::with_capacity(data.network.len());
        for (i, l) in data.network.iter().enumerate() {
            let lookup = |key: &String| {
                index
                    .get(key)
                    .copied()
                    .ok_or_else(|| CatalogError::UnknownRegion {
                        region: key.clone(),
                        referenced_by: format!("network entry {i} ({} – {})", l.a, l.b),
                    })
            };
            let (a, b) = (lookup(&l.a)?, lookup(&l.b)?);
            if !(l.rtt_ms.is_finite() && l.rtt_ms > 0.0) {
                return Err(CatalogError::InvalidValue {
                    what: format!("rttMs between {} and {}", l.a, l.b),
                    value: l.rtt_ms,
                    expected: "a finite number of milliseconds > 0",
                });
            }
            if let Some(t) = l.throughput_gbps
                && !(t.is_finite() && t > 0.0)
            {
                return Err(CatalogError::InvalidValue {
                    what: format!("throughputGbps between {} and {}", l.a, l.b),
                    value: t,
                    expected: "a finite number > 0",
                });
            }
            let link = Link {
                rtt_ms: l.rtt_ms,
                throughput_gbps: l.throughput_gbps,
            };
            if links.insert(ordered(a, b), link).is_some() {
                return Err(CatalogError::Duplicate {
                    what: "network entry",
                    key: format!("{} – {}", l.a, l.b),
                });
            }
        }
        Ok(links)
    }

    /// Every region that can host an aggregator must reach every region.
    pub(super) fn complete(catalog: &Catalog) -> Result<(), CatalogError> {
        let hosts: std::collections::BTreeSet<RegionId> = catalog
            .data
            .instance_types
            .iter()
            .flat_map(|t| {
                t.hourly_usd
                    .keys()
                    .filter_map(|r| catalog.region_id(&region_key(&t.cloud, r)))
            })
            .collect();
        let n = catalog.data.regions.len();
        let mut missing = 0usize;
        let mut first = None;
        for &h in &hosts {
            for r in 0..n {
                // A pair of two hosts is checked once, from its smaller end.
                if r < h && hosts.contains(&r) {
                    continue;
                }
                if catalog.link(h, r).is_none() {
                    missing += 1;
                    first.get_or_insert((h, r));
                }
            }
        }
        match first {
            None => Ok(()),
            Some((h, r)) => Err(CatalogError::MissingLink {
                a: catalog.key_of(h),
                b: catalog.key_of(r),
                missing,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
