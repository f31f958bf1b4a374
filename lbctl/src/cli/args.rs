//! `lbctl`'s command line. Every value is parsed here, before any
//! connection is made, so a typo is a usage error (exit 2) and never a call
//! the daemon half-understood.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use clap::{Args as ClapArgs, Parser, Subcommand};
use lb_api::{DEFAULT_WEIGHT, MAX_WEIGHT, MacAddr, VipSpec};

use crate::client::{ApiUri, ClientTls, DEFAULT_API};

/// Heading of the options every command takes.
const CONNECTION: &str = "Connection options";

/// Operate the lb XDP load balancer through the daemon's gRPC API.
///
/// VIPs are written `ADDR:PORT/PROTO`, IPv6 as `[ADDR]:PORT/PROTO`; PROTO is tcp
/// or udp; port 0 serves every port of the address.
#[derive(Clone, Debug, Parser)]
#[command(name = "lbctl", version, propagate_version = true)]
pub struct Args {
    /// API address: unix:///PATH (the daemon's socket) or tcp://HOST:PORT
    /// (TLS; IPv6 as `tcp://[ADDR]:PORT`). Given more than once, one node
    /// each (same TLS options): the command runs on every node and each is
    /// reported (all commands but `stats --watch`).
    #[arg(
        long,
        global = true,
        help_heading = CONNECTION,
        env = "LB_API",
        default_value = DEFAULT_API,
        value_name = "URI",
        value_parser = parse_api,
        action = clap::ArgAction::Append,
    )]
    pub api: Vec<String>,

    /// CA certificate (PEM) that signed the daemon's certificate; required
    /// for tcp:// APIs.
    #[arg(long, global = true,
        help_heading = CONNECTION, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        long,
        global = true,
        help_heading = CONNECTION,
        value_name = "FILE",
        requires = "key",
        requires = "ca"
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, global = true,
        help_heading = CONNECTION, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Name to check the daemon's certificate against, when it is not the
    /// host in --api.
    #[arg(
        long = "tls-domain",
        global = true,
        help_heading = CONNECTION,
        value_name = "NAME",
        requires = "ca"
    )]
    pub tls_domain: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Args {
    /// The API address of a single-node command (the first `--api`; with
    /// several, `cli::nodes` runs the command once per node).
    pub fn api(&self) -> &str {
        self.api.first().map_or(DEFAULT_API, String::as_str)
    }

    /// The TLS settings the options describe, if any (`--ca` given).
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.ca.as_ref().map(|ca| ClientTls {
            ca: ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            domain: self.tls_domain.clone(),
        })
    }
}

/// An `lbctl` command.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Create, delete and list VIPs.
    #[command(subcommand)]
    Vip(VipCommand),
    /// Add, remove, reweigh (0 drains) and list the backends of a VIP.
    #[command(subcommand)]
    Backend(BackendCommand),
    /// Show counters: global, per VIP and per backend.
    Stats(StatsArgs),
    /// Show the data plane and daemon status.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show which backend a new flow from a client would reach.
    Route(RouteArgs),
    /// Capture the frames lb_xdp handles (as received; with --sent also as
    /// transmitted) into a pcapng file that tcpdump, tshark and Wireshark
    /// read; each packet's comment holds the verdict and the backend.
    Capture(CaptureArgs),
    /// Show or set the next-hop MAC address of encapsulated packets.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Show what this node announces to its routers over BGP, and why.
    #[command(subcommand)]
    Announce(AnnounceCommand),
    /// Drain or undrain this node: withdraw (announce again) every VIP
    /// prefix over BGP; forwarding is untouched.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Set or show the health check of a VIP and its backends' health.
    #[command(subcommand)]
    Health(HealthCommand),
    /// Write the live VIPs, flags, backends and weights as `[[vip]]` tables.
    Export(ExportArgs),
    /// Make the live VIPs match a file of `[[vip]]` tables (one atomic call
    /// per VIP); exit 0 in sync or applied, 2 differences found by
    /// --dry-run, 1 on any error.
    Apply(ApplyArgs),
    /// Print a shell completion script on stdout (does not contact the
    /// daemon). Install: README, "Shell completions and man pages".
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (lbctl.1 and one per command, e.g.
    /// lbctl-vip-add.1) into DIR (does not contact the daemon).
    Man {
        /// Directory to write into (created if missing), e.g.
        /// /usr/local/share/man/man1.
        dir: PathBuf,
    },
}

/// `lbctl export [--format toml|json]`
#[derive(Clone, Debug, ClapArgs)]
pub struct ExportArgs {
    /// Output format: the `[[vip]]` TOML `lbctl apply` and the daemon's
    /// configuration read, or the same structure as JSON.
    #[arg(long, value_enum, default_value_t = ExportFormat::Toml)]
    pub format: ExportFormat,
}

/// Formats of `lbctl export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `[[vip]]` tables.
    Toml,
    /// `{"vip": [...]}`, the same keys.
    Json,
}

/// `lbctl apply FILE [--dry-run] [--prune]`
#[derive(Clone, Debug, ClapArgs)]
pub struct ApplyArgs {
    /// File of `[[vip]]` tables (a whole daemon configuration file too: its
    /// other tables are skipped); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the plan and change nothing; exit 2 if there are differences.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete live VIPs that the file does not have (otherwise they are left
    /// and listed).
    #[arg(long)]
    pub prune: bool,
}

/// `lbctl vip ...`
#[derive(Clone, Debug, Subcommand)]
pub enum VipCommand {
    /// Create a VIP (without backends).
    Add {
        /// The VIP, e.g. `198.18.0.10:80/tcp` or `[2001:db8::10]:443/udp`.
        vip: VipSpec,
        /// Hash without the client's source port: every connection of one
        /// client reaches the same backend.
        #[arg(long)]
        no_sport: bool,
        /// Route every packet by the ring alone, without the connection
        /// table (stateless services such as DNS).
        #[arg(long)]
        no_conntrack: bool,
    },
    /// Delete a VIP and all its backends.
    Del {
        /// The VIP.
        vip: VipSpec,
    },
    /// List every VIP with its flags and backends.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `lbctl backend ...`
#[derive(Clone, Debug, Subcommand)]
pub enum BackendCommand {
    /// Add a backend to a VIP.
    Add {
        /// The VIP.
        vip: VipSpec,
        /// Backend address (IPv4 or IPv6, either family for any VIP).
        #[arg(value_parser = parse_backend)]
        address: IpAddr,
        /// Relative weight, 0..=65535 (0 adds it draining).
        #[arg(long, default_value_t = DEFAULT_WEIGHT, value_parser = weight_parser())]
        weight: u32,
    },
    /// Remove a backend from a VIP (drain it first with `weight ... 0`).
    Del {
        /// The VIP.
        vip: VipSpec,
        /// Backend address.
        #[arg(value_parser = parse_backend)]
        address: IpAddr,
    },
    /// Set a backend's weight; 0 drains it (no new flows, established
    /// flows keep reaching it).
    Weight {
        /// The VIP.
        vip: VipSpec,
        /// Backend address.
        #[arg(value_parser = parse_backend)]
        address: IpAddr,
        /// New weight, 0..=65535.
        #[arg(value_parser = weight_parser())]
        weight: u32,
    },
    /// List the backends of a VIP.
    List {
        /// The VIP.
        vip: VipSpec,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `lbctl stats [VIP] [--json] [--watch SECS]`
#[derive(Clone, Debug, ClapArgs)]
pub struct StatsArgs {
    /// Only this VIP (the global counters are always shown).
    pub vip: Option<VipSpec>,
    /// Print JSON instead of tables (one object per line with --watch).
    #[arg(long)]
    pub json: bool,
    /// Print counters and per-second rates every SECS seconds (1..=3600)
    /// until interrupted.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub watch: Option<u32>,
}

/// `lbctl capture [VIP] [--backend ADDR] [--count N] [--snaplen B]
/// [--drops-only] [--sent] -w FILE`
#[derive(Clone, Debug, ClapArgs)]
pub struct CaptureArgs {
    /// Only frames for this VIP; without it, every frame the program sees.
    pub vip: Option<VipSpec>,
    /// Only frames forwarded to this backend.
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<IpAddr>,
    /// Stop after N frames (0: until interrupted).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub count: u64,
    /// Bytes of each frame to keep (1..=2048).
    #[arg(long, value_name = "B", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=2048))]
    pub snaplen: u32,
    /// Only frames the data plane dropped.
    #[arg(long)]
    pub drops_only: bool,
    /// Also write each transmitted frame as sent (after encapsulation).
    #[arg(long)]
    pub sent: bool,
    /// The pcapng file to write (`-`: standard output).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: std::path::PathBuf,
}

/// `lbctl route VIP CLIENT_ADDR:PORT [--dport N] [--json]`
#[derive(Clone, Debug, ClapArgs)]
pub struct RouteArgs {
    /// The VIP.
    pub vip: VipSpec,
    /// The client's address and source port, IPv6 as `[ADDR]:PORT`.
    #[arg(value_name = "CLIENT_ADDR:PORT", value_parser = parse_client)]
    pub client: SocketAddr,
    /// Destination port of the flow; required for a port-0 (all ports) VIP.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub dport: Option<u16>,
    /// Explain one packet of the flow step by step as the data plane takes it
    /// now: VIP entry, connection-table entry (read from the live map), ring,
    /// encapsulation, verdict.
    #[arg(long)]
    pub explain: bool,
    /// With --explain: the packet is a TCP SYN (never consults the
    /// connection table).
    #[arg(long, requires = "explain")]
    pub syn: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `lbctl announce ...`
#[derive(Clone, Debug, Subcommand)]
pub enum AnnounceCommand {
    /// Every VIP prefix (/32, /128): announced or withdrawn and why; the
    /// node's drain flag; the BGP sessions as the speaker reports them.
    List {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// `lbctl node ...`
#[derive(Clone, Debug, Subcommand)]
pub enum NodeCommand {
    /// Withdraw every prefix (before a planned removal of the node); kept
    /// across daemon restarts until `node undrain`. A restart needs no drain.
    Drain,
    /// Announce again what this node can serve.
    Undrain,
}

/// `lbctl gateway ...`
#[derive(Clone, Debug, Subcommand)]
pub enum GatewayCommand {
    /// Show the next-hop MAC address.
    Get {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set the next-hop MAC address (a unicast aa:bb:cc:dd:ee:ff).
    Set {
        /// The MAC address.
        mac: MacAddr,
    },
}

fn weight_parser() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(0..=i64::from(MAX_WEIGHT))
}

/// Checks the API address when parsing, so a bad --api or $LB_API is a
/// usage error like any other bad option.
fn parse_api(s: &str) -> Result<String, String> {
    s.parse::<ApiUri>()
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A backend address; `[v6]` is accepted too, since operators bracket IPv6
/// out of habit from VIPs.
fn parse_backend(s: &str) -> Result<IpAddr, String> {
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse()
        .map_err(|_| format!("`{s}` is not an IP address"))
}

/// A client `ADDR:PORT`. A zone id (`%eth0`, `%2`) is refused: the data
/// plane never sees one, so a route for it would answer a different question.
fn parse_client(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|_| {
        format!("`{s}` is not ADDR:PORT (e.g. 203.0.113.7:40000 or [2001:db8::7]:40000)")
    })?;
    if let SocketAddr::V6(v6) = addr
        && (v6.scope_id() != 0 || v6.flowinfo() != 0)
    {
        return Err(format!("`{s}`: a client address cannot carry a zone id"));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use lb_api::Proto;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("lbctl").chain(args.iter().copied()))
    }

    fn ok(args: &[&str]) -> Args {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn vip(s: &str) -> VipSpec {
        s.parse().unwrap()
    }

    #[track_caller]
    fn refused(args: &[&str]) -> clap::Error {
        let e = parse(args).expect_err(&format!("{args:?} parsed"));
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        e
    }

    #[test]
    fn global_options() {
        let a = ok(&["vip", "list"]);
        if std::env::var_os("LB_API").is_none() {
            assert_eq!(a.api(), DEFAULT_API);
        }
        assert_eq!(a.client_tls(), None);
        let a = ok(&["--api", "unix:///tmp/x.sock", "vip", "list"]);
        assert_eq!(a.api(), "unix:///tmp/x.sock");
        // Global: accepted after the subcommand too.
        let a = ok(&[
            "vip",
            "list",
            "--api",
            "tcp://[::1]:50051",
            "--ca",
            "ca.pem",
        ]);
        assert_eq!(a.api(), "tcp://[::1]:50051");
        let a = ok(&[
            "--api",
            "tcp://lb1:50051",
            "--ca",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--tls-domain",
            "lb.example.net",
            "status",
        ]);
        assert_eq!(
            a.client_tls(),
            Some(ClientTls {
                ca: "ca.pem".into(),
                cert: Some("c.pem".into()),
                key: Some("k.pem".into()),
                domain: Some("lb.example.net".into()),
            })
        );
        refused(&["--api", "http://127.0.0.1:1", "status"]);
        refused(&["--api", "tcp://127.0.0.1", "status"]);
        refused(&["--cert", "c.pem", "--ca", "ca.pem", "status"]);
        refused(&["--key", "k.pem", "status"]);
        refused(&["--cert", "c.pem", "--key", "k.pem", "status"]);
        refused(&["--tls-domain", "x", "status"]);
        refused(&[]);
        refused(&["frobnicate"]);
    }

    #[test]
    fn vip_commands() {
        match ok(&["vip", "add", "198.18.0.10:80/tcp"]).command {
            Command::Vip(VipCommand::Add {
                vip: v,
                no_sport,
                no_conntrack,
            }) => {
                assert_eq!(v, vip("198.18.0.10:80/tcp"));
                assert!(!no_sport && !no_conntrack);
            }
            c => panic!("{c:?}"),
        }
        match ok(&[
            "vip",
            "add",
            "[2001:db8::10]:0/udp",
            "--no-sport",
            "--no-conntrack",
        ])
        .command
        {
            Command::Vip(VipCommand::Add {
                vip: v,
                no_sport,
                no_conntrack,
            }) => {
                assert_eq!(v.address, "2001:db8::10".parse::<IpAddr>().unwrap());
                assert_eq!((v.port, v.proto), (0, Proto::Udp));
                assert!(no_sport && no_conntrack);
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            ok(&["vip", "del", "[fd00::1]:443/tcp"]).command,
            Command::Vip(VipCommand::Del { vip: v }) if v == vip("[fd00::1]:443/tcp")
        ));
        assert!(matches!(
            ok(&["vip", "list"]).command,
            Command::Vip(VipCommand::List { json: false })
        ));
        assert!(matches!(
            ok(&["vip", "list", "--json"]).command,
            Command::Vip(VipCommand::List { json: true })
        ));
        for bad in [
            &["vip", "add"][..],
            &["vip", "add", "198.18.0.10:80"],
            &["vip", "add", "198.18.0.10/tcp"],
            &["vip", "add", "198.18.0.10:80/sctp"],
            &["vip", "add", "198.18.0.10:65536/tcp"],
            &["vip", "add", "2001:db8::10:80/tcp"],
            &["vip", "add", "198.18.0.10:80/tcp", "--no-such-flag"],
            &["vip", "del", "nonsense"],
            &["vip", "list", "extra"],
            &["vip"],
        ] {
            refused(bad);
        }
        let e = refused(&["vip", "add", "2001:db8::10:80/tcp"]);
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("must be written in brackets"), "{e}");
    }

    #[test]
    fn backend_commands() {
        match ok(&["backend", "add", "198.18.0.10:80/tcp", "198.19.0.11"]).command {
            Command::Backend(BackendCommand::Add {
                vip: v,
                address,
                weight,
            }) => {
                assert_eq!(v, vip("198.18.0.10:80/tcp"));
                assert_eq!(address, "198.19.0.11".parse::<IpAddr>().unwrap());
                assert_eq!(weight, 100);
            }
            c => panic!("{c:?}"),
        }
        for form in ["2001:db8::11", "[2001:db8::11]"] {
            match ok(&[
                "backend",
                "add",
                "[2001:db8::10]:80/tcp",
                form,
                "--weight",
                "7",
            ])
            .command
            {
                Command::Backend(BackendCommand::Add {
                    address, weight, ..
                }) => {
                    assert_eq!(address, "2001:db8::11".parse::<IpAddr>().unwrap());
                    assert_eq!(weight, 7);
                }
                c => panic!("{c:?}"),
            }
        }
        assert!(matches!(
            ok(&[
                "backend",
                "add",
                "1.2.3.4:80/tcp",
                "10.0.0.1",
                "--weight",
                "0"
            ])
            .command,
            Command::Backend(BackendCommand::Add { weight: 0, .. })
        ));
        assert!(matches!(
            ok(&["backend", "del", "1.2.3.4:80/tcp", "10.0.0.1"]).command,
            Command::Backend(BackendCommand::Del { .. })
        ));
        assert!(matches!(
            ok(&["backend", "weight", "1.2.3.4:80/tcp", "10.0.0.1", "0"]).command,
            Command::Backend(BackendCommand::Weight { weight: 0, .. })
        ));
        assert!(matches!(
            ok(&["backend", "weight", "1.2.3.4:80/tcp", "fd00::1", "65535"]).command,
            Command::Backend(BackendCommand::Weight { weight: 65535, .. })
        ));
        assert!(matches!(
            ok(&["backend", "list", "[::1]:0/udp", "--json"]).command,
            Command::Backend(BackendCommand::List { json: true, .. })
        ));
        for bad in [
            &["backend", "add", "1.2.3.4:80/tcp"][..],
            &["backend", "add", "1.2.3.4:80/tcp", "10.0.0"],
            &["backend", "add", "1.2.3.4:80/tcp", "10.0.0.1:80"],
            &[
                "backend",
                "add",
                "1.2.3.4:80/tcp",
                "10.0.0.1",
                "--weight",
                "65536",
            ],
            &[
                "backend",
                "add",
                "1.2.3.4:80/tcp",
                "10.0.0.1",
                "--weight",
                "-1",
            ],
            &[
                "backend",
                "add",
                "1.2.3.4:80/tcp",
                "10.0.0.1",
                "--weight",
                "x",
            ],
            &["backend", "add", "10.0.0.1", "1.2.3.4:80/tcp"],
            &["backend", "del", "1.2.3.4:80/tcp"],
            &["backend", "weight", "1.2.3.4:80/tcp", "10.0.0.1"],
            &["backend", "weight", "1.2.3.4:80/tcp", "10.0.0.1", "70000"],
            &["backend", "list"],
        ] {
            refused(bad);
        }
    }

    #[test]
    fn stats_status_route_gateway() {
        match ok(&["stats"]).command {
            Command::Stats(s) => {
                assert_eq!((s.vip, s.json, s.watch), (None, false, None));
            }
            c => panic!("{c:?}"),
        }
        match ok(&["stats", "[fd00::10]:53/udp", "--json", "--watch", "5"]).command {
            Command::Stats(s) => {
                assert_eq!(s.vip, Some(vip("[fd00::10]:53/udp")));
                assert!(s.json);
                assert_eq!(s.watch, Some(5));
            }
            c => panic!("{c:?}"),
        }
        refused(&["stats", "--watch", "0"]);
        refused(&["stats", "--watch", "3601"]);
        refused(&["stats", "--watch"]);
        refused(&["stats", "1.2.3.4"]);

        assert!(matches!(
            ok(&["status", "--json"]).command,
            Command::Status { json: true }
        ));

        match ok(&["route", "198.18.0.10:80/tcp", "203.0.113.7:40000"]).command {
            Command::Route(r) => {
                assert_eq!(r.client, "203.0.113.7:40000".parse().unwrap());
                assert_eq!(r.dport, None);
            }
            c => panic!("{c:?}"),
        }
        match ok(&[
            "route",
            "[2001:db8::10]:0/tcp",
            "[2001:db8::7]:40000",
            "--dport",
            "443",
            "--json",
        ])
        .command
        {
            Command::Route(r) => {
                assert_eq!(r.client, "[2001:db8::7]:40000".parse().unwrap());
                assert_eq!(r.dport, Some(443));
                assert!(r.json);
            }
            c => panic!("{c:?}"),
        }
        for bad in [
            &["route", "198.18.0.10:80/tcp"][..],
            &["route", "198.18.0.10:80/tcp", "203.0.113.7"],
            &["route", "198.18.0.10:80/tcp", "2001:db8::7:40000"],
            &["route", "198.18.0.10:80/tcp", "[fe80::1%2]:40000"],
            &["route", "198.18.0.10:80/tcp", "203.0.113.7:65536"],
            &[
                "route",
                "198.18.0.10:0/tcp",
                "203.0.113.7:1",
                "--dport",
                "0",
            ],
            &[
                "route",
                "198.18.0.10:0/tcp",
                "203.0.113.7:1",
                "--dport",
                "65536",
            ],
        ] {
            refused(bad);
        }

        assert!(matches!(
            ok(&["gateway", "get"]).command,
            Command::Gateway(GatewayCommand::Get { json: false })
        ));
        match ok(&["gateway", "set", "02:00:00:00:00:0A"]).command {
            Command::Gateway(GatewayCommand::Set { mac }) => {
                assert_eq!(mac, MacAddr([2, 0, 0, 0, 0, 10]));
            }
            c => panic!("{c:?}"),
        }
        refused(&["gateway", "set", "02:00:00:00:00"]);
        refused(&["gateway", "set", "ff:ff:ff:ff:ff:ff"]);
        refused(&["gateway", "set"]);
        refused(&["gateway"]);
    }

    #[test]
    fn export_and_apply() {
        assert!(matches!(
            ok(&["export"]).command,
            Command::Export(ExportArgs {
                format: ExportFormat::Toml
            })
        ));
        assert!(matches!(
            ok(&["export", "--format", "json"]).command,
            Command::Export(ExportArgs {
                format: ExportFormat::Json
            })
        ));
        refused(&["export", "--format", "yaml"]);
        match ok(&["apply", "vips.toml"]).command {
            Command::Apply(a) => {
                assert_eq!(a.file, PathBuf::from("vips.toml"));
                assert!(!a.dry_run && !a.prune);
            }
            c => panic!("{c:?}"),
        }
        // --api repeated, before and after the subcommand: every node, in order.
        // (Collected across levels by `cli::parse_args`, tested in cli::tests.)
        let a = ok(&[
            "apply",
            "--dry-run",
            "--prune",
            "f.toml",
            "--api",
            "unix:///run/a.sock",
            "--api=tcp://lb2:50051",
            "--ca",
            "ca.pem",
        ]);
        assert_eq!(a.api, ["unix:///run/a.sock", "tcp://lb2:50051"]);
        assert!(matches!(
            a.command,
            Command::Apply(ApplyArgs {
                dry_run: true,
                prune: true,
                ..
            })
        ));
        refused(&["apply"]);
        refused(&["apply", "a.toml", "b.toml"]);
        refused(&["--api", "http://x:1", "--api", "unix:///a", "apply", "f"]);
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for args in [&["--help"][..], &["vip", "--help"], &["--version"]] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 0, "{args:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}

/// `lbctl health ...`
#[derive(Clone, Debug, Subcommand)]
pub enum HealthCommand {
    /// Set (or with --none remove) the health check of a VIP. Unset options
    /// take their defaults: port = the VIP's, interval 1s, timeout 500ms,
    /// rise 2, fall 3, jitter 10%, initial up.
    Set(Box<HealthSetArgs>),
    /// Show a VIP's health check and each backend's health and probe
    /// counters.
    Show {
        /// The VIP.
        vip: VipSpec,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `lbctl health set VIP (--tcp | --http PATH | --udp PAYLOAD | --none) ...`
#[derive(Clone, Debug, ClapArgs)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["tcp", "http", "udp", "none"])))]
pub struct HealthSetArgs {
    /// The VIP.
    pub vip: VipSpec,
    /// Probe with a TCP connect.
    #[arg(long)]
    pub tcp: bool,
    /// Probe with an HTTP/1.0 GET of PATH (e.g. /healthz).
    #[arg(long, value_name = "PATH")]
    pub http: Option<String>,
    /// Probe with a UDP datagram carrying PAYLOAD; a reply is a pass.
    #[arg(long, value_name = "PAYLOAD")]
    pub udp: Option<String>,
    /// Remove the check: every backend counts as up.
    #[arg(long)]
    pub none: bool,
    /// HTTP: the status that means healthy (default 200); UDP: bytes the
    /// reply must contain.
    #[arg(long, value_name = "STATUS|BYTES")]
    pub expect: Option<String>,
    /// HTTP: the Host header (default: the address probed).
    #[arg(long)]
    pub host: Option<String>,
    /// Port probed (default: the VIP's; required for an all-port VIP).
    #[arg(long)]
    pub port: Option<u32>,
    /// Time between probes of one backend, e.g. 1s, 500ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub interval: Option<u32>,
    /// Time a probe may take, e.g. 500ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub timeout: Option<u32>,
    /// Consecutive passes that bring a down backend up.
    #[arg(long)]
    pub rise: Option<u32>,
    /// Consecutive failures that take an up backend down.
    #[arg(long)]
    pub fall: Option<u32>,
    /// Random jitter on each interval, percent (0..=50).
    #[arg(long, value_name = "PERCENT")]
    pub jitter: Option<u32>,
    /// The state a newly added backend starts in.
    #[arg(long, value_parser = ["up", "down"])]
    pub initial: Option<String>,
    /// Where probes go: `direct` (the default) to the backend's own
    /// address; `via-vip` to the VIP, encapsulated to the backend as a
    /// client's packet is, so the backend's decapsulation and the service
    /// bound to the VIP are what is checked.
    #[arg(long, value_parser = ["direct", "via-vip"])]
    pub mode: Option<String>,
    /// One backend probed differently: `ADDR,port=N`, `ADDR,path=/ready`,
    /// `ADDR,host=NAME` (combined with commas; path and host for --http
    /// only). Repeat for more backends; the set given replaces the VIP's.
    #[arg(long = "override", value_name = "ADDR,KEY=VALUE,...")]
    pub overrides: Vec<String>,
}

/// A duration (`500ms`, `1s`): [`lb_api::health::parse_duration_ms`].
pub(crate) fn parse_duration_ms(s: &str) -> Result<u32, String> {
    lb_api::health::parse_duration_ms(s)
}
