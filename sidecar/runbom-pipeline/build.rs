//! Generates runbom's own protocol (`proto/node_agent.proto`: the node agent → sidecar stream)
//! with tonic and prost. Needs `protoc` (scripts/setup.sh installs it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/node_agent.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&[proto], &["../../proto"])?;
    Ok(())
}
