//! Logging set-up: `RUST_LOG`-filtered, human or JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. JSON lines when `json` is set (for log pipelines).
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second init (tests) is harmless; ignore it.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
