//! Writes the API reference markdown, or with `--check FILE` fails when FILE is stale.

fn main() -> std::process::ExitCode {
    let md = fedsky_crds::apidoc::render(&fedsky_crds::crds());
    fedsky_crds::print_or_check("apidoc", &md)
}
