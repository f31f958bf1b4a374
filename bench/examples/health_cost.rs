//! What health checks cost the daemon, one run (figure 6 of `bench`,
//! `bench --only health`, runs the same with its defaults): see
//! `bench::health_cost` for the set-up and what each figure charges.
//!
//! ```sh
//! cargo build --release -p lb-daemon --bin lb-daemon && cargo build --release -p bench --example health_cost
//! target/release/examples/health_cost --seconds 120 --check http --backends-at veth
//! ```

use std::{path::PathBuf, time::Duration};

use bench::health_cost::{self, Backends, Check, Params};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The daemon binary.
    #[arg(long, default_value = "target/release/lb-daemon")]
    daemon: PathBuf,
    /// Backends probed.
    #[arg(long, default_value_t = 1000)]
    backends: u32,
    /// Measured window, seconds (after the warm-up).
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Warm-up, seconds.
    #[arg(long, default_value_t = 15)]
    warmup: u64,
    /// The probe.
    #[arg(long, value_enum, default_value = "http")]
    check: Check,
    /// Where the backends are: local addresses (loopback: their kernel work
    /// is charged to the daemon) or a namespace behind a veth pair.
    #[arg(long, value_enum, default_value = "local")]
    backends_at: Backends,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    eprintln!("warm-up {} s, window {} s ...", a.warmup, a.seconds);
    let r = health_cost::run(&Params {
        daemon: a.daemon,
        backends: a.backends,
        seconds: a.seconds,
        warmup: Duration::from_secs(a.warmup),
        check: a.check,
        at: a.backends_at,
    })?;
    println!("health checks: {}", r.line());
    if let Some(p) = a.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    Ok(())
}
