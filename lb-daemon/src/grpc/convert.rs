//! Proto messages <-> domain types. Validation of shape happens here; the
//! state layer validates meaning (addresses, capacity, existence).

use std::net::IpAddr;

use lb_proto::v1 as pb;
use tonic::Status;

use super::status::invalid;
use crate::{
    state::{BackendInfo, BackendSpec, VipInfo},
    vip::{Proto, VipFlags, VipSpec},
};

/// Default weight when a request leaves it unset.
pub const DEFAULT_WEIGHT: u32 = lb_proto::DEFAULT_WEIGHT;

/// Parses an IP address field.
pub fn ip(field: &str, s: &str) -> Result<IpAddr, Status> {
    s.trim()
        .parse()
        .map_err(|_| invalid(format!("{field}: `{s}` is not an IP address")))
}

/// A required VIP field.
pub fn vip(v: Option<&pb::Vip>) -> Result<VipSpec, Status> {
    let v = v.ok_or_else(|| invalid("vip: required"))?;
    let address = ip("vip.address", &v.address)?;
    let port = u16::try_from(v.port)
        .map_err(|_| invalid(format!("vip.port: {} out of range 0..=65535", v.port)))?;
    let proto = match pb::Protocol::try_from(v.protocol) {
        Ok(pb::Protocol::Tcp) => Proto::Tcp,
        Ok(pb::Protocol::Udp) => Proto::Udp,
        Ok(pb::Protocol::Unspecified) => {
            return Err(invalid("vip.protocol: required (TCP or UDP)"));
        }
        Err(_) => {
            return Err(invalid(format!(
                "vip.protocol: unknown value {}",
                v.protocol
            )));
        }
    };
    Ok(VipSpec::new(address, port, proto))
}

/// The proto form of a VIP.
pub fn vip_out(s: &VipSpec) -> pb::Vip {
    pb::Vip {
        address: s.address.to_string(),
        port: s.port as u32,
        protocol: match s.proto {
            Proto::Tcp => pb::Protocol::Tcp,
            Proto::Udp => pb::Protocol::Udp,
        } as i32,
    }
}

/// VIP flags; unknown or repeated values are refused.
pub fn flags(raw: &[i32]) -> Result<VipFlags, Status> {
    let mut f = VipFlags::default();
    for &r in raw {
        let (slot, name) = match pb::VipFlag::try_from(r) {
            Ok(pb::VipFlag::NoSport) => (&mut f.no_sport, "NO_SPORT"),
            Ok(pb::VipFlag::NoConntrack) => (&mut f.no_conntrack, "NO_CONNTRACK"),
            _ => return Err(invalid(format!("flags: unknown value {r}"))),
        };
        if *slot {
            return Err(invalid(format!("flags: {name} given twice")));
        }
        *slot = true;
    }
    Ok(f)
}

/// The proto form of VIP flags, by value.
pub fn flags_out(f: &VipFlags) -> Vec<i32> {
    let mut out = Vec::new();
    if f.no_sport {
        out.push(pb::VipFlag::NoSport as i32);
    }
    if f.no_conntrack {
        out.push(pb::VipFlag::NoConntrack as i32);
    }
    out
}

/// A backend of a request (weight defaults to 100; range checked by state).
pub fn backend(b: &pb::Backend) -> Result<BackendSpec, Status> {
    Ok(BackendSpec::weighted(
        ip("backend.address", &b.address)?,
        b.weight.unwrap_or(DEFAULT_WEIGHT),
    ))
}

/// The proto form of a backend.
pub fn backend_out(b: &BackendInfo) -> pb::BackendInfo {
    pb::BackendInfo {
        address: b.address.to_string(),
        weight: b.weight,
        slot: b.slot,
        state: if b.weight == 0 {
            pb::BackendState::Draining
        } else {
            pb::BackendState::Active
        } as i32,
    }
}

/// The proto form of a VIP with its backends.
pub fn vip_info_out(v: &VipInfo) -> pb::VipInfo {
    let mut backends: Vec<_> = v.backends.iter().map(backend_out).collect();
    backends.sort_by_key(|b| b.address.parse::<IpAddr>().ok());
    pb::VipInfo {
        vip: Some(vip_out(&v.spec)),
        flags: flags_out(&v.flags),
        backends,
        index: v.index,
    }
}

/// Parses a MAC "aa:bb:cc:dd:ee:ff"; refuses all-zero, multicast, broadcast.
pub fn mac(s: &str) -> Result<[u8; 6], Status> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let bad = || {
        invalid(format!(
            "mac: `{s}` is not a MAC address like 02:00:00:00:00:01"
        ))
    };
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if m == [0; 6] {
        return Err(invalid("mac: all-zero MAC"));
    }
    if m[0] & 1 != 0 {
        return Err(invalid(format!("mac: {s} is a multicast/broadcast MAC")));
    }
    Ok(m)
}

/// Formats a MAC in canonical lowercase.
pub fn mac_out(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
