//! `fedsky-testbed`: starts a hub and member clusters from a testbed file, writes the
//! hub's kubeconfig (and the members'), and keeps them running until interrupted.

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
    /// Also write each member's kubeconfig, as `<member>.kubeconfig` in this folder.
    #[arg(long)]
    member_kubeconfigs: Option<PathBuf>,
    /// Training images per hospital (members with `data`), instead of the file's.
    #[arg(long)]
    train_images: Option<u32>,
}

/// Writes `text` to `path` through a temporary file, so a reader never sees half of it.
fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut config: TestbedConfig = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {}", args.config.display()))?;
    if let Some(n) = args.train_images {
        config.set_train_images(n);
    }
    let testbed = Testbed::start(&config).await?;
    if let Some(dir) = &args.member_kubeconfigs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (m, plane) in &testbed.members {
            write_file(
                &dir.join(format!("{}.kubeconfig", m.name)),
                plane.kubeconfig_yaml(),
            )?;
        }
    }
    // Written last: its presence tells a waiting script that everything is ready.
    write_file(&args.kubeconfig_out, testbed.hub.kubeconfig_yaml())?;
    println!(
        "testbed ready: hub and {} member clusters, {} real nodes; hub kubeconfig {}",
        testbed.members.len(),
        testbed.nodes.len(),
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
