//! The daemon's TOML configuration file: its schema, defaults and the rules
//! of its values, and nothing else (what the values mean to the data plane
//! and to the state is the daemon's start-up's business).
//!
//! Every key has a default except `dataplane.interface` and
//! `dataplane.gateway_mac`. Unknown keys are errors (a misspelt key silently
//! ignored is a production incident waiting to happen). Every error names the
//! file, the line and the key: values are parsed by their types' own
//! `Deserialize` impls, so the toml crate reports where they sit, and the
//! checks that need several fields look the key's position up in the parsed
//! document ([`Source`]), which checks made elsewhere use too.
//!
//! The `[[vip]]` tables, their parser and the checks that need no node are
//! `lb_api::vipfile`'s, shared with `lbctl export`/`apply`; this module adds
//! the node's limits (map sizes) to them.

mod bgp;
mod values;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
};

use lb_api::{MacAddr, vipfile};
use serde::Deserialize;

pub use bgp::{BgpConfig, BgpPeer, Speaker};
/// Why a configuration was refused (the error of every file this project
/// reads with line and key).
pub use lb_api::vipfile::FileError as ConfigError;
pub use lb_api::vipfile::{
    BackendConfig, Seg, Source, VipConfig, backend_key, k, parse_toml, vip_key,
};
pub use values::{
    EncapKind, InterfaceName, Ipv4Prefix, Ipv6Prefix, LayoutChangePolicy, Listen, XdpMode,
};

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[dataplane]`: the XDP program, its maps and packet settings.
    pub dataplane: DataplaneConfig,
    /// `[api]`: where the gRPC API listens.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[state]`: where the desired state is persisted.
    #[serde(default)]
    pub state: StateConfig,
    /// `[metrics]`: the Prometheus/OpenMetrics endpoint (off unless set).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[bgp]`: announce the VIPs this node can serve through a BGP
    /// speaker (absent: this node announces nothing).
    #[serde(default)]
    pub bgp: Option<BgpConfig>,
    /// `[[vip]]`: VIPs to create when there is no persisted state yet.
    #[serde(default, rename = "vip")]
    pub vips: Vec<VipConfig>,
}

/// `[dataplane]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Interface the balancer attaches to.
    pub interface: InterfaceName,
    /// How to attach.
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// Next-hop MAC for encapsulated packets.
    pub gateway_mac: MacAddr,
    /// bpffs directory for the pinned program, link and maps; one per
    /// daemon instance.
    #[serde(default = "default_pin_path")]
    pub pin_path: PathBuf,
    /// Pinned maps of another layout (an upgrade that changed a map's key
    /// or value): `refuse` (default) or `recreate` them empty.
    #[serde(default)]
    pub on_layout_change: LayoutChangePolicy,
    /// Largest outer IP packet the path towards backends carries.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Maglev ring size M, prime.
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// VIPs the maps hold.
    #[serde(default = "default_max_vips")]
    pub max_vips: u32,
    /// Backend slots (one per VIP/backend pair, slot 0 reserved).
    #[serde(default = "default_max_backends")]
    pub max_backends: u32,
    /// Connection-table capacity, flows of each address family.
    #[serde(default = "default_conn_table_size")]
    pub conn_table_size: u32,
    /// Fleet-wide flow hash seed: identical on every node behind one ECMP group.
    #[serde(default)]
    pub hash_seed: u32,
    /// Outer IPv4 source: a /32 is a fixed source, shorter crafts one per flow.
    #[serde(default = "default_encap_v4")]
    pub encap_source_v4: Ipv4Prefix,
    /// Outer IPv6 source: /96 to /128, /128 fixed.
    #[serde(default = "default_encap_v6")]
    pub encap_source_v6: Ipv6Prefix,
    /// ICMP "fragmentation needed"/"packet too big" replies per second and
    /// CPU; 0 = unlimited.
    #[serde(default = "default_icmp_too_big_rate")]
    pub icmp_too_big_rate: u32,
    /// New connection-table entries per second and CPU; past it new flows
    /// are forwarded by the ring alone, unpinned. 0 = unlimited.
    #[serde(default = "default_max_new_flows_per_cpu")]
    pub max_new_flows_per_cpu: u32,
    /// Encapsulate ICMP errors about VIP flows (fragmentation needed, packet
    /// too big, destination unreachable) to the flow's backend, which sent
    /// the packet they are about (direct server return).
    #[serde(default = "default_true")]
    pub forward_icmp_errors: bool,
    /// Encapsulation towards the backends: `ipip` (default) or `gue`.
    #[serde(default)]
    pub encap: EncapKind,
    /// Outer UDP destination port of GUE (used with `encap = "gue"`).
    #[serde(default = "default_gue_port")]
    pub gue_port: u16,
}

/// `[api]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `unix:///path` or `tcp://ADDR:PORT` (TCP requires `[api.tls]`).
    #[serde(default = "default_listen")]
    pub listen: Listen,
    /// TLS for a TCP listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `ADDRESS:PORT` of a plaintext gRPC listener that serves only
    /// grpc.health.v1 (no API call, no reflection), for probes that cannot
    /// use the API's Unix socket or TLS: kubelet's `grpc` probe, a load
    /// balancer health check. `None` (the default): no such listener.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// The explicit opt-in to a non-loopback `health_listen` (kubelet probes
    /// a host-network pod on the node's address). It answers SERVING or
    /// NOT_SERVING to anyone who can reach it, nothing more.
    #[serde(default)]
    pub health_allow_remote: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls: None,
            health_listen: None,
            health_allow_remote: false,
        }
    }
}

/// `[api.tls]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM.
    pub key: PathBuf,
    /// CA that client certificates must chain to; set = mutual TLS.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `[state]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of `state.json`.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
        }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `ADDRESS:PORT` of the HTTP listener serving `/metrics`; `None` (the
    /// default): no listener. Plain HTTP without authentication, as
    /// Prometheus scrapes it: only a loopback address unless `allow_remote`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The explicit opt-in to a non-loopback `listen` address (a management
    /// network or a pod scraped by Prometheus). The API refuses plain TCP
    /// altogether; metrics have no TLS, so this key is the written decision
    /// that anyone who can reach that address may read the counters.
    #[serde(default)]
    pub allow_remote: bool,
}

fn default_pin_path() -> PathBuf {
    "/sys/fs/bpf/lb".into()
}
fn default_mtu() -> u32 {
    1500
}
fn default_gue_port() -> u16 {
    lb_common::DEFAULT_GUE_PORT
}
fn default_true() -> bool {
    true
}
fn default_icmp_too_big_rate() -> u32 {
    // The kernel's own ICMP limit is in the same order: 1000/s.
    1000
}
fn default_max_new_flows_per_cpu() -> u32 {
    crate::dataplane::DEFAULT_NEW_FLOW_RATE
}
fn default_ring_size() -> u32 {
    lb_common::DEFAULT_RING_SIZE
}
fn default_max_vips() -> u32 {
    lb_common::DEFAULT_MAX_VIPS
}
fn default_max_backends() -> u32 {
    lb_common::DEFAULT_MAX_BACKENDS
}
fn default_conn_table_size() -> u32 {
    lb_common::DEFAULT_CONN_TABLE_SIZE
}
fn default_encap_v4() -> Ipv4Prefix {
    // Katran's default: crafted sources never collide with real hosts.
    Ipv4Prefix {
        addr: Ipv4Addr::new(172, 16, 0, 0),
        len: 16,
    }
}
fn default_encap_v6() -> Ipv6Prefix {
    // Inside 100::/64, the RFC 6666 discard prefix.
    Ipv6Prefix {
        addr: Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        len: 96,
    }
}
fn default_listen() -> Listen {
    Listen::Unix("/run/lb/lb.sock".into())
}
fn default_state_dir() -> PathBuf {
    "/var/lib/lb".into()
}

/// Smallest MTU accepted: the IPv4 minimum every host must handle (RFC 791).
const MIN_MTU: u32 = 576;
/// Largest: an IP packet length field.
const MAX_MTU: u32 = 65535;

impl FromStr for Config {
    type Err = ConfigError;

    /// Parses a configuration held in a string (errors name `<config>`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text, "<config>")
    }
}

impl Config {
    /// Reads and parses a configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        ConfigFile::read(path).map(|f| f.config)
    }

    /// Parses `text`; errors name `origin` as the file.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        ConfigFile::parse(text, origin).map(|f| f.config)
    }
}

/// A parsed configuration with its text, so that checks made outside this
/// module (against the data plane's limits, the state's rules) name the
/// line and the key as the parser does.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    /// The configuration.
    pub config: Config,
    /// Its text, to place errors.
    pub source: Source,
}

impl ConfigFile {
    /// Reads and parses a configuration file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; errors name `origin` as the file.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let (config, source): (Config, Source) = parse_toml(text, origin)?;
        config.check(&source)?;
        Ok(Self { config, source })
    }
}

impl Config {
    /// The checks that need more than one value, in file order.
    fn check(&self, c: &Source) -> Result<(), ConfigError> {
        let dp = &self.dataplane;
        if !(MIN_MTU..=MAX_MTU).contains(&dp.mtu) {
            return Err(c.error(
                &[k("dataplane"), k("mtu")],
                format!("mtu {} out of range {MIN_MTU}..={MAX_MTU}", dp.mtu),
            ));
        }
        if dp.max_vips == 0 {
            return Err(c.error(&[k("dataplane"), k("max_vips")], "must be at least 1"));
        }
        if dp.gue_port == 0 {
            return Err(c.error(
                &[k("dataplane"), k("gue_port")],
                "must be a UDP port, 1..=65535",
            ));
        }
        if dp.max_backends < 2 {
            return Err(c.error(
                &[k("dataplane"), k("max_backends")],
                "must be at least 2 (slot 0 is reserved)",
            ));
        }
        if dp.conn_table_size == 0 {
            return Err(c.error(
                &[k("dataplane"), k("conn_table_size")],
                "must be at least 1",
            ));
        }
        if !(96..=128).contains(&dp.encap_source_v6.len) {
            return Err(c.error(
                &[k("dataplane"), k("encap_source_v6")],
                format!(
                    "IPv6 source prefix length {} not in 96..=128 (only the last 32 bits are crafted per flow)",
                    dp.encap_source_v6.len
                ),
            ));
        }
        if !dp.pin_path.is_absolute() {
            return Err(c.error(
                &[k("dataplane"), k("pin_path")],
                "must be an absolute path on bpffs",
            ));
        }
        match (&self.api.listen, &self.api.tls) {
            (Listen::Tcp(_), None) => {
                return Err(c.error(
                    &[k("api"), k("listen")],
                    "a tcp:// listener requires [api.tls] (cert, key); use unix:// for local access",
                ));
            }
            (Listen::Unix(_), Some(_)) => {
                return Err(c.error(
                    &[k("api"), k("tls")],
                    "[api.tls] applies to tcp:// listeners only; this one is unix://",
                ));
            }
            _ => {}
        }
        if let (Some(m), Listen::Tcp(api)) = (self.metrics.listen, &self.api.listen)
            && m == *api
        {
            return Err(c.error(
                &[k("metrics"), k("listen")],
                format!("{m} is also the API's address ([api] listen); give metrics its own port"),
            ));
        }
        if let Some(m) = self.metrics.listen
            && !m.ip().is_loopback()
            && !self.metrics.allow_remote
        {
            return Err(c.error(
                &[k("metrics"), k("listen")],
                format!(
                    "{m} is not a loopback address and the endpoint has no TLS or authentication; \
                     bind 127.0.0.1/[::1], or set `allow_remote = true` in [metrics] to expose it"
                ),
            ));
        }
        if let Some(h) = self.api.health_listen {
            let taken = match &self.api.listen {
                Listen::Tcp(api) if *api == h => Some("the API's address ([api] listen)"),
                _ if self.metrics.listen == Some(h) => {
                    Some("the metrics address ([metrics] listen)")
                }
                _ => None,
            };
            if let Some(what) = taken {
                return Err(c.error(
                    &[k("api"), k("health_listen")],
                    format!("{h} is also {what}; give the health probe its own port"),
                ));
            }
            if h.port() == 0 {
                return Err(c.error(
                    &[k("api"), k("health_listen")],
                    "port 0 would pick a random port no probe can be told about; name one (e.g. 9662)",
                ));
            }
            if !h.ip().is_loopback() && !self.api.health_allow_remote {
                return Err(c.error(
                    &[k("api"), k("health_listen")],
                    format!(
                        "{h} is not a loopback address; set `health_allow_remote = true` in [api] \
                         to let remote probes (kubelet on a host-network pod) reach it"
                    ),
                ));
            }
        }
        if self.metrics.listen.is_some_and(|m| m.port() == 0) {
            return Err(c.error(
                &[k("metrics"), k("listen")],
                "port 0 would pick a random port Prometheus cannot be told about; name one (e.g. 9661)",
            ));
        }
        if !self.state.dir.is_absolute() {
            return Err(c.error(&[k("state"), k("dir")], "must be an absolute path"));
        }
        if let Some(bgp) = &self.bgp {
            bgp.check(c)?;
        }
        self.check_vips(c)
    }

    /// The `[[vip]]` tables: on their own and against each other (the
    /// shared rules), then against the map sizes.
    fn check_vips(&self, c: &Source) -> Result<(), ConfigError> {
        vipfile::check_vips(&self.vips, c)?;
        let dp = &self.dataplane;
        let mut slots = 0u64;
        for (i, v) in self.vips.iter().enumerate() {
            if i as u64 >= u64::from(dp.max_vips) {
                return Err(c.error(
                    &vip_key(i)("address"),
                    format!("more VIPs than dataplane.max_vips ({})", dp.max_vips),
                ));
            }
            let mut weighted = 0u64;
            for (j, b) in v.backends.iter().enumerate() {
                let bk = backend_key(i, j);
                slots += 1;
                if slots >= u64::from(dp.max_backends) {
                    return Err(c.error(
                        &bk("address"),
                        format!(
                            "more backends (over all VIPs) than dataplane.max_backends - 1 ({})",
                            dp.max_backends - 1
                        ),
                    ));
                }
                weighted += u64::from(b.weight > 0);
                if weighted > u64::from(dp.ring_size) {
                    return Err(c.error(
                        &bk("address"),
                        format!(
                            "more weighted backends than ring positions (ring_size {})",
                            dp.ring_size
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
