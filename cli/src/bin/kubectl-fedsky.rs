//! `kubectl-fedsky`: the kubectl plugin behind `kubectl fedsky ...` (see
//! docs/kubectl-plugin.md).

use std::process::ExitCode;

use clap::Parser;
use fedsky_cli::plugin::{PluginCli, PluginError, run};

fn main() -> ExitCode {
    let cli = PluginCli::parse();
    // One request at a time: a current-thread runtime is all the plugin needs.
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| PluginError::Runtime { source })
        .and_then(|rt| {
            rt.block_on(async {
                // Ctrl-C drops the command's future, and with it a download's temporary
                // file, so an interrupted download leaves nothing behind.
                tokio::select! {
                    result = run(&cli) => result,
                    _ = tokio::signal::ctrl_c() => Err(PluginError::Interrupted),
                }
            })
        });
    match outcome {
        Ok(out) => {
            print!("{}", out.stdout);
            for w in &out.warnings {
                eprintln!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut shown = e.to_string();
            eprintln!("error: {shown}");
            // Messages already quote their cause where it helps; print only what a
            // cause adds, so the reader does not get the same sentence three times.
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown.push_str(&text);
                }
                source = cause.source();
            }
            ExitCode::from(if matches!(e, PluginError::Interrupted) {
                130
            } else {
                1
            })
        }
    }
}
