//! A unicast Ethernet address: the gateway (next hop) of encapsulated
//! packets, written `aa:bb:cc:dd:ee:ff` in the configuration, the state file,
//! the API and on `lbctl`'s command line.

use std::{fmt, str::FromStr};

/// An Ethernet MAC address. Parsing refuses the all-zero and group
/// (multicast, broadcast) addresses: a next hop is one station, and frames to
/// a group address would flood or vanish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

/// Why a MAC address was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacAddrError {
    /// Not six two-digit hex pairs separated by colons.
    #[error("`{0}` is not a MAC address (expected six hex pairs, 02:00:00:00:00:01)")]
    Syntax(String),
    /// 00:00:00:00:00:00.
    #[error("MAC address {0} is all zero")]
    Zero(String),
    /// The group bit is set.
    #[error("MAC address {0} is a multicast/broadcast address")]
    Group(String),
}

impl MacAddr {
    /// The octets.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Checks that the address can be a next hop (see the type's docs);
    /// parsing does this already, a value built from octets may not have.
    pub fn check_unicast(self) -> Result<Self, MacAddrError> {
        if self.0 == [0; 6] {
            return Err(MacAddrError::Zero(self.to_string()));
        }
        if self.0[0] & 1 != 0 {
            return Err(MacAddrError::Group(self.to_string()));
        }
        Ok(self)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = MacAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacAddrError::Syntax(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for o in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        // Name the address as written, so the operator finds their typo.
        MacAddr(out).check_unicast().map_err(|e| match e {
            MacAddrError::Zero(_) => MacAddrError::Zero(s.to_owned()),
            MacAddrError::Group(_) => MacAddrError::Group(s.to_owned()),
            e @ MacAddrError::Syntax(_) => e,
        })
    }
}

serde_via_str!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        for s in ["02:00:00:00:00:01", "aa:bb:cc:dd:ee:0f"] {
            assert_eq!(s.parse::<MacAddr>().unwrap().to_string(), s);
        }
        assert_eq!(
            "AA:BB:CC:DD:EE:0F".parse::<MacAddr>(),
            Ok(MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f]))
        );
        for bad in ["", "02:00:00:00:00", "02:00:00:00:00:01:02", "2:0:0:0:0:1"] {
            assert!(
                matches!(bad.parse::<MacAddr>(), Err(MacAddrError::Syntax(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "00:00:00:00:00:00".parse::<MacAddr>(),
            Err(MacAddrError::Zero("00:00:00:00:00:00".into()))
        );
        assert_eq!(
            "FF:FF:FF:FF:FF:FF".parse::<MacAddr>(),
            Err(MacAddrError::Group("FF:FF:FF:FF:FF:FF".into()))
        );
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).check_unicast().is_err());
        assert!(MacAddr([2, 0, 0, 0, 0, 1]).check_unicast().is_ok());
    }
}
