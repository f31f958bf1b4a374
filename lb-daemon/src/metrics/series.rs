//! The series read from the maps at each scrape: global `lb_xdp` counters,
//! packets and bytes per VIP and per backend, backend weight and state.
//! Global counters are not listed here: every [`Stat`] is exported under its
//! own [`Stat::name`], so a counter added to the data plane appears without
//! a change here — drops (the counters whose [`Stat::outcome`] is
//! [`Outcome::Dropped`]) as one family by reason, every other as
//! `lb_xdp_<name>_total`.

use lb_common::{Outcome, Stat};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

use crate::{
    dataplane::Dataplane,
    state::{LbState, StateError},
};

/// The prefix a drop counter's name carries, left out of its `reason`.
pub const DROP_PREFIX: &str = "drop_";

/// The family name of a global counter that is not a drop (without the
/// `_total` the exposition adds).
pub fn global_series_name(s: Stat) -> String {
    format!("lb_xdp_{}", s.name())
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
}

/// One VIP as scraped.
#[derive(Debug)]
struct VipRow {
    vip: String,
    packets: u64,
    bytes: u64,
    backends: Vec<BackendRow>,
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
    pub fn read<D: Dataplane>(st: &LbState<D>) -> Result<Self, StateError> {
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
                    }
                })
                .collect();
            vips.push(VipRow {
                vip: info.spec.to_string(),
                packets: c.vip.packets,
                bytes: c.vip.bytes,
                backends,
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

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = MetricType::Counter;
        for s in Stat::ALL {
            if s.outcome() == Some(Outcome::Dropped) {
                continue;
            }
            let name = global_series_name(s);
            let help = format!("lb_xdp counter `{}` (lb-common/src/stats.rs)", s.name());
            let m = enc.encode_descriptor(&name, &help, None, counter)?;
            ConstCounter::new(self.global[s as usize]).encode(m)?;
        }
        {
            let mut fam = enc.encode_descriptor(
                "lb_xdp_drops",
                "Packets for a VIP dropped by lb_xdp, by reason",
                None,
                counter,
            )?;
            for (s, reason) in drop_reasons() {
                let labels = [("reason", reason)];
                ConstCounter::new(self.global[s as usize]).encode(fam.encode_family(&labels)?)?;
            }
        }
        type Field = fn(&VipRow) -> u64;
        let vip_series: [(&str, Option<Unit>, &str, Field); 2] = [
            ("lb_vip_packets", None, "Packets for a VIP", |v| v.packets),
            (
                "lb_vip",
                Some(Unit::Bytes),
                "Bytes (IP length as received) of the packets for a VIP",
                |v| v.bytes,
            ),
        ];
        for (name, unit, help, field) in &vip_series {
            let mut fam = enc.encode_descriptor(name, help, unit.as_ref(), counter)?;
            for v in &self.vips {
                let labels = [("vip", v.vip.as_str())];
                ConstCounter::new(field(v)).encode(fam.encode_family(&labels)?)?;
            }
        }
        type BField = fn(&BackendRow) -> u64;
        let backend_series: [(&str, Option<Unit>, &str, BField); 2] = [
            (
                "lb_backend_packets",
                None,
                "Packets forwarded to a backend of a VIP",
                |b| b.packets,
            ),
            (
                "lb_backend",
                Some(Unit::Bytes),
                "Bytes (IP length as received, before encapsulation) forwarded to a backend of a VIP",
                |b| b.bytes,
            ),
        ];
        for (name, unit, help, field) in &backend_series {
            let mut fam = enc.encode_descriptor(name, help, unit.as_ref(), counter)?;
            for v in &self.vips {
                for b in &v.backends {
                    let labels = [("vip", v.vip.as_str()), ("backend", b.address.as_str())];
                    ConstCounter::new(field(b)).encode(fam.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "lb_backend_weight",
                "Weight of a backend of a VIP (0: draining)",
                None,
                MetricType::Gauge,
            )?;
            for v in &self.vips {
                for b in &v.backends {
                    let labels = [("vip", v.vip.as_str()), ("backend", b.address.as_str())];
                    ConstGauge::new(i64::from(b.weight)).encode(fam.encode_family(&labels)?)?;
                }
            }
        }
        let mut fam = enc.encode_descriptor(
            "lb_backend_state",
            "State of a backend of a VIP: 1 for the state it is in (active: in the ring; draining: weight 0, existing flows only), 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for v in &self.vips {
            for b in &v.backends {
                for state in BACKEND_STATES {
                    let labels = [
                        ("vip", v.vip.as_str()),
                        ("backend", b.address.as_str()),
                        ("state", state),
                    ];
                    let on = i64::from(backend_state(b.weight) == state);
                    ConstGauge::new(on).encode(fam.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
