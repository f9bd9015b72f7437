//! `fedsky-participant`: see [`fedsky_participant::cli`].

use clap::Parser;
use fedsky_participant::cli::{Cli, execute, init_tracing};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_json);
    execute(cli).await?;
    Ok(())
}
