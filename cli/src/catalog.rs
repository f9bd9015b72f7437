//! `fedsky catalog refresh`: a catalog overlay from the EC2 API (enabled
//! regions, instance types, current spot prices), checked against the base
//! catalog and written as JSON for `--overlay` or a ConfigMap.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use fedsky_placement::catalog::aws::{Ec2Settings, refresh as fetch_overlay};
use fedsky_placement::catalog::refresh::{RefreshError, RefreshOptions, utc_date};

use crate::commands::{CliError, CommandOutput, load_catalog};

/// Arguments of `fedsky catalog refresh`. Credentials come from the usual
/// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN);
/// shared config files and profiles are not read.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Region to ask for regions and instance types, e.g. us-east-1.
    #[arg(long, env = "AWS_REGION")]
    pub region: String,
    /// EC2 endpoint URL instead of the public one (moto, LocalStack, a VPC
    /// endpoint).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// File to write the overlay JSON to; stdout when absent.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Base catalog (JSON or YAML) the overlay is for, instead of the
    /// built-in one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Regions to read spot prices in (repeatable); default: every enabled
    /// region the catalog lists.
    #[arg(long = "spot-region")]
    pub spot_regions: Vec<String>,
    /// Also add instance types the catalog does not list (they come without
    /// an on-demand price, so they host no aggregator).
    #[arg(long)]
    pub all_types: bool,
    /// The overlay's version label; default `aws-ec2-<region>-<UTC date>`.
    #[arg(long)]
    pub label: Option<String>,
    /// Attempts per API call (1 = no retry).
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Seconds one attempt may take, connection included.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// Access key id (prefer the environment variable).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret access key (prefer the environment variable: arguments are
    /// visible to other users of the machine).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,
}

/// `fedsky catalog refresh`.
pub fn refresh(args: &RefreshArgs) -> Result<CommandOutput, CliError> {
    let base = load_catalog(args.catalog.as_deref(), None)?;
    let mut settings = Ec2Settings::new(
        args.region.clone(),
        args.access_key_id.clone().unwrap_or_default(),
        args.secret_access_key.clone().unwrap_or_default(),
    );
    settings.endpoint.clone_from(&args.endpoint);
    settings.session_token = args.session_token.clone().filter(|t| !t.is_empty());
    settings.max_attempts = args.max_attempts;
    settings.attempt_timeout = Duration::from_secs(args.timeout_secs.max(1));
    settings.spot_regions = (!args.spot_regions.is_empty()).then(|| args.spot_regions.clone());

    // A clock before 1970 is not worth an error: the date only labels data.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let date = utc_date(now);
    let options = RefreshOptions {
        label: args
            .label
            .clone()
            .unwrap_or_else(|| format!("aws-ec2-{}-{date}", args.region)),
        date: Some(date),
        all_types: args.all_types,
    };

    // One command, a few sequential calls: a current-thread runtime is enough.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Runtime { source })?;
    let refreshed = runtime.block_on(fetch_overlay(&base, &settings, &options))?;

    let json = serde_json::to_string_pretty(&refreshed.overlay)
        .map(|s| s + "\n")
        .map_err(|e| CliError::Serialize {
            format: "json",
            message: e.to_string(),
        })?;
    let summary = format!(
        "overlay {} for catalog {} ({} instance types)\n{}",
        refreshed.overlay.version,
        base.version(),
        refreshed.overlay.instance_types.len(),
        refreshed.report
    );
    match &args.output {
        Some(path) => {
            std::fs::write(path, &json).map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(CommandOutput {
                output: format!("{summary}written to {}\n", path.display()),
                feasible: true,
                notes: String::new(),
            })
        }
        None => Ok(CommandOutput {
            output: json,
            feasible: true,
            notes: summary,
        }),
    }
}

impl From<RefreshError> for CliError {
    fn from(source: RefreshError) -> Self {
        Self::Refresh { source }
    }
}
