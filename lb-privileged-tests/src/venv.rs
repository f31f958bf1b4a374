//! Python virtualenvs for the tests that drive real Python tools (the
//! grpcio client, kubernetes-validate), from PyPI with pinned versions.
//!
//! A virtualenv is cached in `target/<name>/` so reruns do not reach PyPI
//! again. It is built in a temp dir next to it and renamed into place, so an
//! interrupted install never leaves a half-made cache; only its
//! `bin/python` is used afterwards (it finds its site-packages through
//! `pyvenv.cfg` wherever the directory is, while pip's console scripts keep
//! the temp path in their shebangs).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

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

/// Whether `py` exists and runs `check` (Python source) successfully.
fn usable(py: &Path, check: &str) -> bool {
    py.is_file()
        && Command::new(py)
            .args(["-c", check])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// The python of the virtualenv `target/<name>/` with `packages` installed,
/// creating it on first use; `check` is Python source that must succeed in
/// it (imports, a version assertion), or the cache is rebuilt.
pub fn python(name: &str, packages: &[&str], check: &str) -> PathBuf {
    // Tests of one binary run in parallel: one of them builds the cache.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let target = super::bins::target_dir()
        .parent()
        .expect("target/")
        .to_path_buf();
    let venv = target.join(name);
    let py = venv.join("bin/python");
    if usable(&py, check) {
        return py;
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(&target)
        .unwrap();
    let dir = tmp.path().join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir));
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages));
    assert!(
        usable(&dir.join("bin/python"), check),
        "fresh virtualenv {name} fails its check: {check}"
    );
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&dir, &venv).unwrap();
    assert!(usable(&py, check), "virtualenv {} unusable", venv.display());
    py
}
