//! The shipped service definitions: the systemd units pass
//! `systemd-analyze verify`, the Kubernetes manifests pass
//! `kubernetes-validate` against a pinned Kubernetes version, the
//! ConfigMap's configuration passes `lb-daemon check`, and the units and
//! the DaemonSet grant the same capabilities.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use lb_privileged_tests::{bins::lb_daemon_bin, kubevalidate, require_root};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

const UNITS: [&str; 2] = ["lb-daemon.service", "lb-decap.service"];

/// The documented install path of the binary in the units.
const INSTALLED: &str = "/usr/local/bin/lb-daemon";

/// `systemd-analyze verify` on `units` (file paths); it exits 0 even on
/// most warnings, so stderr must be empty too.
fn verify(units: &[PathBuf]) -> Output {
    Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .output()
        .expect("systemd-analyze (systemd: scripts/setup.sh)")
}

/// Copies of the units into `dir` with the install path replaced by the
/// binary under test: verify checks that ExecStart names an executable.
fn installed_copies(dir: &Path, edit: impl Fn(&str) -> String) -> Vec<PathBuf> {
    let bin = lb_daemon_bin();
    UNITS
        .iter()
        .map(|u| {
            let text = std::fs::read_to_string(deploy(&format!("systemd/{u}"))).unwrap();
            assert!(text.contains(INSTALLED), "{u} runs {INSTALLED}");
            let p = dir.join(u);
            std::fs::write(&p, edit(&text.replace(INSTALLED, bin.to_str().unwrap()))).unwrap();
            p
        })
        .collect()
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let units = installed_copies(dir.path(), str::to_string);
    let out = verify(&units);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");

    // The check can fail: a misspelt type is a warning on stderr.
    let bad = tempfile::tempdir().unwrap();
    let units = installed_copies(bad.path(), |t| t.replace("Type=notify", "Type=notfy"));
    let out = verify(&units);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notfy"), "not reported: {err}");

    let daemon = std::fs::read_to_string(deploy("systemd/lb-daemon.service")).unwrap();
    for line in ["Type=notify", "Restart=always", "StandardError=journal"] {
        assert!(
            daemon.lines().any(|l| l == line),
            "lb-daemon.service: {line}"
        );
    }
}

/// The `CAP_*` names of a unit's `key=` line.
fn unit_caps(unit: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(deploy(&format!("systemd/{unit}"))).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{unit}: no {key}"));
    let mut caps: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    caps.sort();
    caps
}

/// Runs a Python snippet in the validator's virtualenv.
fn py(code: &str, args: &[&Path]) -> Output {
    Command::new(kubevalidate::python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap()
}

fn kube_validate(files: &[PathBuf]) -> Output {
    Command::new(kubevalidate::python())
        .args(["-m", "kubernetes_validate", "--strict", "-k"])
        .arg(kubevalidate::KUBERNETES_VERSION)
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    require_root();
    let files = vec![deploy("k8s/daemonset.yaml"), deploy("k8s/configmap.yaml")];
    let out = kube_validate(&files);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for res in [
        "daemonset/lb-daemon",
        "configmap/lb-config",
        "namespace/lb-system",
    ] {
        assert!(
            text.contains(&format!("passed for resource {res}")),
            "{text}"
        );
    }

    // The validator rejects what Kubernetes would: an unknown field.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("daemonset.yaml");
    let ds = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&bad, ds.replace("hostNetwork: true", "hostNetwrok: true")).unwrap();
    let out = kube_validate(&[bad]);
    assert!(!out.status.success(), "a misspelt field passed");

    // The ConfigMap's configuration is one the daemon accepts.
    let cfg = dir.path().join("lb.toml");
    let out = py(
        "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); \
         open(sys.argv[2], 'w').write(d['data']['lb.toml'])",
        &[&files[1], &cfg],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(lb_daemon_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // kubelet's grpc probes ask the port the configuration serves
    // grpc.health.v1 on ([api] health_listen), for liveness and readiness.
    let out = py(
        "import sys, yaml, tomllib\n\
         ds = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d['kind'] == 'DaemonSet'][0]\n\
         c = ds['spec']['template']['spec']['containers'][0]\n\
         cfg = tomllib.load(open(sys.argv[2], 'rb'))\n\
         port = int(cfg['api']['health_listen'].rsplit(':', 1)[1])\n\
         for p in ('livenessProbe', 'readinessProbe'):\n\
         \x20   assert c[p]['grpc']['port'] == port, (p, c[p], port)\n\
         print('probes on', port)",
        &[&files[0], &cfg],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The DaemonSet adds exactly the capabilities the units grant.
    let out = py(
        "import sys, yaml\n\
         for d in yaml.safe_load_all(open(sys.argv[1])):\n\
         \x20   if d['kind'] == 'DaemonSet':\n\
         \x20       c = d['spec']['template']['spec']['containers'][0]['securityContext']['capabilities']\n\
         \x20       print(' '.join(sorted(c['add'])), '|', ' '.join(c['drop']))",
        &[&files[0]],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k8s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let unit: Vec<String> = unit_caps("lb-daemon.service", "AmbientCapabilities")
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    assert_eq!(k8s, format!("{} | ALL", unit.join(" ")));
    for u in UNITS {
        assert_eq!(
            unit_caps(u, "CapabilityBoundingSet"),
            unit_caps(u, "AmbientCapabilities"),
            "{u}"
        );
    }
}
