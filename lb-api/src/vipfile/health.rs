//! `health = { ... }` of a `[[vip]]`: the file form of a [`HealthCheck`].
//!
//! ```toml
//! health = { kind = "http", path = "/healthz", expect = 200, interval = "1s",
//!            timeout = "500ms", rise = 2, fall = 3 }
//! health = { kind = "udp", payload = "ping", expect = "pong", port = 5353 }
//! health = { kind = "tcp", port = 8080, initial = "down" }
//! health = { kind = "http", path = "/", mode = "via-vip" }
//! health = { kind = "http", path = "/healthz", overrides = [
//!            { backend = "198.19.0.12", port = 8081, path = "/ready" } ] }
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    CheckKind, CheckOverride, HealthCheck, HealthState, ProbeMode, VipSpec,
    health::{HealthCheckError, parse_duration_ms},
};

/// The kinds a file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    /// No check (as if `health` were absent).
    None,
    /// TCP connect.
    Tcp,
    /// HTTP GET.
    Http,
    /// UDP datagram and reply.
    Udp,
}

/// `expect`: an HTTP status or the bytes a UDP reply must contain.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Expect {
    /// An HTTP status.
    Status(u32),
    /// Bytes of a UDP reply.
    Bytes(String),
}

/// A duration written `"500ms"`, `"1s"`, `"2m"`, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Millis(pub u32);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration_ms(&s)
            .map(Millis)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}s", self.0 / 1000)
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

/// `health = { ... }`. Unset keys take the defaults of [`HealthCheck::new`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `none`, `tcp`, `http` or `udp`.
    pub kind: KindName,
    /// Port probed (default: the VIP's; required for all-port VIPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Time between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Millis>,
    /// Time a probe may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Millis>,
    /// Passes in a row that bring a backend up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Failures in a row that take a backend down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Jitter on each interval, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<u32>,
    /// State of a newly added backend: `up` (default) or `down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<HealthState>,
    /// HTTP: the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP: the expected status (default 200); UDP: bytes the reply must
    /// contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// HTTP: the Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// UDP: the datagram sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Where probes go: `direct` (default) or `via-vip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProbeMode>,
    /// Per-backend differences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Vec<OverrideConfig>>,
}

/// One entry of `overrides = [ ... ]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// The backend's address.
    pub backend: String,
    /// Port probed on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP: the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP: the Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl HealthConfig {
    /// The check for `vip` (`None` for kind `none`), every value checked;
    /// the error names the key within `health`.
    pub fn check(&self, vip: &VipSpec) -> Result<Option<HealthCheck>, HealthCheckError> {
        let bad = |key: &'static str, why: &str| HealthCheckError {
            key,
            why: why.to_owned(),
        };
        let not_for = |key: &'static str, set: bool| {
            if set {
                Err(bad(
                    key,
                    &format!("does not apply to a {:?} check", self.kind).to_lowercase(),
                ))
            } else {
                Ok(())
            }
        };
        let kind = match self.kind {
            KindName::None => return Ok(None),
            KindName::Tcp => {
                not_for("path", self.path.is_some())?;
                not_for("host", self.host.is_some())?;
                not_for("payload", self.payload.is_some())?;
                not_for("expect", self.expect.is_some())?;
                CheckKind::Tcp
            }
            KindName::Http => {
                not_for("payload", self.payload.is_some())?;
                let expect = match &self.expect {
                    None => 200,
                    Some(Expect::Status(s)) => u16::try_from(*s)
                        .map_err(|_| bad("expect", &format!("status {s} is not 100..=599")))?,
                    Some(Expect::Bytes(_)) => {
                        return Err(bad("expect", "an HTTP check expects a status number"));
                    }
                };
                CheckKind::Http {
                    path: self
                        .path
                        .clone()
                        .ok_or_else(|| bad("path", "required for an http check"))?,
                    expect,
                    host: self.host.clone(),
                }
            }
            KindName::Udp => {
                not_for("path", self.path.is_some())?;
                not_for("host", self.host.is_some())?;
                CheckKind::Udp {
                    payload: self
                        .payload
                        .clone()
                        .ok_or_else(|| bad("payload", "required for a udp check"))?,
                    expect: match &self.expect {
                        None => None,
                        Some(Expect::Bytes(b)) => Some(b.clone()),
                        Some(Expect::Status(_)) => {
                            return Err(bad("expect", "a udp check expects a string"));
                        }
                    },
                }
            }
        };
        let mut c = HealthCheck::new(kind);
        c.port = self.port;
        if let Some(v) = self.interval {
            c.interval_ms = v.0;
        }
        if let Some(v) = self.timeout {
            c.timeout_ms = v.0;
        }
        c.rise = self.rise.unwrap_or(c.rise);
        c.fall = self.fall.unwrap_or(c.fall);
        c.jitter_percent = self.jitter.unwrap_or(c.jitter_percent);
        c.initial = self.initial.unwrap_or(c.initial);
        c.mode = self.mode.unwrap_or(c.mode);
        for o in self.overrides.iter().flatten() {
            let addr: std::net::IpAddr = o.backend.parse().map_err(|_| {
                bad(
                    "overrides",
                    &format!("`{}` is not an IP address", o.backend),
                )
            })?;
            let one = CheckOverride {
                port: o.port,
                path: o.path.clone(),
                host: o.host.clone(),
            };
            if c.overrides.insert(addr, one).is_some() {
                return Err(bad("overrides", &format!("{addr} is named twice")));
            }
        }
        c.check(vip)?;
        Ok(Some(c))
    }
}

impl From<&HealthCheck> for HealthConfig {
    /// Every setting written out, so an export says what is in effect.
    fn from(c: &HealthCheck) -> Self {
        let mut h = HealthConfig {
            kind: KindName::Tcp,
            port: c.port,
            interval: Some(Millis(c.interval_ms)),
            timeout: Some(Millis(c.timeout_ms)),
            rise: Some(c.rise),
            fall: Some(c.fall),
            jitter: Some(c.jitter_percent),
            initial: Some(c.initial),
            path: None,
            expect: None,
            host: None,
            payload: None,
            mode: Some(c.mode),
            overrides: (!c.overrides.is_empty()).then(|| {
                c.overrides
                    .iter()
                    .map(|(a, o)| OverrideConfig {
                        backend: a.to_string(),
                        port: o.port,
                        path: o.path.clone(),
                        host: o.host.clone(),
                    })
                    .collect()
            }),
        };
        match &c.kind {
            CheckKind::Tcp => {}
            CheckKind::Http { path, expect, host } => {
                h.kind = KindName::Http;
                h.path = Some(path.clone());
                h.expect = Some(Expect::Status((*expect).into()));
                h.host = host.clone();
            }
            CheckKind::Udp { payload, expect } => {
                h.kind = KindName::Udp;
                h.payload = Some(payload.clone());
                h.expect = expect.clone().map(Expect::Bytes);
            }
        }
        h
    }
}
