//! The value types of the configuration file: each parses its own string
//! form, so a bad value is reported by the toml crate at its own position.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
};

use serde::{Deserialize, Deserializer};

/// How `lb_xdp` wraps packets for the backends (`[dataplane] encap`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncapKind {
    /// IP-in-IP: IPv4/IPv6 protocol 4 or 41 (kernel ipip/ip6tnl devices or
    /// `lb-daemon decap` at the backends).
    #[default]
    Ipip,
    /// GUE: IP in UDP to `gue_port` (for networks that filter IP-in-IP and
    /// NICs that spread only UDP over their queues); backends decapsulate
    /// with `lb-daemon decap` (or kernel fou devices where they exist).
    Gue,
}

/// What to do when the pinned maps were made by a build whose map layout
/// differs from this one's (`[dataplane] on_layout_change`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutChangePolicy {
    /// Refuse to start and change nothing; the error names the maps and
    /// what recreating them would lose.
    #[default]
    Refuse,
    /// Recreate the changed maps empty (losing what the error would name),
    /// keep the others, and swap the new program in.
    Recreate,
}

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
