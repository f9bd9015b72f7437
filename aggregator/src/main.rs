//! `fedsky-aggregator`: parse flags, start logging, serve until SIGTERM.

use clap::Parser;
use fedsky_aggregator::cli::{Args, init_tracing, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    run(args).await?;
    Ok(())
}
