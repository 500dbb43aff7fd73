//! Compiles the protobuf definitions with `protox`, a pure-Rust parser, so a
//! fresh machine builds gavel with cargo alone (no system `protoc`). The
//! encoded descriptor set is written beside the generated code: server
//! reflection serves it.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/gavel/v1/auction.proto", "proto/gavel/v1/replication.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("gavel_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
