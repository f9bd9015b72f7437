//! Writes the API reference markdown, or with `--check FILE` fails when FILE is stale.

use std::process::ExitCode;

fn main() -> ExitCode {
    let md = fedsky_crds::apidoc::render(&fedsky_crds::crds());
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            print!("{md}");
            ExitCode::SUCCESS
        }
        [flag, path] if flag == "--check" => match std::fs::read_to_string(path) {
            Ok(existing) if existing == md => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!("apidoc: {path} is stale; run `make generate` and commit the result");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("apidoc: cannot read {path}: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: apidoc [--check FILE]");
            ExitCode::from(2)
        }
    }
}
