//! User entries laid over a base catalog, e.g. from a ConfigMap: private
//! OpenStack sites with their latency to public regions, negotiated prices,
//! fresher measurements.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    CatalogData, CatalogError, InstanceTypeData, LinkData, NetworkDefaults, RegionData,
    SourceRecord, region_key,
};

/// Entries that add to or replace those of a base catalog.
///
/// - a region replaces the base region with the same `cloud:name`, or is added;
/// - an instance type with the same cloud and name keeps the base prices
///   (on-demand and spot) of regions the overlay does not price, and takes
///   everything else from the overlay; otherwise it is added;
/// - a network entry replaces the base entry of the same (unordered) pair,
///   or is added.
///
/// The result's version is `<base version>+<overlay version>`, so a solve
/// says which data it used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogOverlay {
    /// Label of the overlay, e.g. `hospitals-2026-11-20`; must be non-empty.
    pub version: String,
    /// Where the overlay's data came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRecord>,
    /// Replaces the base defaults when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<NetworkDefaults>,
    /// Regions to add or replace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionData>,
    /// Instance types to add or update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<InstanceTypeData>,
    /// Network entries to add or replace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<LinkData>,
}

impl CatalogOverlay {
    /// Parses an overlay from JSON.
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        serde_json::from_str(text).map_err(|e| CatalogError::Json {
            source: Arc::new(e),
        })
    }

    /// Parses an overlay from YAML.
    pub fn from_yaml(text: &str) -> Result<Self, CatalogError> {
        serde_yaml::from_str(text).map_err(|e| CatalogError::Yaml {
            source: Arc::new(e),
        })
    }
}

/// The base data with the overlay applied; validation is the caller's.
pub(super) fn apply(
    base: &CatalogData,
    overlay: &CatalogOverlay,
) -> Result<CatalogData, CatalogError> {
    if overlay.version.trim().is_empty() {
        return Err(CatalogError::InvalidOverlay {
            reason: "`version` is empty; label the overlay so solves can report it".into(),
        });
    }
    let mut data = base.clone();
    data.version = format!("{}+{}", base.version, overlay.version);
    data.sources.extend(overlay.sources.iter().cloned());
    if let Some(defaults) = overlay.defaults {
        data.defaults = defaults;
    }
    for region in &overlay.regions {
        let key = region_key(&region.cloud, &region.name);
        match data
            .regions
            .iter_mut()
            .find(|r| region_key(&r.cloud, &r.name) == key)
        {
            Some(existing) => *existing = region.clone(),
            None => data.regions.push(region.clone()),
        }
    }
    for t in &overlay.instance_types {
        match data
            .instance_types
            .iter_mut()
            .find(|e| e.cloud == t.cloud && e.name == t.name)
        {
            Some(existing) => {
                let mut hourly = std::mem::take(&mut existing.hourly_usd);
                hourly.extend(t.hourly_usd.iter().map(|(k, v)| (k.clone(), *v)));
                let mut spot = std::mem::take(&mut existing.spot_hourly_usd);
                spot.extend(t.spot_hourly_usd.iter().map(|(k, v)| (k.clone(), *v)));
                *existing = t.clone();
                existing.hourly_usd = hourly;
                existing.spot_hourly_usd = spot;
            }
            None => data.instance_types.push(t.clone()),
        }
    }
    for link in &overlay.network {
        let same =
            |e: &LinkData| (e.a == link.a && e.b == link.b) || (e.a == link.b && e.b == link.a);
        match data.network.iter_mut().find(|e| same(e)) {
            Some(existing) => *existing = link.clone(),
            None => data.network.push(link.clone()),
        }
    }
    Ok(data)
}
