//! A real Python gRPC client: the stock PyPI `grpcio` (C-core),
//! `grpcio-reflection` and `grpcio-health-checking` in a virtualenv this
//! module creates, and the script `python/lb_client_check.py` that drives
//! the API with default channel options.
//!
//! The virtualenv is cached in `target/py-grpc-<versions>/` (see `venv`).

use std::path::PathBuf;

/// The client packages, pinned: grpcio 1.85 is the C-core release whose
/// Unix-socket `:authority` the daemon must accept (issue #14); `h2` (the
/// Python HTTP/2 library) sends the authorities other clients use.
pub const PACKAGES: [&str; 4] = [
    "grpcio==1.85.3",
    "grpcio-reflection==1.85.1",
    "grpcio-health-checking==1.85.1",
    "h2==4.4.1",
];

/// The client script.
pub fn script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/lb_client_check.py"
    ))
}

/// The script that sends each client's `:authority` spelling by hand.
pub fn authority_script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/raw_authority_check.py"
    ))
}

/// The virtualenv's python, creating the virtualenv on first use.
pub fn python() -> PathBuf {
    super::venv::python(
        &format!("py-grpc-{}", PACKAGES.join("-").replace("==", "")),
        &PACKAGES,
        "import grpc, grpc_reflection.v1alpha.proto_reflection_descriptor_database, \
         grpc_health.v1.health_pb2, h2.connection; assert grpc.__version__ == '1.85.3'",
    )
}
