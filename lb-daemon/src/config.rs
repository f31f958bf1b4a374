//! The daemon's TOML configuration file.
//!
//! Every key has a default except `dataplane.interface` and
//! `dataplane.gateway_mac`. Unknown keys are errors (a misspelt key silently
//! ignored is a production incident waiting to happen). Every error names the
//! file, the line and the key: values are parsed by their types' own
//! `Deserialize` impls, so the toml crate reports where they sit, and the
//! checks that need several fields look the key's position up in the parsed
//! document.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
};

use lb_api::{DEFAULT_WEIGHT, MacAddr};
use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};

use crate::{
    dataplane::{AttachMode, BalancerConfig, Sizes},
    state::{BackendSpec, validate},
    vip::{VipFlags, VipSpec},
};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or not a valid configuration.
    #[error("{origin}:{}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default(), key.as_ref().map(|k| format!(": key `{k}`")).unwrap_or_default())]
    Invalid {
        /// The file name (or `<config>` for a string).
        origin: String,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// Dotted path of the offending key, e.g. `vip[1].backends[0].weight`.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

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
    /// Connection-table capacity, flows.
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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls: None,
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

/// One `[[vip]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// `ADDR:PORT/PROTO`.
    pub address: VipSpec,
    /// Flag names: `no-sport`, `no-conntrack`.
    #[serde(default)]
    pub flags: VipFlags,
    /// Backends.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
}

impl VipConfig {
    /// The backends as state requests.
    pub fn backend_specs(&self) -> Vec<BackendSpec> {
        self.backends
            .iter()
            .map(|b| BackendSpec::weighted(b.address, b.weight))
            .collect()
    }
}

/// One backend of a `[[vip]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Backend address.
    pub address: IpAddr,
    /// Relative weight, 0..=65535; 0 drains.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_pin_path() -> PathBuf {
    "/sys/fs/bpf/lb".into()
}
fn default_mtu() -> u32 {
    1500
}
fn default_icmp_too_big_rate() -> u32 {
    crate::dataplane::DEFAULT_ICMP_TOO_BIG_RATE
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
fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// Smallest MTU accepted: the IPv4 minimum every host must handle (RFC 791).
const MIN_MTU: u32 = 576;
/// Largest: an IP packet length field.
const MAX_MTU: u32 = 65535;

/// XDP attach mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

impl XdpMode {
    /// The data plane's attach mode.
    pub fn attach_mode(self) -> AttachMode {
        match self {
            XdpMode::Auto => AttachMode::Auto,
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        }
    }
}

/// Defines `Deserialize` through `FromStr` so that a bad value is reported
/// by the toml crate at its own position.
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A network interface name (1..=15 bytes, as the kernel's IFNAMSIZ allows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceName(String);

impl InterfaceName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InterfaceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The kernel's own rules (dev_valid_name): at most 15 bytes, no '/',
        // ':' or whitespace, not "." or "..".
        if s.is_empty() || s.len() > 15 {
            return Err(format!(
                "interface name `{s}` must be 1 to 15 characters long"
            ));
        }
        if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
            return Err(format!("`{s}` is not a valid interface name"));
        }
        Ok(Self(s.to_owned()))
    }
}
deserialize_from_str!(InterfaceName);

fn split_prefix(s: &str) -> Result<(&str, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a prefix (expected ADDRESS/LENGTH)"))?;
    if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 3 {
        return Err(format!("prefix length `{l}` is not a number"));
    }
    let len: u8 = l
        .parse()
        .map_err(|_| format!("prefix length `{l}` is not a number"))?;
    Ok((a, len))
}

/// An IPv4 prefix, `a.b.c.d/len`, host bits zero (except for /32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Prefix {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, len) = split_prefix(s)?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        if len > 32 {
            return Err(format!("IPv4 prefix length {len} > 32"));
        }
        let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        if u32::from(addr) & host != 0 {
            return Err(format!("{s} has host bits set"));
        }
        Ok(Self { addr, len })
    }
}
deserialize_from_str!(Ipv4Prefix);

/// An IPv6 prefix, `addr/len`, host bits zero (except for /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Prefix {
    /// Network address.
    pub addr: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub len: u8,
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, len) = split_prefix(s)?;
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv6 address"))?;
        if len > 128 {
            return Err(format!("IPv6 prefix length {len} > 128"));
        }
        let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        if u128::from(addr) & host != 0 {
            return Err(format!("{s} has host bits set"));
        }
        Ok(Self { addr, len })
    }
}
deserialize_from_str!(Ipv6Prefix);

/// Where the API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `unix:///absolute/path`: a Unix socket (mode 0600).
    Unix(PathBuf),
    /// `tcp://ADDR:PORT` (IPv6 in brackets): TCP, TLS required.
    Tcp(SocketAddr),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{s}`: a unix socket path must be absolute (unix:///run/lb/lb.sock)"
                ));
            }
            // sockaddr_un.sun_path holds 108 bytes including the NUL.
            if path.len() > 107 {
                return Err(format!(
                    "unix socket path `{path}` is longer than 107 bytes"
                ));
            }
            return Ok(Listen::Unix(path.into()));
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            return addr.parse().map(Listen::Tcp).map_err(|_| {
                format!("`{addr}` is not ADDRESS:PORT (e.g. 127.0.0.1:50051 or [::1]:50051)")
            });
        }
        Err(format!(
            "`{s}` is not a listen address (expected unix:///PATH or tcp://ADDRESS:PORT)"
        ))
    }
}
deserialize_from_str!(Listen);

impl DataplaneConfig {
    /// Map sizes.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            ring_size: self.ring_size,
            max_vips: self.max_vips,
            max_backends: self.max_backends,
            conn_table: self.conn_table_size,
        }
    }

    /// Node settings for the data plane (the interface MAC is left zero: the
    /// daemon fills it in once it knows the interface).
    pub fn balancer_config(&self) -> BalancerConfig {
        BalancerConfig {
            gateway_mac: self.gateway_mac.0,
            if_mac: [0; 6],
            mtu: self.mtu,
            hash_seed: self.hash_seed,
            v4_src: self.encap_source_v4.addr,
            v4_src_len: self.encap_source_v4.len,
            v6_src: self.encap_source_v6.addr,
            v6_src_len: self.encap_source_v6.len,
            icmp_too_big_rate: self.icmp_too_big_rate,
        }
    }
}

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
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; errors name `origin` as the file.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let (doc, syntax) = DeTable::parse_recoverable(text);
        let located = |span: Option<Range<usize>>, message: String| {
            // An error about the whole document (a missing top-level table)
            // has no line worth naming.
            let span = span.filter(|s| !(s.start == 0 && (s.end == 0 || s.end >= text.len())));
            let key = span
                .as_ref()
                .and_then(|s| locate(doc.get_ref(), s))
                .map(|p| render_path(&p));
            ConfigError::Invalid {
                origin: origin.to_owned(),
                line: span.map(|s| line_of(text, s.start)),
                key,
                message,
            }
        };
        if let Some(e) = syntax.into_iter().next() {
            return Err(located(e.span(), e.message().trim_end().to_owned()));
        }
        let cfg: Config =
            toml::from_str(text).map_err(|e| located(e.span(), e.message().to_owned()))?;
        let checker = Checker {
            text,
            origin,
            doc: doc.get_ref(),
        };
        cfg.check(&checker)?;
        Ok(cfg)
    }

    /// The checks that need more than one value, in file order.
    fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        let dp = &self.dataplane;
        if !crate::maglev::is_prime(dp.ring_size) {
            return Err(c.err(
                &[k("dataplane"), k("ring_size")],
                format!("ring size {} is not prime (e.g. 65537)", dp.ring_size),
            ));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&dp.mtu) {
            return Err(c.err(
                &[k("dataplane"), k("mtu")],
                format!("mtu {} out of range {MIN_MTU}..={MAX_MTU}", dp.mtu),
            ));
        }
        if dp.max_vips == 0 {
            return Err(c.err(
                &[k("dataplane"), k("max_vips")],
                "must be at least 1".into(),
            ));
        }
        if dp.max_backends < 2 {
            return Err(c.err(
                &[k("dataplane"), k("max_backends")],
                "must be at least 2 (slot 0 is reserved)".into(),
            ));
        }
        if dp.conn_table_size == 0 {
            return Err(c.err(
                &[k("dataplane"), k("conn_table_size")],
                "must be at least 1".into(),
            ));
        }
        if let Err(e) = dp.sizes().validate() {
            // The one combined limit: 2 x max_vips x ring_size positions.
            let key = if c.span(&[k("dataplane"), k("max_vips")]).is_some() {
                "max_vips"
            } else {
                "ring_size"
            };
            return Err(c.err(&[k("dataplane"), k(key)], e.to_string()));
        }
        if !(96..=128).contains(&dp.encap_source_v6.len) {
            return Err(c.err(
                &[k("dataplane"), k("encap_source_v6")],
                format!(
                    "IPv6 source prefix length {} not in 96..=128 (only the last 32 bits are crafted per flow)",
                    dp.encap_source_v6.len
                ),
            ));
        }
        if !dp.pin_path.is_absolute() {
            return Err(c.err(
                &[k("dataplane"), k("pin_path")],
                "must be an absolute path on bpffs".into(),
            ));
        }
        match (&self.api.listen, &self.api.tls) {
            (Listen::Tcp(_), None) => {
                return Err(c.err(
                    &[k("api"), k("listen")],
                    "a tcp:// listener requires [api.tls] (cert, key); use unix:// for local access"
                        .into(),
                ));
            }
            (Listen::Unix(_), Some(_)) => {
                return Err(c.err(
                    &[k("api"), k("tls")],
                    "[api.tls] applies to tcp:// listeners only; this one is unix://".into(),
                ));
            }
            _ => {}
        }
        if !self.state.dir.is_absolute() {
            return Err(c.err(&[k("state"), k("dir")], "must be an absolute path".into()));
        }
        self.check_vips(c)
    }

    fn check_vips(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        let dp = &self.dataplane;
        let mut seen = std::collections::HashSet::new();
        let mut slots = 0u64;
        for (i, v) in self.vips.iter().enumerate() {
            let at = |rest: &[Seg]| {
                let mut p = vec![k("vip"), Seg::Index(i)];
                p.extend_from_slice(rest);
                p
            };
            if let Err(e) = validate::check_vip(&v.address) {
                return Err(c.err(&at(&[k("address")]), e.to_string()));
            }
            if !seen.insert(v.address) {
                return Err(c.err(
                    &at(&[k("address")]),
                    format!("VIP {} is defined twice", v.address),
                ));
            }
            if i as u64 >= u64::from(dp.max_vips) {
                return Err(c.err(
                    &at(&[k("address")]),
                    format!("more VIPs than dataplane.max_vips ({})", dp.max_vips),
                ));
            }
            let mut backends = std::collections::HashSet::new();
            let mut weighted = 0u64;
            for (j, b) in v.backends.iter().enumerate() {
                let bk = |key: &str| at(&[k("backends"), Seg::Index(j), k(key)]);
                if let Err(e) = validate::check_backend_address(&v.address, b.address) {
                    return Err(c.err(&bk("address"), e.to_string()));
                }
                if let Err(e) = validate::check_weight(&v.address, b.address, b.weight) {
                    return Err(c.err(&bk("weight"), e.to_string()));
                }
                if !backends.insert(b.address) {
                    return Err(c.err(
                        &bk("address"),
                        format!(
                            "backend {} is listed twice for VIP {}",
                            b.address, v.address
                        ),
                    ));
                }
                if self.vips.iter().any(|o| o.address.address == b.address) {
                    return Err(c.err(
                        &bk("address"),
                        format!("backend {} is also a VIP address", b.address),
                    ));
                }
                slots += 1;
                if slots >= u64::from(dp.max_backends) {
                    return Err(c.err(
                        &bk("address"),
                        format!(
                            "more backends (over all VIPs) than dataplane.max_backends - 1 ({})",
                            dp.max_backends - 1
                        ),
                    ));
                }
                weighted += u64::from(b.weight > 0);
                if weighted > u64::from(dp.ring_size) {
                    return Err(c.err(
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

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Whether `inner` lies within `outer`.
fn within(inner: &Range<usize>, outer: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The deepest key whose name or value holds the bytes `at`.
fn locate(table: &DeTable<'_>, at: &Range<usize>) -> Option<Vec<Seg>> {
    for (key, value) in table.iter() {
        let here = Seg::Key(key.get_ref().to_string());
        if within(at, &key.span()) {
            return Some(vec![here]);
        }
        if let Some(mut rest) = locate_value(value, at) {
            rest.insert(0, here);
            return Some(rest);
        }
    }
    None
}

fn locate_value(value: &toml::Spanned<DeValue<'_>>, at: &Range<usize>) -> Option<Vec<Seg>> {
    // Children first: a `[table]`'s own span may be just its header.
    match value.get_ref() {
        DeValue::Table(t) => {
            if let Some(p) = locate(t, at) {
                return Some(p);
            }
        }
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                if let Some(mut p) = locate_value(item, at) {
                    p.insert(0, Seg::Index(i));
                    return Some(p);
                }
            }
        }
        _ => {}
    }
    within(at, &value.span()).then(Vec::new)
}

/// Positions keys for the multi-field checks.
struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    doc: &'a DeTable<'a>,
}

impl Checker<'_> {
    /// Where the value at `path` sits, if the file spells it out.
    fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        let (first, rest) = path.split_first()?;
        let Seg::Key(first) = first else {
            return None;
        };
        let mut cur = self.doc.get(first.as_str())?;
        for seg in rest {
            cur = match (seg, cur.get_ref()) {
                (Seg::Key(key), DeValue::Table(t)) => t.get(key.as_str())?,
                (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur.span())
    }

    fn err(&self, path: &[Seg], message: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line: self.span(path).map(|s| line_of(self.text, s.start)),
            key: Some(render_path(path)),
            message,
        }
    }
}

#[cfg(test)]
mod tests;
