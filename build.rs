//! Compiles the protobuf definitions with `protox`, a pure-Rust parser, so a
//! fresh machine builds gavel with cargo alone (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/gavel/v1/auction.proto", "proto/gavel/v1/replication.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
