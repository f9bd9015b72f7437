//! A catalog overlay from what the EC2 API reports: enabled regions
//! (`DescribeRegions`), instance types with their vCPUs, memory and GPUs
//! (`DescribeInstanceTypes`) and the latest Linux spot prices
//! (`DescribeSpotPriceHistory`).
//!
//! This module is the pure half: [`build_overlay`] turns an [`Ec2Snapshot`]
//! (plain data, however it was fetched) into a [`CatalogOverlay`] that is
//! known to apply to the base catalog. The SDK half that fetches the
//! snapshot is `catalog::aws` (cargo feature `aws`), so the model never
//! depends on the SDK.
//!
//! What the overlay holds, and why:
//!
//! - **Instance types the base catalog lists** (cloud `aws`): vCPUs, memory
//!   and GPUs as the API reports them, and spot prices. The overlay prices
//!   no on-demand hour (the EC2 API does not publish on-demand prices), so
//!   the base's on-demand prices stay as they are.
//! - **Other instance types** only with `all_types`: they come without an
//!   on-demand price, so they can be inspected but host no aggregator.
//! - **No regions**: the overlay cannot add a region the base lacks, because
//!   the model needs its latency to every other region and the EC2 API has
//!   none; such regions are reported instead. Base regions are left as they
//!   are (their egress prices are not in the EC2 API either).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use thiserror::Error;

use super::{Catalog, CatalogError, CatalogOverlay, InstanceTypeData, SourceRecord};

/// The cloud name EC2 data is filed under.
pub const AWS: &str = "aws";

/// Product descriptions whose spot prices count: Linux, EC2-Classic and VPC
/// spellings (the API reports both, depending on the account's age).
const LINUX_PRODUCTS: [&str; 2] = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"];

/// What the EC2 API reported, as plain data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ec2Snapshot {
    /// The endpoint the data came from, for the overlay's sources.
    pub endpoint: String,
    /// Region the API was asked in (`DescribeRegions`, `DescribeInstanceTypes`).
    pub api_region: String,
    /// Regions enabled for the account.
    pub regions: Vec<String>,
    /// Instance types offered in `api_region`.
    pub instance_types: Vec<Ec2InstanceType>,
    /// Regions whose spot price history was read.
    pub spot_regions: Vec<String>,
    /// Spot price history entries from all of `spot_regions`.
    pub spot_prices: Vec<SpotPriceRecord>,
}

/// One instance type as `DescribeInstanceTypes` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ec2InstanceType {
    /// Type name, e.g. `m5.large`.
    pub name: String,
    /// Default vCPUs, when reported.
    pub vcpus: Option<u32>,
    /// Memory in MiB, when reported.
    pub memory_mib: Option<u64>,
    /// Attached GPUs (summed over GPU kinds).
    pub gpus: u32,
    /// GPU model of the first GPU kind, e.g. `T4`.
    pub gpu_model: Option<String>,
}

/// One spot price history entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpotPriceRecord {
    /// Region whose history held the entry.
    pub region: String,
    /// Availability zone, e.g. `us-east-1a`.
    pub availability_zone: String,
    /// Instance type.
    pub instance_type: String,
    /// Operating system, e.g. `Linux/UNIX`.
    pub product_description: String,
    /// Price in USD per hour as the API writes it (a decimal string).
    pub price: String,
    /// When the price took effect, in seconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

/// How to label and scope the overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshOptions {
    /// The overlay's `version`, e.g. `aws-ec2-2026-11-20`; must be non-empty.
    pub label: String,
    /// Date of the data, for the overlay's sources, e.g. `2026-11-20`.
    pub date: Option<String>,
    /// Also add instance types the base catalog does not list.
    pub all_types: bool,
}

/// An overlay and what went into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    /// The overlay; [`build_overlay`] checked that it applies to the base.
    pub overlay: CatalogOverlay,
    /// Counts and the entries left out, for the user.
    pub report: RefreshReport,
}

/// What a refresh found and what it left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefreshReport {
    /// Where the data came from.
    pub endpoint: String,
    /// Region the API was asked in.
    pub api_region: String,
    /// Regions enabled for the account.
    pub regions_enabled: usize,
    /// Enabled regions the base catalog lacks (left out: no network data).
    pub regions_not_in_catalog: Vec<String>,
    /// AWS regions of the base catalog the account has not enabled.
    pub catalog_regions_not_enabled: Vec<String>,
    /// Instance types the API described.
    pub types_described: usize,
    /// Base instance types refreshed by the overlay.
    pub types_updated: usize,
    /// Of those, the ones whose vCPUs, memory or GPUs differ from the base.
    pub types_changed: Vec<String>,
    /// Instance types added (with `all_types` only).
    pub types_added: usize,
    /// AWS instance types of the base catalog the API did not describe.
    pub catalog_types_not_described: Vec<String>,
    /// Instance types skipped for lack of vCPUs or memory in the answer.
    pub types_incomplete: usize,
    /// Regions whose spot history was read.
    pub spot_regions: Vec<String>,
    /// Spot history entries read.
    pub spot_records: usize,
    /// Entries not used: another OS, an unparseable or negative price, a
    /// type not in the overlay, a region not in the catalog.
    pub spot_records_unused: usize,
    /// (type, region) spot prices in the overlay.
    pub spot_prices: usize,
}

impl fmt::Display for RefreshReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(": {}", v.join(", "))
            }
        };
        writeln!(f, "EC2 API at {} ({})", self.endpoint, self.api_region)?;
        writeln!(
            f,
            "  regions:        {} enabled; {} not in the catalog, left out (no network data){}",
            self.regions_enabled,
            self.regions_not_in_catalog.len(),
            list(&self.regions_not_in_catalog)
        )?;
        if !self.catalog_regions_not_enabled.is_empty() {
            writeln!(
                f,
                "                  {} catalog regions not enabled for the account{}",
                self.catalog_regions_not_enabled.len(),
                list(&self.catalog_regions_not_enabled)
            )?;
        }
        writeln!(
            f,
            "  instance types: {} described; {} catalog types refreshed ({} changed{}); {} added",
            self.types_described,
            self.types_updated,
            self.types_changed.len(),
            list(&self.types_changed),
            self.types_added
        )?;
        if !self.catalog_types_not_described.is_empty() {
            writeln!(
                f,
                "                  {} catalog types not described in {}{}",
                self.catalog_types_not_described.len(),
                self.api_region,
                list(&self.catalog_types_not_described)
            )?;
        }
        if self.types_incomplete > 0 {
            writeln!(
                f,
                "                  {} skipped without vCPUs or memory",
                self.types_incomplete
            )?;
        }
        writeln!(
            f,
            "  spot prices:    {} (type, region) prices from {} history entries in {} regions \
             ({} entries unused)",
            self.spot_prices,
            self.spot_records,
            self.spot_regions.len(),
            self.spot_records_unused
        )
    }
}

/// Why a refresh failed. Network and API failures name the endpoint and the
/// call; none of them carries SDK types, so the pure crate stays SDK-free.
#[derive(Debug, Clone, Error)]
pub enum RefreshError {
    /// Nothing answered at the endpoint (refused, unresolvable, timed out).
    #[error("cannot reach the EC2 API at {endpoint} ({operation} in {region}): {detail}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// The region the call was signed for.
        region: String,
        /// The API call.
        operation: &'static str,
        /// The transport's error chain.
        detail: String,
    },

    /// The endpoint rejected the credentials (unknown key, bad signature,
    /// expired token).
    #[error(
        "the EC2 API at {endpoint} rejected the credentials ({operation}: {code}: {message}); \
         check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN"
    )]
    Credentials {
        /// The endpoint.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// The API's error code, e.g. `AuthFailure`.
        code: String,
        /// The API's message.
        message: String,
    },

    /// The credentials are valid but may not make the call.
    #[error(
        "the credentials may not call {operation} at {endpoint} ({code}: {message}); allow \
         ec2:DescribeRegions, ec2:DescribeInstanceTypes and ec2:DescribeSpotPriceHistory"
    )]
    Permission {
        /// The endpoint.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// The API's error code, e.g. `UnauthorizedOperation`.
        code: String,
        /// The API's message.
        message: String,
    },

    /// Any other error the API returned.
    #[error("{operation} at {endpoint} failed: {code}: {message}")]
    Api {
        /// The endpoint.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },

    /// The answer could not be read or is unusable.
    #[error("{operation} at {endpoint} gave an unusable answer: {detail}")]
    Response {
        /// The endpoint.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// What is wrong.
        detail: String,
    },

    /// The settings cannot make a client or a request.
    #[error("invalid refresh settings: {reason}")]
    Settings {
        /// What is wrong.
        reason: String,
    },

    /// The overlay does not apply to the base catalog.
    #[error("the refreshed overlay does not apply to catalog {base}: {source}")]
    Catalog {
        /// Version of the base catalog.
        base: String,
        /// Why the merged catalog was refused.
        #[source]
        source: CatalogError,
    },
}

/// Credential error codes of the EC2 API (the Query protocol's and the
/// signing layer's): these mean "who you are", not "what you may do".
pub fn is_credential_error(code: &str) -> bool {
    matches!(
        code,
        "AuthFailure"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "RequestExpired"
            | "InvalidAccessKeyId"
            | "UnrecognizedClientException"
    )
}

/// Permission error codes of the EC2 API.
pub fn is_permission_error(code: &str) -> bool {
    matches!(
        code,
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException"
    )
}

/// Spot price of one (type, region): the latest entry of each zone, then the
/// cheapest zone, since a spot request may pick any zone of the region.
fn spot_prices(
    base: &Catalog,
    snapshot: &Ec2Snapshot,
    types: &BTreeSet<&str>,
    report: &mut RefreshReport,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    // (type, region, zone) -> (timestamp, price) of the latest entry; equal
    // timestamps keep the lower price so the answer's order does not matter.
    let mut latest: BTreeMap<(&str, &str, &str), (i64, f64)> = BTreeMap::new();
    for record in &snapshot.spot_prices {
        let price = record.price.trim().parse::<f64>().ok();
        let usable = LINUX_PRODUCTS.contains(&record.product_description.as_str())
            && types.contains(record.instance_type.as_str())
            && base
                .region_id(&super::region_key(AWS, &record.region))
                .is_some();
        let (Some(price), true) = (price, usable) else {
            report.spot_records_unused += 1;
            continue;
        };
        if !(price.is_finite() && price >= 0.0) {
            report.spot_records_unused += 1;
            continue;
        }
        let when = record.timestamp.unwrap_or(i64::MIN);
        let key = (
            record.instance_type.as_str(),
            record.region.as_str(),
            record.availability_zone.as_str(),
        );
        let entry = latest.entry(key).or_insert((when, price));
        if when > entry.0 || (when == entry.0 && price < entry.1) {
            *entry = (when, price);
        }
    }
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for ((name, region, _zone), (_, price)) in latest {
        let per_region = out.entry(name.to_string()).or_default();
        let slot = per_region.entry(region.to_string()).or_insert(price);
        *slot = slot.min(price);
    }
    out
}

/// Builds the overlay for `base` from `snapshot` (see the module docs for
/// what it holds) and checks that it applies.
pub fn build_overlay(
    base: &Catalog,
    snapshot: &Ec2Snapshot,
    options: &RefreshOptions,
) -> Result<Refreshed, RefreshError> {
    if options.label.trim().is_empty() {
        return Err(RefreshError::Settings {
            reason: "the overlay label is empty".into(),
        });
    }
    if snapshot.regions.is_empty() {
        return Err(RefreshError::Response {
            endpoint: snapshot.endpoint.clone(),
            operation: "DescribeRegions",
            detail: "no region is enabled for the account".into(),
        });
    }
    let mut report = RefreshReport {
        endpoint: snapshot.endpoint.clone(),
        api_region: snapshot.api_region.clone(),
        regions_enabled: snapshot.regions.len(),
        types_described: snapshot.instance_types.len(),
        spot_regions: snapshot.spot_regions.clone(),
        spot_records: snapshot.spot_prices.len(),
        ..RefreshReport::default()
    };

    let enabled: BTreeSet<&str> = snapshot.regions.iter().map(String::as_str).collect();
    report.regions_not_in_catalog = enabled
        .iter()
        .filter(|r| base.region_id(&super::region_key(AWS, r)).is_none())
        .map(|r| (*r).to_string())
        .collect();
    report.catalog_regions_not_enabled = base
        .regions()
        .iter()
        .filter(|r| r.cloud == AWS && !enabled.contains(r.name.as_str()))
        .map(|r| r.name.clone())
        .collect();

    let known: BTreeMap<&str, &InstanceTypeData> = base
        .instance_types()
        .iter()
        .filter(|t| t.cloud == AWS)
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut types: BTreeMap<&str, InstanceTypeData> = BTreeMap::new();
    for t in &snapshot.instance_types {
        let existing = known.get(t.name.as_str()).copied();
        if existing.is_none() && !options.all_types {
            continue;
        }
        let (Some(vcpus), Some(memory_mib)) = (t.vcpus, t.memory_mib) else {
            report.types_incomplete += 1;
            continue;
        };
        if vcpus == 0 || memory_mib == 0 || t.name.trim().is_empty() {
            report.types_incomplete += 1;
            continue;
        }
        let data = InstanceTypeData {
            cloud: AWS.into(),
            name: t.name.clone(),
            vcpus: f64::from(vcpus),
            // MiB to GiB: exact in binary for every size EC2 sells.
            memory_gib: memory_mib as f64 / 1024.0,
            gpus: t.gpus,
            gpu_model: t.gpu_model.clone(),
            hourly_usd: BTreeMap::new(),
            spot_hourly_usd: BTreeMap::new(),
        };
        match existing {
            Some(old) => {
                report.types_updated += 1;
                let same_model = data.gpu_model.is_none() || data.gpu_model == old.gpu_model;
                if old.vcpus != data.vcpus
                    || old.memory_gib != data.memory_gib
                    || old.gpus != data.gpus
                    || !same_model
                {
                    report.types_changed.push(t.name.clone());
                }
            }
            None => report.types_added += 1,
        }
        types.insert(t.name.as_str(), data);
    }
    let described: BTreeSet<&str> = snapshot
        .instance_types
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    report.catalog_types_not_described = known
        .keys()
        .filter(|name| !described.contains(*name))
        .map(|name| (*name).to_string())
        .collect();

    let names: BTreeSet<&str> = types.keys().copied().collect();
    for (name, prices) in spot_prices(base, snapshot, &names, &mut report) {
        if let Some(t) = types.get_mut(name.as_str()) {
            report.spot_prices += prices.len();
            t.spot_hourly_usd = prices;
        }
    }

    let overlay = CatalogOverlay {
        version: options.label.clone(),
        sources: vec![SourceRecord {
            file: None,
            what: Some(format!(
                "EC2 DescribeRegions, DescribeInstanceTypes ({}), DescribeSpotPriceHistory \
                 (Linux/UNIX, latest per zone, cheapest zone) in {}",
                snapshot.api_region,
                if snapshot.spot_regions.is_empty() {
                    "no region".to_string()
                } else {
                    snapshot.spot_regions.join(", ")
                }
            )),
            source: format!("AWS EC2 API at {}", snapshot.endpoint),
            date: options.date.clone(),
            licence: None,
        }],
        defaults: None,
        regions: Vec::new(),
        instance_types: types.into_values().collect(),
        network: Vec::new(),
    };
    base.with_overlay(&overlay)
        .map_err(|source| RefreshError::Catalog {
            base: base.version().to_string(),
            source,
        })?;
    Ok(Refreshed { overlay, report })
}

/// `YYYY-MM-DD` (UTC) of a time in seconds since the Unix epoch, for labels
/// and dates without a calendar crate (Hinnant's `civil_from_days`).
pub fn utc_date(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Catalog {
        match Catalog::from_yaml(super::super::tests::SMALL) {
            Ok(c) => c,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    fn spot(region: &str, zone: &str, t: &str, price: &str, when: i64) -> SpotPriceRecord {
        SpotPriceRecord {
            region: region.into(),
            availability_zone: zone.into(),
            instance_type: t.into(),
            product_description: "Linux/UNIX".into(),
            price: price.into(),
            timestamp: Some(when),
        }
    }

    fn snapshot() -> Ec2Snapshot {
        Ec2Snapshot {
            endpoint: "http://ec2.test".into(),
            api_region: "us-east-1".into(),
            regions: vec![
                "us-east-1".into(),
                "eu-central-1".into(),
                "il-central-1".into(),
            ],
            instance_types: vec![
                Ec2InstanceType {
                    name: "m5.large".into(),
                    vcpus: Some(2),
                    memory_mib: Some(8192),
                    ..Ec2InstanceType::default()
                },
                Ec2InstanceType {
                    name: "g4dn.xlarge".into(),
                    vcpus: Some(4),
                    memory_mib: Some(16384),
                    gpus: 1,
                    gpu_model: Some("T4".into()),
                },
                Ec2InstanceType {
                    name: "x9.broken".into(),
                    vcpus: None,
                    memory_mib: Some(1),
                    ..Ec2InstanceType::default()
                },
            ],
            spot_regions: vec!["us-east-1".into(), "il-central-1".into()],
            spot_prices: vec![
                // Zone a: the later entry counts; zone b is cheaper still.
                spot("us-east-1", "us-east-1a", "m5.large", "0.050", 10),
                spot("us-east-1", "us-east-1a", "m5.large", "0.040", 20),
                spot("us-east-1", "us-east-1b", "m5.large", "0.035", 5),
                // Unused: Windows, garbage, negative, unknown region.
                SpotPriceRecord {
                    product_description: "Windows".into(),
                    ..spot("us-east-1", "us-east-1c", "m5.large", "0.001", 30)
                },
                spot("us-east-1", "us-east-1c", "m5.large", "n/a", 30),
                spot("us-east-1", "us-east-1c", "m5.large", "-1", 30),
                spot("il-central-1", "il-central-1a", "m5.large", "0.02", 30),
            ],
        }
    }

    fn options(all_types: bool) -> RefreshOptions {
        RefreshOptions {
            label: "aws-ec2-test".into(),
            date: Some("2026-11-20".into()),
            all_types,
        }
    }

    #[test]
    fn overlay_refreshes_known_types_with_the_cheapest_latest_spot_price() {
        let base = base();
        let r = build_overlay(&base, &snapshot(), &options(false)).expect("builds");
        assert_eq!(r.overlay.version, "aws-ec2-test");
        assert!(r.overlay.regions.is_empty());
        assert_eq!(r.overlay.instance_types.len(), 1);
        let m5 = &r.overlay.instance_types[0];
        assert_eq!(
            (m5.name.as_str(), m5.vcpus, m5.memory_gib),
            ("m5.large", 2.0, 8.0)
        );
        assert!(m5.hourly_usd.is_empty());
        assert_eq!(m5.spot_hourly_usd.get("us-east-1"), Some(&0.035));
        assert_eq!(r.report.types_updated, 1);
        assert_eq!(r.report.types_added, 0);
        assert_eq!(r.report.spot_prices, 1);
        assert_eq!(r.report.spot_records_unused, 4);
        assert_eq!(r.report.regions_not_in_catalog, vec!["il-central-1"]);
        assert!(r.report.types_changed.is_empty());
        assert!(r.report.to_string().contains("1 not in the catalog"));

        // The merged catalog keeps the base's on-demand prices.
        let merged = base.with_overlay(&r.overlay).expect("applies");
        assert_eq!(merged.version(), "test-1+aws-ec2-test");
        let t = merged
            .instance_types()
            .iter()
            .find(|t| t.name == "m5.large")
            .expect("still there");
        assert_eq!(t.hourly_usd.get("us-east-1"), Some(&0.096));
        assert_eq!(t.spot_hourly_usd.get("us-east-1"), Some(&0.035));
    }

    #[test]
    fn all_types_adds_unpriced_types_and_skips_incomplete_ones() {
        let base = base();
        let r = build_overlay(&base, &snapshot(), &options(true)).expect("builds");
        assert_eq!(r.report.types_added, 1);
        assert_eq!(r.report.types_incomplete, 1);
        let g4 = r
            .overlay
            .instance_types
            .iter()
            .find(|t| t.name == "g4dn.xlarge")
            .expect("added");
        assert_eq!((g4.gpus, g4.gpu_model.as_deref()), (1, Some("T4")));
        assert!(base.with_overlay(&r.overlay).is_ok());
    }

    #[test]
    fn changed_shapes_are_reported() {
        let mut snap = snapshot();
        snap.instance_types[0].memory_mib = Some(16384);
        let r = build_overlay(&base(), &snap, &options(false)).expect("builds");
        assert_eq!(r.report.types_changed, vec!["m5.large"]);
        assert_eq!(r.overlay.instance_types[0].memory_gib, 16.0);
    }

    #[test]
    fn empty_answers_and_labels_are_refused() {
        let mut snap = snapshot();
        snap.regions.clear();
        assert!(matches!(
            build_overlay(&base(), &snap, &options(false)),
            Err(RefreshError::Response { .. })
        ));
        let mut o = options(false);
        o.label = " ".into();
        assert!(matches!(
            build_overlay(&base(), &snapshot(), &o),
            Err(RefreshError::Settings { .. })
        ));
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_132_800), "2026-11-20");
        assert_eq!(utc_date(-86_400), "1969-12-31");
    }

    #[test]
    fn error_codes_are_classified() {
        assert!(is_credential_error("AuthFailure"));
        assert!(is_permission_error("UnauthorizedOperation"));
        assert!(!is_credential_error("UnauthorizedOperation"));
    }
}
