//! Health checks and backend health <-> `lb.v1` messages.

use lb_proto::v1 as pb;

use super::{FieldError, port};
use crate::{
    BackendHealth, CheckKind, CheckOverride, HealthCheck, HealthState, ProbeMode, Reason, VipSpec,
    health::{
        DEFAULT_FALL, DEFAULT_INTERVAL_MS, DEFAULT_JITTER_PERCENT, DEFAULT_RISE, DEFAULT_TIMEOUT_MS,
    },
};

/// A `HealthCheck` message for `vip`: `None` for kind NONE, else the check
/// with unset fields at their defaults, every setting checked
/// ([`HealthCheck::check`]). Fields of another kind than the one named are
/// refused rather than ignored: a check that silently drops what the
/// operator wrote would probe something else than they think.
pub fn health_check(c: &pb::HealthCheck, vip: &VipSpec) -> Result<Option<HealthCheck>, FieldError> {
    let kind = pb::HealthCheckKind::try_from(c.kind)
        .map_err(|_| FieldError::new(format!("check.kind: unknown value {}", c.kind)))?;
    let http_set =
        !c.http_path.is_empty() || c.http_expect_status.is_some() || c.http_host.is_some();
    let udp_set = !c.udp_payload.is_empty() || c.udp_expect.is_some();
    let only = |what: &str, ok_http: bool, ok_udp: bool| {
        if (http_set && !ok_http) || (udp_set && !ok_udp) {
            Err(FieldError::new(format!(
                "check: http_* and udp_* fields belong to checks of that kind, not to a {what} check"
            )))
        } else {
            Ok(())
        }
    };
    let text = |field: &str, b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| FieldError::new(format!("check.{field}: must be UTF-8 text")))
    };
    let kind = match kind {
        pb::HealthCheckKind::Unspecified => {
            return Err(FieldError::new(
                "check.kind: required (NONE, TCP, HTTP or UDP)",
            ));
        }
        pb::HealthCheckKind::None => {
            only("none", false, false)?;
            return Ok(None);
        }
        pb::HealthCheckKind::Tcp => {
            only("tcp", false, false)?;
            CheckKind::Tcp
        }
        pb::HealthCheckKind::Http => {
            only("http", true, false)?;
            let expect = c.http_expect_status.unwrap_or(200);
            CheckKind::Http {
                path: c.http_path.clone(),
                expect: u16::try_from(expect).map_err(|_| {
                    FieldError::new(format!(
                        "check.http_expect_status: {expect} is not 100..=599"
                    ))
                })?,
                host: c.http_host.clone(),
            }
        }
        pb::HealthCheckKind::Udp => {
            only("udp", false, true)?;
            CheckKind::Udp {
                payload: text("udp_payload", &c.udp_payload)?,
                expect: c
                    .udp_expect
                    .as_deref()
                    .map(|e| text("udp_expect", e))
                    .transpose()?,
            }
        }
    };
    let initial = match pb::HealthState::try_from(c.initial) {
        Ok(pb::HealthState::Unspecified | pb::HealthState::Up) => HealthState::Up,
        Ok(pb::HealthState::Down) => HealthState::Down,
        Err(_) => {
            return Err(FieldError::new(format!(
                "check.initial: unknown value {}",
                c.initial
            )));
        }
    };
    let mode = match pb::ProbeMode::try_from(c.mode) {
        Ok(pb::ProbeMode::Unspecified | pb::ProbeMode::Direct) => ProbeMode::Direct,
        Ok(pb::ProbeMode::ViaVip) => ProbeMode::ViaVip,
        Err(_) => {
            return Err(FieldError::new(format!(
                "check.mode: unknown value {}",
                c.mode
            )));
        }
    };
    let mut overrides = std::collections::BTreeMap::new();
    for (i, o) in c.overrides.iter().enumerate() {
        let at = |what: &str| format!("check.overrides[{i}].{what}");
        let addr: std::net::IpAddr = o.backend.parse().map_err(|_| {
            FieldError::new(format!(
                "{}: `{}` is not an IP address",
                at("backend"),
                o.backend
            ))
        })?;
        let one = CheckOverride {
            port: o.port.map(|p| port(&at("port"), p)).transpose()?,
            path: o.http_path.clone(),
            host: o.http_host.clone(),
        };
        if overrides.insert(addr, one).is_some() {
            return Err(FieldError::new(format!(
                "{}: {addr} is named twice",
                at("backend")
            )));
        }
    }
    let check = HealthCheck {
        kind,
        port: c.port.map(|p| port("check.port", p)).transpose()?,
        interval_ms: c.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS),
        timeout_ms: c.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        rise: c.rise.unwrap_or(DEFAULT_RISE),
        fall: c.fall.unwrap_or(DEFAULT_FALL),
        jitter_percent: c.jitter_percent.unwrap_or(DEFAULT_JITTER_PERCENT),
        initial,
        mode,
        overrides,
    };
    check
        .check(vip)
        .map_err(|e| FieldError::new(format!("check.{}: {}", e.key, e.why)))?;
    Ok(Some(check))
}

/// The message form of a check, every field set.
pub fn health_check_out(c: &HealthCheck) -> pb::HealthCheck {
    let mut m = pb::HealthCheck {
        port: c.port.map(u32::from),
        interval_ms: Some(c.interval_ms),
        timeout_ms: Some(c.timeout_ms),
        rise: Some(c.rise),
        fall: Some(c.fall),
        jitter_percent: Some(c.jitter_percent),
        initial: health_state_out(c.initial).into(),
        mode: match c.mode {
            ProbeMode::Direct => pb::ProbeMode::Direct,
            ProbeMode::ViaVip => pb::ProbeMode::ViaVip,
        }
        .into(),
        overrides: c
            .overrides
            .iter()
            .map(|(a, o)| pb::HealthCheckOverride {
                backend: a.to_string(),
                port: o.port.map(u32::from),
                http_path: o.path.clone(),
                http_host: o.host.clone(),
            })
            .collect(),
        ..Default::default()
    };
    match &c.kind {
        CheckKind::Tcp => m.kind = pb::HealthCheckKind::Tcp.into(),
        CheckKind::Http { path, expect, host } => {
            m.kind = pb::HealthCheckKind::Http.into();
            m.http_path = path.clone();
            m.http_expect_status = Some((*expect).into());
            m.http_host = host.clone();
        }
        CheckKind::Udp { payload, expect } => {
            m.kind = pb::HealthCheckKind::Udp.into();
            m.udp_payload = payload.as_bytes().to_vec();
            m.udp_expect = expect.as_ref().map(|e| e.as_bytes().to_vec());
        }
    }
    m
}

/// The message value of a health state.
pub fn health_state_out(s: HealthState) -> pb::HealthState {
    match s {
        HealthState::Up => pb::HealthState::Up,
        HealthState::Down => pb::HealthState::Down,
    }
}

/// A health state the daemon reported (UNSPECIFIED, from an older daemon,
/// reads as up).
pub fn health_state(raw: i32) -> Result<HealthState, FieldError> {
    match pb::HealthState::try_from(raw) {
        Ok(pb::HealthState::Down) => Ok(HealthState::Down),
        Ok(_) => Ok(HealthState::Up),
        Err(_) => Err(FieldError::new(format!("health: unknown value {raw}"))),
    }
}

/// The health of a backend the daemon reported.
pub fn backend_health(b: &pb::BackendInfo) -> Result<BackendHealth, FieldError> {
    Ok(BackendHealth {
        state: health_state(b.health)?,
        reason: if b.health_reason.is_empty() {
            Reason::Initial
        } else {
            b.health_reason
                .parse()
                .map_err(|e| FieldError::new(format!("health_reason: {e}")))?
        },
        since_unix_ms: b.health_since_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip() -> VipSpec {
        "198.18.100.10:80/tcp".parse().unwrap()
    }

    fn http() -> pb::HealthCheck {
        pb::HealthCheck {
            kind: pb::HealthCheckKind::Http.into(),
            http_path: "/healthz".into(),
            ..Default::default()
        }
    }

    #[test]
    fn checks_round_trip_with_defaults() {
        let c = health_check(&http(), &vip()).unwrap().unwrap();
        assert_eq!(c.interval_ms, DEFAULT_INTERVAL_MS);
        assert_eq!(
            c.kind,
            CheckKind::Http {
                path: "/healthz".into(),
                expect: 200,
                host: None
            }
        );
        assert_eq!(c.mode, ProbeMode::Direct, "unset mode is direct");
        assert_eq!(health_check(&health_check_out(&c), &vip()), Ok(Some(c)));
        let via = pb::HealthCheck {
            mode: pb::ProbeMode::ViaVip.into(),
            ..http()
        };
        let v = health_check(&via, &vip()).unwrap().unwrap();
        assert_eq!(v.mode, ProbeMode::ViaVip);
        assert_eq!(health_check(&health_check_out(&v), &vip()), Ok(Some(v)));
        let none = pb::HealthCheck {
            kind: pb::HealthCheckKind::None.into(),
            ..Default::default()
        };
        assert_eq!(health_check(&none, &vip()), Ok(None));
    }

    #[test]
    fn malformed_messages_name_the_field() {
        let cases: Vec<(pb::HealthCheck, &str)> = vec![
            (pb::HealthCheck::default(), "check.kind: required"),
            (
                pb::HealthCheck {
                    kind: 42,
                    ..Default::default()
                },
                "check.kind: unknown",
            ),
            (
                pb::HealthCheck {
                    interval_ms: Some(0),
                    ..http()
                },
                "check.interval",
            ),
            (
                pb::HealthCheck { mode: 3, ..http() },
                "check.mode: unknown value 3",
            ),
            (
                pb::HealthCheck {
                    port: Some(70_000),
                    ..http()
                },
                "check.port",
            ),
            (
                pb::HealthCheck {
                    http_expect_status: Some(70_000),
                    ..http()
                },
                "check.http_expect_status",
            ),
            (
                pb::HealthCheck {
                    kind: pb::HealthCheckKind::Tcp.into(),
                    ..http()
                },
                "check: http_*",
            ),
            (
                pb::HealthCheck {
                    kind: pb::HealthCheckKind::Udp.into(),
                    udp_payload: vec![0xff],
                    ..Default::default()
                },
                "check.udp_payload: must be UTF-8",
            ),
            (
                pb::HealthCheck {
                    initial: 9,
                    ..http()
                },
                "check.initial",
            ),
        ];
        for (m, want) in cases {
            let e = health_check(&m, &vip()).unwrap_err().to_string();
            assert!(e.starts_with(want), "{m:?}: {e}");
        }
    }
}
