//! The `lb` benchmark suite: what a packet costs in `lb_xdp`, how fast the
//! data plane forwards real frames, how fast and how fair the Maglev builder
//! is, and how quickly the daemon turns an API call into map contents.
//!
//! Every figure is reported, none is asserted: timings on a shared machine
//! are evidence, not pass/fail tests. Where a figure depends on the kernel
//! taking a particular path, the bench checks the program's own counters
//! after the run and refuses to report a number for the wrong path.
//!
//! The `bench` binary (as root, see `scripts/bench.sh`) runs everything and writes
//! `bench/results/<date>.{md,json,svg}`; bench/README.md explains the method.

#![deny(missing_docs)]

pub mod breakdown;
pub mod control;
pub mod frames;
pub mod fuzz;
pub mod goals;
pub mod harness;
pub mod health_cost;
pub mod lab;
pub mod live;
pub mod maglev_report;
pub mod perpkt;
pub mod report;
pub mod stats;
pub mod sys;

/// The template layout shared with the `lb_bench_harness` XDP program.
pub use lb_common::bench as layout;

/// The XDP objects built by build.rs from lb-ebpf with its `bench` feature.
pub mod objects {
    /// The harness programs (`lb_bench_*`).
    pub static BENCH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-bench"));
    /// The balancer object with `lb_xdp` and its cut-down variants
    /// (`lb_xdp_upto_*`, `lb_xdp_nocount`), same maps as the daemon's.
    pub static BALANCER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));
}
