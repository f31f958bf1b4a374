//! What the tests take from other crates' build outputs: the `lb-daemon` and
//! `lbctl` binaries, the CLI code behind `lbctl`, the API client and the
//! script that makes test certificates. Every such reference is in this file,
//! so moving `lbctl` (or its client) to another crate is an edit here only.
//!
//! `env!("CARGO_BIN_EXE_...")` exists only in the package that owns the
//! binary, so this crate finds binaries next to its own test executable:
//! `target/<profile>/deps/<test>-<hash>` -> `target/<profile>/<binary>`.
//! Cargo does not build another package's binaries for `cargo test -p`:
//! `cargo build --bins` first (scripts/test.sh does).

use std::path::PathBuf;

pub use lbctl::client::{ClientTls, connect};

/// `target/<profile>/`, the directory of the binaries built with this test.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()))
        .to_path_buf()
}

/// A workspace binary of the same profile; panics, saying how to build it, if
/// it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.is_file(),
        "{} missing: build the binaries first (`cargo build --bins`, as scripts/test.sh does)",
        p.display()
    );
    p
}

/// The daemon binary under test (a debug build in the usual run; the lab uses
/// it for its own XDP programs too, so no release build is needed).
pub fn lb_daemon_bin() -> PathBuf {
    bin("lb-daemon")
}

/// Runs `lbctl` with `argv` (argv[0] is the program name): through the real
/// binary when `binary`, else in-process through the same CLI code the binary
/// runs. Returns (exit code, stdout, stderr).
pub fn lbctl(argv: &[String], binary: bool) -> (u8, Vec<u8>, Vec<u8>) {
    if binary {
        let o = std::process::Command::new(bin("lbctl"))
            .args(&argv[1..])
            .output()
            .unwrap();
        (o.status.code().unwrap_or(99) as u8, o.stdout, o.stderr)
    } else {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = lbctl::run_with(argv.iter(), &mut out, &mut err);
        (code, out, err)
    }
}

/// The script that makes a CA, server and client certificates in the current
/// directory (shared with the CLI's own TLS test).
pub fn pki_script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lbctl/tests/pki.sh"
    ))
}
