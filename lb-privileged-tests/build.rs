//! Builds `lb-ebpf` with its `upgrade-test` feature: an `lb_xdp` whose
//! instructions differ from the daemon's embedded one while it forwards the
//! same, so the upgrade tests can replace a running program in place with
//! another build (`LB_TEST_XDP_OBJECT`, tests/upgrade.rs).

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = format!("{manifest_dir}/../lb-ebpf");
    println!("cargo:rerun-if-changed={manifest_dir}/../lb-common/src");
    aya_build::build_ebpf(
        [Package {
            name: "lb-ebpf",
            root_dir: &ebpf_dir,
            features: &["upgrade-test"],
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
