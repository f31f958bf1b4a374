//! `kubernetes-validate` (PyPI) in a virtualenv this module creates, cached
//! in `target/py-kubernetes-validate-<version>/` the way `pyclient` caches
//! its gRPC client (built in a temp dir next to it, renamed into place).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

/// The validator, pinned: its bundled schemas decide what "valid" means.
pub const PACKAGE: &str = "kubernetes-validate==1.37.0";

/// The Kubernetes version the manifests are validated against.
pub const KUBERNETES_VERSION: &str = "1.33.0";

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (python3 and python3-venv: scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtualenv's python with `kubernetes_validate` (and PyYAML, its
/// dependency) importable, creating the virtualenv on first use.
pub fn python() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let target = super::bins::target_dir()
        .parent()
        .expect("target/")
        .to_path_buf();
    let venv = target.join(format!("py-{}", PACKAGE.replace("==", "-")));
    let py = venv.join("bin/python");
    if imports_ok(&py) {
        return py;
    }
    let tmp = tempfile::Builder::new()
        .prefix(".py-kv-")
        .tempdir_in(&target)
        .unwrap();
    let dir = tmp.path().join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir));
    run(Command::new(dir.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        PACKAGE,
    ]));
    assert!(
        imports_ok(&dir.join("bin/python")),
        "fresh virtualenv cannot import kubernetes_validate"
    );
    // Only bin/python is used (console scripts keep the temp path in their
    // shebangs): it finds site-packages through pyvenv.cfg wherever it is.
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&dir, &venv).unwrap();
    assert!(imports_ok(&py), "virtualenv {} unusable", venv.display());
    py
}

fn imports_ok(py: &Path) -> bool {
    py.is_file()
        && Command::new(py)
            .args(["-c", "import kubernetes_validate, yaml"])
            .output()
            .is_ok_and(|o| o.status.success())
}
