//! `[bgp]`: how this node announces the VIPs it can serve to its routers
//! through a BGP speaker (BIRD 2), and the rules of those values. What the
//! daemon does with them is `crate::announce`'s business.

use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer};

use super::{ConfigError, Seg, Source, k};

/// The BGP speaker the daemon drives (`[bgp] speaker`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Speaker {
    /// BIRD 2 (Debian `bird2`): the daemon writes an include file of BIRD
    /// configuration and makes BIRD reload it over its control socket.
    #[default]
    Bird,
}

impl fmt::Display for Speaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bird")
    }
}

impl FromStr for Speaker {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bird" | "bird2" => Ok(Self::Bird),
            other => Err(format!(
                "unknown speaker `{other}` (supported: \"bird\", BIRD 2; see docs/bgp.md for why)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Speaker {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[bgp]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// Which speaker (only `bird`).
    #[serde(default)]
    pub speaker: Speaker,
    /// The speaker's control socket (`bird -s`).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// The BIRD include file this daemon owns and rewrites: the VIP routes,
    /// the BGP sessions and BFD. The speaker's own bird.conf includes it.
    #[serde(default = "default_config_file")]
    pub config_file: PathBuf,
    /// This node's AS number.
    pub local_asn: u32,
    /// BGP hold time in seconds (0, or 3..=65535; RFC 4271). With BFD the
    /// hold timer is only the fallback.
    #[serde(default = "default_hold_time")]
    pub hold_time: u32,
    /// Run BFD on every session (a dead node is routed around in
    /// `bfd_interval_ms x bfd_multiplier`, not after the hold time).
    #[serde(default = "default_true")]
    pub bfd: bool,
    /// BFD transmit and receive interval, milliseconds.
    #[serde(default = "default_bfd_interval_ms")]
    pub bfd_interval_ms: u32,
    /// BFD detection multiplier: missed packets before the session is down.
    #[serde(default = "default_bfd_multiplier")]
    pub bfd_multiplier: u32,
    /// The routers this node announces to (at least one).
    #[serde(default, rename = "peer")]
    pub peers: Vec<BgpPeer>,
}

/// `[[bgp.peer]]`: one directly connected router.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpPeer {
    /// The router's address on the shared link; an IPv4 peer gets the IPv4
    /// VIPs, an IPv6 peer the IPv6 VIPs.
    pub address: IpAddr,
    /// The router's AS number.
    pub asn: u32,
}

fn default_control_socket() -> PathBuf {
    // Debian's bird2 package default.
    "/run/bird/bird.ctl".into()
}
fn default_config_file() -> PathBuf {
    "/etc/bird/lb-announce.conf".into()
}
fn default_hold_time() -> u32 {
    9
}
fn default_true() -> bool {
    true
}
fn default_bfd_interval_ms() -> u32 {
    100
}
fn default_bfd_multiplier() -> u32 {
    3
}

/// Why an AS number cannot be used for a session, if it cannot.
fn asn_problem(asn: u32) -> Option<&'static str> {
    match asn {
        0 => Some("AS 0 is reserved (RFC 7607)"),
        23456 => Some("AS 23456 is AS_TRANS (RFC 6793), not a real AS"),
        65535 | 4_294_967_295 => Some("the last AS of each range is reserved (RFC 7300)"),
        _ => None,
    }
}

impl BgpConfig {
    /// The checks of `[bgp]` that need more than one value's own parser.
    pub(super) fn check(&self, c: &Source) -> Result<(), ConfigError> {
        let key = |name: &str| [k("bgp"), k(name)];
        if let Some(why) = asn_problem(self.local_asn) {
            return Err(c.error(
                &key("local_asn"),
                format!("bad ASN {}: {why}", self.local_asn),
            ));
        }
        for (name, path) in [
            ("control_socket", &self.control_socket),
            ("config_file", &self.config_file),
        ] {
            if !path.is_absolute() {
                return Err(c.error(&key(name), "must be an absolute path"));
            }
        }
        if self.hold_time != 0 && !(3..=65535).contains(&self.hold_time) {
            return Err(c.error(
                &key("hold_time"),
                format!(
                    "hold time {} s: must be 0 or 3..=65535 (RFC 4271)",
                    self.hold_time
                ),
            ));
        }
        if !(10..=10_000).contains(&self.bfd_interval_ms) {
            return Err(c.error(
                &key("bfd_interval_ms"),
                format!("{} ms not in 10..=10000", self.bfd_interval_ms),
            ));
        }
        if !(1..=255).contains(&self.bfd_multiplier) {
            return Err(c.error(
                &key("bfd_multiplier"),
                format!("{} not in 1..=255", self.bfd_multiplier),
            ));
        }
        if self.peers.is_empty() {
            return Err(c.error(
                &[k("bgp")],
                "no peer: add at least one [[bgp.peer]] with address and asn \
                 (without one, nothing would ever be announced)",
            ));
        }
        for (i, p) in self.peers.iter().enumerate() {
            let at = |name: &str| [k("bgp"), k("peer"), Seg::Index(i), k(name)];
            if let Some(why) = asn_problem(p.asn) {
                return Err(c.error(&at("asn"), format!("bad ASN {}: {why}", p.asn)));
            }
            let a = p.address;
            if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
                return Err(c.error(
                    &at("address"),
                    format!("{a} is not a router's unicast address"),
                ));
            }
            if self.peers[..i].iter().any(|q| q.address == a) {
                return Err(c.error(&at("address"), format!("peer {a} is listed twice")));
            }
        }
        Ok(())
    }
}
