//! Which addresses a VIP or a backend can have: a rule of the API's values,
//! so the daemon (its state and its configuration file) and `lbctl apply`
//! (checking a file before any call) refuse the same ones.

use std::net::IpAddr;

/// Why `ip` cannot be a VIP or backend address, if it cannot.
///
/// A VIP must be routed to this node and a backend must be reachable through
/// the gateway; none of these can be. IPv4-mapped IPv6 addresses are refused
/// because the data plane sees IPv4 packets as IPv4: such a VIP would never
/// match and such a backend would get IPv4 traffic wrapped in IPv6 to an
/// address no host answers for.
pub fn address_problem(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("is the unspecified address");
    }
    if ip.is_loopback() {
        return Some("is a loopback address");
    }
    if ip.is_multicast() {
        return Some("is a multicast address");
    }
    match ip {
        IpAddr::V4(a) => {
            if a.is_broadcast() {
                return Some("is the broadcast address");
            }
            if a.octets()[0] == 0 {
                return Some("is in 0.0.0.0/8 (this network)");
            }
            if a.is_link_local() {
                return Some("is link-local (not routable)");
            }
        }
        IpAddr::V6(a) => {
            if a.to_ipv4_mapped().is_some() {
                return Some("is an IPv4-mapped IPv6 address (write the IPv4 address)");
            }
            if a.segments()[0] & 0xffc0 == 0xfe80 {
                return Some("is link-local (not routable)");
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_addresses() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "169.254.1.1",
            "::",
            "::1",
            "ff02::1",
            "fe80::1",
            "::ffff:198.18.0.1",
        ] {
            assert!(address_problem(bad.parse().unwrap()).is_some(), "{bad}");
        }
        for good in ["198.18.0.1", "10.0.0.1", "fd00::1", "2001:db8::1"] {
            assert_eq!(address_problem(good.parse().unwrap()), None, "{good}");
        }
    }
}
