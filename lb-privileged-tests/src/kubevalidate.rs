//! `kubernetes-validate` (PyPI) in a virtualenv cached in
//! `target/py-kubernetes-validate-<version>/` (see `venv`).

use std::path::PathBuf;

/// The validator, pinned: its bundled schemas decide what "valid" means.
pub const PACKAGE: &str = "kubernetes-validate==1.37.0";

/// The Kubernetes version the manifests are validated against.
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// The virtualenv's python with `kubernetes_validate` (and PyYAML, its
/// dependency) importable, creating the virtualenv on first use.
pub fn python() -> PathBuf {
    super::venv::python(
        &format!("py-{}", PACKAGE.replace("==", "-")),
        &[PACKAGE],
        "import kubernetes_validate, yaml",
    )
}
