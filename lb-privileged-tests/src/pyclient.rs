//! A real Python gRPC client: the stock PyPI `grpcio` (C-core),
//! `grpcio-reflection` and `grpcio-health-checking` in a virtualenv this
//! module creates, and the script `python/lb_client_check.py` that drives
//! the API with default channel options.
//!
//! The virtualenv is cached in `target/py-grpc-<versions>/` so reruns do not
//! reach PyPI again; it is built in a temp dir next to it and renamed into
//! place, so an interrupted install never leaves a half-made cache.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
};

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

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (python3 and python3-venv: scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The virtualenv's python, creating the virtualenv on first use.
pub fn python() -> PathBuf {
    // Tests of one binary run in parallel: one of them builds the cache.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let target = super::bins::target_dir()
        .parent()
        .expect("target/")
        .to_path_buf();
    let venv = target.join(format!("py-grpc-{}", PACKAGES.join("-").replace("==", "")));
    let py = venv.join("bin/python");
    if imports_ok(&py) {
        return py;
    }
    let tmp = tempfile::Builder::new()
        .prefix(".py-grpc-")
        .tempdir_in(&target)
        .unwrap();
    let dir = tmp.path().join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir));
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PACKAGES));
    assert!(
        imports_ok(&dir.join("bin/python")),
        "fresh virtualenv cannot import grpc"
    );
    // Only `bin/python` is used from the cache: it finds its site-packages
    // through `pyvenv.cfg` next to it, wherever the directory is (the pip
    // scripts' shebangs keep the temp path, and are not used).
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&dir, &venv).unwrap();
    assert!(imports_ok(&py), "virtualenv {} unusable", venv.display());
    py
}

fn imports_ok(py: &Path) -> bool {
    py.is_file()
        && Command::new(py)
            .args([
                "-c",
                "import grpc, grpc_reflection.v1alpha.proto_reflection_descriptor_database, \
                 grpc_health.v1.health_pb2, h2.connection; assert grpc.__version__ == '1.85.3'",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
}
