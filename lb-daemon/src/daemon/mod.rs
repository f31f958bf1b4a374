//! The `lb-daemon` command: argument parsing and the subcommands.

mod decap_cmd;
pub mod run;
pub mod settings;

use std::{net::IpAddr, path::PathBuf};

use clap::{Parser, Subcommand};

/// `lb-daemon` command line.
#[derive(Parser, Debug)]
#[command(
    name = "lb-daemon",
    version,
    about = "XDP layer-4 load balancer daemon"
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the balancer: load or adopt the pinned XDP program, apply the
    /// state, serve the gRPC API.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Remove the data plane: detach XDP and delete the pins. Forwarding
    /// stops. The state directory is kept (the next `run` restores it).
    Teardown {
        /// Configuration file naming `pin_path`.
        #[arg(long, short, conflicts_with = "pin_path")]
        config: Option<PathBuf>,
        /// The pin directory directly.
        #[arg(long)]
        pin_path: Option<PathBuf>,
    },
    /// Check a configuration file and exit (prints the error with its line).
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Backend side: strip lb's IP-in-IP headers in XDP (for hosts without
    /// ipip/ip6tnl devices).
    Decap {
        /// What to do with the decap program.
        #[command(subcommand)]
        action: DecapAction,
    },
}

/// `lb-daemon decap` actions.
#[derive(Subcommand, Debug)]
pub enum DecapAction {
    /// Attach `lb_decap` to an interface, pinned (it stays after we exit).
    Attach {
        /// Interface the encapsulated packets arrive on.
        #[arg(long)]
        interface: String,
        /// Decapsulate packets addressed to ADDR (repeatable). Default: every
        /// address configured on this host (this network namespace).
        #[arg(long = "address", value_name = "ADDR")]
        addresses: Vec<IpAddr>,
        /// Attach the bare XDP_PASS program instead (a veth peer of an XDP_TX
        /// sender needs an XDP program to receive those frames).
        #[arg(long)]
        pass_only: bool,
        /// Also decapsulate GUE (IP in UDP, as `[dataplane] encap = "gue"`
        /// sends it) arriving on this UDP port; 0 = IP-in-IP only.
        #[arg(long, value_name = "PORT", default_value_t = lb_common::DEFAULT_GUE_PORT)]
        gue_port: u16,
        /// Where to pin the link and maps.
        #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
        pin_path: PathBuf,
    },
    /// Detach it and remove the pins.
    Detach {
        /// Where it was pinned.
        #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
        pin_path: PathBuf,
    },
    /// Print its counters.
    Stats {
        /// Where it was pinned.
        #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
        pin_path: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Logs to stderr; `RUST_LOG` picks the level (default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a human at a terminal, not in journald/files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line.
pub fn main(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Run { config } => run::run(&config),
        Command::Teardown { config, pin_path } => {
            let pin = match (config, pin_path) {
                (_, Some(p)) => p,
                (Some(c), None) => crate::config::Config::from_file(&c)?.dataplane.pin_path,
                (None, None) => anyhow::bail!("teardown needs --config or --pin-path"),
            };
            crate::dataplane::teardown(&pin)?;
            tracing::info!(pin_path = %pin.display(), "data plane removed");
            Ok(())
        }
        Command::Check { config } => {
            settings::load(&config)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Decap { action } => decap_cmd::run(action),
    }
}
