//! Writes the CRD YAML (`crdgen > charts/fedsky/files/crds.yaml`), or with `--check FILE`
//! fails when FILE differs from what the types generate.

use std::process::ExitCode;

fn main() -> ExitCode {
    match fedsky_crds::crds_yaml() {
        Ok(yaml) => fedsky_crds::print_or_check("crdgen", &yaml),
        Err(e) => {
            eprintln!("crdgen: cannot serialise CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}
