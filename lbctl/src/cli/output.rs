//! What `lbctl` prints: aligned tables for people, JSON for programs.
//!
//! # JSON output (stable)
//!
//! Every `--json` output is one compact JSON value on one line (`stats
//! --watch --json`: one object per line per interval). Within v1 these shapes
//! only ever gain fields; none is renamed or removed, so parse them ignoring
//! unknown keys. VIPs are strings `ADDR:PORT/PROTO` (`[ADDR]:PORT/PROTO` for
//! IPv6, canonical form, port 0 = all ports), addresses canonical literals.
//!
//! | command | JSON |
//! |---|---|
//! | `vip list --json` | `[VIP…]`, VIP = `{"vip":"198.18.0.10:80/tcp","flags":["no-sport","no-conntrack"],"backends":[BACKEND…],"ring_fingerprint":"48efccb16f06f69d"}` (equal on two nodes: they send every flow of the VIP to the same backend) |
//! | `backend list VIP --json` | `[BACKEND…]`, BACKEND = `{"address":"198.19.0.11","weight":100,"slot":3,"state":"active","health":"up","health_reason":"initial","health_since_unix_ms":0}` (`state`: `"active"` or `"draining"`) |
//! | `stats --json` | `{"counters":{NAME:N…},"vips":[VIPSTATS…],"unix_time_ms":N}` |
//! | `stats --watch S --json` | as `stats --json` plus `"counter_rates":{NAME:F…}` and `"interval_seconds":F`, and rates in every VIPSTATS and BSTATS |
//! | VIPSTATS | `{"vip":"…","packets":N,"bytes":N,"backends":[BSTATS…]}` (+ `"packets_per_second":F,"bytes_per_second":F` with `--watch`, before `"backends"`) |
//! | BSTATS | `{"address":"…","slot":N,"packets":N,"bytes":N}` (+ `"packets_per_second":F,"bytes_per_second":F` with `--watch`) |
//! | `status --json` | `{"interface":"eth0","ifindex":N,"attach_mode":"native"\|"generic"\|"none","program_id":N,"program_tag":"HEX16","embedded_program_tag":"HEX16","program":"current"\|"stale"\|"unknown",("upgraded_from_tag":"HEX16",)"verified_insns":N,"pin_path":"/sys/fs/bpf/lb","adopted":B,"vips":{"used":N,"capacity":N},"backend_slots":{"used":N,"capacity":N},"conn_table_capacity":N,"ring_size":N,"hash_seed":N,"encapsulation":"ipip"\|"gue:PORT","version":"0.1.0","uptime_seconds":N,"rings":[{"vip":"…","fingerprint":"…"}…]}` |
//! | `route VIP CLIENT --json` | `{"vip":"…","client":"203.0.113.7:40000","destination_port":N,"backend":"198.19.0.11","slot":N,"ring_position":N,"flow_hash":N}` |
//! | `route VIP CLIENT --explain --json` | see [`super::explain`] |
//! | `gateway get --json` | `{"mac":"02:00:00:00:00:01"}` |
//!
//! `counters` always holds every counter `lb_api::Stat` names (0 when the
//! daemon did not report it) plus any newer names the daemon sends, keys in
//! sorted order. N are unsigned integers, F floating-point numbers, B
//! booleans. `route`'s `destination_port` is the port of the flow (the VIP's
//! port, or `--dport` for a port-0 VIP). Mutating commands (`vip add|del`,
//! `backend add|del|weight`, `gateway set`) print nothing on success.

use std::{collections::BTreeMap, net::SocketAddr};

use lb_api::{Stat, VipSpec, convert};
use lb_proto::v1::{
    AttachMode, BackendInfo, BackendState, GetStatusResponse, RouteResponse, StatsSnapshot, Vip,
    VipInfo,
};
use serde::Serialize;

/// A VIP as `lbctl` prints it: through [`VipSpec`] when the daemon sent a
/// well-formed one (so output pastes back into commands), else the raw
/// fields, so that a surprising answer is still shown rather than hidden.
pub fn vip_text(vip: Option<&Vip>) -> String {
    let Some(v) = vip else {
        return "-".to_owned();
    };
    match convert::vip(Some(v)) {
        Ok(spec) => spec.to_string(),
        Err(_) => {
            let proto = convert::proto(v.protocol)
                .map_or_else(|| format!("proto{}", v.protocol), |p| p.to_string());
            if v.address.contains(':') {
                format!("[{}]:{}/{proto}", v.address, v.port)
            } else {
                format!("{}:{}/{proto}", v.address, v.port)
            }
        }
    }
}

/// Flag names as `vip add` takes them (without the dashes).
fn flag_names(flags: &[i32]) -> Vec<String> {
    flags
        .iter()
        .map(|&f| convert::flag_name(f).map_or_else(|| format!("unknown-{f}"), str::to_owned))
        .collect()
}

fn state_name(state: i32) -> &'static str {
    match BackendState::try_from(state) {
        Ok(BackendState::Active) => "active",
        Ok(BackendState::Draining) => "draining",
        _ => "unknown",
    }
}

fn attach_mode_name(mode: i32) -> &'static str {
    match AttachMode::try_from(mode) {
        Ok(AttachMode::Native) => "native",
        Ok(AttachMode::Generic) => "generic",
        _ => "none",
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // These are plain structs of strings, integers, floats and string-keyed
    // maps, which serde_json always serializes (NaN becomes null).
    serde_json::to_string(value).expect("lbctl output always serializes")
}

// ---- JSON shapes ---------------------------------------------------------

#[derive(Serialize)]
struct BackendJson<'a> {
    address: &'a str,
    weight: u32,
    slot: u32,
    state: &'static str,
    health: &'static str,
    health_reason: &'a str,
    health_since_unix_ms: u64,
}

impl<'a> From<&'a BackendInfo> for BackendJson<'a> {
    fn from(b: &'a BackendInfo) -> Self {
        Self {
            address: &b.address,
            weight: b.weight,
            slot: b.slot,
            state: state_name(b.state),
            health: super::health::state_text(b.health),
            health_reason: if b.health_reason.is_empty() {
                "initial"
            } else {
                &b.health_reason
            },
            health_since_unix_ms: b.health_since_unix_ms,
        }
    }
}

#[derive(Serialize)]
struct VipJson<'a> {
    vip: String,
    flags: Vec<String>,
    backends: Vec<BackendJson<'a>>,
    ring_fingerprint: &'a str,
}

#[derive(Serialize)]
struct BackendStatsJson<'a> {
    address: &'a str,
    slot: u32,
    packets: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_second: Option<f64>,
}

#[derive(Serialize)]
struct VipStatsJson<'a> {
    vip: String,
    packets: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_second: Option<f64>,
    backends: Vec<BackendStatsJson<'a>>,
}

#[derive(Serialize)]
struct StatsJson<'a> {
    counters: BTreeMap<&'a str, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counter_rates: Option<BTreeMap<&'a str, f64>>,
    vips: Vec<VipStatsJson<'a>>,
    unix_time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_seconds: Option<f64>,
}

#[derive(Serialize)]
struct UsageJson {
    used: u64,
    capacity: u64,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    interface: &'a str,
    ifindex: u32,
    attach_mode: &'static str,
    program_id: u32,
    program_tag: &'a str,
    embedded_program_tag: &'a str,
    program: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    upgraded_from_tag: &'a str,
    verified_insns: u32,
    pin_path: &'a str,
    adopted: bool,
    vips: UsageJson,
    backend_slots: UsageJson,
    conn_table_capacity: u64,
    ring_size: u32,
    hash_seed: u32,
    encapsulation: &'a str,
    version: &'a str,
    uptime_seconds: u64,
    rings: Vec<RingJson<'a>>,
    backends_down: u32,
    vips_failing_open: Vec<String>,
}

#[derive(Serialize)]
struct RingJson<'a> {
    vip: String,
    fingerprint: &'a str,
}

#[derive(Serialize)]
struct RouteJson<'a> {
    vip: String,
    client: String,
    destination_port: u16,
    backend: &'a str,
    slot: u32,
    ring_position: u32,
    flow_hash: u32,
}

#[derive(Serialize)]
struct GatewayJson<'a> {
    mac: &'a str,
}

// ---- JSON renderers ------------------------------------------------------

/// `vip list --json`.
pub fn vip_list_json(vips: &[VipInfo]) -> String {
    let out: Vec<VipJson<'_>> = vips
        .iter()
        .map(|v| VipJson {
            vip: vip_text(v.vip.as_ref()),
            flags: flag_names(&v.flags),
            backends: v.backends.iter().map(BackendJson::from).collect(),
            ring_fingerprint: &v.ring_fingerprint,
        })
        .collect();
    to_json(&out)
}

/// `backend list VIP --json`.
pub fn backend_list_json(backends: &[BackendInfo]) -> String {
    let out: Vec<BackendJson<'_>> = backends.iter().map(BackendJson::from).collect();
    to_json(&out)
}

/// `stats --json`; with `rates` (`--watch`) the per-second rates too.
pub fn stats_json(stats: &StatsSnapshot, rates: bool) -> String {
    let mut counters: BTreeMap<&str, u64> = Stat::ALL.iter().map(|s| (s.name(), 0)).collect();
    counters.extend(stats.counters.iter().map(|(k, v)| (k.as_str(), *v)));
    let counter_rates = rates.then(|| {
        let mut r: BTreeMap<&str, f64> = Stat::ALL.iter().map(|s| (s.name(), 0.0)).collect();
        r.extend(stats.counter_rates.iter().map(|(k, v)| (k.as_str(), *v)));
        r
    });
    let rate = |v: f64| rates.then_some(v);
    let out = StatsJson {
        counters,
        counter_rates,
        vips: stats
            .vips
            .iter()
            .map(|v| VipStatsJson {
                vip: vip_text(v.vip.as_ref()),
                packets: v.packets,
                bytes: v.bytes,
                packets_per_second: rate(v.packets_per_second),
                bytes_per_second: rate(v.bytes_per_second),
                backends: v
                    .backends
                    .iter()
                    .map(|b| BackendStatsJson {
                        address: &b.address,
                        slot: b.slot,
                        packets: b.packets,
                        bytes: b.bytes,
                        packets_per_second: rate(b.packets_per_second),
                        bytes_per_second: rate(b.bytes_per_second),
                    })
                    .collect(),
            })
            .collect(),
        unix_time_ms: stats.unix_time_ms,
        interval_seconds: rate(stats.interval_seconds),
    };
    to_json(&out)
}

/// `status --json`.
pub fn status_json(s: &GetStatusResponse) -> String {
    let usage = |u: Option<&lb_proto::v1::MapUsage>| UsageJson {
        used: u.map_or(0, |u| u.used),
        capacity: u.map_or(0, |u| u.capacity),
    };
    to_json(&StatusJson {
        interface: &s.interface,
        ifindex: s.ifindex,
        attach_mode: attach_mode_name(s.attach_mode),
        program_id: s.program_id,
        program_tag: &s.program_tag,
        embedded_program_tag: &s.embedded_program_tag,
        program: program_state(s),
        upgraded_from_tag: &s.upgraded_from_tag,
        verified_insns: s.verified_insns,
        pin_path: &s.pin_path,
        adopted: s.adopted,
        vips: usage(s.vips.as_ref()),
        backend_slots: usage(s.backend_slots.as_ref()),
        conn_table_capacity: s.conn_table_capacity,
        ring_size: s.ring_size,
        hash_seed: s.hash_seed,
        encapsulation: &s.encapsulation,
        version: &s.version,
        uptime_seconds: s.uptime_seconds,
        rings: s
            .rings
            .iter()
            .map(|r| RingJson {
                vip: vip_text(r.vip.as_ref()),
                fingerprint: &r.fingerprint,
            })
            .collect(),
        backends_down: s.backends_down,
        vips_failing_open: s
            .vips_failing_open
            .iter()
            .map(|v| vip_text(Some(v)))
            .collect(),
    })
}

/// A route query and its answer, as printed by `route`.
#[derive(Clone, Copy, Debug)]
pub struct RouteView<'a> {
    /// The VIP asked about.
    pub vip: &'a VipSpec,
    /// The client address and source port asked about.
    pub client: SocketAddr,
    /// The flow's destination port (the VIP's, or `--dport` for port 0).
    pub destination_port: u16,
    /// The backend the daemon answered.
    pub backend: &'a BackendInfo,
    /// The daemon's answer.
    pub response: &'a RouteResponse,
}

/// `route --json`.
pub fn route_json(r: &RouteView<'_>) -> String {
    to_json(&RouteJson {
        vip: r.vip.to_string(),
        client: r.client.to_string(),
        destination_port: r.destination_port,
        backend: &r.backend.address,
        slot: r.backend.slot,
        ring_position: r.response.ring_position,
        flow_hash: r.response.flow_hash,
    })
}

/// `gateway get --json`.
pub fn gateway_json(mac: &str) -> String {
    to_json(&GatewayJson { mac })
}

// ---- tables --------------------------------------------------------------

#[derive(Clone, Copy)]
pub(crate) enum Align {
    Left,
    Right,
}

enum Row {
    /// One cell per column, aligned with every other `Cells` row.
    Cells(Vec<String>),
    /// A first cell aligned with column 0, then free text that takes no part
    /// in the alignment (ipvsadm's service lines above their real servers).
    Span(String, String),
}

/// A text table: columns two spaces apart, numbers right-aligned, no
/// trailing blanks.
pub(crate) struct Table {
    align: Vec<Align>,
    rows: Vec<Row>,
}

impl Table {
    pub(crate) fn new(align: &[Align]) -> Self {
        Self {
            align: align.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows
            .push(Row::Cells(cells.into_iter().map(Into::into).collect()));
    }

    fn span(&mut self, first: impl Into<String>, rest: impl Into<String>) {
        self.rows.push(Row::Span(first.into(), rest.into()));
    }

    pub(crate) fn render(&self) -> String {
        let mut width = vec![0usize; self.align.len()];
        for row in &self.rows {
            match row {
                Row::Cells(cells) => {
                    for (w, c) in width.iter_mut().zip(cells) {
                        *w = (*w).max(c.chars().count());
                    }
                }
                Row::Span(first, _) => width[0] = width[0].max(first.chars().count()),
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            match row {
                Row::Cells(cells) => {
                    for (i, ((cell, w), a)) in cells.iter().zip(&width).zip(&self.align).enumerate()
                    {
                        if i > 0 {
                            line.push_str("  ");
                        }
                        match a {
                            Align::Left => line.push_str(&format!("{cell:<w$}")),
                            Align::Right => line.push_str(&format!("{cell:>w$}")),
                        }
                    }
                }
                Row::Span(first, rest) => {
                    line.push_str(&format!("{first:<w$}  {rest}", w = width[0]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

const ARROW: &str = "  -> ";

/// `vip list`: each VIP with its flags, its backends below it.
pub fn vip_list_table(vips: &[VipInfo]) -> String {
    use Align::*;
    let mut t = Table::new(&[Left, Right, Right, Left]);
    t.span("VIP", "FLAGS");
    t.row([
        format!("{ARROW}BACKEND"),
        "WEIGHT".into(),
        "SLOT".into(),
        "STATE".into(),
    ]);
    for v in vips {
        let flags = flag_names(&v.flags);
        let flags = if flags.is_empty() {
            "-".to_owned()
        } else {
            flags.join(",")
        };
        t.span(vip_text(v.vip.as_ref()), flags);
        for b in &v.backends {
            t.row(backend_cells(b, ARROW));
        }
    }
    t.render()
}

fn backend_cells(b: &BackendInfo, indent: &str) -> [String; 4] {
    [
        format!("{indent}{}", b.address),
        b.weight.to_string(),
        b.slot.to_string(),
        state_name(b.state).to_owned(),
    ]
}

/// `backend list VIP`: STATE is the operator's (active, draining), HEALTH
/// the check's (up, down), with why and since when.
pub fn backend_list_table(backends: &[BackendInfo]) -> String {
    use Align::*;
    let mut t = Table::new(&[Left, Right, Right, Left, Left, Left, Left]);
    t.row([
        "BACKEND", "WEIGHT", "SLOT", "STATE", "HEALTH", "REASON", "SINCE",
    ]);
    for b in backends {
        let [a, w, s, st] = backend_cells(b, "");
        t.row([
            a,
            w,
            s,
            st,
            super::health::state_text(b.health).to_owned(),
            if b.health_reason.is_empty() {
                "initial".to_owned()
            } else {
                b.health_reason.clone()
            },
            super::health::since_text(b.health_since_unix_ms),
        ]);
    }
    t.render()
}

fn rate_text(v: f64) -> String {
    format!("{v:.1}")
}

/// The counter names in the data plane's own order, then any the daemon
/// knows and this lbctl does not, by name.
fn ordered_counters(stats: &StatsSnapshot) -> Vec<(&str, u64, f64)> {
    let known: Vec<&str> = Stat::ALL.iter().map(|s| s.name()).collect();
    let mut extra: Vec<&str> = stats
        .counters
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    extra.sort_unstable();
    known
        .into_iter()
        .chain(extra)
        .map(|k| {
            let v = stats.counters.get(k).copied().unwrap_or(0);
            let r = stats.counter_rates.get(k).copied().unwrap_or(0.0);
            (k, v, r)
        })
        .collect()
}

/// `stats`: per-VIP and per-backend packets and bytes (ipvsadm --stats
/// style), then the global counters; with `rates` (`--watch`) a title line
/// with the time and interval, and per-second rate columns.
pub fn stats_table(stats: &StatsSnapshot, rates: bool) -> String {
    use Align::*;
    let mut out = String::new();
    if rates {
        out.push_str(&format!(
            "{}  rates over {:.1}s\n",
            utc_time(stats.unix_time_ms),
            stats.interval_seconds
        ));
    }
    let mut t = if rates {
        Table::new(&[Left, Right, Right, Right, Right])
    } else {
        Table::new(&[Left, Right, Right])
    };
    let mut header = vec!["VIP / BACKEND", "PACKETS", "BYTES"];
    if rates {
        header.extend(["PKTS/S", "BYTES/S"]);
    }
    t.row(header);
    let row = |name: String, p: u64, b: u64, pr: f64, br: f64| {
        let mut r = vec![name, p.to_string(), b.to_string()];
        if rates {
            r.extend([rate_text(pr), rate_text(br)]);
        }
        r
    };
    for v in &stats.vips {
        t.row(row(
            vip_text(v.vip.as_ref()),
            v.packets,
            v.bytes,
            v.packets_per_second,
            v.bytes_per_second,
        ));
        for b in &v.backends {
            t.row(row(
                format!("{ARROW}{}", b.address),
                b.packets,
                b.bytes,
                b.packets_per_second,
                b.bytes_per_second,
            ));
        }
    }
    out.push_str(&t.render());
    out.push('\n');

    let mut c = if rates {
        Table::new(&[Left, Right, Right])
    } else {
        Table::new(&[Left, Right])
    };
    let mut header = vec!["COUNTER", "VALUE"];
    if rates {
        header.push("RATE/S");
    }
    c.row(header);
    for (name, value, rate) in ordered_counters(stats) {
        let mut r = vec![name.to_owned(), value.to_string()];
        if rates {
            r.push(rate_text(rate));
        }
        c.row(r);
    }
    out.push_str(&c.render());
    out
}

/// Whether the running program is the one the daemon carries: `current`,
/// `stale`, or `unknown` (a daemon that reports no tags).
fn program_state(s: &GetStatusResponse) -> &'static str {
    if s.program_tag.is_empty() || s.embedded_program_tag.is_empty() {
        "unknown"
    } else if s.program_current {
        "current"
    } else {
        "stale"
    }
}

/// `status`: one `key  value` line per fact.
pub fn status_table(s: &GetStatusResponse) -> String {
    let usage = |u: Option<&lb_proto::v1::MapUsage>| {
        u.map_or_else(
            || "-".to_owned(),
            |u| format!("{} / {}", u.used, u.capacity),
        )
    };
    let mut t = Table::new(&[Align::Left, Align::Left]);
    let program = match program_state(s) {
        "current" => format!("{} (current: the daemon's own build)", s.program_tag),
        "stale" => format!(
            "{} (STALE: the daemon carries {}; restart it to upgrade)",
            s.program_tag, s.embedded_program_tag
        ),
        _ => "-".to_owned(),
    };
    let health = if s.vips_failing_open.is_empty() {
        format!("{} backends down", s.backends_down)
    } else {
        let vips: Vec<String> = s
            .vips_failing_open
            .iter()
            .map(|v| vip_text(Some(v)))
            .collect();
        format!(
            "{} backends down; FAILING OPEN (every backend down, serving with all): {}",
            s.backends_down,
            vips.join(", ")
        )
    };
    let mut rows: Vec<(&str, String)> = vec![
        (
            "interface",
            format!("{} (ifindex {})", s.interface, s.ifindex),
        ),
        ("attach mode", attach_mode_name(s.attach_mode).to_owned()),
        ("program id", s.program_id.to_string()),
        ("program tag", program),
        ("verified insns", s.verified_insns.to_string()),
        ("pin path", s.pin_path.clone()),
        (
            "adopted",
            if s.adopted { "yes (hot restart)" } else { "no" }.to_owned(),
        ),
        ("vips", usage(s.vips.as_ref())),
        ("backend slots", usage(s.backend_slots.as_ref())),
        (
            "conn table",
            format!("{} flows (LRU shared by all CPUs)", s.conn_table_capacity),
        ),
        ("ring size", s.ring_size.to_string()),
        ("hash seed", s.hash_seed.to_string()),
        ("encapsulation", s.encapsulation.clone()),
        ("version", s.version.clone()),
        ("uptime", duration_text(s.uptime_seconds)),
        ("health", health),
    ];
    if !s.upgraded_from_tag.is_empty() {
        rows.insert(4, ("upgraded from", s.upgraded_from_tag.clone()));
    }
    for (k, v) in rows {
        t.row([k.to_owned(), v]);
    }
    // One line per VIP: compare across nodes (`lbctl --api A --api B status`
    // does it for you).
    for r in &s.rings {
        t.row([
            "ring".to_owned(),
            format!("{}  {}", vip_text(r.vip.as_ref()), r.fingerprint),
        ]);
    }
    t.render()
}

/// `route`: one `key  value` line per fact.
pub fn route_table(r: &RouteView<'_>) -> String {
    let mut t = Table::new(&[Align::Left, Align::Left]);
    let rows: [(&str, String); 7] = [
        ("vip", r.vip.to_string()),
        ("client", r.client.to_string()),
        ("destination port", r.destination_port.to_string()),
        ("backend", r.backend.address.clone()),
        ("slot", r.backend.slot.to_string()),
        ("ring position", r.response.ring_position.to_string()),
        ("flow hash", r.response.flow_hash.to_string()),
    ];
    for (k, v) in rows {
        t.row([k.to_owned(), v]);
    }
    t.render()
}

/// `1d 2h 3m 4s`, leading zero units left out.
fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if n > 0 || !parts.is_empty() {
            parts.push(format!("{n}{unit}"));
        }
    }
    parts.push(format!("{s}s"));
    parts.join(" ")
}

/// `YYYY-MM-DD HH:MM:SS UTC` for milliseconds since the epoch, without a
/// date crate: days to civil date by H. Hinnant's `civil_from_days`.
fn utc_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let sod = secs % 86_400;
    let z = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lb_proto::v1::{BackendStats, MapUsage, Protocol, VipFlag, VipStats};

    /// A proto VIP, as the API returns it (shared with the CLI's tests).
    pub(crate) fn vip(address: &str, port: u32, protocol: Protocol) -> Option<Vip> {
        Some(Vip {
            address: address.into(),
            port,
            protocol: protocol.into(),
        })
    }

    /// A proto backend: weight 0 reads as draining, as the daemon reports it.
    pub(crate) fn backend(address: &str, weight: u32, slot: u32) -> BackendInfo {
        BackendInfo {
            address: address.into(),
            weight,
            slot,
            state: if weight > 0 {
                BackendState::Active
            } else {
                BackendState::Draining
            }
            .into(),
            health: lb_proto::v1::HealthState::Up.into(),
            health_reason: "initial".into(),
            ..Default::default()
        }
    }

    fn two_vips() -> Vec<VipInfo> {
        vec![
            VipInfo {
                vip: vip("198.18.0.10", 80, Protocol::Tcp),
                flags: vec![],
                backends: vec![backend("198.19.0.11", 100, 0), backend("198.19.0.12", 0, 1)],
                index: 0,
                ring_fingerprint: "48efccb16f06f69d".into(),
                ..Default::default()
            },
            VipInfo {
                vip: vip("2001:db8::10", 0, Protocol::Udp),
                flags: vec![VipFlag::NoSport.into(), VipFlag::NoConntrack.into()],
                backends: vec![backend("2001:db8::11", 65535, 2)],
                index: 1,
                ring_fingerprint: String::new(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn vip_list_json_shape() {
        assert_eq!(
            vip_list_json(&two_vips()),
            concat!(
                r#"[{"vip":"198.18.0.10:80/tcp","flags":[],"backends":["#,
                r#"{"address":"198.19.0.11","weight":100,"slot":0,"state":"active","health":"up","health_reason":"initial","health_since_unix_ms":0},"#,
                r#"{"address":"198.19.0.12","weight":0,"slot":1,"state":"draining","health":"up","health_reason":"initial","health_since_unix_ms":0}],"#,
                r#""ring_fingerprint":"48efccb16f06f69d"},"#,
                r#"{"vip":"[2001:db8::10]:0/udp","flags":["no-sport","no-conntrack"],"backends":["#,
                r#"{"address":"2001:db8::11","weight":65535,"slot":2,"state":"active","health":"up","health_reason":"initial","health_since_unix_ms":0}],"#,
                r#""ring_fingerprint":""}]"#
            )
        );
        assert_eq!(vip_list_json(&[]), "[]");
    }

    #[test]
    fn vip_list_table_layout() {
        assert_eq!(
            vip_list_table(&two_vips()),
            concat!(
                "VIP                   FLAGS\n",
                "  -> BACKEND          WEIGHT  SLOT  STATE\n",
                "198.18.0.10:80/tcp    -\n",
                "  -> 198.19.0.11         100     0  active\n",
                "  -> 198.19.0.12           0     1  draining\n",
                "[2001:db8::10]:0/udp  no-sport,no-conntrack\n",
                "  -> 2001:db8::11      65535     2  active\n",
            )
        );
        assert_eq!(
            vip_list_table(&[]),
            "VIP           FLAGS\n  -> BACKEND  WEIGHT  SLOT  STATE\n"
        );
    }

    #[test]
    fn odd_vips_are_shown_not_hidden() {
        assert_eq!(vip_text(None), "-");
        assert_eq!(
            vip_text(vip("2001:DB8::10", 443, Protocol::Tcp).as_ref()),
            "[2001:db8::10]:443/tcp"
        );
        let odd = Vip {
            address: "fd00::1".into(),
            port: 70000,
            protocol: 9,
        };
        assert_eq!(vip_text(Some(&odd)), "[fd00::1]:70000/proto9");
        assert_eq!(flag_names(&[1, 7]), ["no-sport", "unknown-7"]);
        assert_eq!(state_name(0), "unknown");
    }

    #[test]
    fn backend_list_shapes() {
        let b = [
            backend("198.19.0.11", 100, 3),
            backend("2001:db8::1", 0, 12),
        ];
        assert_eq!(
            backend_list_json(&b),
            concat!(
                r#"[{"address":"198.19.0.11","weight":100,"slot":3,"state":"active","health":"up","health_reason":"initial","health_since_unix_ms":0},"#,
                r#"{"address":"2001:db8::1","weight":0,"slot":12,"state":"draining","health":"up","health_reason":"initial","health_since_unix_ms":0}]"#
            )
        );
        assert_eq!(
            backend_list_table(&b),
            concat!(
                "BACKEND      WEIGHT  SLOT  STATE     HEALTH  REASON   SINCE\n",
                "198.19.0.11     100     3  active    up      initial  -\n",
                "2001:db8::1       0    12  draining  up      initial  -\n",
            )
        );
    }

    fn snapshot(rates: bool) -> StatsSnapshot {
        let r = |x: f64| if rates { x } else { 0.0 };
        StatsSnapshot {
            unix_time_ms: 1_709_210_096_789,
            counters: [("rx", 1000), ("forwarded", 900), ("new_counter", 5)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            counter_rates: if rates {
                [("rx", 100.0), ("forwarded", 90.5)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect()
            } else {
                Default::default()
            },
            vips: vec![VipStats {
                vip: vip("198.18.0.10", 80, Protocol::Tcp),
                packets: 900,
                bytes: 90000,
                packets_per_second: r(90.5),
                bytes_per_second: r(9050.0),
                backends: vec![BackendStats {
                    address: "198.19.0.11".into(),
                    slot: 0,
                    packets: 900,
                    bytes: 90000,
                    packets_per_second: r(90.5),
                    bytes_per_second: r(9050.0),
                }],
            }],
            interval_seconds: r(2.0),
        }
    }

    const ZERO_COUNTERS: &str = concat!(
        r#""capture_lost":0,"#,
        r#""conn_drain_fallback":0,"conn_hit":0,"conn_insert_failed":0,"conn_miss":0,"conn_stale":0,"#,
        r#""drop_bad_checksum":0,"drop_echo_bad_source":0,"#,
        r#""drop_encap_failed":0,"drop_fragment":0,"#,
        r#""drop_icmp_quote_malformed":0,"drop_icmp_quote_truncated":0,"drop_ip_options":0,"#,
        r#""drop_malformed":0,"drop_no_backend":0,"drop_too_big":0,"#
    );

    #[test]
    fn stats_json_shape() {
        let want = format!(
            concat!(
                r#"{{"counters":{{{zero}"forwarded":900,"icmp_echo_reply":0,"#,
                r#""icmp_error_forwarded":0,"icmp_rate_limited":0,"icmp_too_big_sent":0,"new_counter":5,"new_flow":0,"new_flow_unpinned":0,"pass":0,"#,
                r#""ring_lookup":0,"rx":1000}},"#,
                r#""vips":[{{"vip":"198.18.0.10:80/tcp","packets":900,"bytes":90000,"#,
                r#""backends":[{{"address":"198.19.0.11","slot":0,"packets":900,"bytes":90000}}]}}],"#,
                r#""unix_time_ms":1709210096789}}"#
            ),
            zero = ZERO_COUNTERS
        );
        assert_eq!(stats_json(&snapshot(false), false), want);
    }

    #[test]
    fn stats_watch_json_shape() {
        let json = stats_json(&snapshot(true), true);
        let want_tail = concat!(
            r#""vips":[{"vip":"198.18.0.10:80/tcp","packets":900,"bytes":90000,"#,
            r#""packets_per_second":90.5,"bytes_per_second":9050.0,"#,
            r#""backends":[{"address":"198.19.0.11","slot":0,"packets":900,"bytes":90000,"#,
            r#""packets_per_second":90.5,"bytes_per_second":9050.0}]}],"#,
            r#""unix_time_ms":1709210096789,"interval_seconds":2.0}"#
        );
        assert!(json.ends_with(want_tail), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["counter_rates"]["rx"], 100.0);
        assert_eq!(v["counter_rates"]["forwarded"], 90.5);
        assert_eq!(v["counter_rates"]["drop_no_backend"], 0.0);
        assert_eq!(
            v["counter_rates"].as_object().unwrap().len(),
            Stat::ALL.len()
        );
        assert_eq!(
            v["counters"].as_object().unwrap().len(),
            Stat::ALL.len() + 1
        );
        assert!(!json.contains('\n'));
    }

    #[test]
    fn stats_table_layout() {
        let table = stats_table(&snapshot(false), false);
        let head = concat!(
            "VIP / BACKEND       PACKETS  BYTES\n",
            "198.18.0.10:80/tcp      900  90000\n",
            "  -> 198.19.0.11        900  90000\n",
            "\n",
            "COUNTER                    VALUE\n",
            "rx                          1000\n",
            "pass                           0\n",
            "forwarded                    900\n",
        );
        assert!(table.starts_with(head), "{table}");
        assert!(
            table.ends_with(concat!(
                "icmp_rate_limited              0\n",
                "icmp_error_forwarded           0\n",
                "drop_icmp_quote_truncated      0\n",
                "drop_icmp_quote_malformed      0\n",
                "drop_echo_bad_source           0\n",
                "drop_bad_checksum              0\n",
                "new_flow_unpinned              0\n",
                "conn_drain_fallback            0\n",
                "capture_lost                   0\n",
                "new_counter                    5\n"
            )),
            "{table}"
        );
        // Three table lines, a blank, the counter header, every counter, one extra.
        assert_eq!(table.lines().count(), 3 + 1 + 1 + Stat::ALL.len() + 1);

        let watch = stats_table(&snapshot(true), true);
        let head = concat!(
            "2024-02-29 12:34:56 UTC  rates over 2.0s\n",
            "VIP / BACKEND       PACKETS  BYTES  PKTS/S  BYTES/S\n",
            "198.18.0.10:80/tcp      900  90000    90.5   9050.0\n",
            "  -> 198.19.0.11        900  90000    90.5   9050.0\n",
            "\n",
            "COUNTER                    VALUE  RATE/S\n",
            "rx                          1000   100.0\n",
            "pass                           0     0.0\n",
            "forwarded                    900    90.5\n",
        );
        assert!(watch.starts_with(head), "{watch}");
    }

    fn status() -> GetStatusResponse {
        GetStatusResponse {
            interface: "eth0".into(),
            ifindex: 2,
            attach_mode: AttachMode::Native.into(),
            program_id: 42,
            verified_insns: 12345,
            vips: Some(MapUsage {
                used: 2,
                capacity: 512,
            }),
            backend_slots: Some(MapUsage {
                used: 3,
                capacity: 4096,
            }),
            conn_table_capacity: 65536,
            version: "0.1.0".into(),
            uptime_seconds: 93_784,
            hash_seed: 7,
            ring_size: 65537,
            adopted: true,
            pin_path: "/sys/fs/bpf/lb".into(),
            encapsulation: "gue:6080".into(),
            rings: vec![lb_proto::v1::VipRing {
                vip: vip("198.18.0.10", 80, Protocol::Tcp),
                fingerprint: "48efccb16f06f69d".into(),
            }],
            program_tag: "0123456789abcdef".into(),
            embedded_program_tag: "0123456789abcdef".into(),
            program_current: true,
            upgraded_from_tag: String::new(),
            ..Default::default()
        }
    }

    #[test]
    fn status_shapes() {
        assert_eq!(
            status_json(&status()),
            concat!(
                r#"{"interface":"eth0","ifindex":2,"attach_mode":"native","program_id":42,"#,
                r#""program_tag":"0123456789abcdef","embedded_program_tag":"0123456789abcdef","#,
                r#""program":"current","#,
                r#""verified_insns":12345,"pin_path":"/sys/fs/bpf/lb","adopted":true,"#,
                r#""vips":{"used":2,"capacity":512},"backend_slots":{"used":3,"capacity":4096},"#,
                r#""conn_table_capacity":65536,"ring_size":65537,"hash_seed":7,"#,
                r#""encapsulation":"gue:6080","version":"0.1.0","uptime_seconds":93784,"#,
                r#""rings":[{"vip":"198.18.0.10:80/tcp","fingerprint":"48efccb16f06f69d"}],"#,
                r#""backends_down":0,"vips_failing_open":[]}"#
            )
        );
        assert_eq!(
            status_table(&status()),
            concat!(
                "interface       eth0 (ifindex 2)\n",
                "attach mode     native\n",
                "program id      42\n",
                "program tag     0123456789abcdef (current: the daemon's own build)\n",
                "verified insns  12345\n",
                "pin path        /sys/fs/bpf/lb\n",
                "adopted         yes (hot restart)\n",
                "vips            2 / 512\n",
                "backend slots   3 / 4096\n",
                "conn table      65536 flows (LRU shared by all CPUs)\n",
                "ring size       65537\n",
                "hash seed       7\n",
                "encapsulation   gue:6080\n",
                "version         0.1.0\n",
                "uptime          1d 2h 3m 4s\n",
                "health          0 backends down\n",
                "ring            198.18.0.10:80/tcp  48efccb16f06f69d\n",
            )
        );
        // Another build's program running: stale, with both tags, and the
        // upgrade a daemon made at start.
        let stale = GetStatusResponse {
            program_current: false,
            embedded_program_tag: "fedcba9876543210".into(),
            upgraded_from_tag: "1111222233334444".into(),
            ..status()
        };
        let table = status_table(&stale);
        assert!(
            table.contains(
                "program tag     0123456789abcdef (STALE: the daemon carries fedcba9876543210"
            ),
            "{table}"
        );
        assert!(
            table.contains("upgraded from   1111222233334444\n"),
            "{table}"
        );
        let json = status_json(&stale);
        assert!(json.contains(r#""program":"stale""#), "{json}");
        assert!(
            json.contains(r#""upgraded_from_tag":"1111222233334444""#),
            "{json}"
        );
        let empty = GetStatusResponse::default();
        assert!(status_json(&empty).contains(r#""program":"unknown""#));
        assert!(status_json(&empty).contains(r#""attach_mode":"none""#));
        assert!(status_json(&empty).contains(r#""vips":{"used":0,"capacity":0}"#));
    }

    #[test]
    fn route_shapes() {
        let v: VipSpec = "[2001:db8::10]:0/tcp".parse().unwrap();
        let b = backend("2001:db8::11", 100, 4);
        let resp = RouteResponse {
            backend: Some(b.clone()),
            ring_position: 1234,
            flow_hash: 4_000_000_000,
            explanation: None,
        };
        let view = RouteView {
            vip: &v,
            client: "[2001:db8::7]:40000".parse().unwrap(),
            destination_port: 443,
            backend: &b,
            response: &resp,
        };
        assert_eq!(
            route_json(&view),
            concat!(
                r#"{"vip":"[2001:db8::10]:0/tcp","client":"[2001:db8::7]:40000","#,
                r#""destination_port":443,"backend":"2001:db8::11","slot":4,"#,
                r#""ring_position":1234,"flow_hash":4000000000}"#
            )
        );
        assert_eq!(
            route_table(&view),
            concat!(
                "vip               [2001:db8::10]:0/tcp\n",
                "client            [2001:db8::7]:40000\n",
                "destination port  443\n",
                "backend           2001:db8::11\n",
                "slot              4\n",
                "ring position     1234\n",
                "flow hash         4000000000\n",
            )
        );
    }

    #[test]
    fn gateway_shape() {
        assert_eq!(
            gateway_json("02:00:00:00:00:01"),
            r#"{"mac":"02:00:00:00:00:01"}"#
        );
    }

    #[test]
    fn time_and_duration_text() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        // `date -u -d @951782400` = 2000-02-29 00:00:00.
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_709_210_096_789), "2024-02-29 12:34:56 UTC");
        assert_eq!(utc_time(4_102_444_799_000), "2099-12-31 23:59:59 UTC");
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(61), "1m 1s");
        assert_eq!(duration_text(86_400), "1d 0h 0m 0s");
    }
}
