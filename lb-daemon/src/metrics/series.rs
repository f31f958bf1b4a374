//! The series read from the maps at each scrape: global `lb_xdp` counters,
//! packets and bytes per VIP and per backend, backend weight and state.
//! Global counters are not listed here: every [`Stat`] is exported under its
//! own [`Stat::name`], so a counter added to the data plane appears without
//! a change here — drops (the counters whose [`Stat::outcome`] is
//! [`Outcome::Dropped`]) as one family by reason, every other as
//! `lb_xdp_<name>_total`.

use lb_api::{HealthState, ProbeCounters};
use lb_common::{Outcome, Stat};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::health::ProbeStats;

use crate::{
    dataplane::Dataplane,
    state::{LbState, StateError},
};

/// The prefix a drop counter's name carries, left out of its `reason`.
pub const DROP_PREFIX: &str = "drop_";

/// The series name of a global counter that is not a drop.
pub fn global_series_name(s: Stat) -> String {
    format!("lb_xdp_{}_total", s.name())
}

/// The `reason` label of each drop counter: its name without `drop_`
/// (`icmp_rate_limited` keeps its name).
pub fn drop_reasons() -> Vec<(Stat, &'static str)> {
    Stat::ALL
        .iter()
        .filter(|s| s.outcome() == Some(Outcome::Dropped))
        .map(|s| (*s, s.name().strip_prefix(DROP_PREFIX).unwrap_or(s.name())))
        .collect()
}

/// One backend as scraped.
#[derive(Debug)]
struct BackendRow {
    address: String,
    weight: u32,
    packets: u64,
    bytes: u64,
    health: HealthState,
    probes: ProbeCounters,
}

/// One VIP as scraped.
#[derive(Debug)]
struct VipRow {
    vip: String,
    packets: u64,
    bytes: u64,
    backends: Vec<BackendRow>,
    /// Whether it has a health check (its backends' health series exist).
    checked: bool,
    fail_open: bool,
}

/// The maps' counters at one instant, with the state's VIPs and weights.
#[derive(Debug)]
pub(super) struct Snapshot {
    global: Vec<u64>,
    vips: Vec<VipRow>,
}

impl Snapshot {
    /// Reads every counter (summed over CPUs by the data plane) through the
    /// state, as `lbctl stats` does (`grpc::stats`).
    pub fn read<D: Dataplane>(st: &LbState<D>, probes: &ProbeStats) -> Result<Self, StateError> {
        let global = st.global_counters()?.to_vec();
        let mut vips = Vec::new();
        for info in st.list_vips() {
            let c = st.vip_counters(&info.spec)?;
            let backends = info
                .backends
                .iter()
                .map(|b| {
                    let t = c
                        .backends
                        .iter()
                        .find(|(a, _)| *a == b.address)
                        .map(|(_, t)| *t)
                        .unwrap_or_default();
                    BackendRow {
                        address: b.address.to_string(),
                        weight: b.weight,
                        packets: t.packets,
                        bytes: t.bytes,
                        health: b.health.state,
                        probes: probes.get(&info.spec, b.address),
                    }
                })
                .collect();
            vips.push(VipRow {
                vip: info.spec.to_string(),
                packets: c.vip.packets,
                bytes: c.vip.bytes,
                backends,
                checked: info.health.is_some(),
                fail_open: info.fail_open,
            });
        }
        Ok(Self { global, vips })
    }
}

/// The states a backend can be in, as `lbctl backend list` names them.
const BACKEND_STATES: [&str; 2] = ["active", "draining"];

fn backend_state(weight: u32) -> &'static str {
    if weight == 0 { "draining" } else { "active" }
}

impl Snapshot {
    /// The snapshot as series, in a registry of its own (made per scrape:
    /// the values are the maps', so they are set, never counted here).
    pub fn registry(&self) -> Result<Registry, prometheus::Error> {
        let reg = Registry::new();
        for s in Stat::ALL {
            if s.outcome() == Some(Outcome::Dropped) {
                continue;
            }
            let help = format!("lb_xdp counter `{}` (lb-common/src/stats.rs)", s.name());
            let c = IntCounter::new(global_series_name(s), help)?;
            c.inc_by(self.global[s as usize]);
            reg.register(Box::new(c))?;
        }
        let drops = IntCounterVec::new(
            Opts::new(
                "lb_xdp_drops_total",
                "Packets for a VIP dropped by lb_xdp, by reason",
            ),
            &["reason"],
        )?;
        for (s, reason) in drop_reasons() {
            drops
                .with_label_values(&[reason])
                .inc_by(self.global[s as usize]);
        }
        reg.register(Box::new(drops))?;

        let vip_counter = |name: &str, help: &str, field: fn(&VipRow) -> u64| {
            let c = IntCounterVec::new(Opts::new(name, help), &["vip"])?;
            for v in &self.vips {
                c.with_label_values(&[v.vip.as_str()]).inc_by(field(v));
            }
            reg.register(Box::new(c))
        };
        vip_counter("lb_vip_packets_total", "Packets for a VIP", |v| v.packets)?;
        vip_counter(
            "lb_vip_bytes_total",
            "Bytes (IP length as received) of the packets for a VIP",
            |v| v.bytes,
        )?;

        let per_backend = |vec: &dyn Fn(&VipRow, &BackendRow, &[&str])| {
            for v in &self.vips {
                for b in &v.backends {
                    vec(v, b, &[v.vip.as_str(), b.address.as_str()]);
                }
            }
        };
        let backend_counter = |name: &str, help: &str, field: fn(&BackendRow) -> u64| {
            let c = IntCounterVec::new(Opts::new(name, help), &["vip", "backend"])?;
            per_backend(&|_, b, l| c.with_label_values(l).inc_by(field(b)));
            reg.register(Box::new(c))
        };
        backend_counter(
            "lb_backend_packets_total",
            "Packets forwarded to a backend of a VIP",
            |b| b.packets,
        )?;
        backend_counter(
            "lb_backend_bytes_total",
            "Bytes (IP length as received, before encapsulation) forwarded to a backend of a VIP",
            |b| b.bytes,
        )?;
        let weight = IntGaugeVec::new(
            Opts::new(
                "lb_backend_weight",
                "Weight of a backend of a VIP (0: draining)",
            ),
            &["vip", "backend"],
        )?;
        per_backend(&|_, b, l| weight.with_label_values(l).set(i64::from(b.weight)));
        reg.register(Box::new(weight))?;
        let state = IntGaugeVec::new(
            Opts::new(
                "lb_backend_state",
                "State of a backend of a VIP: 1 for the state it is in (active: in the ring; draining: weight 0, existing flows only), 0 for the others",
            ),
            &["vip", "backend", "state"],
        )?;
        per_backend(&|_, b, l| {
            for s in BACKEND_STATES {
                state
                    .with_label_values(&[l[0], l[1], s])
                    .set(i64::from(backend_state(b.weight) == s));
            }
        });
        reg.register(Box::new(state))?;
        self.register_health(&reg)?;
        Ok(reg)
    }

    /// Health series, for VIPs with a check: each backend's health and
    /// probe counters, and whether the VIP fails open.
    fn register_health(&self, reg: &Registry) -> Result<(), prometheus::Error> {
        let checked = || {
            self.vips
                .iter()
                .filter(|v| v.checked)
                .flat_map(|v| v.backends.iter().map(move |b| (v, b)))
        };
        let health = IntGaugeVec::new(
            Opts::new(
                "lb_backend_health",
                "Health of a backend of a VIP with a health check: 1 for the state it is in (up, down), 0 for the other",
            ),
            &["vip", "backend", "state"],
        )?;
        for (v, b) in checked() {
            for s in [HealthState::Up, HealthState::Down] {
                health
                    .with_label_values(&[v.vip.as_str(), b.address.as_str(), s.name()])
                    .set(i64::from(b.health == s));
            }
        }
        reg.register(Box::new(health))?;
        for (name, help, field) in [
            (
                "lb_health_probes_total",
                "Health probes sent to a backend of a VIP (since the daemon started)",
                (|c: &ProbeCounters| c.sent) as fn(&ProbeCounters) -> u64,
            ),
            (
                "lb_health_probe_failures_total",
                "Health probes of a backend of a VIP that failed",
                |c| c.failed,
            ),
            (
                "lb_health_transitions_total",
                "Health state changes (up to down, down to up) of a backend of a VIP",
                |c| c.transitions,
            ),
        ] {
            let c = IntCounterVec::new(Opts::new(name, help), &["vip", "backend"])?;
            for (v, b) in checked() {
                c.with_label_values(&[v.vip.as_str(), b.address.as_str()])
                    .inc_by(field(&b.probes));
            }
            reg.register(Box::new(c))?;
        }
        let open = IntGaugeVec::new(
            Opts::new(
                "lb_vip_fail_open",
                "1 while every backend with a weight of a VIP is down and the VIP serves with all of them (fail open)",
            ),
            &["vip"],
        )?;
        for v in self.vips.iter().filter(|v| v.checked) {
            open.with_label_values(&[v.vip.as_str()])
                .set(i64::from(v.fail_open));
        }
        reg.register(Box::new(open))
    }
}
