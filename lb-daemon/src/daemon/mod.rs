//! The `lb-daemon` command: argument parsing and the subcommands.

mod decap_cmd;
pub mod notify;
pub mod run;
pub mod settings;

use std::{net::IpAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

/// `lb-daemon` command line.
#[derive(Parser, Debug)]
#[command(
    name = "lb-daemon",
    version,
    about = "XDP layer-4 load balancer daemon"
)]
pub struct Args {
    /// Log line format on stderr: `text` for people, `json` (one object a
    /// line, the same fields) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
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

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `tracing`'s human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, and the
    /// event's structured fields under `fields` (the message as `message`).
    Json,
}

/// Logs to stderr in `format`; `RUST_LOG` picks the level (default info).
pub fn init_tracing(format: LogFormat) {
    let _ = tracing::subscriber::set_global_default(subscriber(format, std::io::stderr));
}

/// The subscriber `init_tracing` installs, writing to `writer` (tests
/// capture it).
pub fn subscriber<W>(format: LogFormat, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        // Colour codes only for a human at a terminal, not in journald/files.
        LogFormat::Text => Box::new(builder.with_ansi(std::io::stderr().is_terminal()).finish()),
        // Fields stay under `fields` (tracing's documented JSON shape) so an
        // event field can never clash with `level` or `target`.
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
    }
}

/// Runs a parsed command line.
pub fn main(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Run { config } => run::run(&config),
        Command::Teardown { config, pin_path } => {
            let (pin, bgp) = match (config, pin_path) {
                (_, Some(p)) => (p, None),
                (Some(c), None) => {
                    let cfg = crate::config::Config::from_file(&c)?;
                    (cfg.dataplane.pin_path, cfg.bgp)
                }
                (None, None) => anyhow::bail!("teardown needs --config or --pin-path"),
            };
            // Withdraw first, so routers stop sending traffic before the
            // program that serves it goes. A speaker that cannot be told is
            // reported, and teardown goes on: removing the data plane must
            // always be possible.
            if let Some(bgp) = bgp {
                match runtime()?.block_on(crate::announce::withdraw_all(&bgp)) {
                    Ok(v) => tracing::info!(speaker = %v, "every prefix withdrawn"),
                    Err(e) => {
                        tracing::error!(cause = %e, "could not withdraw the prefixes; the speaker may still announce them")
                    }
                }
            }
            crate::dataplane::teardown(&pin)?;
            tracing::info!(pin_path = %pin.display(), "data plane removed");
            Ok(())
        }
        Command::Check { config } => {
            let cfg = settings::load(&config)?;
            // The speaker must answer: a daemon that cannot announce is a
            // node that never gets traffic, found out here, not in production.
            if cfg.bgp.is_some() {
                runtime()?.block_on(settings::probe_speaker(&config))?;
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Decap { action } => decap_cmd::run(action),
    }
}

/// A small runtime for the subcommands that talk to the speaker.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        tracing::subscriber::with_default(subscriber(format, move || w.clone()), || {
            tracing::info!(interface = "lb0", mode = "native", "XDP attached");
            tracing::debug!("below the default level");
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_logs_carry_the_same_fields_as_text() {
        let text = logged(LogFormat::Text);
        assert!(text.contains("XDP attached"), "{text}");
        assert!(text.contains("interface=\"lb0\""), "{text}");
        assert!(text.contains("mode=\"native\""), "{text}");

        let json = logged(LogFormat::Json);
        let lines: Vec<&str> = json.lines().collect();
        assert_eq!(lines.len(), 1, "one object per event, info and up: {json}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "XDP attached");
        assert_eq!(v["fields"]["interface"], "lb0");
        assert_eq!(v["fields"]["mode"], "native");
        assert!(v["timestamp"].is_string());
        assert!(!json.contains('\u{1b}'), "no colour codes in JSON");
    }

    #[test]
    fn log_format_is_a_global_option() {
        for argv in [
            &["lb-daemon", "--log-format", "json", "check", "-c", "x.toml"][..],
            &["lb-daemon", "check", "-c", "x.toml", "--log-format", "json"][..],
        ] {
            let a = Args::try_parse_from(argv).unwrap();
            assert_eq!(a.log_format, LogFormat::Json, "{argv:?}");
        }
        let a = Args::try_parse_from(["lb-daemon", "check", "-c", "x.toml"]).unwrap();
        assert_eq!(a.log_format, LogFormat::Text);
        let e = Args::try_parse_from(["lb-daemon", "--log-format", "xml", "check", "-c", "x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("xml") && e.contains("json"), "{e}");
    }
}
