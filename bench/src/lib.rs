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

pub mod control;
pub mod frames;
pub mod harness;
pub mod lab;
pub mod live;
pub mod maglev_report;
pub mod perpkt;
pub mod report;
pub mod stats;
pub mod sys;

/// The template layout shared with the `lb_bench_harness` XDP program: the
/// same source file is compiled into both, so they cannot drift apart.
#[path = "../../lb-ebpf/src/bin/lb-bench/layout.rs"]
pub mod layout;

// SAFETY: `Template` is `#[repr(C)]`, `Copy`, plain integers with no padding
// (its size is asserted in layout.rs), so any byte pattern is a valid value.
unsafe impl aya::Pod for layout::Template {}
