//! `lbctl`, the operator CLI of the lb load balancer, as a library: [`cli`]
//! is the command line and what each command prints, [`client`] connects to
//! the daemon's `lb.v1` API (also for tests and benchmarks). It depends on
//! the API crates only (`lb-proto`, `lb-api`), not on the daemon.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod apply;
pub mod cli;
pub mod client;
pub mod pcapng;

pub use cli::{run, run_async, run_with};
