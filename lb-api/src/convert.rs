//! `lb.v1` messages <-> domain types, for both ends of the API.
//!
//! Functions named after a domain type parse a request field into it; their
//! error names the field and is always an INVALID_ARGUMENT (checked before
//! anything is looked up). The `_out` ones build the message the other side
//! reads. Shape is checked here; meaning (addresses a VIP may have, capacity,
//! existence) is the daemon's state layer's business.

use std::net::IpAddr;

use lb_proto::v1 as pb;

use crate::{BackendInfo, BackendSpec, DEFAULT_WEIGHT, MacAddr, Proto, VipFlags, VipInfo, VipSpec};

mod health;
pub use health::{backend_health, health_check, health_check_out, health_state, health_state_out};

/// A request field that is missing or malformed. The message names the
/// field; the status is always INVALID_ARGUMENT.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(String);

impl FieldError {
    /// An error about a field, the message naming it.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        tonic::Status::invalid_argument(e.0)
    }
}

/// An IP address field.
pub fn ip(field: &str, s: &str) -> Result<IpAddr, FieldError> {
    s.trim()
        .parse()
        .map_err(|_| FieldError(format!("{field}: `{s}` is not an IP address")))
}

/// A port field (the API carries ports as `uint32`).
pub fn port(field: &str, raw: u32) -> Result<u16, FieldError> {
    u16::try_from(raw).map_err(|_| FieldError(format!("{field}: {raw} out of range 0..=65535")))
}

/// The protocol a `Protocol` value names; `None` for UNSPECIFIED and for
/// numbers this side does not know.
pub fn proto(raw: i32) -> Option<Proto> {
    match pb::Protocol::try_from(raw) {
        Ok(pb::Protocol::Tcp) => Some(Proto::Tcp),
        Ok(pb::Protocol::Udp) => Some(Proto::Udp),
        Ok(pb::Protocol::Unspecified) | Err(_) => None,
    }
}

/// The `Protocol` value of a protocol.
pub fn proto_out(p: Proto) -> pb::Protocol {
    match p {
        Proto::Tcp => pb::Protocol::Tcp,
        Proto::Udp => pb::Protocol::Udp,
    }
}

/// A required VIP field.
pub fn vip(v: Option<&pb::Vip>) -> Result<VipSpec, FieldError> {
    let v = v.ok_or_else(|| FieldError::new("vip: required"))?;
    let address = ip("vip.address", &v.address)?;
    let port = port("vip.port", v.port)?;
    let proto = proto(v.protocol).ok_or_else(|| {
        if v.protocol == pb::Protocol::Unspecified as i32 {
            FieldError::new("vip.protocol: required (TCP or UDP)")
        } else {
            FieldError(format!("vip.protocol: unknown value {}", v.protocol))
        }
    })?;
    Ok(VipSpec::new(address, port, proto))
}

/// The proto form of a VIP.
pub fn vip_out(s: &VipSpec) -> pb::Vip {
    pb::Vip {
        address: s.address.to_string(),
        port: u32::from(s.port),
        protocol: proto_out(s.proto).into(),
    }
}

/// VIP flags; unknown or repeated values are refused.
pub fn flags(raw: &[i32]) -> Result<VipFlags, FieldError> {
    let mut f = VipFlags::default();
    for &r in raw {
        let (slot, name) = match pb::VipFlag::try_from(r) {
            Ok(pb::VipFlag::NoSport) => (&mut f.no_sport, "NO_SPORT"),
            Ok(pb::VipFlag::NoConntrack) => (&mut f.no_conntrack, "NO_CONNTRACK"),
            _ => return Err(FieldError(format!("flags: unknown value {r}"))),
        };
        if *slot {
            return Err(FieldError(format!("flags: {name} given twice")));
        }
        *slot = true;
    }
    Ok(f)
}

/// The proto form of VIP flags, sorted by value as the API documents them.
pub fn flags_out(f: &VipFlags) -> Vec<i32> {
    let mut out = Vec::new();
    if f.no_sport {
        out.push(pb::VipFlag::NoSport.into());
    }
    if f.no_conntrack {
        out.push(pb::VipFlag::NoConntrack.into());
    }
    out
}

/// The name of one `VipFlag` value as [`VipFlags`] spells it (`no-sport`),
/// if it is a flag this side knows.
pub fn flag_name(raw: i32) -> Option<&'static str> {
    match pb::VipFlag::try_from(raw) {
        Ok(pb::VipFlag::NoSport) => Some(VipFlags::NO_SPORT),
        Ok(pb::VipFlag::NoConntrack) => Some(VipFlags::NO_CONNTRACK),
        _ => None,
    }
}

/// A backend of a request; an unset weight is [`DEFAULT_WEIGHT`] (the
/// range is the state's to check, with the VIP named in the message).
pub fn backend(b: &pb::Backend) -> Result<BackendSpec, FieldError> {
    Ok(BackendSpec::weighted(
        ip("backend.address", &b.address)?,
        b.weight.unwrap_or(DEFAULT_WEIGHT),
    ))
}

/// The proto form of a backend in a request. The weight is always set, so
/// the sender's default is the one in effect whatever the daemon's.
pub fn backend_request(b: &BackendSpec) -> pb::Backend {
    pb::Backend {
        address: b.address.to_string(),
        weight: Some(b.weight),
    }
}

/// The proto form of a backend the daemon holds.
pub fn backend_out(b: &BackendInfo) -> pb::BackendInfo {
    pb::BackendInfo {
        address: b.address.to_string(),
        weight: b.weight,
        slot: b.slot,
        state: if b.weight == 0 {
            pb::BackendState::Draining
        } else {
            pb::BackendState::Active
        }
        .into(),
        health: health_state_out(b.health.state).into(),
        health_reason: b.health.reason.to_string(),
        health_since_unix_ms: b.health.since_unix_ms,
    }
}

/// The proto form of a VIP with its backends (backends by address).
pub fn vip_info_out(v: &VipInfo) -> pb::VipInfo {
    let mut backends: Vec<_> = v.backends.iter().map(backend_out).collect();
    backends.sort_by_key(|b| b.address.parse::<IpAddr>().ok());
    pb::VipInfo {
        vip: Some(vip_out(&v.spec)),
        flags: flags_out(&v.flags),
        backends,
        index: v.index,
        health_check: v.health.as_ref().map(health_check_out),
        fail_open: v.fail_open,
        // Read from the data plane by the daemon where it answers with it.
        ring_fingerprint: String::new(),
    }
}

/// A VIP with its backends as the daemon reports it (the client's side of
/// [`vip_info_out`]); fields the daemon never sends malformed are checked
/// all the same, and named.
pub fn vip_info(v: &pb::VipInfo) -> Result<VipInfo, FieldError> {
    let backends = v
        .backends
        .iter()
        .map(|b| {
            Ok(BackendInfo {
                address: ip("backends.address", &b.address)?,
                weight: b.weight,
                slot: b.slot,
                health: backend_health(b)?,
            })
        })
        .collect::<Result<Vec<_>, FieldError>>()?;
    let spec = vip(v.vip.as_ref())?;
    Ok(VipInfo {
        spec,
        flags: flags(&v.flags)?,
        index: v.index,
        backends,
        health: match &v.health_check {
            Some(c) => health_check(c, &spec)?,
            None => None,
        },
        fail_open: v.fail_open,
    })
}

/// A MAC address field (surrounding blanks ignored).
pub fn mac(s: &str) -> Result<MacAddr, FieldError> {
    s.trim()
        .parse()
        .map_err(|e| FieldError(format!("mac: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendHealth;

    fn pvip(address: &str, port: u32, protocol: i32) -> pb::Vip {
        pb::Vip {
            address: address.into(),
            port,
            protocol,
        }
    }

    #[test]
    fn vips_round_trip_and_malformed_fields_are_named() {
        for s in ["198.18.0.10:80/tcp", "[2001:db8::10]:0/udp"] {
            let v: VipSpec = s.parse().unwrap();
            assert_eq!(vip(Some(&vip_out(&v))), Ok(v));
        }
        let tcp = pb::Protocol::Tcp as i32;
        let cases: &[(Option<pb::Vip>, &str)] = &[
            (None, "vip: required"),
            (Some(pvip("1.2.3", 80, tcp)), "vip.address"),
            (Some(pvip("1.2.3.4", 65_536, tcp)), "vip.port: 65536"),
            (Some(pvip("1.2.3.4", 80, 0)), "vip.protocol: required"),
            (
                Some(pvip("1.2.3.4", 80, 9)),
                "vip.protocol: unknown value 9",
            ),
        ];
        for (v, want) in cases {
            let e = vip(v.as_ref()).unwrap_err();
            assert!(e.to_string().starts_with(want), "{e}");
            assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn vip_infos_round_trip() {
        let info = VipInfo {
            spec: "[fd00::10]:443/tcp".parse().unwrap(),
            flags: VipFlags {
                no_sport: false,
                no_conntrack: true,
            },
            index: 4,
            backends: vec![
                BackendInfo {
                    address: "198.19.0.11".parse().unwrap(),
                    weight: 0,
                    slot: 9,
                    health: BackendHealth {
                        state: crate::HealthState::Down,
                        reason: crate::Reason::Status(503),
                        since_unix_ms: 1_700_000_000_000,
                    },
                },
                BackendInfo {
                    address: "fd00:1::11".parse().unwrap(),
                    weight: 100,
                    slot: 3,
                    health: BackendHealth::default(),
                },
            ],
            health: Some(crate::HealthCheck::new(crate::CheckKind::Udp {
                payload: "ping".into(),
                expect: Some("pong".into()),
            })),
            fail_open: true,
        };
        assert_eq!(vip_info(&vip_info_out(&info)), Ok(info.clone()));
        let mut bad = vip_info_out(&info);
        bad.backends[1].address = "fd00:1::".into();
        bad.backends[0].address = "nonsense".into();
        assert!(
            vip_info(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("backends.address: `nonsense`")
        );
    }

    #[test]
    fn flags_both_ways() {
        let both = VipFlags {
            no_sport: true,
            no_conntrack: true,
        };
        assert_eq!(flags_out(&both), [1, 2]);
        assert_eq!(flags(&[2, 1]), Ok(both));
        assert!(flags(&[1, 1]).unwrap_err().to_string().contains("twice"));
        assert!(flags(&[7]).is_err());
        assert_eq!(flag_name(1), Some("no-sport"));
        assert_eq!(flag_name(7), None);
    }

    #[test]
    fn backends_and_macs() {
        let b = backend(&pb::Backend {
            address: " 198.19.0.11 ".into(),
            weight: None,
        })
        .unwrap();
        assert_eq!(b, BackendSpec::new("198.19.0.11".parse().unwrap()));
        assert_eq!(backend_request(&b).weight, Some(DEFAULT_WEIGHT));
        let drained = BackendInfo {
            address: b.address,
            weight: 0,
            slot: 3,
            health: BackendHealth::default(),
        };
        assert_eq!(
            backend_out(&drained).state,
            pb::BackendState::Draining as i32
        );
        assert_eq!(
            mac(" 02:AB:00:00:00:09\n").unwrap().to_string(),
            "02:ab:00:00:00:09"
        );
        assert!(
            mac("01:00:5e:00:00:01")
                .unwrap_err()
                .to_string()
                .starts_with("mac: ")
        );
    }
}
