//! Builds the XDP programs (crate `lb-ebpf`, nightly, bpfel-unknown-none) so the
//! daemon can embed them. Set AYA_BUILD_SKIP=1 to skip (the embedded objects
//! are then missing and loading fails at run time).

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = format!("{manifest_dir}/../lb-ebpf");
    // lb-common is compiled into the programs too.
    println!("cargo:rerun-if-changed={manifest_dir}/../lb-common/src");
    aya_build::build_ebpf(
        [Package {
            name: "lb-ebpf",
            root_dir: &ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
