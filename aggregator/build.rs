//! Compiles the gRPC protocol with a protoc shipped as a crate, so a fresh
//! clone builds without a system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/fedsky/v1/aggregator.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Chunk payloads are handed on without copying.
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(std::env::var_os("CARGO_FEATURE_SERVER").is_some())
        .build_client(std::env::var_os("CARGO_FEATURE_CLIENT").is_some())
        .compile_with_config(config, &[proto], &["proto"])?;
    Ok(())
}
