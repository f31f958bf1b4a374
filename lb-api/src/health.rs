//! Backend health checks as operators configure them, and the health of a
//! backend as the daemon reports it. The configuration file, the state file,
//! the API and `lbctl` all check a [`HealthCheck`] with [`HealthCheck::check`],
//! so a check one of them accepts the others accept too.

use std::{collections::BTreeMap, fmt, net::IpAddr, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::VipSpec;

/// Default probe interval.
pub const DEFAULT_INTERVAL_MS: u32 = 1_000;
/// Default time a probe may take before it counts as failed.
pub const DEFAULT_TIMEOUT_MS: u32 = 500;
/// Default consecutive successes that bring a down backend up.
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures that take an up backend down.
pub const DEFAULT_FALL: u32 = 3;
/// Default random jitter on each interval, in percent of the interval.
pub const DEFAULT_JITTER_PERCENT: u32 = 10;
/// Longest interval accepted (one hour: a slower check is no check).
pub const MAX_INTERVAL_MS: u32 = 3_600_000;
/// Largest rise or fall count.
pub const MAX_RISE_FALL: u32 = 100;
/// Largest jitter, in percent: beyond half the interval, probes of one
/// backend could come back to back.
pub const MAX_JITTER_PERCENT: u32 = 50;
/// Largest UDP probe payload and expected reply.
pub const MAX_UDP_PAYLOAD: usize = 1_024;
/// Longest HTTP path and Host header.
pub const MAX_HTTP_FIELD: usize = 1_024;
/// Most per-backend overrides one check may carry (a VIP has at most this
/// many backends worth singling out; more is a list that belongs in the
/// backends' own configuration).
pub const MAX_OVERRIDES: usize = 1_024;

/// What one backend's probes do differently from the VIP's check: a
/// backend whose health endpoint listens on another port, or answers on
/// another path or virtual host. Unset fields take the check's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOverride {
    /// Port probed on this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP: the path requested of this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP: the Host header sent to this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl CheckOverride {
    /// Whether it overrides nothing.
    pub fn is_empty(&self) -> bool {
        self.port.is_none() && self.path.is_none() && self.host.is_none()
    }
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum CheckKind {
    /// A TCP connect that completes.
    Tcp,
    /// An HTTP/1.0 GET of `path` answered with status `expect`.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Status code that means healthy.
        expect: u16,
        /// `Host` header (absent: the address probed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A UDP datagram with `payload` that gets a reply (containing `expect`,
    /// if set).
    Udp {
        /// The datagram sent.
        payload: String,
        /// Bytes the reply must contain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<String>,
    },
}

impl CheckKind {
    /// Its name: `tcp`, `http` or `udp`.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http { .. } => "http",
            CheckKind::Udp { .. } => "udp",
        }
    }
}

/// Where a probe is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeMode {
    /// To the backend's own address and the check port.
    #[default]
    Direct,
    /// To the VIP and the check port, encapsulated to the one backend as the
    /// balancer encapsulates a client's packet: the probe goes through the
    /// backend's decapsulation to the service bound to the VIP, as a
    /// client's request does.
    ViaVip,
}

impl ProbeMode {
    /// Its name: `direct` or `via-vip`.
    pub fn name(self) -> &'static str {
        match self {
            ProbeMode::Direct => "direct",
            ProbeMode::ViaVip => "via-vip",
        }
    }

    fn is_direct(&self) -> bool {
        *self == ProbeMode::Direct
    }
}

impl FromStr for ProbeMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(ProbeMode::Direct),
            "via-vip" => Ok(ProbeMode::ViaVip),
            _ => Err(format!("`{s}` is not a probe mode (direct or via-vip)")),
        }
    }
}

/// A VIP's health check (a VIP without one has kind `none`: every backend
/// counts as up, today's behaviour).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What a probe does.
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Port probed (`None`: the VIP's port; required for all-port VIPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Time between two probes of one backend.
    pub interval_ms: u32,
    /// Time a probe may take.
    pub timeout_ms: u32,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
    /// Random jitter added to or taken from each interval, in percent.
    pub jitter_percent: u32,
    /// The state a newly added backend starts in.
    pub initial: HealthState,
    /// Where probes go. Absent in state files written before it existed:
    /// `direct`, what those checks did.
    #[serde(default, skip_serializing_if = "ProbeMode::is_direct")]
    pub mode: ProbeMode,
    /// Per-backend differences, by backend address (a backend not named
    /// here, or not in the VIP yet, is probed as the check says).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<IpAddr, CheckOverride>,
}

impl HealthCheck {
    /// A check of `kind` with every other setting at its default.
    pub fn new(kind: CheckKind) -> Self {
        Self {
            kind,
            port: None,
            interval_ms: DEFAULT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            jitter_percent: DEFAULT_JITTER_PERCENT,
            initial: HealthState::Up,
            mode: ProbeMode::Direct,
            overrides: BTreeMap::new(),
        }
    }

    /// The check as `backend` is probed: its override (if any) applied,
    /// no overrides left.
    pub fn for_backend(&self, backend: IpAddr) -> HealthCheck {
        let mut c = self.clone();
        c.overrides = BTreeMap::new();
        if let Some(o) = self.overrides.get(&backend) {
            if o.port.is_some() {
                c.port = o.port;
            }
            if let CheckKind::Http { path, host, .. } = &mut c.kind {
                if let Some(p) = &o.path {
                    *path = p.clone();
                }
                if o.host.is_some() {
                    *host = o.host.clone();
                }
            }
        }
        c
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.into())
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.into())
    }

    /// The port probed for `vip`.
    pub fn port_for(&self, vip: &VipSpec) -> u16 {
        self.port.unwrap_or(vip.port)
    }

    /// Checks every setting for `vip`; the error names the setting (as the
    /// configuration file and `lbctl health set` spell it) and why.
    pub fn check(&self, vip: &VipSpec) -> Result<(), HealthCheckError> {
        let bad = |key: &'static str, why: String| Err(HealthCheckError { key, why });
        if self.interval_ms == 0 {
            return bad("interval", "must be above 0".into());
        }
        if self.interval_ms > MAX_INTERVAL_MS {
            return bad(
                "interval",
                format!(
                    "{} ms is above the maximum {MAX_INTERVAL_MS} ms",
                    self.interval_ms
                ),
            );
        }
        if self.timeout_ms == 0 {
            return bad("timeout", "must be above 0".into());
        }
        if self.timeout_ms >= self.interval_ms {
            // A probe still running when the next is due would overlap it,
            // and a backend could never be probed at the configured rate.
            return bad(
                "timeout",
                format!(
                    "{} ms must be shorter than the interval ({} ms)",
                    self.timeout_ms, self.interval_ms
                ),
            );
        }
        for (key, v) in [("rise", self.rise), ("fall", self.fall)] {
            if v == 0 || v > MAX_RISE_FALL {
                return bad(key, format!("{v} is out of range 1..={MAX_RISE_FALL}"));
            }
        }
        if self.jitter_percent > MAX_JITTER_PERCENT {
            return bad(
                "jitter",
                format!(
                    "{}% is above the maximum {MAX_JITTER_PERCENT}%",
                    self.jitter_percent
                ),
            );
        }
        match self.port {
            Some(0) => return bad("port", "must be 1..=65535".into()),
            None if vip.is_all_ports() => {
                return bad(
                    "port",
                    format!("required: VIP {vip} serves every port, so it has none to probe"),
                );
            }
            _ => {}
        }
        match &self.kind {
            CheckKind::Tcp => {}
            CheckKind::Http { path, expect, host } => {
                if let Err(why) = http_path(path) {
                    return bad("path", why);
                }
                if !(100..=599).contains(expect) {
                    return bad("expect", format!("status {expect} is not 100..=599"));
                }
                if let Some(Err(why)) = host.as_deref().map(http_host) {
                    return bad("host", why);
                }
            }
            CheckKind::Udp { payload, expect } => {
                if payload.is_empty() || payload.len() > MAX_UDP_PAYLOAD {
                    return bad("payload", format!("must be 1 to {MAX_UDP_PAYLOAD} bytes"));
                }
                if let Some(e) = expect
                    && (e.is_empty() || e.len() > MAX_UDP_PAYLOAD)
                {
                    return bad("expect", format!("must be 1 to {MAX_UDP_PAYLOAD} bytes"));
                }
            }
        }
        self.check_overrides()
    }

    fn check_overrides(&self) -> Result<(), HealthCheckError> {
        let bad = |why: String| {
            Err(HealthCheckError {
                key: "overrides",
                why,
            })
        };
        if self.overrides.len() > MAX_OVERRIDES {
            return bad(format!(
                "{} backends named, at most {MAX_OVERRIDES}",
                self.overrides.len()
            ));
        }
        let http = matches!(self.kind, CheckKind::Http { .. });
        for (addr, o) in &self.overrides {
            if o.is_empty() {
                return bad(format!(
                    "{addr}: overrides nothing (set port, path or host)"
                ));
            }
            if o.port == Some(0) {
                return bad(format!("{addr}: port must be 1..=65535"));
            }
            if !http && (o.path.is_some() || o.host.is_some()) {
                return bad(format!(
                    "{addr}: path and host belong to http checks, not to a {} check",
                    self.kind.name()
                ));
            }
            if let Some(Err(why)) = o.path.as_deref().map(http_path) {
                return bad(format!("{addr}: path {why}"));
            }
            if let Some(Err(why)) = o.host.as_deref().map(http_host) {
                return bad(format!("{addr}: host {why}"));
            }
        }
        Ok(())
    }
}

/// An HTTP request path a probe may send.
fn http_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`"));
    }
    if path.len() > MAX_HTTP_FIELD || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "must be printable ASCII without blanks, at most {MAX_HTTP_FIELD} bytes"
        ));
    }
    Ok(())
}

/// A Host header a probe may send.
fn http_host(h: &str) -> Result<(), String> {
    if h.is_empty() || h.len() > MAX_HTTP_FIELD || !h.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without blanks, 1 to 1024 bytes".into());
    }
    Ok(())
}

/// A duration as `500ms`, `1s`, `1.5s` or `2m`, in milliseconds (the
/// configuration file and `lbctl health set` write them so). A bare number
/// is refused: "1" could mean either unit.
pub fn parse_duration_ms(s: &str) -> Result<u32, String> {
    let bad = || format!("`{s}` is not a duration (e.g. 500ms, 1s, 1.5s, 2m)");
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return Err(bad());
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let ms = v * scale;
    if !ms.is_finite() || ms < 0.0 || ms > f64::from(u32::MAX) || ms.fract() != 0.0 {
        return Err(bad());
    }
    Ok(ms as u32)
}

/// A health-check setting that is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("health.{key}: {why}")]
pub struct HealthCheckError {
    /// The setting, as the configuration file names it.
    pub key: &'static str,
    /// Why it is refused.
    pub why: String,
}

/// A backend's health (independent of its weight: a drained backend is
/// still probed, a down backend keeps its weight).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Takes new flows (if its weight is above 0).
    #[default]
    Up,
    /// Failed its check `fall` times in a row: out of the ring.
    Down,
}

impl HealthState {
    /// `up` or `down`.
    pub const fn name(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HealthState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "up" => Ok(HealthState::Up),
            "down" => Ok(HealthState::Down),
            _ => Err(format!("`{s}` is not a health state (up or down)")),
        }
    }
}

/// Why a backend is in its state, or how its last probe went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Never probed: the state it was added in (or the VIP has no check).
    #[default]
    Initial,
    /// The probe succeeded.
    Ok,
    /// The connection was refused (RST, ICMP port unreachable).
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// No route, host or network unreachable.
    Unreachable,
    /// An HTTP status other than the expected one.
    Status(u16),
    /// An answer that is not the expected one (not HTTP, wrong UDP bytes).
    BadReply,
    /// Any other error of the probe's socket.
    Error,
    /// The VIP's check was removed: every backend counts as up.
    NoCheck,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Initial => f.write_str("initial"),
            Reason::Ok => f.write_str("ok"),
            Reason::Refused => f.write_str("refused"),
            Reason::Timeout => f.write_str("timeout"),
            Reason::Unreachable => f.write_str("unreachable"),
            Reason::Status(s) => write!(f, "status {s}"),
            Reason::BadReply => f.write_str("bad reply"),
            Reason::Error => f.write_str("error"),
            Reason::NoCheck => f.write_str("no check"),
        }
    }
}

impl FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "initial" => Reason::Initial,
            "ok" => Reason::Ok,
            "refused" => Reason::Refused,
            "timeout" => Reason::Timeout,
            "unreachable" => Reason::Unreachable,
            "bad reply" => Reason::BadReply,
            "error" => Reason::Error,
            "no check" => Reason::NoCheck,
            _ => match s.strip_prefix("status ").map(str::parse::<u16>) {
                Some(Ok(code)) => Reason::Status(code),
                _ => return Err(format!("`{s}` is not a health reason")),
            },
        })
    }
}

serde_via_str!(Reason);

/// A backend's health as the daemon holds it and persists it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// Up or down.
    pub state: HealthState,
    /// Why it entered that state.
    pub reason: Reason,
    /// When it entered that state (Unix time, milliseconds; 0: when it was
    /// added, before any check).
    pub since_unix_ms: u64,
}

impl BackendHealth {
    /// Whether it is down.
    pub fn is_down(&self) -> bool {
        self.state == HealthState::Down
    }
}

/// The probe counters of one backend (since the daemon started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounters {
    /// Probes sent.
    pub sent: u64,
    /// Probes that failed.
    pub failed: u64,
    /// State changes (up -> down, down -> up).
    pub transitions: u64,
    /// How the last probe went (`None`: none yet).
    pub last: Option<Reason>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(s: &str) -> VipSpec {
        s.parse().unwrap()
    }

    fn http() -> HealthCheck {
        HealthCheck::new(CheckKind::Http {
            path: "/healthz".into(),
            expect: 200,
            host: None,
        })
    }

    #[test]
    fn defaults_pass_and_every_bad_setting_names_its_key() {
        let v = vip("198.18.100.10:80/tcp");
        assert_eq!(http().check(&v), Ok(()));
        type Edit = Box<dyn Fn(&mut HealthCheck)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("interval", Box::new(|c| c.interval_ms = 0)),
            (
                "interval",
                Box::new(|c| c.interval_ms = MAX_INTERVAL_MS + 1),
            ),
            ("timeout", Box::new(|c| c.timeout_ms = 0)),
            ("timeout", Box::new(|c| c.timeout_ms = c.interval_ms)),
            ("rise", Box::new(|c| c.rise = 0)),
            ("fall", Box::new(|c| c.fall = MAX_RISE_FALL + 1)),
            ("jitter", Box::new(|c| c.jitter_percent = 51)),
            ("port", Box::new(|c| c.port = Some(0))),
            (
                "path",
                Box::new(|c| {
                    c.kind = CheckKind::Http {
                        path: "healthz".into(),
                        expect: 200,
                        host: None,
                    }
                }),
            ),
            (
                "path",
                Box::new(|c| {
                    c.kind = CheckKind::Http {
                        path: "/a b".into(),
                        expect: 200,
                        host: None,
                    }
                }),
            ),
            (
                "expect",
                Box::new(|c| {
                    c.kind = CheckKind::Http {
                        path: "/".into(),
                        expect: 99,
                        host: None,
                    }
                }),
            ),
            (
                "host",
                Box::new(|c| {
                    c.kind = CheckKind::Http {
                        path: "/".into(),
                        expect: 200,
                        host: Some("a\r\nX: y".into()),
                    }
                }),
            ),
            (
                "payload",
                Box::new(|c| {
                    c.kind = CheckKind::Udp {
                        payload: String::new(),
                        expect: None,
                    }
                }),
            ),
        ];
        for (key, f) in cases {
            let mut c = http();
            f(&mut c);
            let e = c.check(&v).unwrap_err();
            assert_eq!(e.key, key, "{c:?}: {e}");
        }
        let all = vip("198.18.100.10:0/tcp");
        assert_eq!(http().check(&all).unwrap_err().key, "port");
        let mut c = http();
        c.port = Some(8080);
        assert_eq!(c.check(&all), Ok(()));
    }

    #[test]
    fn reasons_round_trip_as_text() {
        for r in [
            Reason::Initial,
            Reason::Ok,
            Reason::Refused,
            Reason::Timeout,
            Reason::Unreachable,
            Reason::Status(503),
            Reason::BadReply,
            Reason::Error,
            Reason::NoCheck,
        ] {
            assert_eq!(r.to_string().parse::<Reason>(), Ok(r));
        }
        assert!("status x".parse::<Reason>().is_err());
        assert!("bogus".parse::<Reason>().is_err());
    }
}
