//! Compiles `proto/lb/v1/{lb,announce}.proto` with protox (a pure-Rust protobuf compiler,
//! so no `protoc` is needed), generates the message types and the tonic client
//! and server with tonic-prost-build, and writes the encoded
//! `FileDescriptorSet` (with source info, so reflection clients see the
//! comments) to `$OUT_DIR/lb_v1_descriptor.bin`.

use std::{env, fs, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["lb/v1/lb.proto", "lb/v1/announce.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTO_FILES)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("lb_v1_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
