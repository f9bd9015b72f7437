//! `fedsky-testbed`: starts a hub and member clusters from a testbed file, writes the
//! hub's kubeconfig, and keeps them running until interrupted.

use anyhow::Context as _;
use clap::Parser;
use fedsky_e2e::testbed::{Testbed, TestbedConfig};
use std::path::PathBuf;

/// Local hub and member control planes for fedsky.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Testbed file (see e2e/testbeds/).
    #[arg(long)]
    config: PathBuf,
    /// Where to write the hub's kubeconfig.
    #[arg(long)]
    kubeconfig_out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config: TestbedConfig = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {}", args.config.display()))?;
    let testbed = Testbed::start(&config).await?;
    let tmp = args.kubeconfig_out.with_extension("tmp");
    std::fs::write(&tmp, testbed.hub.kubeconfig_yaml())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.kubeconfig_out)
        .with_context(|| format!("writing {}", args.kubeconfig_out.display()))?;
    println!(
        "testbed ready: hub and {} member clusters; hub kubeconfig {}",
        testbed.members.len(),
        args.kubeconfig_out.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("stopping the testbed");
    drop(testbed);
    Ok(())
}
