//! Writes the CRD YAML (`crdgen > charts/fedsky/crds/fedsky.yaml`), or with `--check FILE`
//! fails when FILE differs from what the types generate.

use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match fedsky_crds::crds_yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("crdgen: cannot serialise CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        [flag, path] if flag == "--check" => match std::fs::read_to_string(path) {
            Ok(existing) if existing == yaml => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!("crdgen: {path} is stale; run `make generate` and commit the result");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("crdgen: cannot read {path}: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: crdgen [--check FILE]");
            ExitCode::from(2)
        }
    }
}
