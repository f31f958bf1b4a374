//! Builds the XDP objects the benchmarks load: `lb-ebpf` with its `bench`
//! feature, which adds the harness programs (`lb-bench`) and the cut-down
//! `lb_xdp_upto_*` variants inside the balancer object (`lb-xdp`). The
//! daemon embeds its own build of `lb-ebpf`, without them.

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = format!("{manifest_dir}/../lb-ebpf");
    println!("cargo:rerun-if-changed={manifest_dir}/../lb-common/src");
    aya_build::build_ebpf(
        [Package {
            name: "lb-ebpf",
            root_dir: &ebpf_dir,
            features: &["bench"],
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
