//! `lbctl health set|show`: the request a `set` command line makes, and how
//! a VIP's health is printed (table and `--json`).

use std::io::Write;

use lb_api::convert::{health_check, vip_out};
use lb_proto::v1::{
    BackendHealth, GetHealthRequest, GetHealthResponse, HealthCheck, HealthCheckKind,
    HealthCheckOverride, HealthState, ProbeMode, SetHealthCheckRequest,
    load_balancer_client::LoadBalancerClient,
};
use serde::Serialize;
use tonic::transport::Channel;

use super::{
    CliError,
    args::{HealthCommand, HealthSetArgs},
    commands::emit,
    output::{Align, Table, vip_text},
};

/// The `HealthCheck` message of `lbctl health set`. Only what the command
/// line itself cannot tell is refused here (an HTTP `--expect` that is not a
/// number, `--expect` with `--tcp`); every value is the daemon's to check,
/// so lbctl and the API refuse the same things with the same words.
pub(super) fn request(a: &HealthSetArgs) -> Result<HealthCheck, String> {
    if a.host.is_some() && a.http.is_none() {
        return Err("--host goes with --http".into());
    }
    let mut m = HealthCheck {
        port: a.port,
        interval_ms: a.interval,
        timeout_ms: a.timeout,
        rise: a.rise,
        fall: a.fall,
        jitter_percent: a.jitter,
        initial: match a.initial.as_deref() {
            Some("down") => HealthState::Down,
            _ => HealthState::Up,
        }
        .into(),
        mode: match a.mode.as_deref() {
            Some("via-vip") => ProbeMode::ViaVip,
            _ => ProbeMode::Direct,
        }
        .into(),
        ..Default::default()
    };
    m.overrides = a
        .overrides
        .iter()
        .map(|o| override_arg(o))
        .collect::<Result<_, _>>()?;
    if let Some(path) = &a.http {
        m.kind = HealthCheckKind::Http.into();
        m.http_path = path.clone();
        m.http_host = a.host.clone();
        m.http_expect_status = a
            .expect
            .as_deref()
            .map(|e| {
                e.parse::<u32>()
                    .map_err(|_| format!("--expect: `{e}` is not an HTTP status (e.g. 200)"))
            })
            .transpose()?;
    } else if let Some(payload) = &a.udp {
        m.kind = HealthCheckKind::Udp.into();
        m.udp_payload = payload.as_bytes().to_vec();
        m.udp_expect = a.expect.as_ref().map(|e| e.as_bytes().to_vec());
    } else if a.tcp {
        m.kind = HealthCheckKind::Tcp.into();
        if a.expect.is_some() {
            return Err("--expect goes with --http or --udp, not --tcp".into());
        }
    } else {
        m = HealthCheck {
            kind: HealthCheckKind::None.into(),
            ..Default::default()
        };
    }
    Ok(m)
}

/// `--override ADDR,port=N,path=P,host=H`: the backend's address, then what
/// differs for it. Values are the daemon's to check; only the form is
/// checked here.
fn override_arg(arg: &str) -> Result<HealthCheckOverride, String> {
    let mut parts = arg.split(',');
    let backend = parts.next().unwrap_or_default().trim();
    if backend.is_empty() {
        return Err(format!(
            "--override `{arg}`: starts with the backend's address"
        ));
    }
    let mut o = HealthCheckOverride {
        backend: backend.to_owned(),
        ..Default::default()
    };
    for kv in parts {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--override `{arg}`: `{kv}` is not KEY=VALUE"))?;
        match k.trim() {
            "port" => {
                o.port = Some(
                    v.parse()
                        .map_err(|_| format!("--override `{arg}`: port `{v}` is not a number"))?,
                )
            }
            "path" => o.http_path = Some(v.to_owned()),
            "host" => o.http_host = Some(v.to_owned()),
            other => {
                return Err(format!(
                    "--override `{arg}`: unknown key `{other}` (port, path, host)"
                ));
            }
        }
    }
    Ok(o)
}

/// Runs `lbctl health ...`.
pub(super) async fn run(
    lb: &mut LoadBalancerClient<Channel>,
    cmd: &HealthCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cmd {
        HealthCommand::Set(a) => {
            let check =
                request(a).map_err(|e| CliError::Status(tonic::Status::invalid_argument(e)))?;
            lb.set_health_check(SetHealthCheckRequest {
                vip: Some(vip_out(&a.vip)),
                check: Some(check),
            })
            .await?;
            Ok(())
        }
        HealthCommand::Show { vip, json } => {
            let h = lb
                .get_health(GetHealthRequest {
                    vip: Some(vip_out(vip)),
                })
                .await?
                .into_inner();
            let text = if *json {
                show_json(&h)?
            } else {
                show_table(&h)?
            };
            emit(out, &text)
        }
    }
}

/// One line describing a check, as `health show` and `vip list` print it:
/// `http GET /healthz expect 200 port 80 every 1000ms timeout 500ms rise 2
/// fall 3 jitter 10%`.
pub(crate) fn check_text(c: Option<&HealthCheck>, vip_port: u32) -> Result<String, CliError> {
    let Some(c) = c else {
        return Ok("none".into());
    };
    let kind = match HealthCheckKind::try_from(c.kind) {
        Ok(HealthCheckKind::Tcp) => "tcp connect".to_owned(),
        Ok(HealthCheckKind::Http) => {
            let mut s = format!(
                "http GET {} expect {}",
                c.http_path,
                c.http_expect_status.unwrap_or(200)
            );
            if let Some(h) = &c.http_host {
                s.push_str(&format!(" host {h}"));
            }
            s
        }
        Ok(HealthCheckKind::Udp) => {
            let mut s = format!("udp {:?}", String::from_utf8_lossy(&c.udp_payload));
            if let Some(e) = &c.udp_expect {
                s.push_str(&format!(" expect {:?}", String::from_utf8_lossy(e)));
            }
            s
        }
        Ok(HealthCheckKind::None) => return Ok("none".into()),
        _ => {
            return Err(CliError::BadResponse(format!(
                "health check kind {}",
                c.kind
            )));
        }
    };
    let via_vip = c.mode == ProbeMode::ViaVip as i32;
    let mut overrides = String::new();
    for o in &c.overrides {
        overrides.push_str(&format!("; {}:", o.backend));
        if let Some(p) = o.port {
            overrides.push_str(&format!(" port {p}"));
        }
        if let Some(p) = &o.http_path {
            overrides.push_str(&format!(" path {p}"));
        }
        if let Some(h) = &o.http_host {
            overrides.push_str(&format!(" host {h}"));
        }
    }
    Ok(format!(
        "{kind} port {}{} every {}ms timeout {}ms rise {} fall {} jitter {}%{}",
        c.port.unwrap_or(vip_port),
        if via_vip { " via-vip" } else { "" },
        c.interval_ms.unwrap_or_default(),
        c.timeout_ms.unwrap_or_default(),
        c.rise.unwrap_or_default(),
        c.fall.unwrap_or_default(),
        c.jitter_percent.unwrap_or_default(),
        if c.initial == HealthState::Down as i32 {
            " initial down"
        } else {
            ""
        }
    ) + &overrides)
}

/// `up` or `down`.
pub(crate) fn state_text(raw: i32) -> &'static str {
    match HealthState::try_from(raw) {
        Ok(HealthState::Down) => "down",
        Ok(HealthState::Up) => "up",
        _ => "unknown",
    }
}

/// A Unix time in ms as UTC `YYYY-mm-ddTHH:MM:SSZ`; `-` for 0 (never).
pub(crate) fn since_text(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so lbctl needs no date library for one column.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn show_table(h: &GetHealthResponse) -> Result<String, CliError> {
    let port = h.vip.as_ref().map_or(0, |v| v.port);
    let mut s = format!(
        "VIP {}\ncheck {}\n",
        vip_text(h.vip.as_ref()),
        check_text(h.check.as_ref(), port)?
    );
    if h.fail_open {
        s.push_str("FAIL-OPEN: every backend with a weight is down; serving with all of them\n");
    }
    let mut t = Table::new(&[
        Align::Left,
        Align::Right,
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Right,
    ]);
    t.row([
        "BACKEND",
        "WEIGHT",
        "HEALTH",
        "SERVING",
        "REASON",
        "SINCE",
        "LAST",
        "PROBES",
        "FAILED",
        "TRANSITIONS",
    ]);
    for b in &h.backends {
        t.row([
            b.address.clone(),
            b.weight.to_string(),
            state_text(b.state).to_owned(),
            if b.serving { "yes" } else { "no" }.to_owned(),
            b.reason.clone(),
            since_text(b.since_unix_ms),
            if b.last_result.is_empty() {
                "-".to_owned()
            } else {
                b.last_result.clone()
            },
            b.probes_sent.to_string(),
            b.probes_failed.to_string(),
            b.transitions.to_string(),
        ]);
    }
    s.push_str(&t.render());
    Ok(s)
}

#[derive(Serialize)]
struct CheckJson {
    kind: &'static str,
    port: u32,
    interval_ms: u32,
    timeout_ms: u32,
    rise: u32,
    fall: u32,
    jitter_percent: u32,
    initial: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
}

#[derive(Serialize)]
struct BackendHealthJson<'a> {
    address: &'a str,
    weight: u32,
    health: &'static str,
    serving: bool,
    reason: &'a str,
    since_unix_ms: u64,
    last_result: &'a str,
    probes_sent: u64,
    probes_failed: u64,
    transitions: u64,
}

#[derive(Serialize)]
struct HealthJson<'a> {
    vip: String,
    check: Option<CheckJson>,
    fail_open: bool,
    backends: Vec<BackendHealthJson<'a>>,
}

/// `health show --json`: `{"vip", "check": {...} | null, "fail_open",
/// "backends": [{"address", "weight", "health": "up"|"down", "serving",
/// "reason", "since_unix_ms", "last_result", "probes_sent", "probes_failed",
/// "transitions"}]}`.
fn show_json(h: &GetHealthResponse) -> Result<String, CliError> {
    let spec =
        lb_api::convert::vip(h.vip.as_ref()).map_err(|e| CliError::BadResponse(e.to_string()))?;
    let check = match &h.check {
        Some(c) => health_check(c, &spec).map_err(|e| CliError::BadResponse(e.to_string()))?,
        None => None,
    };
    let check = check.map(|c| {
        let (path, expect, host, payload) = match &c.kind {
            lb_api::CheckKind::Tcp => (None, None, None, None),
            lb_api::CheckKind::Http { path, expect, host } => (
                Some(path.clone()),
                Some(expect.to_string()),
                host.clone(),
                None,
            ),
            lb_api::CheckKind::Udp { payload, expect } => {
                (None, expect.clone(), None, Some(payload.clone()))
            }
        };
        CheckJson {
            kind: c.kind.name(),
            port: u32::from(c.port_for(&spec)),
            interval_ms: c.interval_ms,
            timeout_ms: c.timeout_ms,
            rise: c.rise,
            fall: c.fall,
            jitter_percent: c.jitter_percent,
            initial: c.initial.name(),
            path,
            expect,
            host,
            payload,
        }
    });
    let backends = h
        .backends
        .iter()
        .map(|b: &BackendHealth| BackendHealthJson {
            address: &b.address,
            weight: b.weight,
            health: state_text(b.state),
            serving: b.serving,
            reason: &b.reason,
            since_unix_ms: b.since_unix_ms,
            last_result: &b.last_result,
            probes_sent: b.probes_sent,
            probes_failed: b.probes_failed,
            transitions: b.transitions,
        });
    Ok(serde_json::to_string(&HealthJson {
        vip: spec.to_string(),
        check,
        fail_open: h.fail_open,
        backends: backends.collect(),
    })
    .expect("plain structs serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(since_text(0), "-");
        assert_eq!(since_text(1_764_495_600_000), "2025-11-30T09:40:00Z");
        assert_eq!(since_text(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::super::args::parse_duration_ms("1s"), Ok(1000));
        assert_eq!(super::super::args::parse_duration_ms("1.5s"), Ok(1500));
        assert_eq!(super::super::args::parse_duration_ms("250ms"), Ok(250));
        assert_eq!(super::super::args::parse_duration_ms("2m"), Ok(120_000));
        assert!(super::super::args::parse_duration_ms("1").is_err());
        assert!(super::super::args::parse_duration_ms("-1s").is_err());
        assert!(super::super::args::parse_duration_ms("0.0001s").is_err());
    }
}
