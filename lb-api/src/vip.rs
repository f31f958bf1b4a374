//! A service (VIP) as operators write it: `ADDR:PORT/PROTO`, IPv6 as
//! `[ADDR]:PORT/PROTO`, port 0 for every port, PROTO `tcp` or `udp`; and the
//! VIP flags by name. The configuration file, the state file, the gRPC API
//! and `lbctl` all parse and print VIPs through this one module, so a VIP
//! copied from any of them pastes into any other.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use lb_common::{
    AddrKey, FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, VIP_F_NO_CONNTRACK, VIP_F_NO_SPORT,
    VipKey, addr,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The IP protocol number the data plane keys VIPs by.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => PROTO_TCP,
            Proto::Udp => PROTO_UDP,
        }
    }

    /// The protocol for an IP protocol number, if it is one a VIP can have.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            PROTO_TCP => Some(Proto::Tcp),
            PROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }

    /// Lower-case name as written in VIP strings.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Proto {
    type Err = VipSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Case-insensitive: "TCP" in a runbook should not be an outage.
        if s.eq_ignore_ascii_case("tcp") {
            Ok(Proto::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Ok(Proto::Udp)
        } else {
            Err(VipSpecError::UnknownProto(s.to_owned()))
        }
    }
}

/// Why a VIP string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VipSpecError {
    /// No `/PROTO` suffix.
    #[error("`{0}` is not ADDR:PORT/PROTO (e.g. 198.18.0.10:80/tcp or [fd00::10]:443/udp)")]
    Syntax(String),
    /// A protocol other than tcp or udp.
    #[error("unknown protocol `{0}` (expected tcp or udp)")]
    UnknownProto(String),
    /// The port is not a decimal number.
    #[error("port `{0}` is not a number")]
    BadPort(String),
    /// The port does not fit in 16 bits.
    #[error("port {0} out of range 0..=65535")]
    PortRange(String),
    /// The address does not parse.
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
    /// An IPv6 address without brackets is ambiguous with the port separator.
    #[error("IPv6 address `{0}` must be written in brackets, e.g. [fd00::10]:80/tcp")]
    V6NeedsBrackets(String),
}

/// A VIP: service address, port (0 = all ports) and protocol.
///
/// Ordered by address (IPv4 before IPv6), then port, then protocol, which is
/// the order listings use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipSpec {
    /// Service address.
    pub address: IpAddr,
    /// Port; 0 serves every port of the address for this protocol.
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl VipSpec {
    /// A VIP from its parts.
    pub const fn new(address: IpAddr, port: u16, proto: Proto) -> Self {
        Self {
            address,
            port,
            proto,
        }
    }

    /// Whether this VIP serves every port of its address.
    pub const fn is_all_ports(&self) -> bool {
        self.port == 0
    }

    /// The data plane's key for this VIP.
    pub fn key(&self) -> VipKey {
        let (addr, family) = map_addr(self.address);
        VipKey {
            addr,
            port: addr::port_to_map(self.port),
            proto: self.proto.number(),
            family,
        }
    }

    /// The VIP a data-plane key names, if the key is well formed.
    pub fn from_key(key: &VipKey) -> Option<Self> {
        Some(Self {
            address: unmap_addr(key.addr, key.family)?,
            port: addr::port_from_map(key.port),
            proto: Proto::from_number(key.proto)?,
        })
    }
}

impl fmt::Display for VipSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.proto),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.proto),
        }
    }
}

impl FromStr for VipSpec {
    type Err = VipSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || VipSpecError::Syntax(s.to_owned());
        let (host_port, proto) = s.rsplit_once('/').ok_or_else(syntax)?;
        let proto: Proto = proto.parse()?;
        let (address, port): (IpAddr, &str) = if let Some(rest) = host_port.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(syntax)?;
            // Ipv6Addr's parser rejects zone ids ("%eth0"), which a VIP
            // cannot carry anyway.
            let a: Ipv6Addr = host
                .parse()
                .map_err(|_| VipSpecError::BadAddress(host.to_owned()))?;
            (a.into(), port)
        } else {
            let (host, port) = host_port.rsplit_once(':').ok_or_else(syntax)?;
            if host.contains(':') {
                return Err(VipSpecError::V6NeedsBrackets(host.to_owned()));
            }
            let a: Ipv4Addr = host
                .parse()
                .map_err(|_| VipSpecError::BadAddress(host.to_owned()))?;
            (a.into(), port)
        };
        Ok(Self {
            address,
            port: parse_port(port)?,
            proto,
        })
    }
}

/// A decimal port, strictly digits (u16's parser would take "+80").
pub fn parse_port(s: &str) -> Result<u16, VipSpecError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VipSpecError::BadPort(s.to_owned()));
    }
    let trimmed = s.trim_start_matches('0');
    if trimmed.len() > 5 {
        return Err(VipSpecError::PortRange(s.to_owned()));
    }
    let n: u32 = if trimmed.is_empty() {
        0
    } else {
        trimmed
            .parse()
            .map_err(|_| VipSpecError::BadPort(s.to_owned()))?
    };
    u16::try_from(n).map_err(|_| VipSpecError::PortRange(s.to_owned()))
}

serde_via_str!(VipSpec);

/// Why a list of VIP flag names was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VipFlagError {
    /// A name that is not a flag.
    #[error("unknown VIP flag `{0}` (known: no-sport, no-conntrack)")]
    Unknown(String),
    /// The same flag twice: harmless, but usually a typo for another flag.
    #[error("VIP flag `{0}` given twice")]
    Duplicate(String),
}

/// Per-VIP behaviour switches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipFlags {
    /// `no-sport`: hash without the client port, so every connection of a
    /// client lands on the same backend.
    pub no_sport: bool,
    /// `no-conntrack`: never use the connection table; every packet takes
    /// the ring (stateless, e.g. for DNS over UDP).
    pub no_conntrack: bool,
}

impl VipFlags {
    /// Name of [`Self::no_sport`].
    pub const NO_SPORT: &'static str = "no-sport";
    /// Name of [`Self::no_conntrack`].
    pub const NO_CONNTRACK: &'static str = "no-conntrack";

    /// Parses flag names; unknown and repeated names are refused.
    pub fn from_names<I, S>(names: I) -> Result<Self, VipFlagError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut flags = Self::default();
        for name in names {
            let name = name.as_ref();
            let bit = match name {
                Self::NO_SPORT => &mut flags.no_sport,
                Self::NO_CONNTRACK => &mut flags.no_conntrack,
                _ => return Err(VipFlagError::Unknown(name.to_owned())),
            };
            if *bit {
                return Err(VipFlagError::Duplicate(name.to_owned()));
            }
            *bit = true;
        }
        Ok(flags)
    }

    /// The set flags' names, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.no_sport {
            out.push(Self::NO_SPORT);
        }
        if self.no_conntrack {
            out.push(Self::NO_CONNTRACK);
        }
        out
    }

    /// The data plane's `VIP_F_*` bits.
    pub const fn bits(self) -> u32 {
        (if self.no_sport { VIP_F_NO_SPORT } else { 0 })
            | (if self.no_conntrack {
                VIP_F_NO_CONNTRACK
            } else {
                0
            })
    }

    /// Flags from `VIP_F_*` bits; `None` if unknown bits are set.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        if bits & !(VIP_F_NO_SPORT | VIP_F_NO_CONNTRACK) != 0 {
            return None;
        }
        Some(Self {
            no_sport: bits & VIP_F_NO_SPORT != 0,
            no_conntrack: bits & VIP_F_NO_CONNTRACK != 0,
        })
    }
}

impl fmt::Display for VipFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl Serialize for VipFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for VipFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Self::from_names(&names).map_err(serde::de::Error::custom)
    }
}

/// An address in the map layout with its family tag.
pub fn map_addr(ip: IpAddr) -> ([u32; 4], u8) {
    match ip {
        IpAddr::V4(a) => (addr::from_v4(a.octets()), FAMILY_V4),
        IpAddr::V6(a) => (addr::from_v6(a.octets()), FAMILY_V6),
    }
}

/// The address a map-layout address and family tag stand for.
pub fn unmap_addr(a: [u32; 4], family: u8) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(Ipv4Addr::from(addr::to_v4(a)).into()),
        FAMILY_V6 => Some(Ipv6Addr::from(addr::to_v6(a)).into()),
        _ => None,
    }
}

/// The `LB_VIP_ADDRS` key of an address.
pub fn addr_key(ip: IpAddr) -> AddrKey {
    let (addr, family) = map_addr(ip);
    AddrKey::new(addr, family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_families() {
        for s in [
            "198.18.100.10:80/tcp",
            "198.18.100.10:0/udp",
            "[fd00::10]:443/tcp",
            "[2001:db8::1]:65535/udp",
        ] {
            let v: VipSpec = s.parse().unwrap();
            assert_eq!(v.to_string(), s);
        }
        let v: VipSpec = "[FD00:0::10]:080/TCP".parse().unwrap();
        assert_eq!(v.to_string(), "[fd00::10]:80/tcp");
        assert!(VipSpec::from_str("1.2.3.4:0/tcp").unwrap().is_all_ports());
    }

    #[test]
    fn refuses_malformed_vips() {
        use VipSpecError::*;
        type Check = fn(&VipSpecError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("1.2.3.4:80", |e| matches!(e, UnknownProto(_) | Syntax(_))),
            ("1.2.3.4:80/sctp", |e| matches!(e, UnknownProto(_))),
            ("1.2.3.4/tcp", |e| matches!(e, Syntax(_))),
            ("1.2.3.4:/tcp", |e| matches!(e, BadPort(_))),
            ("1.2.3.4:+80/tcp", |e| matches!(e, BadPort(_))),
            ("1.2.3.4:65536/tcp", |e| matches!(e, PortRange(_))),
            ("1.2.3.4:99999999999/tcp", |e| matches!(e, PortRange(_))),
            ("1.2.3:80/tcp", |e| matches!(e, BadAddress(_))),
            ("fd00::1:80/tcp", |e| matches!(e, V6NeedsBrackets(_))),
            ("[fd00::1]80/tcp", |e| matches!(e, Syntax(_))),
            ("[1.2.3.4]:80/tcp", |e| matches!(e, BadAddress(_))),
            ("[fe80::1%eth0]:80/tcp", |e| matches!(e, BadAddress(_))),
            ("", |e| matches!(e, Syntax(_))),
        ];
        for (s, ok) in cases {
            let e = s.parse::<VipSpec>().unwrap_err();
            assert!(ok(&e), "{s}: {e:?}");
        }
    }

    #[test]
    fn key_round_trips() {
        for s in ["198.18.0.1:8080/udp", "[fd00::1]:0/tcp"] {
            let v: VipSpec = s.parse().unwrap();
            let k = v.key();
            assert_eq!(VipSpec::from_key(&k), Some(v));
        }
        let k = VipSpec::from_str("198.18.0.1:80/tcp").unwrap().key();
        assert_eq!(k.port, 80u16.to_be());
        assert_eq!(k.proto, PROTO_TCP);
        assert_eq!(k.addr[0].to_ne_bytes(), [198, 18, 0, 1]);
    }

    #[test]
    fn flags_by_name() {
        let f = VipFlags::from_names(["no-conntrack", "no-sport"]).unwrap();
        assert_eq!(f.bits(), VIP_F_NO_SPORT | VIP_F_NO_CONNTRACK);
        assert_eq!(f.names(), ["no-sport", "no-conntrack"]);
        assert_eq!(VipFlags::from_bits(f.bits()), Some(f));
        assert_eq!(VipFlags::from_bits(1 << 7), None);
        assert_eq!(
            VipFlags::from_names(["nosport"]),
            Err(VipFlagError::Unknown("nosport".into()))
        );
        assert_eq!(
            VipFlags::from_names(["no-sport", "no-sport"]),
            Err(VipFlagError::Duplicate("no-sport".into()))
        );
    }
}
