//! `fedsky`: the fedsky command line.

use std::process::ExitCode;

use clap::Parser;
use fedsky_cli::commands::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(outcome) => {
            print!("{}", outcome.output);
            eprint!("{}", outcome.notes);
            // 2 tells scripts "solved, but nothing meets the requirements".
            ExitCode::from(if outcome.feasible { 0 } else { 2 })
        }
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(1)
        }
    }
}
