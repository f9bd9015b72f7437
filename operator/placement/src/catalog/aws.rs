//! Fetching an [`Ec2Snapshot`] from the EC2 API with `aws-sdk-ec2` (cargo
//! feature `aws`): enabled regions, every instance type (paginated) and the
//! current Linux spot prices of the types a refresh keeps. [`refresh`] then
//! turns it into an overlay with [`build_overlay`].
//!
//! The client takes static credentials and an optional endpoint (moto,
//! LocalStack, a VPC endpoint), so it needs no AWS config files. Errors are
//! sorted into "unreachable", "credentials rejected", "not permitted" and
//! other API errors, each naming the endpoint and the call.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::InstanceType;
use aws_smithy_http_client::tls;

use super::Catalog;
use super::refresh::{
    AWS, Ec2InstanceType, Ec2Snapshot, RefreshError, RefreshOptions, Refreshed, SpotPriceRecord,
    build_overlay, is_credential_error, is_permission_error,
};

/// The most instance types one `DescribeSpotPriceHistory` request filters on
/// (the documented limit of `DescribeInstanceTypes`, kept for both).
const TYPES_PER_REQUEST: usize = 100;

/// Where the EC2 API is and how to sign for it.
#[derive(Clone)]
pub struct Ec2Settings {
    /// Region to ask for regions and instance types, e.g. `us-east-1`.
    pub region: String,
    /// Endpoint URL instead of the public one, e.g. `http://127.0.0.1:5000`.
    pub endpoint: Option<String>,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Attempts per call (1 = no retry).
    pub max_attempts: u32,
    /// Limit of one attempt, connection included.
    pub attempt_timeout: Duration,
    /// Regions to read spot prices in; `None`: every enabled region the
    /// base catalog lists.
    pub spot_regions: Option<Vec<String>>,
}

impl fmt::Debug for Ec2Settings {
    // Credentials never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Settings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("max_attempts", &self.max_attempts)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("spot_regions", &self.spot_regions)
            .finish_non_exhaustive()
    }
}

impl Ec2Settings {
    /// Settings for `region` with these static credentials: the public
    /// endpoint, 3 attempts, 30 s per attempt, spot prices in every enabled
    /// catalog region.
    pub fn new(
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            region: region.into(),
            endpoint: None,
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(30),
            spot_regions: None,
        }
    }

    /// The endpoint as errors and sources name it.
    pub fn endpoint_label(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://ec2.{}.amazonaws.com", self.region))
    }

    fn check(&self) -> Result<(), RefreshError> {
        let bad = |reason: &str| {
            Err(RefreshError::Settings {
                reason: reason.to_string(),
            })
        };
        if self.region.trim().is_empty() {
            return bad("the region is empty");
        }
        if self.access_key_id.trim().is_empty() || self.secret_access_key.is_empty() {
            return bad(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (and AWS_SESSION_TOKEN for temporary credentials)",
            );
        }
        if self.max_attempts == 0 {
            return bad("max attempts must be at least 1");
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(RefreshError::Settings {
                reason: format!("endpoint `{endpoint}` is not an http:// or https:// URL"),
            });
        }
        Ok(())
    }

    /// A client that signs for `region`.
    fn client(&self, region: &str) -> Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let credentials = Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            self.session_token.clone(),
            None,
            "fedsky-catalog-refresh",
        );
        let mut config = aws_sdk_ec2::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(credentials)
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.attempt_timeout.min(Duration::from_secs(10)))
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            );
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        Client::from_conf(config.build())
    }

    /// Sorts an SDK error into a [`RefreshError`].
    fn error<E>(&self, operation: &'static str, region: &str, err: &SdkError<E>) -> RefreshError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let endpoint = self.endpoint_label();
        match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => RefreshError::Unreachable {
                endpoint,
                region: region.to_string(),
                operation,
                detail: DisplayErrorContext(err).to_string(),
            },
            SdkError::ConstructionFailure(_) => RefreshError::Settings {
                reason: format!("{operation}: {}", DisplayErrorContext(err)),
            },
            SdkError::ResponseError(_) => RefreshError::Response {
                endpoint,
                operation,
                detail: DisplayErrorContext(err).to_string(),
            },
            _ => {
                let code = err.code().unwrap_or("Unknown").to_string();
                let message = err
                    .message()
                    .map_or_else(|| DisplayErrorContext(err).to_string(), str::to_string);
                if is_credential_error(&code) {
                    RefreshError::Credentials {
                        endpoint,
                        operation,
                        code,
                        message,
                    }
                } else if is_permission_error(&code) {
                    RefreshError::Permission {
                        endpoint,
                        operation,
                        code,
                        message,
                    }
                } else {
                    RefreshError::Api {
                        endpoint,
                        operation,
                        code,
                        message,
                    }
                }
            }
        }
    }
}

/// Reads the enabled regions and every instance type in `settings.region`,
/// then the current Linux spot prices of `spot_types` in `spot_regions`.
pub async fn fetch(
    settings: &Ec2Settings,
    spot_types: &BTreeSet<String>,
    spot_regions: &[String],
) -> Result<Ec2Snapshot, RefreshError> {
    let mut snapshot = regions_and_types(settings).await?;
    snapshot.spot_prices = spot_history(settings, spot_types, spot_regions).await?;
    snapshot.spot_regions = spot_regions.to_vec();
    Ok(snapshot)
}

/// `DescribeRegions` and every page of `DescribeInstanceTypes`.
async fn regions_and_types(settings: &Ec2Settings) -> Result<Ec2Snapshot, RefreshError> {
    settings.check()?;
    let region = settings.region.as_str();
    let client = settings.client(region);
    let answer = client
        .describe_regions()
        .send()
        .await
        .map_err(|e| settings.error("DescribeRegions", region, &e))?;
    let mut regions: Vec<String> = answer
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(str::to_string))
        .collect();
    regions.sort();
    regions.dedup();

    let mut instance_types = Vec::new();
    let mut pages = client
        .describe_instance_types()
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        let info = item.map_err(|e| settings.error("DescribeInstanceTypes", region, &e))?;
        let Some(name) = info.instance_type() else {
            continue;
        };
        let gpus = info.gpu_info().map(|g| g.gpus()).unwrap_or_default();
        instance_types.push(Ec2InstanceType {
            name: name.as_str().to_string(),
            vcpus: info
                .v_cpu_info()
                .and_then(|v| v.default_v_cpus())
                .and_then(|v| u32::try_from(v).ok()),
            memory_mib: info
                .memory_info()
                .and_then(|m| m.size_in_mib())
                .and_then(|m| u64::try_from(m).ok()),
            gpus: gpus
                .iter()
                .filter_map(|g| g.count().and_then(|c| u32::try_from(c).ok()))
                .sum(),
            gpu_model: gpus.first().and_then(|g| g.name().map(str::to_string)),
        });
    }
    instance_types.sort_by(|a, b| a.name.cmp(&b.name));

    Ok(Ec2Snapshot {
        endpoint: settings.endpoint_label(),
        api_region: settings.region.clone(),
        regions,
        instance_types,
        spot_regions: Vec::new(),
        spot_prices: Vec::new(),
    })
}

/// `DescribeSpotPriceHistory` (every page) for `spot_types` in each of
/// `spot_regions`; nothing to ask when there are no types.
async fn spot_history(
    settings: &Ec2Settings,
    spot_types: &BTreeSet<String>,
    spot_regions: &[String],
) -> Result<Vec<SpotPriceRecord>, RefreshError> {
    settings.check()?;
    if spot_types.is_empty() {
        return Ok(Vec::new());
    }
    let now = DateTime::from(SystemTime::now());
    let types: Vec<&String> = spot_types.iter().collect();
    let mut spot_prices = Vec::new();
    for spot_region in spot_regions {
        let client = settings.client(spot_region);
        for chunk in types.chunks(TYPES_PER_REQUEST) {
            // Start = end = now: the answer is the price in effect now in
            // each zone (the last change before the start), not a history.
            // Only `Linux/UNIX`: the `(Amazon VPC)` spelling belongs to
            // EC2-Classic accounts, retired in 2022, and its space is encoded
            // `%20` by the SDK but `+` by servers that re-encode the form to
            // check the signature (moto), which then fails.
            let mut request = client
                .describe_spot_price_history()
                .start_time(now)
                .end_time(now)
                .product_descriptions("Linux/UNIX");
            for t in chunk {
                request = request.instance_types(InstanceType::from(t.as_str()));
            }
            let mut pages = request.into_paginator().items().send();
            while let Some(item) = pages.next().await {
                let price =
                    item.map_err(|e| settings.error("DescribeSpotPriceHistory", spot_region, &e))?;
                spot_prices.push(SpotPriceRecord {
                    region: spot_region.clone(),
                    availability_zone: price.availability_zone().unwrap_or_default().to_string(),
                    instance_type: price
                        .instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    product_description: price
                        .product_description()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                    price: price.spot_price().unwrap_or_default().to_string(),
                    timestamp: price.timestamp().map(DateTime::secs),
                });
            }
        }
    }

    Ok(spot_prices)
}

/// Fetches from the EC2 API and builds an overlay for `base`: spot prices
/// for the AWS types the overlay will hold (all described types with
/// `options.all_types`, else the base's), in `settings.spot_regions` or in
/// every enabled region the base lists.
pub async fn refresh(
    base: &Catalog,
    settings: &Ec2Settings,
    options: &RefreshOptions,
) -> Result<Refreshed, RefreshError> {
    // Regions first, so the spot regions default to the enabled ones.
    let mut snapshot = regions_and_types(settings).await?;
    let spot_regions: Vec<String> = match &settings.spot_regions {
        Some(list) => list.clone(),
        None => snapshot
            .regions
            .iter()
            .filter(|r| base.region_id(&super::region_key(AWS, r)).is_some())
            .cloned()
            .collect(),
    };
    let known: BTreeSet<&str> = base
        .instance_types()
        .iter()
        .filter(|t| t.cloud == AWS)
        .map(|t| t.name.as_str())
        .collect();
    let spot_types: BTreeSet<String> = snapshot
        .instance_types
        .iter()
        .filter(|t| options.all_types || known.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect();
    snapshot.spot_prices = spot_history(settings, &spot_types, &spot_regions).await?;
    snapshot.spot_regions = spot_regions;
    build_overlay(base, &snapshot, options)
}
